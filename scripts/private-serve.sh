# Sourced by the test scripts that drive the binary from outside: builds it and starts a
# `brightrun serve` of their own on a free port, with its own database, NATS stream and
# subjects, and data folder, all removed when the script exits.
#   source scripts/private-serve.sh; private_serve <name> [VAR=value ...]
# Sets `base` (http://127.0.0.1:<port>), `data` and `server` (its pid). The extra variables
# go to `serve` (the simulator's speed, say).
#   cpu_engine_vars      (before private_serve "${cpu_engine[@]}")
# The settings of the CPU inference engine, for tests that deploy models.
#   private_sim <speed>   (before private_serve)
# Starts a GPU cluster simulator of its own (`brightrun cluster-sim`) that tests can inject
# faults into: sets `sim_url` and `sim_key`, and the next private_serve drives it.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

private_sim() {
  cargo build -q -p api --bin brightrun
  local port
  port="$(free_port)"
  sim_data="$(mktemp -d)"
  sim_url="http://127.0.0.1:$port"
  sim_key="sim-$$-$port"
  trap private_serve_cleanup EXIT
  env CLUSTER_SIM_SPEED="$1" CLUSTER_API_KEY="$sim_key" BRIGHTRUN_DATA_DIR="$sim_data" RUST_LOG=error \
    ./target/debug/brightrun cluster-sim --addr "127.0.0.1:$port" >"$sim_data/sim.log" 2>&1 &
  sim=$!
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    kill -0 "$sim" 2>/dev/null || { cat "$sim_data/sim.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "brightrun cluster-sim did not listen in 30 s" >&2
  exit 1
}

# The settings that give a private serve the CPU inference engine (deployments, chat): both
# environments, built once per machine. Sets the array `cpu_engine` (VAR=value words).
cpu_engine_vars() {
  local trainer inference
  trainer="$(scripts/trainer-env.sh)"
  inference="$(scripts/inference-env.sh)"
  cpu_engine=(INFERENCE_VENV="$inference" TRAINER_PYTHON="$trainer/bin/python" TRAINER_SRC="$PWD/trainer/src")
}

private_serve() {
  local name="$1"
  shift
  cargo build -q -p api --bin brightrun
  local port
  port="$(free_port)"
  local cluster=()
  [[ -n "${sim_url:-}" ]] && cluster=(CLUSTER_URL="$sim_url" CLUSTER_API_KEY="$sim_key")
  private_tag="${name}_$$_$port"
  data="$(mktemp -d)"
  base="http://127.0.0.1:$port"
  trap private_serve_cleanup EXIT
  env BRIGHTRUN_ADDR="127.0.0.1:$port" DATABASE_URL="postgres://postgres@127.0.0.1:5432/$private_tag" \
    NATS_STREAM="${private_tag^^}" NATS_SUBJECT_PREFIX="$private_tag" BRIGHTRUN_DATA_DIR="$data" \
    RUST_LOG=error "${cluster[@]}" "$@" \
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

# Every step may fail (a killed process answers wait with 143) without skipping the next:
# errexit holds inside the trap too.
private_serve_cleanup() {
  set +e
  [[ -n "${server:-}" ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  [[ -n "${sim:-}" ]] && kill "$sim" 2>/dev/null && wait "$sim" 2>/dev/null
  [[ -n "${sim_data:-}" ]] && rm -rf "$sim_data"
  [[ -n "${private_tag:-}" ]] && psql -q "postgres://postgres@127.0.0.1:5432/postgres" \
    -c "DROP DATABASE IF EXISTS \"$private_tag\" WITH (FORCE)" >/dev/null 2>&1
  [[ -n "${data:-}" ]] && rm -rf "$data"
  return 0
}
