#!/usr/bin/env bash
# The test command: unit tests of every crate and the end-to-end tests (real Postgres at
# 127.0.0.1:5432 and NATS at 127.0.0.1:4222, each test on its own database and stream).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo nextest run --workspace --no-fail-fast "$@"
