#!/usr/bin/env bash
# `npm run provision`: installs the Debian packages the tests and benchmarks run, in one step,
# before them (`npm test` and `npm run bench` call it first). Nothing installs packages while
# tests run: the launchers only look the commands up (devstack/src/commands.ts) and name this
# script when one is missing. When every command is there it only checks, in a few milliseconds.
# Installing needs root and apt-get (a CI machine is both); otherwise it prints the command.
set -euo pipefail

# command, then the Debian package that provides it.
REQUIRED=(
  "chromium chromium"              # the storefront's browser tests (playwright-core drives it)
  "prometheus prometheus"          # the observability test scrapes the services with it
  "promtool prometheus"            # and lints their /metrics text
  "docker-compose docker-compose"  # npm run check:compose and test/deploy read `docker-compose config`
  "wrk wrk"                        # npm run bench: HTTP/1.1 load
  "h2load nghttp2-client"          # npm run bench: HTTP/2 load
  "flock util-linux"               # this script's lock, below
)
# test/deploy/compose-up.test.ts runs compose.yaml on a Docker daemon it starts itself, which only
# root can do; for anyone else that test says so and is skipped, so these are root's alone.
if [ "$(id -u)" = 0 ]; then
  REQUIRED+=(
    "dockerd docker.io"            # Docker's daemon and CLI (20.10, with containerd and runc)
    "iptables iptables"            # dockerd's bridge networks
    "debootstrap debootstrap"      # the Debian root file system the test's stand-in images start from
  )
fi
# Tools in sbin are found even where PATH leaves those folders out.
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

missing=()
for entry in "${REQUIRED[@]}"; do
  read -r command package <<<"$entry"
  if ! command -v "$command" >/dev/null 2>&1 && [[ ! " ${missing[*]} " == *" $package "* ]]; then
    missing+=("$package")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "provision: every Debian package the tests and benchmarks use is installed"
  exit 0
fi

install="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "provision: missing ${missing[*]}; install them as root on Debian: sudo sh -c '$install'" >&2
  exit 1
fi
echo "provision: installing ${missing[*]}" >&2
# One install at a time on this machine (several checkouts may provision together), and apt-get
# waits for dpkg's own lock, which processes outside this flock may hold. Without flock (it is
# being installed) dpkg's lock alone keeps the installs apart.
lock=()
if command -v flock >/dev/null 2>&1; then lock=(flock -w 900 /tmp/merch-apt.lock); fi
"${lock[@]}" sh -c '
  set -e
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "$@" >/dev/null
' sh "${missing[@]}"
echo "provision: installed ${missing[*]}" >&2
