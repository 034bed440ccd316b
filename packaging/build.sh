#!/usr/bin/env bash
# Configures and builds the worker, its probes and its tests into ./build.
# Usage: packaging/build.sh [extra cmake -D options]
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGUARDANT_WERROR=ON "$@"
cmake --build build -j "$(nproc)"
