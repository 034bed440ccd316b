#!/usr/bin/env bash
# Builds the guardant-worker and guardant-worker-sdk packages with CPack.
#
# Usage: packaging/build-packages.sh deb|rpm [OUT_DIR] [BUILD_DIR]
#   deb: .deb files (Debian layout: /usr/lib/guardant/plugins, /lib/systemd/system)
#   rpm: .rpm files (RPM layout: /usr/lib64/guardant/plugins, /usr/lib/systemd/system;
#        needs Debian's `rpm` package for rpmbuild)
# OUT_DIR defaults to ./build-packages/out, BUILD_DIR to ./build-packages/<layout>.
# One BUILD_DIR may serve both layouts: switching only recompiles the file
# that holds the default plugin directory.
# GUARDANT_BUILD_JOBS sets the build's parallelism (default: all cores).
set -euo pipefail

usage() {
  echo "usage: $0 deb|rpm [OUT_DIR] [BUILD_DIR]" >&2
  exit 2
}
[[ $# -ge 1 && $# -le 3 ]] || usage
layout=$1
src=$(cd "$(dirname "$0")/.." && pwd)
out=${2:-$src/build-packages/out}
build=${3:-$src/build-packages/$layout}
case $layout in
  deb) generator=DEB plugin_dir=lib/guardant/plugins ;;
  rpm) generator=RPM plugin_dir=lib64/guardant/plugins ;;
  *) usage ;;
esac
mkdir -p "$out" "$build"
out=$(cd "$out" && pwd)
build=$(cd "$build" && pwd)

# Distribution build flags (hardening: fortify, stack protector, relro and
# bind-now); they only take effect when the build tree is first configured.
if command -v dpkg-buildflags >/dev/null 2>&1; then
  export DEB_BUILD_MAINT_OPTIONS=hardening=+all
  CFLAGS=$(dpkg-buildflags --get CFLAGS)
  CXXFLAGS=$(dpkg-buildflags --get CXXFLAGS)
  CPPFLAGS=$(dpkg-buildflags --get CPPFLAGS)
  LDFLAGS=$(dpkg-buildflags --get LDFLAGS)
  export CFLAGS="$CFLAGS $CPPFLAGS" CXXFLAGS="$CXXFLAGS $CPPFLAGS" LDFLAGS
fi

cmake -S "$src" -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_INSTALL_PREFIX=/usr \
  -DGUARDANT_PACKAGE_LAYOUT="$layout" \
  -DGUARDANT_PLUGIN_INSTALL_DIR="$plugin_dir" \
  -DGUARDANT_BUILD_TESTS=OFF -DGUARDANT_BUILD_BENCH=OFF -DGUARDANT_WERROR=OFF
cmake --build "$build" -j "${GUARDANT_BUILD_JOBS:-$(nproc)}"
# cpack re-runs the install of each component into its own staging tree.
rm -f "$build"/cpack/guardant-worker*.deb "$build"/cpack/guardant-worker*.rpm
(cd "$build" && cpack -G "$generator" -B "$build/cpack")
# Only this build's packages in OUT_DIR (no stale versions beside them).
find "$out" -maxdepth 1 -name "guardant-worker*.$layout" -delete
find "$build/cpack" -maxdepth 1 -name "guardant-worker*.$layout" -exec cp {} "$out/" \;
echo "packages in $out:"
ls -1 "$out"
