#!/usr/bin/env bash
# The ledger throughput benchmark on Postgres: a throwaway local server (Debian's `postgresql`,
# default durability settings: fsync and synchronous_commit on), a fresh `caracal_bench`
# database, then `cargo bench --bench ledger_throughput` with its ledger store on that server.
# In the same run the bench measures the limits (issue 27): a raw binary COPY of the same rows
# into identical tables with the same indexes, and a bare read-and-hash of the same rows; it
# prints Caracal's ingest and verify-range as fractions of them.
# Usage: scripts/bench-ledger-postgres.sh [events, default 200000] [verifications, default 2]
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-200000}"
verify_runs="${2:-2}"

pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$pg_bin/initdb" ] || { echo "bench-ledger-postgres: install Debian's postgresql package" >&2; exit 1; }
as_server=()
if [ "$(id -u)" = 0 ]; then as_server=(setpriv --reuid=postgres --regid=postgres --init-groups); fi

work=$(mktemp -d)
chmod 755 "$work"
[ "$(id -u)" = 0 ] && chown postgres: "$work"
cleanup() { "${as_server[@]}" "$pg_bin/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${as_server[@]}" "$pg_bin/initdb" -D "$work/data" -A trust -U postgres -E UTF8 >/dev/null
"${as_server[@]}" "$pg_bin/pg_ctl" -D "$work/data" -l "$work/postgres.log" -w \
  -o "-p $port -k $work -c listen_addresses=127.0.0.1" start >/dev/null
"$pg_bin/psql" -h "$work" -p "$port" -U postgres -X -q -c "CREATE DATABASE caracal_bench"

# CPU seconds the server used (it shares this machine's cores with the bench): the postmaster's
# own time plus that of its exited children (backends exit when the bench disconnects).
server_cpu() {
  local pid
  pid=$(head -1 "$work/data/postmaster.pid")
  awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15 + $16 + $17) / hz}' "/proc/$pid/stat"
}
cargo bench --bench ledger_throughput --no-run
before=$(server_cpu)
cargo bench --bench ledger_throughput -- "$events" --postgres-port "$port" --verify-runs "$verify_runs"
echo "postgres server CPU during the run (ingest + verify): $(awk -v a="$before" -v b="$(server_cpu)" 'BEGIN {printf "%.1f", b - a}') s"
