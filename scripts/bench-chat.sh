#!/usr/bin/env bash
# Benchmark of the chat proxy: a private `brightrun serve` on the CPU engine trains and
# deploys a smollm2-135m model, then the same streamed prompts go to the engine directly and
# through /v1, alternating (ROUNDS each, default 20); prints the p50 latencies, tokens/s,
# their ratios and the time from deploy to the first token, as JSON.
#   scripts/bench-chat.sh
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(scripts/pinned-venv.sh sdk tests/sdk/requirements.txt)"
source scripts/private-serve.sh
cpu_engine_vars
private_serve bench CLUSTER_SIM_SPEED=1200 "${cpu_engine[@]}"
(cd tests/sdk && BRIGHTRUN_BASE_URL="$base" "$venv/bin/python" bench_chat.py "$data")
