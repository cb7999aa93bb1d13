#!/usr/bin/env bash
# The contract test: schemathesis (PyPI) against the binary, with a real token, every check and
# every phase (examples, coverage, fuzzing, stateful through the document's links). It starts
# its own `brightrun serve` on a free port with its own database, NATS stream and data folder,
# so it runs beside the other tests, and seeds a ready dataset and a trained model for the
# links to reach. Exits non-zero on any failure. Every check is on for every operation; what a
# JSON Schema cannot say (rules across two values, test data that must exist) is in
# tests/contract/hooks.py.
#   scripts/contract-test.sh [extra schemathesis options]
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

# The environment, once per machine, keyed by the pinned requirements.
venv="$(scripts/pinned-venv.sh schemathesis tests/contract/requirements.txt)"

source scripts/private-serve.sh
# Rate limits off: schemathesis sends thousands of requests from one caller in minutes (the
# 429 answers are in the document; tests/e2e/rate_limits.rs proves them).
private_serve contract CLUSTER_SIM_SPEED=1200 RATE_LIMIT_WRITES_PER_CALLER=0 RATE_LIMIT_WRITES_PER_ADDRESS=0 \
  RATE_LIMIT_EXPENSIVE_PER_CALLER=0 RATE_LIMIT_EXPENSIVE_PER_ADDRESS=0

token="$(curl -sf -XPOST "$base/api/auth/signup" -H 'content-type: application/json' \
  -d '{"email":"contract@example.com","password":"contract-password-1","name":"Contract"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["token"])')"

# Real resources for the links to reach: a ready dataset, a completed job and its model;
# the dataset's /v1 file id is what job creations through /v1 train on.
CONTRACT_TRAINING_FILE="$(python3 tests/contract/seed.py "$base" "$token")"
export CONTRACT_TRAINING_FILE

cd "$data"
# One worker: with two, CPython 3.11.7's ast.parse (hypothesis describes lambdas with it) is
# not thread-safe and once failed the run with "AST constructor recursion depth mismatch".
SCHEMATHESIS_HOOKS="$root/tests/contract/hooks.py" "$venv/bin/schemathesis" --config-file "$root/tests/contract/schemathesis.toml" run "$base/api/openapi.json" \
  --header "Authorization: Bearer $token" \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples "${CONTRACT_MAX_EXAMPLES:-25}" \
  --workers 1 \
  --request-timeout 20 \
  --seed "${CONTRACT_SEED:-1}" \
  --no-color \
  "$@"
