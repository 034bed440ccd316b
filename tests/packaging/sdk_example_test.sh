#!/usr/bin/env bash
# The SDK as installed by `cmake --install --component sdk` (what the
# guardant-worker-sdk package holds), used the two documented ways, without
# building any package and without the source tree:
#  - the shipped example built with find_package(GuardantSDK) from the
#    installed copy only (CMAKE_PREFIX_PATH = the install, package registry
#    off), warnings as errors;
#  - the same source compiled by hand with `pkg-config --cflags guardant-sdk`;
# and both plugins loaded by the worker from a plugin directory: listed with
# type `redis`, and checks against a password-protected redis-server on
# loopback (up with the password; NOAUTH without, WRONGPASS with a wrong
# one; connect_refused on a closed port).
# Usage: sdk_example_test.sh BUILD_DIR WORK_DIR WORKER_BINARY
set -euo pipefail

build=$(cd "${1:?usage: $0 BUILD_DIR WORK_DIR WORKER_BINARY}" && pwd)
work=${2:?usage}
worker=${3:?usage}
fail() {
  printf 'FAIL: %s\n' "$*" >&2
  exit 1
}
rm -rf "$work" && mkdir -p "$work"
work=$(cd "$work" && pwd)
redis_dir=$work/redis
cleanup() {
  if [[ -f $redis_dir/redis.pid ]]; then kill "$(cat "$redis_dir/redis.pid")" 2>/dev/null || true; fi
}
trap cleanup EXIT

sdk=$work/sdk
cmake --install "$build" --component sdk --prefix "$sdk" >/dev/null
example=$sdk/share/doc/guardant-worker-sdk/examples/redis_ping
[[ -f $example/CMakeLists.txt ]] || fail "the example is not installed with the SDK"

cmake -S "$example" -B "$work/example-build" -DCMAKE_PREFIX_PATH="$sdk" \
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_CXX_FLAGS=-Werror >"$work/configure.log" 2>&1 ||
  { cat "$work/configure.log"; fail "the example does not configure against the installed SDK"; }
grep -qx "GuardantSDK_DIR:PATH=$sdk/share/cmake/GuardantSDK" "$work/example-build/CMakeCache.txt" ||
  fail "find_package(GuardantSDK) did not use the installed SDK: $(grep GuardantSDK_DIR "$work/example-build/CMakeCache.txt")"
cmake --build "$work/example-build" >"$work/build.log" 2>&1 || { cat "$work/build.log"; fail "the example does not build"; }

plugins=$work/plugins
mkdir -m 0755 "$plugins"
install -m 0644 "$work/example-build/redis_ping.so" "$plugins/redis_ping.so"

# The pkg-config route, into a second directory.
cflags=$(PKG_CONFIG_PATH=$sdk/share/pkgconfig pkg-config --cflags guardant-sdk)
[[ $cflags == *"-I"*"/include"* ]] || fail "pkg-config --cflags guardant-sdk: '$cflags'"
[[ $(PKG_CONFIG_PATH=$sdk/share/pkgconfig pkg-config --modversion guardant-sdk) == "$("$worker" --version | awk '{print $2}')" ]] ||
  fail "pkg-config version differs from the worker's"
plugins_pc=$work/plugins-pc
mkdir -m 0755 "$plugins_pc"
# shellcheck disable=SC2086  # cflags is a list of flags
c++ -std=c++17 -O2 -shared -fPIC -fvisibility=hidden -fvisibility-inlines-hidden -Wl,-z,defs -Wall -Wextra -Werror \
  $cflags "$example/redis_ping_probe.cpp" -o "$plugins_pc/redis_ping_pc.so" || fail "the pkg-config build failed"
chmod 0644 "$plugins_pc/redis_ping_pc.so"

for dir in "$plugins" "$plugins_pc"; do
  config=$work/worker-$(basename "$dir").toml
  printf 'mode = "standalone"\n[plugins]\ndirs = ["%s"]\n' "$dir" >"$config"
  listed=$("$worker" --list-plugins --config "$config" 2>&1) || fail "--list-plugins: $listed"
  [[ $listed == *"type:  redis "* && $listed == *"example-redis-ping"* ]] ||
    fail "the worker does not list the example's type from $dir:"$'\n'"$listed"
done
echo "example built with find_package and with pkg-config; both load as type redis"

mkdir -p "$redis_dir"
port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
closed=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
password=sdk-test-$RANDOM$RANDOM
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes --dir "$redis_dir" \
  --pidfile "$redis_dir/redis.pid" --logfile "$redis_dir/redis.log" --requirepass "$password" >/dev/null
for _ in $(seq 50); do
  redis-cli -p "$port" -a "$password" --no-auth-warning ping 2>/dev/null | grep -q PONG && break
  sleep 0.1
done

config=$work/worker-plugins.toml
probe() {  # expected-status expected-text args...
  local want=$1 text=$2 out
  shift 2
  out=$("$worker" probe redis "$@" --config-file "$config" --timeout 5000 2>&1) || true
  [[ $out == *"\"status\":\"$want\""* && $out == *"$text"* ]] ||
    fail "probe redis $*: expected $want with '$text', got: $out"
  [[ $out != *"$password"* ]] || fail "the password appears in the result: $out"
}
probe up '"plugin":"example-redis-ping"' "127.0.0.1:$port" --config "{\"password\":\"$password\"}"
probe down NOAUTH "127.0.0.1:$port"
probe down WRONGPASS "127.0.0.1:$port" --config '{"password":"wrong"}'
probe down connect_refused "127.0.0.1:$closed"
echo "redis checks: up, NOAUTH, WRONGPASS, connect_refused: ok"
