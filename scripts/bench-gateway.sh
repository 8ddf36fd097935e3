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
source scripts/bench-lib.sh

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
bin="${CARACAL_BENCH_BIN:-$bench_release_dir/caracal}"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

bench_start_mock "$work"

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

bench_write_config "$work" "$redis_yaml"
c="$bin --config $work/caracal.yaml"
bench_agent_tree "$c"

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
bench_first_call "$work"

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
