#!/usr/bin/env bash
# ctest fixture of the interop suite: installs the npm packages pinned by
# package-lock.json into <dir>/node_modules, only when node_modules is missing
# or older than the lock file. Usage: npm_ci.sh <tests/interop source dir>
set -euo pipefail
dir=${1:?usage: npm_ci.sh <tests/interop dir>}
stamp=$dir/node_modules/.guardant-npm-ci
if [[ -f $stamp && ! $dir/package-lock.json -nt $stamp ]]; then
  echo "interop: node_modules is up to date with package-lock.json"
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "interop: npm not found; install nodejs and npm (packaging/install-deps.sh does)" >&2
  exit 1
fi
cd "$dir"
npm ci --no-audit --no-fund
touch "$stamp"
echo "interop: installed bullmq $(node -p "require('./node_modules/bullmq/package.json').version" 2>/dev/null || echo '?')"
