-- wrk script for bench/run.sh: stops after BENCH_WRK_N responses (run wrk with
-- -t1 so that one thread sees them all), counts the answers that mean success
-- and prints one JSON line in done().
--
-- wrk's main thread sleeps for the whole -d whatever the threads do; its
-- SIGINT handler ends that sleep. So at the Nth response the thread stops
-- its loop and sends SIGINT to its own process (through LuaJIT's FFI), and
-- wrk's summary (duration, requests, latency) covers exactly the run.
--   BENCH_WRK_N       responses to wait for (0 = until -d runs out)
--   BENCH_WRK_EXPECT  a substring of the body that means success
--                     ("probe_success 1" for blackbox_exporter); empty = HTTP 200
local limit = tonumber(os.getenv("BENCH_WRK_N") or "0") or 0
local expect = os.getenv("BENCH_WRK_EXPECT") or ""
local threads = {}
local ffi_ok, ffi = pcall(require, "ffi")
if ffi_ok then
  ffi.cdef [[
    int getpid(void);
    int kill(int pid, int sig);
  ]]
end

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  count = 0
  ok = 0
  bad = 0
end

function response(status, headers, body)
  count = count + 1
  if status == 200 and (expect == "" or (body and string.find(body, expect, 1, true))) then
    ok = ok + 1
  else
    bad = bad + 1
  end
  if limit > 0 and count == limit then
    wrk.thread:stop()
    if ffi_ok then
      ffi.C.kill(ffi.C.getpid(), 2) -- SIGINT: wrk's handler ends the -d sleep
    end
  end
end

function done(summary, latency, requests)
  local ok_total, bad_total = 0, 0
  for _, t in ipairs(threads) do
    ok_total = ok_total + (t:get("ok") or 0)
    bad_total = bad_total + (t:get("bad") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    '{"limit":%d,"stopped_at_limit":%s,"requests":%d,"duration_s":%.4f,"ok":%d,"bad":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_ms":{"p50":%.3f,"p90":%.3f,"p99":%.3f,"max":%.3f,"mean":%.3f}}\n',
    limit, tostring(ffi_ok and limit > 0), summary.requests, summary.duration / 1e6, ok_total, bad_total,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, latency.mean / 1000))
end
