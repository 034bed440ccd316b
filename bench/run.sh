#!/usr/bin/env bash
# bench/run.sh: guardant's probes against prometheus-blackbox-exporter, on
# this machine, loopback only. See bench/README.md.
#
#   bash bench/setup.sh && bash bench/run.sh
#
# For each probe type (web, tcp, ping; a type whose plugin is not built is
# skipped, and said so): N checks at concurrency C through guardant's engine
# (guardant-probe-bench) and N probes at the same concurrency through
# blackbox_exporter's /probe endpoint (driven by wrk), plus for web the
# machine's ceiling (wrk with `Connection: close` straight at nginx), and the
# memory per in-flight check with HOLD checks held open. Every measurement is
# repeated REPEATS times; medians and ratios are printed as a table and
# written, with every run, to bench/results/<date>.json.
#
# Knobs (environment): BENCH_N (20000) BENCH_C (100) BENCH_WARMUP (1000)
# BENCH_REPEATS (3) BENCH_HOLD (5000; 0 = no hold runs) BENCH_PROBES
# ("web tcp ping") BENCH_MAX_SECONDS (120: cap of any one measurement)
# BENCH_WEB_CONFIG / BENCH_TCP_CONFIG / BENCH_PING_CONFIG (probe options, JSON)
# BENCH_PING_HOLD_CONFIG (ping options that keep a ping in flight, default
# {"packets":2,"interval":30000}; empty = no ping hold run) BENCH_BUILD_DIR (build-bench) BENCH_SKIP_BUILD=1
# BENCH_OUT (results file) BENCH_JOBS (2) BENCH_QUIET_PCT (15) and
# BENCH_QUIET_WAIT (120): before each measurement wait up to QUIET_WAIT
# seconds for the machine to be at most QUIET_PCT % busy.
#
# Starts: nginx (own config, pid file and temp dir, a free 127.0.0.1 port),
# blackbox_exporter (generated config, free 127.0.0.1 port, a fresh process
# per measurement so its peak RSS belongs to that measurement), wrk, and the
# bench's holding servers. All of them are stopped on exit, however it exits.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BENCH_BUILD_DIR:-$ROOT/build-bench}
N=${BENCH_N:-20000}
C=${BENCH_C:-100}
WARMUP=${BENCH_WARMUP:-1000}
REPEATS=${BENCH_REPEATS:-3}
HOLD=${BENCH_HOLD:-5000}
PROBES=${BENCH_PROBES:-web tcp ping}
MAX_SECONDS=${BENCH_MAX_SECONDS:-120}
WEB_CONFIG=${BENCH_WEB_CONFIG:-'{}'}
TCP_CONFIG=${BENCH_TCP_CONFIG:-'{}'}
PING_CONFIG=${BENCH_PING_CONFIG:-'{"packets":1}'}
# A second echo 30 s after the first keeps each ping in flight for the hold run.
PING_HOLD_CONFIG=${BENCH_PING_HOLD_CONFIG-'{"packets":2,"interval":30000}'}
OUT=${BENCH_OUT:-$ROOT/bench/results/$(date -u +%Y-%m-%d).json}
JOBS=${BENCH_JOBS:-2}
QUIET_PCT=${BENCH_QUIET_PCT:-15}
QUIET_WAIT=${BENCH_QUIET_WAIT:-120}
LUA=$ROOT/bench/wrk_count.lua
BLACKBOX=${BENCH_BLACKBOX:-prometheus-blackbox-exporter}
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in nginx wrk "$BLACKBOX" python3 curl cmake ss; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found; run: bash bench/setup.sh (and packaging/install-deps.sh)"
done
[[ $C -le $N ]] || die "BENCH_C ($C) must not exceed BENCH_N ($N)"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WORK=$(mktemp -d /tmp/guardant-bench.XXXXXX)
chmod 755 "$WORK"  # nginx workers run as nobody and must read the file
RAW=$WORK/raw.jsonl
: >"$RAW"
PIDS=()

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

forget_pid() {
  local keep=() p
  for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}
stop_pid() {
  kill "$1" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  forget_pid "$1"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_http() {  # url: up to 10 s
  for _ in $(seq 100); do
    curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  die "$1 did not answer"
}
clk_tck=$(getconf CLK_TCK)
proc_cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
proc_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
urlencode() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
REPORT=$ROOT/bench/report.py
# Appends one raw record and logs its one-line summary.
# shellcheck source=bench/lib/machine.sh
source "$ROOT/bench/lib/machine.sh"
# Appends one raw record (with the machine's load before it) and logs its
# one-line summary.
emit() {
  local rec=$1
  [[ $rec == *'"who":"skipped"'* ]] || rec="${rec%\}},\"busy_before_pct\":$BUSY}"
  echo "$rec" >>"$RAW"
  log "  $(python3 "$REPORT" line "$rec")"
}

# ------------------------------------------------------------------ build
# The code measured: the commit, and engine/SDK/probe files changed beside it
# (taken before building, since the tree may change during the run).
GIT_HEAD=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_CHANGES=$(git -C "$ROOT" status --porcelain -- engine sdk plugins 2>/dev/null || true)
if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
  hook=()
  if grep -Eq '^[[:space:]]*add_subdirectory\([[:space:]]*bench' "$ROOT/CMakeLists.txt"; then
    hook=(-UCMAKE_PROJECT_INCLUDE)  # drop the hook a run before the line landed may have set
  else
    # Until the top-level CMakeLists.txt adds bench/, include it from a hook
    # kept in the build dir.
    mkdir -p "$BUILD"
    printf '%s\n' 'cmake_language(DEFER DIRECTORY ${CMAKE_SOURCE_DIR} CALL include ${CMAKE_SOURCE_DIR}/bench/CMakeLists.txt)' \
      >"$BUILD/bench-hook.cmake"
    hook=(-DCMAKE_PROJECT_INCLUDE="$BUILD/bench-hook.cmake")
  fi
  log "building into $BUILD (RelWithDebInfo, as packaging/build.sh)"
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DGUARDANT_BUILD_TESTS=OFF -DGUARDANT_BUILD_BENCH=ON "${hook[@]}" >"$WORK/cmake.log" 2>&1 ||
    { tail -20 "$WORK/cmake.log" >&2; die "cmake configure failed"; }
  cmake --build "$BUILD" -j "$JOBS" --target guardant-probe-bench >"$WORK/build.log" 2>&1 ||
    { tail -30 "$WORK/build.log" >&2; die "building guardant-probe-bench failed"; }
  # Each probe on its own, so that one that does not build yet skips only itself.
  for p in $PROBES; do
    if cmake --build "$BUILD" -j "$JOBS" --target "probe_$p" >"$WORK/build-$p.log" 2>&1; then
      :
    elif grep -q "unknown target" "$WORK/build-$p.log"; then
      rm -f "$BUILD/plugins/probe_$p.so"  # no such target in this tree: do not bench a stale file
    else
      tail -15 "$WORK/build-$p.log" >&2
      log "warning: probe_$p did not build; it is skipped"
      rm -f "$BUILD/plugins/probe_$p.so"
    fi
  done
fi
BENCH=$BUILD/bench/guardant-probe-bench
[[ -x $BENCH ]] || die "$BENCH is missing (build it, or unset BENCH_SKIP_BUILD)"
PLUGINS=$BUILD/plugins

# ------------------------------------------------------------------ nginx
# shellcheck source=bench/lib/nginx.sh
source "$ROOT/bench/lib/nginx.sh"
start_bench_nginx
TCP_TARGET="127.0.0.1:$NGINX_PORT"
PING_TARGET="127.0.0.1"

# ------------------------------------------------------------------ blackbox
cat >"$WORK/blackbox.yml" <<'EOF'
modules:
  http_2xx:
    prober: http
    timeout: 10s
    http:
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
  tcp_connect:
    prober: tcp
    timeout: 10s
    tcp:
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
  icmp:
    prober: icmp
    timeout: 10s
    icmp:
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
  http_hold:
    prober: http
    timeout: 100s
    http:
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
  tcp_hold:
    prober: tcp
    timeout: 100s
    tcp:
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
EOF
"$BLACKBOX" --config.file="$WORK/blackbox.yml" --config.check >/dev/null 2>&1 ||
  die "blackbox_exporter refuses the generated config"

BB_PID=
BB_PORT=
start_blackbox() {
  BB_PORT=$(free_port)
  "$BLACKBOX" --config.file="$WORK/blackbox.yml" --web.listen-address="127.0.0.1:$BB_PORT" \
    --log.level=warn >>"$WORK/blackbox.log" 2>&1 &
  BB_PID=$!
  PIDS+=("$BB_PID")
  wait_http "http://127.0.0.1:$BB_PORT/-/healthy"
}
stop_blackbox() { stop_pid "$BB_PID"; BB_PID=; }

# wrk at concurrency $2 for $1 responses; prints the script's JSON line.
run_wrk() {
  local n=$1 c=$2 url=$3 expect=$4
  shift 4
  BENCH_WRK_N=$n BENCH_WRK_EXPECT=$expect timeout $((MAX_SECONDS + 15)) \
    wrk -t1 -c"$c" -d"${MAX_SECONDS}s" --timeout 10s -s "$LUA" "$@" "$url" 2>>"$WORK/wrk.err" |
    grep '^{' | tail -1 || true
}

# ------------------------------------------------------------------ measurements
ours() {  # probe target config repeat
  local out
  wait_quiet
  out=$("$BENCH" --plugin-dir "$PLUGINS" --type "$1" --target "$2" --config-json "$3" \
    -n "$N" -c "$C" --warmup "$WARMUP" --max-seconds "$MAX_SECONDS" --label "ours") ||
    die "guardant-probe-bench failed for $1: $out"
  emit "{\"probe\":\"$1\",\"who\":\"ours\",\"repeat\":$4,\"run\":$out}"
}

blackbox() {  # probe module target repeat
  local url out cpu0 cpu1 hwm
  url="http://127.0.0.1:PORT/probe?module=$2&target=$(urlencode "$3")"
  wait_quiet
  start_blackbox
  url=${url/PORT/$BB_PORT}
  if ((WARMUP > 0)); then run_wrk "$WARMUP" "$C" "$url" "probe_success 1" >/dev/null; fi
  cpu0=$(proc_cpu_ticks "$BB_PID")
  out=$(run_wrk "$N" "$C" "$url" "probe_success 1")
  cpu1=$(proc_cpu_ticks "$BB_PID")
  hwm=$(proc_kib "$BB_PID" VmHWM)
  stop_blackbox
  [[ -n $out ]] || die "wrk printed nothing for blackbox $2"
  emit "{\"probe\":\"$1\",\"who\":\"blackbox\",\"repeat\":$4,\"module\":\"$2\",\"cpu_ticks\":$((cpu1 - cpu0)),\"clk_tck\":$clk_tck,\"peak_rss_kib\":$hwm,\"wrk\":$out}"
}

ceiling() {  # repeat
  local out
  wait_quiet
  out=$(run_wrk "$N" "$C" "$WEB_TARGET" "" -H "Connection: close")
  [[ -n $out ]] || die "wrk printed nothing for the ceiling"
  emit "{\"probe\":\"web\",\"who\":\"ceiling\",\"repeat\":$1,\"wrk\":$out}"
}

ours_hold() {  # probe target config repeat
  local out
  wait_quiet
  out=$("$BENCH" --plugin-dir "$PLUGINS" --type "$1" --target "$2" --config-json "$3" \
    --hold "$HOLD" --max-seconds "$MAX_SECONDS" --label "ours-hold") ||
    die "guardant-probe-bench --hold failed for $1: $out"
  emit "{\"probe\":\"$1\",\"who\":\"ours_hold\",\"repeat\":$4,\"run\":$out}"
}

# blackbox with HOLD probes in flight against the bench's holding server:
# RSS growth over its idle RSS, per probe in flight.
blackbox_hold() {  # probe module kind target-template repeat
  local serve_out hold_port target url rss0 rss1 count last=-1 stable=0 wrk_pid serve_pid state
  serve_out=$WORK/serve.out
  wait_quiet
  "$BENCH" --serve "$3" --max-seconds "$MAX_SECONDS" >"$serve_out" 2>&1 &
  serve_pid=$!
  PIDS+=("$serve_pid")
  for _ in $(seq 50); do grep -q port "$serve_out" 2>/dev/null && break; sleep 0.1; done
  hold_port=$(grep -o '"port":[0-9]*' "$serve_out" | cut -d: -f2 || true)
  [[ -n $hold_port ]] || die "holding server did not start"
  target=${4/\{port\}/$hold_port}
  start_blackbox
  url="http://127.0.0.1:$BB_PORT/probe?module=$2&target=$(urlencode "$target")"
  sleep 0.5
  rss0=$(proc_kib "$BB_PID" VmRSS)
  [[ $3 == backlog ]] && state=syn-sent || state=established
  BENCH_WRK_N=0 timeout $((MAX_SECONDS + 15)) wrk -t1 -c"$HOLD" -d"${MAX_SECONDS}s" --timeout 100s \
    -s "$LUA" "$url" >/dev/null 2>&1 &
  wrk_pid=$!
  PIDS+=("$wrk_pid")
  count=0 rss1=0
  for _ in $(seq 300); do  # up to 30 s
    sleep 0.1
    count=$(ss -Htn state "$state" "( dport = :$hold_port )" | wc -l)
    rss1=$(proc_kib "$BB_PID" VmRSS)
    if ((count * 100 >= HOLD * 99)) && [[ $rss1 == "$last" ]]; then
      stable=$((stable + 1))
      ((stable >= 3)) && break
    else
      stable=0
    fi
    last=$rss1
  done
  stop_pid "$wrk_pid"
  stop_blackbox
  stop_pid "$serve_pid"
  emit "{\"probe\":\"$1\",\"who\":\"blackbox_hold\",\"repeat\":$5,\"module\":\"$2\",\"in_flight\":$count,\"rss_idle_kib\":$rss0,\"rss_all_kib\":$rss1,\"settled\":$([[ $stable -ge 3 ]] && echo true || echo false)}"
}

# ------------------------------------------------------------------ run
skipped=()
ran=()
for p in $PROBES; do
  if [[ ! -f $PLUGINS/probe_$p.so ]]; then
    msg="$p: skipped, the probe is not built yet ($PLUGINS/probe_$p.so does not exist)"
    skipped+=("$p")
    emit "{\"probe\":\"$p\",\"who\":\"skipped\",\"reason\":$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$msg")}"
    continue
  fi
  case $p in
    web) target=$WEB_TARGET config=$WEB_CONFIG module=http_2xx ;;
    tcp) target=$TCP_TARGET config=$TCP_CONFIG module=tcp_connect ;;
    ping) target=$PING_TARGET config=$PING_CONFIG module=icmp ;;
    *) die "unknown probe type '$p' (web, tcp, ping)" ;;
  esac
  log "$p: $REPEATS x $N checks at concurrency $C (warm-up $WARMUP), target $target, options $config"
  for r in $(seq "$REPEATS"); do
    ours "$p" "$target" "$config" "$r"
    blackbox "$p" "$module" "$target" "$r"
    [[ $p == web ]] && ceiling "$r"
  done
  if ((HOLD > 0)); then
    case $p in
      web)
        log "web: $HOLD checks held open (server reads the request, never answers)"
        for r in $(seq "$REPEATS"); do ours_hold web 'http://127.0.0.1:{port}/' "$config" "$r"; done
        for r in $(seq "$REPEATS"); do blackbox_hold web http_hold http-hold 'http://127.0.0.1:{port}/' "$r"; done
        ;;
      tcp)
        log "tcp: $HOLD connects held in progress (listener with a full backlog, never accepts)"
        for r in $(seq "$REPEATS"); do ours_hold tcp '127.0.0.1:{port}' "$config" "$r"; done
        for r in $(seq "$REPEATS"); do blackbox_hold tcp tcp_hold backlog '127.0.0.1:{port}' "$r"; done
        ;;
      ping)
        if [[ -n $PING_HOLD_CONFIG ]]; then
          log "ping: $HOLD pings held in flight with options $PING_HOLD_CONFIG"
          for r in $(seq "$REPEATS"); do ours_hold ping "$PING_TARGET" "$PING_HOLD_CONFIG" "$r"; done
        fi
        ;;
    esac
  fi
  ran+=("$p")
done

# ------------------------------------------------------------------ report
mkdir -p "$(dirname "$OUT")"
{
  echo "{\"machine\":{"
  echo "\"cores\":$(nproc),"
  echo "\"cpu\":$(python3 -c 'import json; print(json.dumps(next((l.split(":",1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "")))'),"
  echo "\"mem_total_kib\":$(awk '/^MemTotal:/{print $2}' /proc/meminfo),"
  echo "\"kernel\":\"$(uname -r)\","
  echo "\"os\":$(python3 -c 'import json; print(json.dumps(next((l.split("=",1)[1].strip().strip("\"") for l in open("/etc/os-release") if l.startswith("PRETTY_NAME=")), "")))')},"
  echo "\"versions\":{"
  echo "\"guardant\":\"$GIT_HEAD$([[ -z $GIT_CHANGES ]] || echo -dirty)\","
  # What was built beyond the commit (engine, SDK, probes), if anything.
  echo "\"uncommitted\":$(printf '%s' "$GIT_CHANGES" | python3 -c 'import json,sys; print(json.dumps([l.rstrip() for l in sys.stdin if l.strip()]))'),"
  echo "\"nginx\":\"$(nginx -v 2>&1 | sed 's/.*nginx\///')\","
  echo "\"wrk\":\"$(wrk --version 2>&1 | head -1 | awk '{print $2}')\","
  echo "\"blackbox_exporter\":\"$("$BLACKBOX" --version 2>&1 | head -1 | awk '{print $3}')\"},"
  echo "\"params\":{\"checks\":$N,\"concurrency\":$C,\"warmup\":$WARMUP,\"repeats\":$REPEATS,\"hold\":$HOLD,"
  echo "\"web_config\":$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$WEB_CONFIG"),"
  echo "\"tcp_config\":$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$TCP_CONFIG"),"
  echo "\"ping_config\":$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$PING_CONFIG"),"
  echo "\"started_utc\":\"$STARTED\",\"finished_utc\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\"}}"
} >"$WORK/meta.json"
python3 "$REPORT" report "$WORK/meta.json" "$RAW" "$OUT"
log "results written to $OUT"
