"""Latency of `tools/call` with the official `mcp` SDK client, straight to an upstream server and
through Caracal's MCP adapter, one call at a time (closed loop), at both protocol versions.

Usage: mcp_bench.py DIRECT_URL DIRECT_TOKEN ADAPTER_URL AGENT_KEY CALLS
"""

import statistics
import sys
import time

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def measure(url, token, mode, calls):
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
    async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
        await client.list_tools()
        for _ in range(20):  # warm-up: connections, caches
            await client.call_tool("echo", {"text": "warm"})
        samples = []
        for i in range(calls):
            started = time.perf_counter()
            await client.call_tool("echo", {"text": f"call {i}"})
            samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    pick = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]
    return {"p50": statistics.median(samples), "p90": pick(0.90), "p99": pick(0.99)}


async def main(direct_url, token, adapter_url, key, calls):
    calls = int(calls)
    print(f"{'version':>10}  {'target':8} {'calls':>6} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}")
    for mode, label in (("legacy", "2025-11-25"), ("2026-07-28", "2026-07-28")):
        direct = await measure(direct_url, token, mode, calls)
        through = await measure(adapter_url, key, mode, calls)
        for name, row in (("direct", direct), ("caracal", through)):
            print(f"{label:>10}  {name:8} {calls:>6} {row['p50']:8.3f} {row['p90']:8.3f} {row['p99']:8.3f}")
        added = {q: through[q] - direct[q] for q in direct}
        print(f"{label:>10}  {'added':8} {'':>6} {added['p50']:+8.3f} {added['p90']:+8.3f} {added['p99']:+8.3f}")


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:])
