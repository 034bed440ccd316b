-- Retry a failed attempt: record the failure, count the attempt, and put the
-- job back, delayed by its backoff or straight into wait/prioritized.
-- ARGV: 1 prefix, 2 jobId, 3 token, 4 now, 5 delay ms (0 = now),
--   6 failedReason, 7 stacktrace JSON or "", 8 lifo 1|0, 9 fetch next 1|0,
--   10 lock ms, 11 worker name, 12 lock token for the next job
-- Returns -1/-2/-6/-3 as finish_job.lua, or the fetch tuple.
local prefix, job_id, token, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local delay = tonumber(ARGV[5]) or 0
local job_key = prefix .. job_id

local rc = take_from_active(prefix, job_id, token)
if rc ~= 0 then return rc end

local state = queue_state()
rcall("HSET", job_key, "failedReason", ARGV[6])
if ARGV[7] ~= "" then rcall("HSET", job_key, "stacktrace", ARGV[7]) end
rcall("HINCRBY", job_key, "atm", 1)

if delay > 0 then
  rcall("HSET", job_key, "delay", delay)
  add_delayed(state, job_id, now + delay)
else
  push_ready(job_id, rcall("HGET", job_key, "priority"), ARGV[8] == "1")
  emit(state, "waiting", "jobId", job_id, "prev", "active")
  add_ready_marker(state)
end

wake_for_freed_slot(state)
if ARGV[9] == "1" then return fetch_next(prefix, now, ARGV[12], ARGV[10], ARGV[11]) end
return {0, 0, 0, next_delayed_due()}
