#!/usr/bin/env bash
# The OpenAI SDK tests: the official `openai` package (PyPI, pinned in tests/sdk/) drives a
# private `brightrun serve` (its own port, database, NATS stream and data folder) through /v1,
# authenticated by API keys the tests create over HTTP.
#   scripts/sdk-test.sh [pytest options]
set -euo pipefail
cd "$(dirname "$0")/.."

# The environment, once per machine, keyed by the pinned requirements.
venv="$(scripts/pinned-venv.sh sdk tests/sdk/requirements.txt)"

source scripts/private-serve.sh
# Deployed models are served by the CPU engine; chat tokens at 10 USD per 1,000, so a few
# completions show in the costs (to cents).
cpu_engine_vars
private_serve sdk CLUSTER_SIM_SPEED=1200 "${cpu_engine[@]}" RATE_API_1K_TOKENS=10

(cd tests/sdk && BRIGHTRUN_BASE_URL="$base" "$venv/bin/python" -m pytest "$@") || {
  status=$?
  tail -50 "$data/serve.log" >&2
  exit "$status"
}
