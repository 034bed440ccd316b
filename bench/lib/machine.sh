# shellcheck shell=bash
# How busy the machine is, shared by bench/run.sh and bench/queue/run.sh.
# Sourced; the caller provides log, QUIET_PCT and QUIET_WAIT.
#
# cpu_busy_pct: the whole machine (all cores, % over 1 s, steal counted as
# busy). Other processes on a 2-core machine move every figure, so each
# measurement waits (bounded) for a quiet machine and records what it saw.
cpu_busy_pct() {
  local a b c d e f g h t0 i0 t1 i1
  read -r _ a b c d e f g h _ </proc/stat
  t0=$((a + b + c + d + e + f + g + h)) i0=$((d + e))
  sleep 1
  read -r _ a b c d e f g h _ </proc/stat
  t1=$((a + b + c + d + e + f + g + h)) i1=$((d + e))
  echo $((100 * ((t1 - t0) - (i1 - i0)) / (t1 - t0 > 0 ? t1 - t0 : 1)))
}
# wait_quiet: waits up to QUIET_WAIT s for at most QUIET_PCT % busy; leaves
# the last reading in BUSY.
BUSY=0
wait_quiet() {
  local waited=0
  while :; do
    BUSY=$(cpu_busy_pct)
    ((BUSY <= QUIET_PCT)) && return 0
    if ((waited >= QUIET_WAIT)); then
      log "  the machine is still ${BUSY}% busy after ${QUIET_WAIT}s of waiting; measuring anyway (recorded)"
      return 0
    fi
    ((waited == 0)) && log "  the machine is ${BUSY}% busy with other work; waiting for it to settle (up to ${QUIET_WAIT}s)"
    sleep 4
    waited=$((waited + 5))
  done
}
