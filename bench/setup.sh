#!/usr/bin/env bash
# Installs the Debian 12 packages that only the benchmark needs (bench/run.sh):
# nginx (target), wrk (load generator and the machine's ceiling),
# prometheus-blackbox-exporter (the bar to clear), plus the small tools run.sh
# uses (curl, ps, ss, python3).
# Idempotent: runs `apt-get update` (once) only when something is missing.
# The packages' own services are not started: bench/run.sh starts private
# instances on free loopback ports and stops them itself.
set -euo pipefail

packages=(nginx-light wrk prometheus-blackbox-exporter curl procps iproute2 python3)
# nginx-light is the small build; plain nginx serves just as well.
if dpkg-query -W -f='${Status}' nginx 2>/dev/null | grep -q 'install ok installed'; then
  packages=("${packages[@]/nginx-light/nginx}")
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "bench/setup: everything is installed"
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "bench/setup: missing packages: ${missing[*]}" >&2
  echo "bench/setup: run as root (or install them yourself) and retry" >&2
  exit 1
fi

# Keep the packages' maintainer scripts from starting nginx on :80 or the
# exporter on :9115 (policy-rc.d exit 101 = "action forbidden"). Only a
# policy file we created is removed again.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  created_policy=1
fi
cleanup() { if ((created_policy)); then rm -f "$policy"; fi; }
trap cleanup EXIT

echo "bench/setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"

# If a service got started anyway (a policy file that allows it), stop it.
for svc in nginx prometheus-blackbox-exporter; do
  if command -v service >/dev/null 2>&1; then service "$svc" stop >/dev/null 2>&1 || true; fi
done
echo "bench/setup: done"
