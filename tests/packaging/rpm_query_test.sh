#!/usr/bin/env bash
# Checks the .rpm packages with rpm's own queries and rpmlint:
#  - rpm -qpl: binary, built-in probes under /usr/lib64/guardant/plugins,
#    units under /usr/lib/systemd/system, config, state dir; SDK files;
#  - rpm -qpR: library requires computed by rpmbuild (libcurl, libssl,
#    libstdc++, ...), shadow-utils for the %pre scriptlet;
#  - rpm -qp --scripts: %pre creates the guardant user, %preun stops the
#    service on erase, %postun restarts it on upgrade;
#  - the config is %config(noreplace) and the state dir belongs to guardant;
#  - rpmlint with packaging/rpm/rpmlintrc reports no error.
# Usage: rpm_query_test.sh PKG_DIR SOURCE_DIR
set -euo pipefail

pkg_dir=$(cd "${1:?usage: $0 PKG_DIR SOURCE_DIR}" && pwd)
src=$(cd "${2:?usage: $0 PKG_DIR SOURCE_DIR}" && pwd)
fail() {
  printf 'FAIL: %s\n' "$*" >&2
  exit 1
}
command -v rpm >/dev/null || fail "rpm is not installed (packaging/install-deps.sh installs it)"
command -v rpmlint >/dev/null || fail "rpmlint is not installed (packaging/install-deps.sh installs it)"
worker_rpm=$(find "$pkg_dir" -maxdepth 1 -name 'guardant-worker-[0-9]*.x86_64.rpm' | head -1)
sdk_rpm=$(find "$pkg_dir" -maxdepth 1 -name 'guardant-worker-sdk-[0-9]*.noarch.rpm' | head -1)
[[ -n $worker_rpm && -n $sdk_rpm ]] || fail "no guardant-worker/-sdk .rpm in $pkg_dir"
rpmq() { rpm -qp --nosignature "$@" 2>/dev/null; }

files=$(rpmq -l "$worker_rpm")
for f in /usr/bin/guardant-worker /usr/lib64/guardant/plugins/probe_web.so /usr/lib64/guardant/plugins/probe_tcp.so \
  /usr/lib64/guardant/plugins/probe_ping.so /etc/guardant/worker.toml /usr/lib/systemd/system/guardant-worker.service \
  /usr/lib/systemd/system/guardant-worker@.service /usr/lib/sysusers.d/guardant-worker.conf /var/lib/guardant; do
  grep -qx -- "$f" <<<"$files" || fail "rpm -qpl: $f missing"
done
for f in /usr /usr/lib /usr/lib/systemd /usr/lib/systemd/system /usr/share/man /etc /var/lib /usr/local; do
  if grep -qx -- "$f" <<<"$files"; then fail "rpm -qpl: the package owns the system directory $f"; fi
done
sdk_files=$(rpmq -l "$sdk_rpm")
for f in /usr/include/guardant/probe.hpp /usr/share/cmake/GuardantSDK/GuardantSDKConfig.cmake /usr/share/pkgconfig/guardant-sdk.pc; do
  grep -qx -- "$f" <<<"$sdk_files" || fail "rpm -qpl (sdk): $f missing"
done
echo "rpm -qpl: ok"

requires=$(rpmq -R "$worker_rpm")
for r in 'libcurl.so.4()(64bit)' 'libssl.so.3()(64bit)' 'libstdc++.so.6()(64bit)' 'libpcre2-8.so.0()(64bit)' \
  'libboost_json.so.1.81.0()(64bit)' 'libc.so.6(GLIBC_2.34)(64bit)' shadow-utils; do
  grep -qxF -- "$r" <<<"$requires" || fail "rpm -qpR: $r missing from:"$'\n'"$requires"
done
echo "rpm -qpR: ok ($(wc -l <<<"$requires") requires, computed from the ELF files)"

scripts=$(rpmq --scripts "$worker_rpm")
grep -q 'useradd -r -g guardant' <<<"$scripts" || fail "%pre does not create the guardant user"
grep -q 'disable --now guardant-worker.service' <<<"$scripts" || fail "%preun does not stop the service on erase"
grep -q 'try-restart guardant-worker.service' <<<"$scripts" || fail "%postun does not restart on upgrade"
echo "rpm -qp --scripts: ok"

rpmq --configfiles "$worker_rpm" | grep -qx /etc/guardant/worker.toml || fail "worker.toml is not %config"
# FILEFLAGS: 'c' config, 'n' noreplace.
flags=$(rpmq --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$worker_rpm" | awk '$2 == "/etc/guardant/worker.toml" {print $1}')
[[ $flags == *c* && $flags == *n* ]] || fail "worker.toml is not %config(noreplace): flags '$flags'"
owner=$(rpmq --qf '[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]' "$worker_rpm" |
  awk '$3 == "/var/lib/guardant" {print $1, $2}')
[[ $owner == "drwxr-x--- guardant:guardant" ]] || fail "/var/lib/guardant: $owner"
[[ $(rpmq --qf '%{ARCH}' "$sdk_rpm") == noarch ]] || fail "the SDK rpm is not noarch"
echo "config(noreplace), state dir, noarch SDK: ok"

rpmlint -r "$src/packaging/rpm/rpmlintrc" "$worker_rpm" "$sdk_rpm" | tee /dev/stderr | grep -q ' 0 errors' ||
  fail "rpmlint reports errors"
echo "rpm checks: ok"
