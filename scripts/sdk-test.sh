#!/usr/bin/env bash
# The OpenAI SDK tests: the official `openai` package (PyPI, pinned in tests/sdk/) drives a
# private `brightrun serve` (its own port, database, NATS stream and data folder) through /v1,
# authenticated by API keys the tests create over HTTP.
#   scripts/sdk-test.sh [pytest options]
set -euo pipefail
cd "$(dirname "$0")/.."

# The environment, once per machine, keyed by the pinned requirements.
key="$(sha256sum tests/sdk/requirements.txt | cut -c1-12)"
venv="${SDK_VENV_DIR:-/var/cache/brightrun}/sdk-$key"
if [[ ! -x "$venv/bin/pytest" ]]; then
  echo "building the SDK test environment in $venv (once per machine)" >&2
  rm -rf "$venv.tmp"
  python3 -m venv "$venv.tmp"
  "$venv.tmp/bin/pip" install -q --disable-pip-version-check -r tests/sdk/requirements.txt
  rm -rf "$venv"
  mv "$venv.tmp" "$venv"
  sed -i "s|$venv.tmp|$venv|g" "$venv"/bin/*
fi

source scripts/private-serve.sh
private_serve sdk CLUSTER_SIM_SPEED=1200

(cd tests/sdk && BRIGHTRUN_BASE_URL="$base" "$venv/bin/python" -m pytest "$@") || {
  status=$?
  tail -50 "$data/serve.log" >&2
  exit "$status"
}
