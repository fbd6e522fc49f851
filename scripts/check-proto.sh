#!/usr/bin/env bash
# Fails when the protos break Buf's lint or format rules, break compatibility with the main
# branch (FILE rules: the public merch.shop.v1 has outside users), or when gen/ or the REST
# schemas in gateway/openapi.yaml are not what `npm run generate` makes from them (run it and
# commit the result).
set -euo pipefail
cd "$(dirname "$0")/.."
buf lint
buf format --diff --exit-code proto
# Against the main branch as git has it: offline, no registry needed.
buf breaking --against ".git#branch=main"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
buf generate --output "$tmp"
if ! diff -ru gen/src "$tmp/gen/src"; then
  echo "gen/ is stale: run 'npm run generate' and commit it." >&2
  exit 1
fi
node scripts/rest-schemas.ts --check
echo "protos: lint, format and generated code are clean"
