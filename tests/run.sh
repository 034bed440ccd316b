#!/usr/bin/env bash
# Quick start (2): installs what is missing, builds with -Werror, and runs the
# whole test suite through ctest. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/install-deps.sh
bash packaging/build.sh
cd build
ctest --output-on-failure --timeout 600 -j 2 "$@"
