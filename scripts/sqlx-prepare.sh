#!/usr/bin/env bash
# Regenerates `.sqlx/`, the query data the compile-time-checked SQL (`sqlx::query!` in
# `projections/`) builds from: a fresh database is migrated from `migrations/`, then the crates
# with query macros are checked online against it, each macro writing its query's data.
#   scripts/sqlx-prepare.sh           rewrite .sqlx/
#   scripts/sqlx-prepare.sh --check   fail when .sqlx/ differs from the schema and the code
# Needs the Postgres the tests use (PG_ADMIN_URL, default postgres://postgres@127.0.0.1:5432).
set -euo pipefail
cd "$(dirname "$0")/.."
admin="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432}"
db="brightrun_sqlx_$$"
url="$admin/$db"
out="$(mktemp -d)"
trap 'rm -rf "$out"; psql -q "$admin/postgres" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true' EXIT

psql -q "$admin/postgres" -c "CREATE DATABASE $db" >/dev/null
for migration in migrations/*.sql; do
  psql -q -v ON_ERROR_STOP=1 "$url" -f "$migration" >/dev/null
done
# The macros run again only when the crate recompiles.
touch projections/src/lib.rs
SQLX_OFFLINE=false SQLX_OFFLINE_DIR="$out" DATABASE_URL="$url" \
  cargo check -q -p projections --all-targets

if [[ "${1:-}" == "--check" ]]; then
  if ! diff -r "$out" .sqlx >/dev/null; then
    diff -r "$out" .sqlx | head -40 >&2 || true
    echo ".sqlx/ is stale: run scripts/sqlx-prepare.sh and commit the result" >&2
    exit 1
  fi
  echo ".sqlx/ matches the schema and the queries"
else
  rm -rf .sqlx
  mkdir -p .sqlx
  cp "$out"/query-*.json .sqlx/
  echo "wrote $(ls .sqlx | wc -l) query files to .sqlx/"
fi
