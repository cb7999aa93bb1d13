#!/usr/bin/env bash
# The test command: the trainer's tests (pytest, on a tiny model), the unit tests of every
# crate and the end-to-end tests (real Postgres at 127.0.0.1:5432 and NATS at 127.0.0.1:4222,
# each test on its own database and stream). The trainer's Python environment is built once
# per machine by scripts/trainer-env.sh (about 3 minutes the first time), the inference
# engine's by scripts/inference-env.sh (about 10 minutes of compiling the first time).
# Then the API contract: schemathesis against the binary (scripts/contract-test.sh), the
# official `openai` SDK against /v1 (scripts/sdk-test.sh), and the web console: its type
# checker, linter and browser tests (scripts/console-test.sh).
# Arguments go to nextest (a filter runs only those Rust tests, and skips pytest and the
# contract).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -eq 0 ]]; then
  venv="$(scripts/trainer-env.sh)"
  # The CPU inference engine (llama-cpp-python, compiled once per machine): the serving tests.
  inference="$(scripts/inference-env.sh)"
  (cd trainer && PYTHONPATH=src INFERENCE_VENV="$inference" "$venv/bin/python" -m pytest -q -p no:cacheprovider)
fi
cargo nextest run --workspace --no-fail-fast "$@"
if [[ $# -eq 0 ]]; then
  scripts/contract-test.sh
  scripts/sdk-test.sh
  scripts/console-test.sh
fi
