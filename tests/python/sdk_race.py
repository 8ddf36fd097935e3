"""N concurrent chat calls with the official openai SDK, spread round-robin over several
gateway base URLs; prints how each ended as JSON: {"ok": n, "denied": n, "other": [...]}.

usage: sdk_race.py URL[,URL...] KEY CALLS CONCURRENCY
"""
import asyncio
import json
import sys

import openai


async def main():
    urls, key, calls, concurrency = sys.argv[1].split(","), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    clients = [openai.AsyncOpenAI(base_url=u, api_key=key, max_retries=0, timeout=60) for u in urls]
    gate = asyncio.Semaphore(concurrency)
    out = {"ok": 0, "denied": 0, "other": []}

    async def one(i):
        async with gate:
            try:
                await clients[i % len(clients)].chat.completions.create(
                    model="mock-flat", max_tokens=8,
                    messages=[{"role": "user", "content": f"race {i}"}])
                out["ok"] += 1
            except openai.PermissionDeniedError as e:
                code = e.code
                if code == "budget_exceeded":
                    out["denied"] += 1
                else:
                    out["other"].append(f"403 {code}")
            except Exception as e:  # noqa: BLE001 - every other ending is reported, not hidden
                out["other"].append(f"{type(e).__name__}: {e}")

    await asyncio.gather(*(one(i) for i in range(calls)))
    for c in clients:
        await c.close()
    print(json.dumps(out))


asyncio.run(main())
