#!/usr/bin/env bash
# Installs every Debian 12 package that the build, the tests and the demo need.
# Idempotent: runs `apt-get update` (once) only when something is missing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libboost1.81-all-dev libboost-json1.81-dev
  libhiredis-dev libcurl4-openssl-dev libssl-dev libpcre2-dev
  libtomlplusplus-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev googletest
  redis-server curl procps iproute2 python3
  nghttp2-server openssl
  libhowardhinnant-date-dev
  file systemd mmdebstrap lintian rpm rpmlint shellcheck python3-yaml
)
# The BullMQ interop tests and the queue bench run the real bullmq npm package.
# Debian's nodejs + npm unless a Node.js with npm is already installed (e.g.
# NodeSource's nodejs, which bundles npm and conflicts with Debian's npm).
if ! command -v npm >/dev/null 2>&1; then
  packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing packages: ${missing[*]}" >&2
    echo "install-deps: run as root (or install them yourself) and retry" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
