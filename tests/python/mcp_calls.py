"""The official `mcp` SDK client driving Caracal's MCP adapter; prints what it saw as JSON.

Usage:
  mcp_calls.py calls   URL KEY POOR_KEY MODE   discovery, plain and streamed calls, resources,
                                               prompts, a tool outside the allow list, an
                                               over-budget call (POOR_KEY's agent)
  mcp_calls.py cancel  URL KEY MODE            a slow streamed call cancelled after its first
                                               progress report
  mcp_calls.py session URL_A URL_B KEY         a 2025-11-25 session opened through replica A and
                                               continued through replica B
MODE is `legacy` (2025-11-25, initialize + Mcp-Session-Id) or `2026-07-28` (stateless).
"""

import json
import sys

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError


def client(url, key, mode, transport=None):
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, transport=transport, timeout=60)
    return Client(streamable_http_client(url, http_client=http), mode=mode)


def refusal(error):
    data = error.error.data if hasattr(error, "error") else None
    return {"raised": type(error).__name__, "code": error.code, "data": data}


async def calls(url, key, poor_key, mode):
    out = {}
    async with client(url, key, mode) as c:
        out["protocol_version"] = c.protocol_version
        out["tools"] = sorted(t.name for t in (await c.list_tools()).tools)
        out["search"] = (await c.call_tool("search", {"query": "lynx"})).content[0].text
        out["fetch_page"] = (await c.call_tool("fetch_page", {"url": "https://example.com"})).content[0].text
        progress = []

        async def on_progress(value, total, message):
            progress.append(value)

        result = await c.call_tool("slow_report", {"steps": 3, "delay_ms": 50}, progress_callback=on_progress)
        out["slow_report"] = {"text": result.content[0].text, "progress": progress}
        out["resource"] = (await c.read_resource("docs://readme")).contents[0].text
        out["prompt"] = (await c.get_prompt("greet", {"name": "Ada"})).messages[0].content.text
        try:
            await c.call_tool("delete_all", {})
            out["not_allowed"] = {"raised": None}
        except MCPError as e:
            out["not_allowed"] = refusal(e)
    async with client(url, poor_key, mode) as poor:
        try:
            await poor.call_tool("search", {"query": "too dear"})
            out["over_budget"] = {"raised": None}
        except MCPError as e:
            out["over_budget"] = refusal(e)
    return out


async def cancel(url, key, mode):
    async with client(url, key, mode) as c:
        first = anyio.Event()

        async def on_progress(value, total, message):
            first.set()

        async with anyio.create_task_group() as tg:

            async def slow():
                await c.call_tool("slow_report", {"steps": 100, "delay_ms": 100}, progress_callback=on_progress)

            tg.start_soon(slow)
            with anyio.fail_after(30):
                await first.wait()
            tg.cancel_scope.cancel()
    return {"cancelled": True}


class Balancer(httpx2.AsyncBaseTransport):
    """Sends each request to whichever replica is current: a load balancer moving a session."""

    def __init__(self, ports):
        self.inner = httpx2.AsyncHTTPTransport()
        self.ports = ports
        self.current = 0
        self.seen = []

    async def handle_async_request(self, request):
        request.url = request.url.copy_with(port=self.ports[self.current])
        self.seen.append(self.ports[self.current])
        return await self.inner.handle_async_request(request)


async def session(url_a, url_b, key):
    ports = [httpx2.URL(url_a).port, httpx2.URL(url_b).port]
    balancer = Balancer(ports)
    out = {}
    async with client(url_a, key, "legacy", transport=balancer) as c:
        out["protocol_version"] = c.protocol_version
        out["first"] = (await c.call_tool("search", {"query": "on A"})).content[0].text
        balancer.current = 1
        out["tools_on_b"] = sorted(t.name for t in (await c.list_tools(cache_mode="refresh")).tools)
        out["second"] = (await c.call_tool("search", {"query": "on B"})).content[0].text
    out["replicas_used"] = sorted(set(balancer.seen))
    return out


def main():
    command, args = sys.argv[1], sys.argv[2:]
    runners = {"calls": calls, "cancel": cancel, "session": session}
    result = anyio.run(runners[command], *args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
