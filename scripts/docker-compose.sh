#!/usr/bin/env bash
# Runs Debian's docker-compose (1.29.2; `config` needs no Docker engine) with the arguments given.
# Used by scripts/check-compose.sh and test/deploy (which read `docker-compose config`'s output), so
# the YAML on stdout is all this script prints there. `npm run provision` installs it.
set -euo pipefail

if ! command -v docker-compose >/dev/null 2>&1; then
  echo "docker-compose is not installed. Run npm run provision (Debian, as root), or install it:" >&2
  echo "  Debian/Ubuntu: sudo apt-get install docker-compose" >&2
  echo "  elsewhere:     pip install docker-compose==1.29.2" >&2
  exit 1
fi
exec docker-compose "$@"
