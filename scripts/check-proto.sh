#!/usr/bin/env bash
# Fails when the protos break Buf's lint or format rules, break compatibility with the main
# branch (FILE rules: the public merch.shop.v1 has outside users), or when gen/ is not what
# `buf generate` makes from them (run `npm run generate` and commit the result).
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
echo "protos: lint, format and generated code are clean"
