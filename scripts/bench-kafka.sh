#!/usr/bin/env bash
# The Kafka benchmark (issue 23), one run on one real tansu broker (sqlite engine, loopback):
#  (a) publish: a release `caracal serve --role gateway` with kafka.brokers set and full
#      enforcement (api_key auth, parent + child agents with a daily policy each: the setup of
#      bench-gateway.sh) under the open-loop generator at RATE for SECONDS; its publish rate is
#      the broker's acknowledged events (high watermarks of the decision and metering topics,
#      sampled every 50 ms by confluent-kafka) over the time they took, 2 events per request;
#  (b) gateway -> ledger: then `serve --role ledger` (embedded SQLite store) consumes that
#      backlog; rows/s is the metering events over the time from its start until its store
#      holds them all (polled with a deadline);
#  each beside the limit measured on the same broker in the same run with a client we did not
#  write (confluent-kafka): the same messages (bytes, keys, partitions, order) produced into
#  fresh topics with the same partition counts (acks=all, lz4, linger 10 ms, batch 32 KiB like
#  Caracal's producer), then the metering copy fetched back with Caracal's fetch settings.
#  Every client compresses with lz4 (tansu's sqlite engine cannot read snappy batches back).
#  Also printed: the CPU seconds of the gateway, the ledger and tansu in each phase. The broker's
#  database gets one index tansu lacks (below). CARACAL_BENCH_BIN=PATH benchmarks another build;
#  CARACAL_* settings in the environment reach every Caracal process (e.g.
#  CARACAL_KAFKA__CONSUMER__MAXPOLLRECORDS); see BENCHMARKS.md for the results.
# Usage: scripts/bench-kafka.sh [rate per second, default 3000] [seconds, default 10]
# Needs tansu ($CARACAL_TANSU, else $CARACAL_TOOLS_ROOT/bin/tansu, else ~/.cache/caracal/tools:
# scripts/test.sh installs it) and a Python with confluent-kafka ($CARACAL_PYTHON, else .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
rate="${1:-3000}"
duration="${2:-10}"
die() { printf 'bench-kafka: %s\n' "$*" >&2; exit 1; }
source scripts/bench-lib.sh

python=${CARACAL_PYTHON:-$root/.venv/bin/python}
tansu=${CARACAL_TANSU:-${CARACAL_TOOLS_ROOT:-$HOME/.cache/caracal/tools}/bin/tansu}
[ -x "$python" ] || die "no Python with confluent-kafka at $python (run scripts/test.sh once)"
[ -x "$tansu" ] || die "tansu is not installed at $tansu (scripts/test.sh installs it)"

cargo build --release --bins
cargo bench --bench gateway_overhead --no-run
bin="${CARACAL_BENCH_BIN:-$bench_release_dir/caracal}"
work=$(mktemp -d)
pids=()
# SIGTERM (a background job of a script ignores SIGINT unless it sets its own handler, as
# Caracal does but Python does not); Caracal and tansu shut down cleanly on it.
# CARACAL_BENCH_KEEP=1 keeps the run's directory (logs, samples, the broker's and the ledger's data).
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${CARACAL_BENCH_KEEP:-}" ]; then echo "bench-kafka: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
# CPU seconds (user + system) a live process has used so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$1/stat"; }
# cpu_line "PHASE" NAME PID BEFORE...: the CPU seconds each process used since BEFORE.
cpu_line() {
  local phase=$1 line=""; shift
  while [ $# -gt 0 ]; do line+=" $1 $(awk -v a="$3" -v b="$(cpu_s "$2")" 'BEGIN {printf "%.1f", b - a}') s,"; shift 3; done
  echo "CPU during $phase:${line%,}" >> "$work/cpu.txt"
}

kafka_port=$(free_port)
broker="127.0.0.1:$kafka_port"
mkdir "$work/tansu"
(cd "$work/tansu" && exec env -u CLUSTER_ID "$tansu" broker \
  --listener-url "tcp://$broker" --advertised-listener-url "tcp://$broker" \
  --storage-engine sqlite://tansu.db) > "$work/tansu.log" 2>&1 &
tansu_pid=$!
pids+=("$tansu_pid")
for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$kafka_port") 2>/dev/null && break; sleep 0.1; done
(exec 3<>"/dev/tcp/127.0.0.1/$kafka_port") 2>/dev/null || die "tansu did not start: $(tail -5 "$work/tansu.log")"
# tansu 0.6's sqlite engine keeps headers in a table without an index by record: each fetched
# record scans every header row, so fetching a few thousand of Caracal's events (three headers
# each) outlasts any timeout. Indexed here, for Caracal and the limit alike.
"$python" scripts/bench_kafka.py index-headers "$work/tansu/tansu.db"

bench_start_mock "$work"
bench_write_config "$work" "kafka:
  brokers: ['$broker']
  compression: lz4
  config: {defaultReplicationFactor: 1, minInsyncReplicas: 1}
consumers:
  ledgerWriter:
    merkle: {batchTimeoutSeconds: 1}"
c="$bin --config $work/caracal.yaml"
$c kafka create-topics >/dev/null
bench_agent_tree "$c"
RUST_LOG=warn $c serve --role gateway > "$work/gateway.log" 2>&1 &
gw_pid=$!
pids+=("$gw_pid")
bench_first_call "$work"

topics=(caracal.policy.decisions caracal.metering.events)
"$python" scripts/bench_kafka.py sample "$broker" "$work/published.txt" "${topics[@]}" &
sampler_pid=$!
pids+=("$sampler_pid")
# The events the broker acknowledged so far (the sampler's last line), and the events the
# gateway's answered requests owe it (a PolicyDecision and a MeteringEvent each).
published() { tail -1 "$work/published.txt" 2>/dev/null | awk '{s = 0; for (i = 2; i <= NF; i++) s += $i; print s}'; }
owed() { curl -sf "http://127.0.0.1:$telemetry_port/metrics" | awk '/^caracal_requests_total/ {s += $NF} END {printf "%d", 2 * s}'; }
# wait_published N SECONDS: until the broker holds N events, or die.
wait_published() {
  local deadline=$((SECONDS + $2))
  until [ "$(published)" -ge "$1" ] 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || die "the broker holds $(published) events, not $1, after $2 s"
    sleep 0.05
  done
}
baseline=$(owed)
wait_published "$baseline" 30
gw_cpu=$(cpu_s "$gw_pid"); tansu_cpu=$(cpu_s "$tansu_pid")

echo "bench-kafka: gateway -> tansu at $rate requests/s for $duration s (+1 s warm-up), after the mock alone"
CARACAL_BENCH_DIRECT_URL="http://$mock/v1/chat/completions" \
CARACAL_BENCH_GATEWAY_URL="http://127.0.0.1:$gw_port/openai/v1/chat/completions" \
CARACAL_BENCH_GATEWAY_KEY="$key" \
CARACAL_BENCH_GATEWAY_PID="$gw_pid" \
CARACAL_BENCH_MOCK_PID="$mock_pid" \
CARACAL_BENCH_RATES="$rate" \
CARACAL_BENCH_DURATION_S="$duration" \
CARACAL_BENCH_STREAM_RATES="" \
  cargo bench --bench gateway_overhead | tee "$work/load.txt"
expected=$(owed)
wait_published "$expected" 120
cpu_line "the load (the mock alone, then the gateway) until the broker held every event" \
  gateway "$gw_pid" "$gw_cpu" tansu "$tansu_pid" "$tansu_cpu"
stop "$sampler_pid"
stop "$gw_pid"
stop "$mock_pid"
metering=$(tail -1 "$work/published.txt" | awk '{print $3}')

echo "bench-kafka: the ledger consumes the $metering metering events"
started=$(date +%s.%N)
RUST_LOG=warn $c serve --role ledger > "$work/ledger.log" 2>&1 &
ledger_pid=$!
pids+=("$ledger_pid")
tansu_cpu=$(cpu_s "$tansu_pid")
"$python" scripts/bench_kafka.py ledger-wait "$work/data/caracal.db" "$metering" "$started" 180 > "$work/ledger.json"
cpu_line "the ledger's run until every row was sealed" ledger "$ledger_pid" 0 tansu "$tansu_pid" "$tansu_cpu"
stop "$ledger_pid"

echo "bench-kafka: the limit: confluent-kafka produces the same messages and fetches them back"
tansu_cpu=$(cpu_s "$tansu_pid")
"$python" scripts/bench_kafka.py limit "$broker" "${topics[@]}" --fetch caracal.metering.events > "$work/limit.json"
cpu_line "the limit's produce and fetch" tansu "$tansu_pid" "$tansu_cpu"
"$python" scripts/bench_kafka.py summary "$work" "$baseline" "$expected"
cat "$work/cpu.txt"
