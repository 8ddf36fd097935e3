"""An upstream MCP server written with the official `mcp` SDK (MCPServer, Streamable HTTP,
both protocol eras at one endpoint), for the MCP adapter's tests and bench.

Usage: mcp_upstream.py PORT TOKEN

Tools: `search` and `fetch_page` (cheap and dearer), `delete_all` (kept out of agents' allow
lists), `echo` (for the bench) and `slow_report` (streams progress, then answers). One resource
(`docs://readme`) and one prompt (`greet`). Every request to /mcp must carry
`Authorization: Bearer TOKEN` (the server's own credential, which Caracal adds); anything else is
answered 401 and counted. `GET /stats` (no auth) reports what the server saw: tool invocations
by name, completed and cancelled slow reports, and every Authorization / X-API-Key value that
reached it, so a test can prove the agent's key never did.
"""

import sys
from collections import Counter

import anyio
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from starlette.requests import Request
from starlette.responses import JSONResponse

PORT = int(sys.argv[1])
TOKEN = sys.argv[2]

calls: Counter = Counter()
seen_credentials: set = set()
unauthorized = 0
slow = {"started": 0, "completed": 0, "cancelled": 0}

mcp = MCPServer("caracal-test-upstream")


@mcp.tool()
def search(query: str) -> str:
    """Search the web."""
    calls["search"] += 1
    return f"results for {query}"


@mcp.tool()
def fetch_page(url: str) -> str:
    """Fetch a page."""
    calls["fetch_page"] += 1
    return f"<html>{url}</html>"


@mcp.tool()
def delete_all() -> str:
    """Never reachable by the test agent."""
    calls["delete_all"] += 1
    return "deleted"


@mcp.tool()
def echo(text: str) -> str:
    """Answers at once (the bench's tool)."""
    calls["echo"] += 1
    return text


@mcp.tool()
async def slow_report(steps: int, delay_ms: int, ctx: Context) -> str:
    """Reports progress `steps` times, `delay_ms` apart, then answers."""
    calls["slow_report"] += 1
    slow["started"] += 1
    try:
        for step in range(steps):
            await anyio.sleep(delay_ms / 1000)
            await ctx.report_progress(step + 1, steps, f"step {step + 1}")
    except BaseException:
        slow["cancelled"] += 1
        raise
    slow["completed"] += 1
    return f"report done in {steps} steps"


@mcp.resource("docs://readme")
def readme() -> str:
    """The readme."""
    return "caracal test readme"


@mcp.prompt()
def greet(name: str) -> str:
    """A greeting prompt."""
    return f"Say hello to {name}."


@mcp.custom_route("/stats", methods=["GET"])
async def stats(_request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "calls": dict(calls),
            "credentials": sorted(seen_credentials),
            "unauthorized": unauthorized,
            "slow": slow,
        }
    )


def guarded(app):
    """Requires the server's own credential on /mcp and records every credential seen."""

    async def asgi(scope, receive, send):
        global unauthorized
        if scope["type"] == "http" and scope["path"].startswith("/mcp"):
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            for name in ("authorization", "x-api-key"):
                if name in headers:
                    seen_credentials.add(headers[name])
            if headers.get("authorization") != f"Bearer {TOKEN}":
                unauthorized += 1
                response = JSONResponse({"error": "unauthorized"}, status_code=401)
                await response(scope, receive, send)
                return
        await app(scope, receive, send)

    return asgi


app = guarded(mcp.streamable_http_app(host="127.0.0.1"))

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning", timeout_graceful_shutdown=1)
