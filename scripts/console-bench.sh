#!/usr/bin/env bash
# The console's benchmark: bundle size, the dashboard's first meaningful
# paint, the monitor with 10,000 recorded points and then 20 live events a second, each
# against a baseline from the same run. Its own simulator and serve, as console-test.sh.
#   scripts/console-bench.sh      -> prints the figures; console/test-results/*/bench.json
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x /usr/bin/chromium ]] || DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
(cd console && { [[ node_modules/.package-lock.json -nt package-lock.json ]] || npm ci --no-audit --no-fund --prefer-offline; })
source scripts/private-serve.sh
# 1,000x: the 10,000 points are recorded in a few seconds of cluster time.
private_sim 1000
private_serve console_bench
cd console
CONSOLE_BASE_URL="$base" CLUSTER_SIM_URL="$sim_url" CLUSTER_SIM_KEY="$sim_key" \
  npx playwright test -c playwright.bench.config.ts "$@"
