#!/usr/bin/env bash
# Static checks of the .deb packages, no installation:
#  - lintian reports no error (warnings are printed; overrides, if any, ship
#    in the package with their reasons);
#  - the control fields: computed Depends (shlibdeps) with the libraries the
#    binary and probes link, the conffile, the SDK as Architecture: all;
#  - the files: binary, the three built-in probes, units, config, SDK config;
#  - the units: `systemd-analyze verify` on the unpacked package (plus this
#    machine's systemd units for the targets they refer to) prints nothing,
#    the hardening the issue asks for is set, and the offline exposure score
#    stays low.
# Usage: deb_lint_test.sh PKG_DIR WORK_DIR
set -euo pipefail

pkg_dir=$(cd "${1:?usage: $0 PKG_DIR WORK_DIR}" && pwd)
mkdir -p "${2:?usage: $0 PKG_DIR WORK_DIR}"
work=$(cd "$2" && pwd)

fail() {
  printf 'FAIL: %s\n' "$*" >&2
  exit 1
}
for tool in lintian systemd-analyze dpkg-deb; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (packaging/install-deps.sh installs it)"
done
worker_deb=$(find "$pkg_dir" -maxdepth 1 -name 'guardant-worker_*.deb' | head -1)
sdk_deb=$(find "$pkg_dir" -maxdepth 1 -name 'guardant-worker-sdk_*.deb' | head -1)
[[ -n $worker_deb && -n $sdk_deb ]] || fail "no guardant-worker/-sdk .deb in $pkg_dir"

echo "== lintian"
lintian --fail-on error --display-info --allow-root "$worker_deb" "$sdk_deb" ||
  fail "lintian reports errors"

echo "== control"
depends=$(dpkg-deb -f "$worker_deb" Depends)
echo "Depends: $depends"
# Computed by dpkg-shlibdeps from what the binaries link: a hand-written
# list would not carry the version constraints.
for lib in 'libc6 (>=' 'libstdc++6 (>=' 'libcurl4 (>=' 'libssl3 (>=' 'libpcre2-8-0 (>=' 'libboost-json1.81.0' adduser; do
  [[ $depends == *"$lib"* ]] || fail "Depends lacks $lib"
done
[[ $(dpkg-deb -f "$sdk_deb" Architecture) == all ]] || fail "the SDK package is not Architecture: all"
dpkg-deb --ctrl-tarfile "$worker_deb" | tar -xO ./conffiles | grep -qx /etc/guardant/worker.toml ||
  fail "/etc/guardant/worker.toml is not a conffile"
files=$(dpkg-deb -c "$worker_deb" | awk '{print $6}')
for f in ./usr/bin/guardant-worker ./usr/lib/guardant/plugins/probe_web.so ./usr/lib/guardant/plugins/probe_tcp.so \
  ./usr/lib/guardant/plugins/probe_ping.so ./etc/guardant/worker.toml ./lib/systemd/system/guardant-worker.service \
  ./lib/systemd/system/guardant-worker@.service ./usr/share/man/man1/guardant-worker.1.gz; do
  grep -qx -- "$f" <<<"$files" || fail "$f is not in the package"
done
if grep -q '^\./usr/local' <<<"$files"; then fail "the package ships files under /usr/local"; fi
sdk_files=$(dpkg-deb -c "$sdk_deb" | awk '{print $6}')
for f in ./usr/include/guardant/probe.h ./usr/include/guardant/probe.hpp ./usr/share/cmake/GuardantSDK/GuardantSDKConfig.cmake \
  ./usr/share/pkgconfig/guardant-sdk.pc ./usr/share/doc/guardant-worker-sdk/examples/redis_ping/CMakeLists.txt; do
  grep -qx -- "$f" <<<"$sdk_files" || fail "$f is not in the SDK package"
done

echo "== systemd units"
root=$work/unpacked
rm -rf "$root" && mkdir -p "$root"
dpkg-deb -x "$worker_deb" "$root"
unit=$root/lib/systemd/system/guardant-worker.service
# The targets and slices the units refer to come from this machine's systemd.
for d in /lib/systemd/system /usr/lib/systemd/system; do
  [[ -d $d ]] && cp -an "$d/." "$root/lib/systemd/system/"
done
verify_out=$(systemd-analyze verify --root="$root" guardant-worker.service guardant-worker@lint.service 2>&1) ||
  fail "systemd-analyze verify: $verify_out"
[[ -z $verify_out ]] || fail "systemd-analyze verify complains: $verify_out"
for setting in User=guardant Group=guardant AmbientCapabilities=CAP_NET_RAW CapabilityBoundingSet=CAP_NET_RAW \
  NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes StateDirectory=guardant Restart=on-failure \
  'ExecStart=/usr/bin/guardant-worker --config /etc/guardant/worker.toml'; do
  grep -qx -- "$setting" "$unit" || fail "guardant-worker.service lacks $setting"
done
# No other capability anywhere in the unit.
caps=$(grep -Eo 'CAP_[A-Z_]+' "$unit" | sort -u)
[[ $caps == CAP_NET_RAW ]] || fail "capabilities other than CAP_NET_RAW in the unit: $caps"
grep -qx 'ExecStart=/usr/bin/guardant-worker --config /etc/guardant/%i.toml' \
  "$root/lib/systemd/system/guardant-worker@.service" || fail "the template unit does not read /etc/guardant/%i.toml"
# --threshold counts in tenths of the displayed 0-10 score: 30 is "3.0".
systemd-analyze security --offline=yes --root="$root" --threshold=30 guardant-worker.service >"$work/security.txt" 2>&1 ||
  fail "systemd-analyze security: exposure above 3: $(tail -1 "$work/security.txt")"
tail -1 "$work/security.txt"
echo "deb lint: ok"
