#!/usr/bin/env bash
# Checks compose.yaml with Debian's docker-compose (npm test runs this; no Docker engine needed):
#   1. with .env.example as it is, compose refuses to start and names each required variable
#      (${VAR:?...} in compose.yaml), so a copied .env cannot run with empty secrets;
#   2. with those filled in, `docker-compose config -q` accepts the file.
# A real .env is never read: a throwaway env file built from .env.example is used instead.
set -euo pipefail
cd "$(dirname "$0")/.."

# Installs Debian's docker-compose first when it is missing (see that script). Run with only PATH
# from this shell: compose takes a variable set in its environment over the env file's.
compose() { env -i PATH="$PATH" bash scripts/docker-compose.sh "$@"; }
compose version --short >/dev/null

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mapfile -t required < <(grep -o '\${[A-Za-z_][A-Za-z0-9_]*:?' compose.yaml | sed -e 's/^\${//' -e 's/:?$//' | sort -u)
for must in JWT_SECRET POSTGRES_PASSWORD SERVICE_CREDENTIAL; do
  if [[ " ${required[*]} " != *" $must "* ]]; then
    echo "check-compose: compose.yaml must require $must as \${$must:?message}" >&2
    exit 1
  fi
done

# 1. .env.example as it is: compose must refuse, naming a required variable.
if compose --env-file .env.example -f compose.yaml config -q >"$tmp/out" 2>&1; then
  echo "check-compose: compose.yaml accepts .env.example with its required values empty (${required[*]})" >&2
  exit 1
fi
for var in "${required[@]}"; do
  if ! grep -q "^$var=\$" .env.example; then
    echo "check-compose: .env.example must list the required $var, empty (\"$var=\")" >&2
    exit 1
  fi
  # Only this one empty: compose must name it.
  cp .env.example "$tmp/env"
  for other in "${required[@]}"; do
    [ "$other" = "$var" ] || sed -i "s/^$other=\$/$other=check-compose-placeholder-0123456789abcdef/" "$tmp/env"
  done
  if compose --env-file "$tmp/env" -f compose.yaml config -q >"$tmp/out" 2>&1 || ! grep -q "$var is required" "$tmp/out"; then
    echo "check-compose: with $var empty, compose.yaml must stop with \"$var is required\"; got:" >&2
    cat "$tmp/out" >&2
    exit 1
  fi
done

# 2. Required values filled in: the file must be valid.
cp .env.example "$tmp/env"
for var in "${required[@]}"; do
  sed -i "s/^$var=\$/$var=check-compose-placeholder-0123456789abcdef/" "$tmp/env"
done
compose --env-file "$tmp/env" -f compose.yaml config -q
echo "check-compose: compose.yaml is valid ($(compose version --short)); required: ${required[*]}"
