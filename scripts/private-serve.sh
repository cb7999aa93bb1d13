# Sourced by the test scripts that drive the binary from outside: builds it and starts a
# `brightrun serve` of their own on a free port, with its own database, NATS stream and
# subjects, and data folder, all removed when the script exits.
#   source scripts/private-serve.sh; private_serve <name> [VAR=value ...]
# Sets `base` (http://127.0.0.1:<port>), `data` and `server` (its pid). The extra variables
# go to `serve` (the simulator's speed, say).
private_serve() {
  local name="$1"
  shift
  cargo build -q -p api --bin brightrun
  local port
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  private_tag="${name}_$$_$port"
  data="$(mktemp -d)"
  base="http://127.0.0.1:$port"
  trap private_serve_cleanup EXIT
  env BRIGHTRUN_ADDR="127.0.0.1:$port" DATABASE_URL="postgres://postgres@127.0.0.1:5432/$private_tag" \
    NATS_STREAM="${private_tag^^}" NATS_SUBJECT_PREFIX="$private_tag" BRIGHTRUN_DATA_DIR="$data" \
    DEPLOY_SIM_SECONDS=1 RUST_LOG=error "$@" \
    ./target/debug/brightrun serve >"$data/serve.log" 2>&1 &
  server=$!
  for _ in $(seq 1 300); do
    curl -sf "$base/healthz" >/dev/null && return 0
    kill -0 "$server" 2>/dev/null || { cat "$data/serve.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "brightrun serve did not answer /healthz in 30 s" >&2
  exit 1
}

private_serve_cleanup() {
  [[ -n "${server:-}" ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  psql -q "postgres://postgres@127.0.0.1:5432/postgres" -c "DROP DATABASE IF EXISTS $private_tag WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$data"
}
