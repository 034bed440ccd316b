-- Put a job aside for a while without it counting as an attempt: a nest over
-- its rate limit, or a job this worker cannot run (routing) handed back for
-- another worker. The job goes to delayed; attemptsMade is untouched and the
-- start of this attempt is taken back.
-- ARGV: 1 prefix, 2 jobId, 3 token, 4 now, 5 delay ms, 6 hash field counting
--   these hand-backs ("" = none), 7 fetch next 1|0, 8 lock ms, 9 worker name,
--   10 lock token for the next job
-- Returns -1/-2/-6/-3 as finish_job.lua, or the fetch tuple.
local prefix, job_id, token, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local delay = math.max(tonumber(ARGV[5]) or 0, 1)
local job_key = prefix .. job_id

local rc = take_from_active(prefix, job_id, token)
if rc ~= 0 then return rc end

local state = queue_state()
if ARGV[6] ~= "" then rcall("HINCRBY", job_key, ARGV[6], 1) end
if tonumber(rcall("HGET", job_key, "ats") or "0") > 0 then rcall("HINCRBY", job_key, "ats", -1) end
rcall("HSET", job_key, "delay", delay)
add_delayed(state, job_id, now + delay)
wake_for_freed_slot(state)

if ARGV[7] == "1" then return fetch_next(prefix, now, ARGV[10], ARGV[8], ARGV[9]) end
return {0, 0, 0, next_delayed_due()}
