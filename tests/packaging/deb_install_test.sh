#!/usr/bin/env bash
# Installs the guardant-worker .deb into a clean Debian 12 root made with
# mmdebstrap from Debian's packages, and checks it from inside (chroot):
#
#  1. apt resolves the package's computed Depends on a minimal root;
#  2. the system user, its state directory, the /usr/local plugin directory
#     and the conffile are there;
#  3. --version (= the package version), --check-config on the shipped
#     config, --list-plugins (web, tcp, ping, nothing refused), one-shot tcp,
#     ping and web checks against loopback targets;
#  4. the worker runs as `guardant` in standalone mode and its /health says
#     the package version;
#  5. the SDK package: the example plugin builds from the installed SDK alone
#     (find_package(GuardantSDK) in a copy of the shipped example), goes into
#     /usr/local/lib/guardant/plugins, is listed with its type `redis` and runs
#     a check against a redis-server on loopback;
#  6. an upgrade keeps a locally edited conffile; remove keeps it, purge
#     removes it, and after purge no file of the package is left: nothing
#     with "guardant" in its path and no new file that no installed package
#     owns, beyond a short list of system files (see allowed_leftover).
#
# Usage: deb_install_test.sh PKG_DIR WORK_DIR
#   PKG_DIR   holds guardant-worker_*.deb and guardant-worker-sdk_*.deb
#   WORK_DIR  scratch space; the bootstrapped root is cached there as a
#             tarball (delete it, or set GUARDANT_PKG_TEST_REFRESH=1, to
#             bootstrap again)
# Needs root, mmdebstrap and the Debian mirror of /etc/apt/sources.list. It
# fails, never skips, when it cannot build the root.
# dpkg-query formats like '${Version}' are meant literally:
# shellcheck disable=SC2016
set -euo pipefail

pkg_dir=$(cd "${1:?usage: $0 PKG_DIR WORK_DIR}" && pwd)
mkdir -p "${2:?usage: $0 PKG_DIR WORK_DIR}"
work=$(cd "$2" && pwd)
root=$work/root
tarball=$work/debian12-minbase.tar
apt_archives=$work/apt-archives
started=$SECONDS

log() { printf '[deb-install %3ds] %s\n' $((SECONDS - started)) "$*"; }
fail() {
  printf 'FAIL: %s\n' "$*" >&2
  exit 1
}
expect_contains() {  # what, haystack, needle
  [[ $2 == *"$3"* ]] || fail "$1: expected to find '$3' in:"$'\n'"$2"
}

[[ $(id -u) -eq 0 ]] ||
  fail "needs root to bootstrap a Debian 12 root (mmdebstrap) and chroot into it; CI runs as root"
command -v mmdebstrap >/dev/null || fail "mmdebstrap is not installed (packaging/install-deps.sh installs it)"
command -v redis-server >/dev/null || fail "redis-server is not installed"
command -v curl >/dev/null || fail "curl is not installed"

shopt -s nullglob
worker_debs=("$pkg_dir"/guardant-worker_*.deb)
sdk_debs=("$pkg_dir"/guardant-worker-sdk_*.deb)
shopt -u nullglob
[[ ${#worker_debs[@]} -eq 1 ]] || fail "expected one guardant-worker_*.deb in $pkg_dir, found ${#worker_debs[@]}"
[[ ${#sdk_debs[@]} -eq 1 ]] || fail "expected one guardant-worker-sdk_*.deb in $pkg_dir, found ${#sdk_debs[@]}"
worker_deb=${worker_debs[0]}
sdk_deb=${sdk_debs[0]}
deb_version=$(dpkg-deb -f "$worker_deb" Version)
upstream_version=${deb_version%-*}

# --- mounts, processes and cleanup ------------------------------------------

bg_pids=()
redis_dir=""
mounted_under_root() {
  awk -v r="$root" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/self/mounts | sort -r
}
unmount_all() {
  local m
  for m in $(mounted_under_root); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
}
cleanup() {
  local pid
  for pid in "${bg_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${bg_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ -n $redis_dir && -f $redis_dir/redis.pid ]]; then
    kill "$(cat "$redis_dir/redis.pid")" 2>/dev/null || true
  fi
  unmount_all
}
trap cleanup EXIT

# In the root: bounded in time, no stdin, no host environment beyond PATH.
in_root() {
  timeout 600 chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@" </dev/null
}

free_port() {
  /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- the root -----------------------------------------------------------------

# The Debian mirrors this machine uses (deb822 or one-line sources).
debian_mirror() {  # "" for the main archive, "-security" for the security archive
  local want=$1 uri
  while IFS= read -r uri; do
    uri=${uri%/}
    if [[ -z $want && $uri =~ /debian$ ]] || [[ -n $want && $uri =~ /debian-security$ ]]; then
      echo "$uri"
      return
    fi
  done < <(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    grep -Eo '(URIs:[[:space:]]*|^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?)[a-z]+://[^[:space:]]+' |
    grep -Eo '[a-z]+://[^[:space:]]+')
  echo "http://deb.debian.org/debian$want"
}

bootstrap() {
  local mirror security
  mirror=$(debian_mirror "")
  security=$(debian_mirror "-security")
  log "bootstrapping Debian 12 (minbase) from $mirror into $tarball"
  rm -f "$tarball.tmp"
  if ! timeout 600 mmdebstrap --mode=root --format=tar --variant=minbase --quiet bookworm "$tarball.tmp" \
    "deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
    "deb $security bookworm-security main"; then
    rm -f "$tarball.tmp"
    fail "mmdebstrap could not build a Debian 12 root (network to $mirror? disk space in $work?)"
  fi
  mv "$tarball.tmp" "$tarball"
}

if [[ ! -s $tarball || ${GUARDANT_PKG_TEST_REFRESH:-0} == 1 ]]; then bootstrap; fi

unmount_all
[[ -z $(mounted_under_root) ]] || fail "cannot unmount $(mounted_under_root); not deleting $root"
rm -rf "$root"
mkdir -p "$root" "$apt_archives/partial"
tar -xf "$tarball" -C "$root"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# apt without a pty (no /dev/pts in the root).
echo 'Dpkg::Use-Pty "0";' >"$root/etc/apt/apt.conf.d/90test-no-pty"
# No init system runs in the root; tell invoke-rc.d not to try.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
# Downloaded .debs survive between runs, so re-runs fetch only indexes.
mount --bind "$apt_archives" "$root/var/cache/apt/archives"
log "root ready at $root"

# Every path in the root except kernel and scratch file systems.
snapshot() {
  (cd "$root" && find . -xdev \( -path ./proc -o -path ./dev -o -path ./tmp -o -path ./run \
    -o -path ./var/cache/apt -o -path ./var/lib/apt/lists \) -prune -o -print | sed 's|^\.||' | sort)
}
snapshot >"$work/before.txt"

mkdir -p "$root/tmp/pkgs"
cp "$worker_deb" "$sdk_deb" "$root/tmp/pkgs/"
worker_in_root=/tmp/pkgs/$(basename "$worker_deb")
sdk_in_root=/tmp/pkgs/$(basename "$sdk_deb")

# --- 1. install with apt ------------------------------------------------------

in_root apt-get update -qq || fail "apt-get update in the root failed"
log "installing $(basename "$worker_deb") with apt (dependencies from the mirror)"
in_root apt-get install -y -qq --no-install-recommends "$worker_in_root" >"$work/apt-install.log" 2>&1 ||
  { cat "$work/apt-install.log"; fail "apt-get install of the worker package failed"; }
status=$(in_root dpkg-query -W -f='${Status} ${Version}' guardant-worker)
[[ $status == "install ok installed $deb_version" ]] || fail "dpkg status: $status"

# --- 2. what the maintainer scripts made ----------------------------------------

passwd_line=$(in_root getent passwd guardant) || fail "no user guardant after install"
IFS=: read -r _ _ uid gid _ home shell <<<"$passwd_line"
((uid < 1000)) || fail "guardant is not a system user (uid $uid)"
[[ $home == /var/lib/guardant && $shell == /usr/sbin/nologin ]] || fail "guardant account: $passwd_line"
[[ $(in_root stat -c '%U:%G %a' /var/lib/guardant) == "guardant:guardant 750" ]] ||
  fail "/var/lib/guardant: $(in_root stat -c '%U:%G %a' /var/lib/guardant)"
[[ $(in_root stat -c '%U:%G %a' /usr/local/lib/guardant/plugins) == "root:root 755" ]] ||
  fail "/usr/local/lib/guardant/plugins: $(in_root stat -c '%U:%G %a' /usr/local/lib/guardant/plugins 2>&1)"
conffiles=$(in_root dpkg-query -W -f='${Conffiles}' guardant-worker)
expect_contains "conffiles" "$conffiles" "/etc/guardant/worker.toml"
config=$(cat "$root/etc/guardant/worker.toml")
expect_contains "packaged config" "$config" 'dirs = ["/usr/lib/guardant/plugins", "/usr/local/lib/guardant/plugins"]'
expect_contains "packaged config" "$config" 'spool_path = "/var/lib/guardant/spool"'
[[ -f $root/lib/systemd/system/guardant-worker.service && -f $root/lib/systemd/system/guardant-worker@.service ]] ||
  fail "systemd units missing"
log "user guardant ($uid:$gid), state and plugin directories, conffile: ok"

# --- 3. the binary from inside ------------------------------------------------

version_out=$(in_root guardant-worker --version)
[[ $version_out == "guardant-worker $upstream_version" ]] ||
  fail "--version says '$version_out', the package is $deb_version"
check_out=$(in_root guardant-worker --check-config 2>&1) || fail "--check-config on the shipped config: $check_out"
expect_contains "--check-config" "$check_out" "config OK: /etc/guardant/worker.toml (mode queue"
plugins_out=$(in_root guardant-worker --list-plugins 2>&1) || fail "--list-plugins: $plugins_out"
for type in web tcp ping; do
  expect_contains "--list-plugins" "$plugins_out" "type:  $type "
done
if [[ $plugins_out == *refused* ]]; then fail "--list-plugins refused something: $plugins_out"; fi
log "--version, --check-config, --list-plugins: ok"

redis_dir=$(mktemp -d "$work/redis.XXXXXX")
redis_port=$(free_port)
redis_password=pkg-test-$RANDOM$RANDOM
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
  --dir "$redis_dir" --pidfile "$redis_dir/redis.pid" --logfile "$redis_dir/redis.log" \
  --requirepass "$redis_password" >/dev/null
for _ in $(seq 50); do
  [[ -s $redis_dir/redis.pid ]] && redis-cli -p "$redis_port" -a "$redis_password" --no-auth-warning ping 2>/dev/null |
    grep -q PONG && break
  sleep 0.1
done
closed_port=$(free_port)  # nothing listens there once free_port's socket is closed

probe() {  # expected-status probe-args...
  local want=$1 out
  shift
  out=$(in_root guardant-worker probe "$@" 2>&1) || true
  [[ $out == *"\"status\":\"$want\""* ]] || fail "probe $*: expected status $want, got: $out"
  printf '%s\n' "$out"
}
probe up tcp "127.0.0.1:$redis_port" >/dev/null
probe down tcp "127.0.0.1:$closed_port" | grep -q connect_refused || fail "closed port is not connect_refused"
probe up ping 127.0.0.1 --config '{"packets":2,"interval":50}' >/dev/null
log "one-shot tcp (up, refused) and ping checks: ok"

# --- 4. the worker as a daemon, as the guardant user -------------------------

health_port=$(free_port)
cat >"$root/tmp/standalone.toml" <<EOF
mode = "standalone"
[worker]
id = "pkg-test"
[health]
bind = "127.0.0.1"
port = $health_port
[plugins]
dirs = ["/usr/lib/guardant/plugins"]
[results]
jsonl = "-"
[[monitor]]
id = "redis-port"
type = "tcp"
target = "127.0.0.1:$redis_port"
interval = "1s"
EOF
chmod 644 "$root/tmp/standalone.toml"
# Not under timeout(1): it would signal the whole process group, and a
# second SIGTERM makes the worker stop without draining. Bounded below.
chroot --userspec=guardant:guardant "$root" /usr/bin/env -i PATH=/usr/bin:/bin \
  /usr/bin/guardant-worker --config /tmp/standalone.toml >"$work/daemon.out" 2>"$work/daemon.err" </dev/null &
daemon_pid=$!
bg_pids+=("$daemon_pid")
health=""
for _ in $(seq 100); do
  health=$(curl -fsS "http://127.0.0.1:$health_port/health" 2>/dev/null) && break
  sleep 0.1
done
[[ -n $health ]] || fail "no /health from the worker running as guardant: $(cat "$work/daemon.err")"
expect_contains "/health" "$health" "\"version\":\"$upstream_version\""
curl -fsS "http://127.0.0.1:$health_port/ready" >/dev/null || fail "/ready is not 200"
probe up web "http://127.0.0.1:$health_port/health" --config '{"jsonPath":"$.status","expectedValue":"ok"}' >/dev/null
for _ in $(seq 50); do
  grep -q '"serviceId":"redis-port"' "$work/daemon.out" && break
  sleep 0.1
done
grep -q '"status":"up".*"serviceId":"redis-port"' "$work/daemon.out" ||
  fail "the daemon wrote no up result for its monitor: $(cat "$work/daemon.out" "$work/daemon.err")"
kill -TERM "$daemon_pid"
for _ in $(seq 100); do
  kill -0 "$daemon_pid" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$daemon_pid" 2>/dev/null; then
  kill -KILL "$daemon_pid"
  fail "the worker did not stop within 10 s of SIGTERM"
fi
daemon_rc=0
wait "$daemon_pid" || daemon_rc=$?
[[ $daemon_rc -eq 0 ]] || fail "the worker exited $daemon_rc on SIGTERM: $(tail -5 "$work/daemon.err")"
bg_pids=()
log "daemon as guardant: /health version $upstream_version, /ready, web check, monitor result, clean stop: ok"

# --- 5. the SDK and the example third-party plugin ----------------------------

log "installing the SDK package and a compiler (g++, cmake, make, pkgconf)"
in_root apt-get install -y -qq --no-install-recommends "$sdk_in_root" g++ cmake make pkgconf \
  >"$work/apt-sdk.log" 2>&1 || { cat "$work/apt-sdk.log"; fail "apt-get install of the SDK failed"; }
[[ $(in_root pkg-config --modversion guardant-sdk) == "$upstream_version" ]] || fail "pkg-config guardant-sdk"
# A copy of the shipped example, built the way its README says: only the
# installed SDK is visible in the root, so find_package() can find nothing else.
in_root cp -r /usr/share/doc/guardant-worker-sdk/examples/redis_ping /tmp/redis_ping
if ! { in_root cmake -S /tmp/redis_ping -B /tmp/redis_ping/build &&
  in_root cmake --build /tmp/redis_ping/build &&
  in_root cmake --install /tmp/redis_ping/build; } >"$work/example-build.log" 2>&1; then
  cat "$work/example-build.log"
  fail "the example plugin did not build against the installed SDK"
fi
grep -q "GuardantSDK_DIR:PATH=/usr/share/cmake/GuardantSDK" "$root/tmp/redis_ping/build/CMakeCache.txt" ||
  fail "the example did not use the installed SDK"
[[ -f $root/usr/local/lib/guardant/plugins/redis_ping.so ]] || fail "redis_ping.so not installed"
plugins_out=$(in_root guardant-worker --list-plugins 2>&1) || fail "--list-plugins: $plugins_out"
expect_contains "--list-plugins with the example" "$plugins_out" "type:  redis "
expect_contains "--list-plugins with the example" "$plugins_out" "/usr/local/lib/guardant/plugins/redis_ping.so"
probe up redis "127.0.0.1:$redis_port" --config "{\"password\":\"$redis_password\"}" | grep -q '"plugin":"example-redis-ping"' ||
  fail "the redis check did not run in the example plugin"
probe down redis "127.0.0.1:$redis_port" | grep -q NOAUTH || fail "the redis check without password is not NOAUTH"
log "SDK: example built with find_package(GuardantSDK), listed as type redis, check up: ok"
rm -f "$root/usr/local/lib/guardant/plugins/redis_ping.so"  # the operator's file, not the package's
in_root apt-get purge -y -qq guardant-worker-sdk >/dev/null || fail "purging the SDK failed"

# --- 6. conffile on upgrade, remove, purge -------------------------------------

echo '# local edit by the package test' >>"$root/etc/guardant/worker.toml"
sed -i 's/^region = "default"/region = "pkg-test"/' "$root/etc/guardant/worker.toml"
# The next revision of the package, whose shipped config also changed.
repack=$work/repack
rm -rf "$repack" && mkdir -p "$repack"
dpkg-deb -R "$worker_deb" "$repack/tree"
sed -i "s/^Version: .*/Version: ${upstream_version}-999/" "$repack/tree/DEBIAN/control"
echo '# changed in the next revision' >>"$repack/tree/etc/guardant/worker.toml"
(cd "$repack/tree" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum >DEBIAN/md5sums)
dpkg-deb --root-owner-group -b "$repack/tree" "$root/tmp/pkgs/upgrade.deb" >/dev/null
in_root dpkg --force-confold -i /tmp/pkgs/upgrade.deb >"$work/upgrade.log" 2>&1 ||
  { cat "$work/upgrade.log"; fail "upgrade failed"; }
grep -q '^region = "pkg-test"' "$root/etc/guardant/worker.toml" || fail "the upgrade overwrote the edited conffile"
[[ -f $root/etc/guardant/worker.toml.dpkg-dist ]] || fail "no worker.toml.dpkg-dist with the new default"
check_out=$(in_root guardant-worker --check-config 2>&1) || fail "--check-config after upgrade: $check_out"
expect_contains "--check-config after upgrade" "$check_out" "region pkg-test"
log "upgrade kept the edited conffile (new default in worker.toml.dpkg-dist): ok"

in_root apt-get remove -y -qq guardant-worker >/dev/null || fail "apt-get remove failed"
[[ -f $root/etc/guardant/worker.toml ]] || fail "remove deleted the conffile"
[[ ! -e $root/usr/bin/guardant-worker ]] || fail "remove left the binary"
[[ $(in_root dpkg-query -W -f='${db:Status-Abbrev}' guardant-worker) == "rc " ]] || fail "not in state rc after remove"
in_root apt-get purge -y -qq guardant-worker >/dev/null || fail "apt-get purge failed"
log "remove kept the conffile, purge ran: ok"

# Nothing of the package may be left: no path naming guardant, and no new
# file that no installed package owns except what the system itself keeps.
snapshot >"$work/after.txt"
leftovers=$(cd "$root" && find . -xdev \( -path ./proc -o -path ./dev -o -path ./tmp \) -prune -o \
  -iname '*guardant*' -print)
[[ -z $leftovers ]] || fail "left after purge:"$'\n'"$leftovers"
# Owned paths, also under /usr for packages that list /bin, /sbin or /lib
# (the root is usrmerged, so /bin/ps is found as /usr/bin/ps).
cat "$root"/var/lib/dpkg/info/*.list | sed -E 's@^/(bin|sbin|lib|lib64)(/|$)@/usr/\1\2@' |
  cat - "$root"/var/lib/dpkg/info/*.list | sort -u >"$work/owned.txt"
# adduser's and useradd's backups of the account files, the linker cache,
# init-script links that update-rc.d made for dependencies, and
# package-manager state, logs and caches. (Alternatives' symlinks are
# skipped below.)
allowed_leftover='^(/etc/(passwd|group|shadow|gshadow)-|/etc/ld\.so\.cache|/etc/alternatives(/.*)?|/etc/rc[0-6S]\.d(/.*)?|/var/lib/dpkg(/.*)?|/var/log(/.*)?|/var/cache/(debconf|ldconfig)(/.*)?|/var/lib/(systemd|ucf|pam)(/.*)?|/usr/share/info/dir)$'
new_files=$(comm -13 "$work/before.txt" "$work/after.txt" | comm -23 - "$work/owned.txt" | grep -Ev "$allowed_leftover" || true)
# Directories that installed packages' files live in are theirs too.
unowned=""
while IFS= read -r path; do
  [[ -z $path ]] && continue
  if [[ -d $root$path ]] && grep -q "^$path/" "$work/owned.txt"; then continue; fi
  if [[ -L $root$path && $(readlink "$root$path") == /etc/alternatives/* ]]; then continue; fi
  unowned+="$path"$'\n'
done <<<"$new_files"
[[ -z $unowned ]] || fail "files nobody owns after purge:"$'\n'"$unowned"
log "purge left no files outside the conffiles policy (the guardant account stays, as Debian does)"

log "all checks passed in $((SECONDS - started)) s"
