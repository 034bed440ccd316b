#!/usr/bin/env bash
# Quick start (1): installs what is missing, builds, and runs the worker in
# standalone mode on the demo config. Ctrl-C stops it (graceful drain).
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/install-deps.sh
bash packaging/build.sh
exec ./build/engine/guardant-worker --config config/standalone.toml "$@"
