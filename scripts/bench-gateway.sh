#!/usr/bin/env bash
# The gateway overhead benchmark: the mock upstream and a release `caracal serve --role gateway`
# on loopback, an agent tree (parent + child, a daily policy on each, api_key auth), then the
# open-loop load generator against the mock directly and through the gateway in the same run.
# Usage: scripts/bench-gateway.sh [rates, default 1000,5000,10000] [seconds per rate, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
rates="${1:-1000,5000,10000}"
duration="${2:-10}"

cargo build --release --bins
cargo bench --bench gateway_overhead --no-run
# CARACAL_BENCH_BIN=PATH: benchmark another build of caracal (A/B runs alternate two binaries).
bin="${CARACAL_BENCH_BIN:-target/release/caracal}"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

target/release/caracal-mock-upstream --listen 127.0.0.1:0 > "$work/mock.out" &
mock_pid=$!
pids+=($mock_pid)
for _ in $(seq 100); do grep -q "listening on" "$work/mock.out" 2>/dev/null && break; sleep 0.05; done
mock=$(sed -n 's/^listening on //p' "$work/mock.out")

# CARACAL_BENCH_REDIS=1: the gateway reserves in a real Redis (a redis-server of this run)
# instead of its in-process spend cache.
redis_yaml=""
if [ -n "${CARACAL_BENCH_REDIS:-}" ]; then
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" > "$work/redis.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done
  redis_yaml="redis: {host: 127.0.0.1, port: $redis_port}"
fi

gw_port=$(free_port)
telemetry_port=$(free_port)
cat > "$work/caracal.yaml" <<YAML
dataDir: $work/data
telemetry: {port: $telemetry_port}
admin: {port: $(free_port)}
gateway:
  service: {httpsPort: $gw_port}
  routes:
    - {prefix: /openai, upstream: "http://$mock", provider: openai, credentialEnv: BENCH_PROVIDER_KEY}
$redis_yaml
YAML
export BENCH_PROVIDER_KEY=sk-bench
c="$bin --config $work/caracal.yaml"
$c pricebook import pricebook/default.yaml >/dev/null
parent=$($c agent create --name bench-team --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
child=$($c agent create --name bench-bot --parent "$parent" --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
$c policy create --agent-id "$parent" --limit 1000000.00 --time-window daily >/dev/null
$c policy create --agent-id "$child" --limit 1000000.00 --time-window daily >/dev/null
key=$($c key create --agent-id "$child" --output json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')

# CARACAL_BENCH_PERF_OUT=FILE: sample the gateway's stacks with `perf record` into FILE.
# CARACAL_BENCH_WRAP="strace -f -c -o FILE": run the gateway under another tool instead.
if [ -n "${CARACAL_BENCH_PERF_OUT:-}${CARACAL_BENCH_WRAP:-}" ]; then
  wrap=${CARACAL_BENCH_WRAP:-perf record -q -F 997 -g -o $CARACAL_BENCH_PERF_OUT --}
  RUST_LOG=warn $wrap $c serve --role gateway > "$work/gateway.log" 2>&1 &
  perf_pid=$!
  pids+=($perf_pid)
  for _ in $(seq 100); do gw_pid=$(pgrep -P "$perf_pid" || true); [ -n "$gw_pid" ] && break; sleep 0.05; done
else
  RUST_LOG=warn $c serve --role gateway > "$work/gateway.log" 2>&1 &
  gw_pid=$!
fi
pids+=($gw_pid)
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$gw_port/ready" >/dev/null && break; sleep 0.05; done
# One request by hand first: a benchmark of refusals would measure nothing.
status=$(curl -s -o "$work/first.json" -w '%{http_code}' -H "Authorization: Bearer $key" \
  -H 'Content-Type: application/json' \
  -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello to the benchmark"}],"max_tokens":16}' \
  "http://127.0.0.1:$gw_port/openai/v1/chat/completions")
if [ "$status" != 200 ]; then
  echo "error: the gateway answered $status to a first request: $(cat "$work/first.json")" >&2
  exit 1
fi

CARACAL_BENCH_DIRECT_URL="http://$mock/v1/chat/completions" \
CARACAL_BENCH_GATEWAY_URL="http://127.0.0.1:$gw_port/openai/v1/chat/completions" \
CARACAL_BENCH_GATEWAY_KEY="$key" \
CARACAL_BENCH_GATEWAY_PID="$gw_pid" \
CARACAL_BENCH_MOCK_PID="$mock_pid" \
CARACAL_BENCH_RATES="$rates" \
CARACAL_BENCH_DURATION_S="$duration" \
  cargo bench --bench gateway_overhead

# Where the gateway's time went: the reservation (policy evaluation + durable hold) histogram.
echo
echo "gateway reservation time (caracal_policy_evaluation_seconds, cumulative buckets):"
curl -s "http://127.0.0.1:$telemetry_port/metrics" | grep -E '^caracal_policy_evaluation_seconds_(bucket|count|sum)' || true
