#!/usr/bin/env bash
# The console's checks and browser tests: the type checker and the linter, then Playwright
# driving Debian's Chromium (installed when missing) against its own `brightrun serve` on a
# free port with its own database, NATS stream and data folder.
#   scripts/console-test.sh [playwright options]
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ! -x /usr/bin/chromium ]]; then
  echo "installing Debian's chromium for the browser tests" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
fi
(cd console && { [[ node_modules/.package-lock.json -nt package-lock.json ]] || npm ci --no-audit --no-fund --prefer-offline; } \
  && npx tsc --noEmit && npx eslint .)

cargo build -q -p api --bin brightrun
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
tag="console_$$_$port"
data="$(mktemp -d)"
cleanup() {
  [[ -n "${server:-}" ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  psql -q "postgres://postgres@127.0.0.1:5432/postgres" -c "DROP DATABASE IF EXISTS $tag WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$data"
}
trap cleanup EXIT
# The simulator slow enough for the monitor to be watched live (a run of about 20 s).
BRIGHTRUN_ADDR="127.0.0.1:$port" DATABASE_URL="postgres://postgres@127.0.0.1:5432/$tag" \
  NATS_STREAM="${tag^^}" NATS_SUBJECT_PREFIX="$tag" BRIGHTRUN_DATA_DIR="$data" \
  CLUSTER_SIM_SPEED=400 DEPLOY_SIM_SECONDS=1 RUST_LOG=error \
  ./target/debug/brightrun serve >"$data/serve.log" 2>&1 &
server=$!
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
  kill -0 "$server" 2>/dev/null || { cat "$data/serve.log" >&2; exit 1; }
  sleep 0.1
done
cd console
CONSOLE_BASE_URL="http://127.0.0.1:$port" npx playwright test "$@"
