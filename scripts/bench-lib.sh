# shellcheck shell=bash
# Pieces shared by the gateway benches (sourced by scripts/bench-gateway.sh and
# scripts/bench-kafka.sh, never run alone): a free port, the mock upstream, the gateway's config
# with its route to the mock, the agent tree of full enforcement (api_key auth, a parent and a
# child agent with a daily policy each) and the check that a first call is answered 200.
# Expects from the caller: `die`, a `pids` array (killed by the caller's cleanup) and the
# working directory at the repository's root. Starts only what a function says it starts.

bench_release_dir="${CARGO_TARGET_DIR:-target}/release"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# bench_start_mock WORK: starts caracal-mock-upstream on a free port; sets `mock` (host:port)
# and `mock_pid`.
bench_start_mock() {
  "$bench_release_dir/caracal-mock-upstream" --listen 127.0.0.1:0 > "$1/mock.out" &
  mock_pid=$!
  pids+=("$mock_pid")
  for _ in $(seq 100); do grep -q "listening on" "$1/mock.out" 2>/dev/null && break; sleep 0.05; done
  mock=$(sed -n 's/^listening on //p' "$1/mock.out")
  [ -n "$mock" ] || die "the mock upstream did not start"
}

# bench_write_config WORK [EXTRA_YAML]: WORK/caracal.yaml with the data in WORK/data, free
# telemetry, admin and gateway ports and the route /openai to the mock (its credential from
# BENCH_PROVIDER_KEY, exported here); sets `gw_port` and `telemetry_port`.
bench_write_config() {
  gw_port=$(free_port)
  telemetry_port=$(free_port)
  cat > "$1/caracal.yaml" <<YAML
dataDir: $1/data
telemetry: {port: $telemetry_port}
admin: {port: $(free_port)}
gateway:
  service: {httpsPort: $gw_port}
  routes:
    - {prefix: /openai, upstream: "http://$mock", provider: openai, credentialEnv: BENCH_PROVIDER_KEY}
${2:-}
YAML
  export BENCH_PROVIDER_KEY=sk-bench
}

# bench_agent_tree "CARACAL --config FILE": the default pricebook, a parent and a child agent
# with a daily policy each; sets `key` (the child's API key).
bench_agent_tree() {
  local c=$1 parent child
  $c pricebook import pricebook/default.yaml >/dev/null
  parent=$($c agent create --name bench-team --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  child=$($c agent create --name bench-bot --parent "$parent" --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  $c policy create --agent-id "$parent" --limit 1000000.00 --time-window daily >/dev/null
  $c policy create --agent-id "$child" --limit 1000000.00 --time-window daily >/dev/null
  key=$($c key create --agent-id "$child" --output json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
}

# bench_first_call WORK: waits for the gateway's /ready, then sends one call by hand with `key`
# and dies unless it is answered 200 (a benchmark of refusals would measure nothing).
bench_first_call() {
  local status
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$gw_port/ready" >/dev/null && break; sleep 0.05; done
  status=$(curl -s -o "$1/first.json" -w '%{http_code}' -H "Authorization: Bearer $key" \
    -H 'Content-Type: application/json' \
    -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello to the benchmark"}],"max_tokens":16}' \
    "http://127.0.0.1:$gw_port/openai/v1/chat/completions")
  [ "$status" = 200 ] || die "the gateway answered $status to a first request: $(cat "$1/first.json")"
}
