#!/usr/bin/env bash
# Fails when db-service/src/schema.ts has changes no migration carries: drizzle-kit generates into
# a copy of db-init/migrations and must find nothing to add (run `npm run db:generate` and
# commit the new migration).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .tmp
tmp=$(mktemp -d .tmp/migrations.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cp -r db-init/migrations/. "$tmp/"
before=$(ls "$tmp" | wc -l)
out=$(npx drizzle-kit generate --out "./$tmp" --schema ./db-service/src/schema.ts --dialect postgresql 2>&1) || {
  echo "$out" >&2
  exit 1
}
if [ "$(ls "$tmp" | wc -l)" != "$before" ] || ! grep -q "No schema changes" <<<"$out"; then
  echo "$out" >&2
  echo "db-service/src/schema.ts changed without a migration: run 'npm run db:generate -- --name <what>' and commit it." >&2
  exit 1
fi
echo "migrations: db-init/migrations carries every change of db-service/src/schema.ts"
