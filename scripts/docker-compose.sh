#!/usr/bin/env bash
# Runs Debian's docker-compose (1.29.2; `config` needs no Docker engine) with the arguments given,
# installing the package first when it is missing and we are root on Debian. Used by
# scripts/check-compose.sh and test/deploy (which read `docker-compose config`'s output), so the
# YAML on stdout is all this script prints there: its own words go to stderr.
set -euo pipefail

if ! command -v docker-compose >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "docker-compose is missing; installing Debian's package (apt-get install docker-compose)" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
  else
    echo "docker-compose is not installed. Install it and run again:" >&2
    echo "  Debian/Ubuntu: sudo apt-get install docker-compose" >&2
    echo "  elsewhere:     pip install docker-compose==1.29.2" >&2
    exit 1
  fi
fi
exec docker-compose "$@"
