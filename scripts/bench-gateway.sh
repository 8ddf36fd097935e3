#!/usr/bin/env bash
# The gateway overhead benchmark: the mock upstream, nginx as a no-logic reverse proxy in front
# of it (the limit of one proxy hop on this machine) and a release `caracal serve --role
# gateway` on loopback, an agent tree (parent + child, a daily policy on each, api_key auth),
# then the open-loop load generator against the mock directly, through nginx and through the
# gateway in the same run, at every rate and then streaming (CARACAL_BENCH_STREAM_RATES,
# default 1000; empty skips it). Installs Debian's nginx-light when nginx is missing.
# Usage: scripts/bench-gateway.sh [rates, default 1000,5000,10000] [seconds per rate, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
rates="${1:-1000,5000,10000}"
duration="${2:-10}"
die() { printf 'bench-gateway: %s\n' "$*" >&2; exit 1; }

nginx_bin=$(command -v nginx || true)
[ -z "$nginx_bin" ] && [ -x /usr/sbin/nginx ] && nginx_bin=/usr/sbin/nginx
if [ -z "$nginx_bin" ]; then
  command -v apt-get >/dev/null || die "need nginx (Debian's nginx-light) but apt-get is not available"
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q nginx-light
  nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
  [ -x "$nginx_bin" ] || die "nginx is missing after installing nginx-light"
fi

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

# nginx: one worker (master + worker; the worker's CPU and RSS are metered), HTTP/1.1 with
# keep-alive to the mock, no buffering either way, no access log.
nginx_port=$(free_port)
mkdir -p "$work/nginx"
# As root, the worker would switch to `nobody`, which cannot enter this run's private directory.
nginx_user=""; [ "$(id -u)" = 0 ] && nginx_user="user root;"
cat > "$work/nginx/nginx.conf" <<NGINX
$nginx_user
daemon off;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  keepalive_requests 1000000;
  upstream mock { server $mock; keepalive 256; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
    }
  }
}
NGINX
"$nginx_bin" -e "$work/nginx/error.log" -c "$work/nginx/nginx.conf" &
nginx_master=$!
pids+=($nginx_master)
nginx_pid=""
for _ in $(seq 100); do nginx_pid=$(pgrep -P "$nginx_master" || true); [ -n "$nginx_pid" ] && break; sleep 0.05; done
[ -n "$nginx_pid" ] || die "nginx did not start: $(cat "$work/nginx/error.log" 2>/dev/null)"

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
# CARACAL_BENCH_GATEWAY_ENV="NAME=VALUE ...": extra environment for the gateway alone (e.g.
# TOKIO_WORKER_THREADS=1 or GLIBC_TUNABLES=glibc.malloc.arena_max=1 as experiments).
gw_env=(env ${CARACAL_BENCH_GATEWAY_ENV:-})
if [ -n "${CARACAL_BENCH_PERF_OUT:-}${CARACAL_BENCH_WRAP:-}" ]; then
  wrap=${CARACAL_BENCH_WRAP:-perf record -q -F 997 -g -o $CARACAL_BENCH_PERF_OUT --}
  RUST_LOG=warn "${gw_env[@]}" $wrap $c serve --role gateway > "$work/gateway.log" 2>&1 &
  perf_pid=$!
  pids+=($perf_pid)
  for _ in $(seq 100); do gw_pid=$(pgrep -P "$perf_pid" || true); [ -n "$gw_pid" ] && break; sleep 0.05; done
else
  RUST_LOG=warn "${gw_env[@]}" $c serve --role gateway > "$work/gateway.log" 2>&1 &
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
CARACAL_BENCH_PROXY_URL="http://127.0.0.1:$nginx_port/v1/chat/completions" \
CARACAL_BENCH_PROXY_PID="$nginx_pid" \
CARACAL_BENCH_STREAM_RATES="${CARACAL_BENCH_STREAM_RATES-1000}" \
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
