#!/usr/bin/env bash
# Added latency of the MCP adapter per tools/call: the official `mcp` SDK client calls a tool of
# an SDK upstream server straight and through `caracal serve --role mcp`, in the same run, at
# both protocol versions (release build, embedded backends, loopback).
# Usage: bash scripts/bench-mcp.sh [calls per target and version, default 500]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
calls=${1:-500}
python=${CARACAL_PYTHON:-$root/.venv/bin/python}
[ -x "$python" ] || { echo "error: no Python with the mcp SDK at $python (run scripts/test.sh once)" >&2; exit 1; }
cargo build --release --quiet
bin=${CARACAL_BENCH_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/caracal}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up_port=$(free_port); mcp_port=$(free_port); tel_port=$(free_port); admin_port=$(free_port)
"$python" tests/python/mcp_upstream.py "$up_port" bench-upstream-token & pids+=($!)
cat > "$work/caracal.yaml" <<YAML
mcpAdapter:
  port: $mcp_port
  servers:
    - {name: tools, url: "http://127.0.0.1:$up_port/mcp", credentialEnv: BENCH_UPSTREAM_TOKEN}
YAML
export CARACAL_DATADIR="$work/data" BENCH_UPSTREAM_TOKEN=bench-upstream-token
export CARACAL_ADMIN__PORT=$admin_port CARACAL_TELEMETRY__PORT=$tel_port
cd "$work"
"$bin" pricebook set --provider mcp --model tools/echo --per-call 0.000001 >/dev/null
agent=$("$bin" agent create --name bench --output json | "$python" -c 'import json,sys; print(json.load(sys.stdin)["id"])')
"$bin" policy create --agent-id "$agent" --limit 1000000 --time-window daily >/dev/null
key=$("$bin" key create --agent-id "$agent" --output json | "$python" -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
RUST_LOG=warn "$bin" serve --role mcp > "$work/serve.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$mcp_port/ready" >/dev/null && break; sleep 0.1; done
cd "$root"
"$python" tests/python/mcp_bench.py "http://127.0.0.1:$up_port/mcp" bench-upstream-token \
  "http://127.0.0.1:$mcp_port/mcp/tools" "$key" "$calls"
