#!/usr/bin/env bash
# bench/queue/run.sh: guardant-worker in queue mode against a Node bullmq
# Worker (bullmq pinned in bench/queue/package.json), same Redis version, same
# machine, same run. See bench/README.md, "Queue mode".
#
#   bash bench/setup.sh && bash bench/queue/run.sh
#
# For each repeat, job kind (trivial, web) and concurrency (1, 10, 100), each
# worker in turn (ours, then node) drains a full queue: a fresh redis-server,
# the queue paused, N jobs added, the worker started and ready, the queue
# resumed, timed until N jobs are completed (bench/queue/drain.mjs does one
# such measurement). Then, untimed, one protocol run per worker and
# concurrency with Redis MONITOR counting every command by origin. Medians,
# ratios and the table are printed and written, with every raw run, to
# bench/results/queue-<UTC date>.json.
#
# Knobs (environment): BENCH_REPEATS (3) BENCH_QUEUE_KINDS ("trivial web")
# BENCH_QUEUE_CONCURRENCY ("1 10 100") BENCH_QUEUE_IMPLS ("ours node")
# BENCH_QUEUE_N_TRIVIAL (40000; jobs per trivial run at concurrency > 1)
# BENCH_QUEUE_N_TRIVIAL_C1 (10000) BENCH_QUEUE_N_WEB (10000) BENCH_QUEUE_N_WEB_C1
# (4000) BENCH_QUEUE_N_PROTOCOL (2000; 0 = no protocol runs)
# BENCH_MAX_SECONDS (120: cap of one drain) BENCH_BUILD_DIR (build-qbench)
# BENCH_SKIP_BUILD=1 BENCH_OUT (results file) BENCH_JOBS (2) BENCH_QUIET_PCT
# (15) and BENCH_QUIET_WAIT (60): before each run wait up to QUIET_WAIT
# seconds for the machine to be at most QUIET_PCT % busy (what it saw, and
# the load averages, are kept with each run).
#
# Starts: nginx (own config, pid file and temp dir, a free 127.0.0.1 port);
# drain.mjs starts and stops its own redis-server and worker per run. All are
# stopped on exit, however it exits.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD=${BENCH_BUILD_DIR:-$ROOT/build-qbench}
REPEATS=${BENCH_REPEATS:-3}
KINDS=${BENCH_QUEUE_KINDS:-trivial web}
CONCURRENCY=${BENCH_QUEUE_CONCURRENCY:-1 10 100}
IMPLS=${BENCH_QUEUE_IMPLS:-ours node}
N_TRIVIAL=${BENCH_QUEUE_N_TRIVIAL:-40000}
N_TRIVIAL_C1=${BENCH_QUEUE_N_TRIVIAL_C1:-10000}
N_WEB=${BENCH_QUEUE_N_WEB:-10000}
N_WEB_C1=${BENCH_QUEUE_N_WEB_C1:-4000}
N_PROTOCOL=${BENCH_QUEUE_N_PROTOCOL:-2000}
MAX_SECONDS=${BENCH_MAX_SECONDS:-120}
OUT=${BENCH_OUT:-$ROOT/bench/results/queue-$(date -u +%Y-%m-%d).json}
JOBS=${BENCH_JOBS:-2}
QUIET_PCT=${BENCH_QUIET_PCT:-15}
QUIET_WAIT=${BENCH_QUIET_WAIT:-60}
REPORT=$HERE/report.py
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)

log() { printf '[qbench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in redis-server node npm nginx python3 curl cmake ninja; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found; run: bash bench/setup.sh (and packaging/install-deps.sh)"
done
# drain.mjs reads /proc/<pid>/stat in USER_HZ ticks and assumes 100.
[[ $(getconf CLK_TCK) == 100 ]] || die "CLK_TCK is $(getconf CLK_TCK), drain.mjs assumes 100"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WORK=$(mktemp -d /tmp/guardant-qbench.XXXXXX)
chmod 755 "$WORK"  # nginx workers run as nobody and must read the page
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
  if ((rc != 0)) && [[ -d $WORK ]]; then
    # Keep the logs of a failed run where they can be read.
    local keep=/tmp/guardant-qbench-failed-$$
    mv "$WORK" "$keep" 2>/dev/null && log "logs kept in $keep"
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

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
# shellcheck source=bench/lib/machine.sh
source "$ROOT/bench/lib/machine.sh"

# ------------------------------------------------------------------ build
GIT_HEAD=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_CHANGES=$(git -C "$ROOT" status --porcelain -- engine sdk plugins bench/queue 2>/dev/null || true)
if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
  log "building guardant-worker, probe_web and bench_noop into $BUILD (RelWithDebInfo, -Werror)"
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGUARDANT_WERROR=ON \
    -DGUARDANT_BUILD_TESTS=OFF -DGUARDANT_BUILD_BENCH=ON >"$WORK/cmake.log" 2>&1 ||
    { tail -20 "$WORK/cmake.log" >&2; die "cmake configure failed"; }
  ninja -C "$BUILD" -j "$JOBS" guardant-worker probe_web bench_noop >"$WORK/build.log" 2>&1 ||
    { tail -30 "$WORK/build.log" >&2; die "the build failed"; }
fi
WORKER_BIN=$BUILD/engine/guardant-worker
[[ -x $WORKER_BIN ]] || die "$WORKER_BIN is missing (build it, or unset BENCH_SKIP_BUILD)"
# Only the two probes the bench uses: the worker as deployed for web checks
# (libcurl and OpenSSL mapped in) plus the bench's noop.
PLUGIN_DIR=$WORK/plugins
mkdir -p "$PLUGIN_DIR"
for so in "$BUILD/plugins/probe_web.so" "$BUILD/bench/plugins/bench_noop.so"; do
  [[ -f $so ]] || die "$so is missing"
  ln -s "$so" "$PLUGIN_DIR/"
done

# npm ci only when node_modules is missing or older than the lock file.
stamp=$HERE/node_modules/.guardant-npm-ci
if [[ ! -f $stamp || $HERE/package-lock.json -nt $stamp ]]; then
  log "npm ci in bench/queue"
  (cd "$HERE" && npm ci --no-audit --no-fund >"$WORK/npm.log" 2>&1) ||
    { tail -20 "$WORK/npm.log" >&2; die "npm ci failed"; }
  touch "$stamp"
fi
BULLMQ_VERSION=$(node -p "require('$HERE/node_modules/bullmq/package.json').version")

# ------------------------------------------------------------------ nginx
# shellcheck source=bench/lib/nginx.sh
source "$ROOT/bench/lib/nginx.sh"
start_bench_nginx

# ------------------------------------------------------------------ runs
jobs_for() {  # kind concurrency
  case $1 in
    trivial) (($2 == 1)) && echo "$N_TRIVIAL_C1" || echo "$N_TRIVIAL" ;;
    web) (($2 == 1)) && echo "$N_WEB_C1" || echo "$N_WEB" ;;
    *) die "unknown job kind '$1' (trivial, web)" ;;
  esac
}

# Runs drain.mjs once and appends its record, with the machine's state
# before it, to the raw file.
measure() {  # impl kind concurrency jobs repeat [--monitor]
  local impl=$1 kind=$2 c=$3 n=$4 r=$5 rec load
  shift 5
  wait_quiet
  load=$(awk '{printf "[%s,%s,%s]", $1, $2, $3}' /proc/loadavg)
  rec=$(node "$HERE/drain.mjs" --impl "$impl" --kind "$kind" --concurrency "$c" --jobs "$n" \
    --repeat "$r" --target "$WEB_TARGET" --worker-bin "$WORKER_BIN" --plugin-dirs "$PLUGIN_DIR" \
    --work "$WORK/runs" --max-seconds "$MAX_SECONDS" "$@" 2>>"$WORK/drain.err") ||
    { tail -20 "$WORK/drain.err" >&2; die "drain.mjs failed ($impl $kind c=$c #$r)"; }
  rec="${rec%\}},\"busy_before_pct\":$BUSY,\"loadavg_before\":$load}"
  echo "$rec" >>"$RAW"
  log "  $(python3 "$REPORT" line "$rec")"
}

log "timed runs: $REPEATS x kinds [$KINDS] x concurrency [$CONCURRENCY] x [$IMPLS]"
for r in $(seq "$REPEATS"); do
  for kind in $KINDS; do
    for c in $CONCURRENCY; do
      n=$(jobs_for "$kind" "$c")
      for impl in $IMPLS; do measure "$impl" "$kind" "$c" "$n" "$r"; done
    done
  done
done
if ((N_PROTOCOL > 0)); then
  log "protocol runs (untimed, MONITOR on): $N_PROTOCOL trivial jobs per worker and concurrency"
  for c in $CONCURRENCY; do
    for impl in $IMPLS; do measure "$impl" trivial "$c" "$N_PROTOCOL" 0 --monitor; done
  done
fi

# ------------------------------------------------------------------ report
mkdir -p "$(dirname "$OUT")"
python3 - "$WORK/meta.json" <<EOF
import json, sys
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "")
os_name = next((l.split("=", 1)[1].strip().strip('"') for l in open("/etc/os-release")
                if l.startswith("PRETTY_NAME=")), "")
changes = [l.rstrip() for l in """$GIT_CHANGES""".splitlines() if l.strip()]
meta = {
  "machine": {"cores": $(nproc), "cpu": cpu,
              "mem_total_kib": $(awk '/^MemTotal:/{print $2}' /proc/meminfo),
              "kernel": "$(uname -r)", "os": os_name},
  "versions": {"guardant": "$GIT_HEAD" + ("-dirty" if changes else ""), "uncommitted": changes,
               "bullmq": "$BULLMQ_VERSION", "node": "$(node --version)",
               "redis": "$(redis-server --version | sed 's/.* v=\([^ ]*\).*/\1/')",
               "nginx": "$(nginx -v 2>&1 | sed 's/.*nginx\///')"},
  "params": {"repeats": $REPEATS, "kinds": "$KINDS".split(), "concurrency": [int(c) for c in "$CONCURRENCY".split()],
             "impls": "$IMPLS".split(), "jobs_trivial": $N_TRIVIAL, "jobs_trivial_c1": $N_TRIVIAL_C1,
             "jobs_web": $N_WEB, "jobs_web_c1": $N_WEB_C1, "jobs_protocol": $N_PROTOCOL,
             "web_target": "http://127.0.0.1:<port>/index.html (nginx, 1 worker, ~600-byte page)",
             "started_utc": "$STARTED", "finished_utc": "$(date -u +%Y-%m-%dT%H:%M:%SZ)"},
}
json.dump(meta, open(sys.argv[1], "w"))
EOF
python3 "$REPORT" report "$WORK/meta.json" "$RAW" "$OUT"
log "results written to $OUT"
