-- Create the next iteration of a job scheduler (BullMQ upsertJobScheduler),
-- as a Node worker does right after fetching an iteration: only the current
-- iteration may spawn the next one, and an existing next job is not
-- duplicated. The worker computes the next time (cron or every) and the
-- job's options.
-- ARGV: 1 prefix, 2 scheduler id, 3 fetched job id, 4 next millis, 5 now,
--   6 name, 7 data JSON, 8 opts JSON, 9 delay ms, 10 priority
-- Returns the new job id, or 0 when nothing was created.
local prefix, scheduler, fetched_id = ARGV[1], ARGV[2], ARGV[3]
local next_millis, now = ARGV[4], tonumber(ARGV[5])
local delay = tonumber(ARGV[9]) or 0
local current = rcall("ZSCORE", K_REPEAT, scheduler)
if not current then return 0 end
if fetched_id ~= "repeat:" .. scheduler .. ":" .. string.format("%.0f", tonumber(current)) then
  return 0
end
local state = queue_state()
local job_id = "repeat:" .. scheduler .. ":" .. next_millis
local job_key = prefix .. job_id
if rcall("EXISTS", job_key) == 1 then
  emit(state, "duplicated", "jobId", job_id)
  return 0
end
rcall("ZADD", K_REPEAT, next_millis, scheduler)
rcall("HINCRBY", prefix .. "repeat:" .. scheduler, "ic", 1)
rcall("INCR", K_ID)
rcall("HSET", job_key, "name", ARGV[6], "data", ARGV[7], "opts", ARGV[8], "timestamp", now,
      "delay", delay, "priority", ARGV[10], "rjk", scheduler)
emit(state, "added", "jobId", job_id, "name", ARGV[6])
if delay > 0 then
  add_delayed(state, job_id, now + delay)
else
  push_ready(job_id, ARGV[10], false)
  emit(state, "waiting", "jobId", job_id)
  add_ready_marker(state)
end
return job_id
