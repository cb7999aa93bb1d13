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

source scripts/private-serve.sh
# A simulator of its own (the live-monitor test paces its job through it), fast enough for
# the journey's job to finish in seconds.
private_sim 400
# The playground's model is served by the CPU engine.
cpu_engine_vars
private_serve console "${cpu_engine[@]}"
cd console
CONSOLE_BASE_URL="$base" CLUSTER_SIM_URL="$sim_url" CLUSTER_SIM_KEY="$sim_key" npx playwright test "$@"
