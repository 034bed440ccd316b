-- Finish an attempt for good: completed (returnvalue) or failed (failedReason
-- and stacktrace), apply the job's retention, emit the events, and fetch the
-- next job in the same round trip.
-- ARGV: 1 prefix, 2 jobId, 3 token, 4 now, 5 "completed"|"failed", 6 value
--   (JSON returnvalue or failure message), 7 stacktrace JSON or "",
--   8 keep count (-1 all, 0 none, n newest), 9 keep age seconds or "",
--   10 age removal limit, 11 attempts, 12 fetch next 1|0, 13 lock ms,
--   14 worker name, 15 lock token for the next job
-- Returns -1 (no job), -2 (lock lost), -6 (locked by another worker), -3 (not
-- active), or the fetch tuple of fetch_job.lua (a next job, or none).
local prefix, job_id, token, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local completed = ARGV[5] == "completed"
local value = ARGV[6]
local keep_count = tonumber(ARGV[8])
local keep_age = tonumber(ARGV[9])
local keep_limit = tonumber(ARGV[10]) or 1000
local attempts = tonumber(ARGV[11]) or 0
local job_key = prefix .. job_id

local rc = take_from_active(prefix, job_id, token)
if rc ~= 0 then return rc end
if not completed then
  rcall("HSET", job_key, "failedReason", value)
  if ARGV[7] ~= "" then rcall("HSET", job_key, "stacktrace", ARGV[7]) end
end

local state = queue_state()
rcall("XTRIM", K_EVENTS, "MAXLEN", "~", state.max_events)

-- A deduplication id is released when the job that owns it finishes.
local dedup = rcall("HGET", job_key, "deid")
if dedup and rcall("GET", prefix .. "de:" .. dedup) == job_id then
  rcall("DEL", prefix .. "de:" .. dedup)
end

local attempts_made = rcall("HINCRBY", job_key, "atm", 1)
local target = completed and K_COMPLETED or K_FAILED
if keep_count ~= 0 then
  rcall("ZADD", target, now, job_id)
  rcall("HSET", job_key, completed and "returnvalue" or "failedReason", value, "finishedOn", now)
  if not completed then rcall("HDEL", job_key, "defa") end
  if keep_age then
    local old = rcall("ZRANGEBYSCORE", target, 0, now - keep_age * 1000, "LIMIT", 0, keep_limit)
    for _, id in ipairs(old) do remove_job(prefix, id) end
    if #old > 0 then rcall("ZREM", target, unpack(old)) end
  end
  if keep_count and keep_count > 0 then
    -- Retention applies to the whole set, as BullMQ's does.
    local surplus = rcall("ZREVRANGE", target, keep_count, -1)
    for _, id in ipairs(surplus) do remove_job(prefix, id) end
    if #surplus > 0 then rcall("ZREMRANGEBYRANK", target, 0, -(keep_count + 1)) end
  end
else
  remove_job(prefix, job_id)
end

if completed then
  emit(state, "completed", "jobId", job_id, "returnvalue", value, "prev", "active")
else
  emit(state, "failed", "jobId", job_id, "failedReason", value, "prev", "active")
  if attempts_made >= attempts then
    emit(state, "retries-exhausted", "jobId", job_id, "attemptsMade", attempts_made)
  end
end

wake_for_freed_slot(state)
if ARGV[12] == "1" then
  local next = fetch_next(prefix, now, ARGV[15], ARGV[13], ARGV[14])
  if next[2] == 0 then emit_drained_if_idle(state) end
  return next
end
emit_drained_if_idle(state)
return {0, 0, 0, next_delayed_due()}
