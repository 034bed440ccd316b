-- Shared preamble of every queue script (prepended at build time, so each
-- script stays one atomic EVALSHA). Our own implementation of the BullMQ 6.x
-- data layout described in shared/spec/bullmq-protocol.md.
--
-- KEYS are the queue's fixed keys, always in this order (QueueKeys in C++):
local K_WAIT, K_ACTIVE, K_PRIORITIZED, K_EVENTS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local K_STALLED, K_LIMITER, K_DELAYED, K_META = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local K_PC, K_MARKER, K_COMPLETED, K_FAILED = KEYS[9], KEYS[10], KEYS[11], KEYS[12]
local K_REPEAT, K_ID, K_STALLED_CHECK = KEYS[13], KEYS[14], KEYS[15]
-- Job keys ("<prefix><id>", "<prefix><id>:lock") are built from the prefix,
-- as BullMQ's own scripts do; on Redis Cluster the prefix needs a hash tag.

local rcall = redis.call

-- Delayed scores are dueMs * 4096 + a per-millisecond sequence number.
local DELAY_SCALE = 4096

-- The queue's global switches (set by Node's Queue: pause(),
-- setGlobalConcurrency(), setGlobalRateLimit()).
local function queue_state()
  local m = rcall("HMGET", K_META, "paused", "concurrency", "max", "duration",
                  "opts.maxLenEvents")
  local state = {
    paused = m[1] ~= false,
    max_jobs = tonumber(m[3]),
    duration = tonumber(m[4]),
    max_events = tonumber(m[5]) or 10000,
    concurrency = tonumber(m[2]),
  }
  state.blocked = state.paused
  if not state.blocked and m[2] then
    state.blocked = rcall("LLEN", K_ACTIVE) >= tonumber(m[2])
  end
  return state
end

local function emit(state, ...)
  rcall("XADD", K_EVENTS, "MAXLEN", "~", state.max_events, "*", "event", ...)
end

-- Wakes idle workers blocked on the marker (BZPOPMIN) unless nobody may fetch.
local function add_ready_marker(state)
  if not state.blocked then rcall("ZADD", K_MARKER, 0, "0") end
end

-- Member "1" of the marker carries the earliest delayed due time, so idle
-- workers wake when it is due even with no other worker around.
local function add_delay_marker(state)
  if state.blocked then return end
  local first = rcall("ZRANGE", K_DELAYED, 0, 0, "WITHSCORES")
  if first[1] then
    rcall("ZADD", K_MARKER, math.floor(tonumber(first[2]) / DELAY_SCALE), "1")
  end
end

-- Ready jobs: priority 0 into wait (LPUSH = FIFO, RPUSH = next), others into
-- prioritized, ordered by priority then by a counter (FIFO inside a priority).
local function push_ready(job_id, priority, to_front)
  priority = tonumber(priority) or 0
  if priority == 0 then
    rcall(to_front and "RPUSH" or "LPUSH", K_WAIT, job_id)
  else
    local seq = rcall("INCR", K_PC) % 0x100000000
    rcall("ZADD", K_PRIORITIZED, priority * 0x100000000 + seq, job_id)
  end
end

local function delayed_score(due_ms)
  local low = due_ms * DELAY_SCALE
  local high = low + DELAY_SCALE - 1
  local last = rcall("ZREVRANGEBYSCORE", K_DELAYED, high, low, "WITHSCORES", "LIMIT", 0, 1)
  if last[1] then return math.min(tonumber(last[2]) + 1, high) end
  return low
end

local function add_delayed(state, job_id, due_ms)
  rcall("ZADD", K_DELAYED, delayed_score(due_ms), job_id)
  emit(state, "delayed", "jobId", job_id, "delay", due_ms)
  add_delay_marker(state)
end

-- Moves due delayed jobs to wait/prioritized (at most 1000 per call).
local function promote_delayed(state, prefix, now)
  local due = rcall("ZRANGEBYSCORE", K_DELAYED, 0, (now + 1) * DELAY_SCALE - 1, "LIMIT", 0, 1000)
  if #due == 0 then return end
  rcall("ZREM", K_DELAYED, unpack(due))
  for _, id in ipairs(due) do
    local job_key = prefix .. id
    push_ready(id, rcall("HGET", job_key, "priority"), false)
    rcall("HSET", job_key, "delay", 0)
    emit(state, "waiting", "jobId", id, "prev", "delayed")
  end
  add_ready_marker(state)
end

local function next_delayed_due()
  local first = rcall("ZRANGE", K_DELAYED, 0, 0, "WITHSCORES")
  if first[1] then return math.floor(tonumber(first[2]) / DELAY_SCALE) end
  return 0
end

-- moveToActive: returns {fields, jobId, 0, 0} with a job, otherwise
-- {0, 0, rateLimitTtlMs, nextDelayedDueMs}.
local function fetch_next(prefix, now, token, lock_ms, worker_name)
  local state = queue_state()
  promote_delayed(state, prefix, now)
  if state.max_jobs then
    local used = tonumber(rcall("GET", K_LIMITER) or "0") or 0
    if used >= state.max_jobs then
      local ttl = rcall("PTTL", K_LIMITER)
      if ttl > 0 then return {0, 0, ttl, 0} end
      -- The window ends this very millisecond (or the counter lost its
      -- expiry): start a new window rather than count into the old one.
      rcall("DEL", K_LIMITER)
    end
  end
  if state.blocked then return {0, 0, 0, 0} end

  local job_id = rcall("RPOPLPUSH", K_WAIT, K_ACTIVE)
  -- BullMQ v4 kept "0:<ts>" markers inside wait; never run those as jobs.
  while job_id and string.sub(job_id, 1, 2) == "0:" do
    rcall("LREM", K_ACTIVE, 1, job_id)
    job_id = rcall("RPOPLPUSH", K_WAIT, K_ACTIVE)
  end
  if not job_id then
    local top = rcall("ZPOPMIN", K_PRIORITIZED)
    if top[1] then
      job_id = top[1]
      rcall("LPUSH", K_ACTIVE, job_id)
    else
      rcall("DEL", K_PC)
    end
  end
  if not job_id then return {0, 0, 0, next_delayed_due()} end

  local job_key = prefix .. job_id
  if state.max_jobs and state.duration and rcall("HEXISTS", job_key, "defa") == 0 then
    if rcall("INCR", K_LIMITER) == 1 then rcall("PEXPIRE", K_LIMITER, state.duration) end
  end
  if token ~= "0" then rcall("SET", job_key .. ":lock", token, "PX", lock_ms) end
  emit(state, "active", "jobId", job_id, "prev", "waiting")
  rcall("HSET", job_key, "processedOn", now, "pb", worker_name)
  rcall("HINCRBY", job_key, "ats", 1)
  rcall("ZADD", K_MARKER, 0, "0")
  return {rcall("HGETALL", job_key), job_id, 0, 0}
end

-- The lock check of every transition out of active: 0 when `token` holds the
-- lock (which is then released), -2 when nobody does, -6 when another does.
local function release_lock(job_key, job_id, token)
  if token == "0" then return 0 end
  local holder = rcall("GET", job_key .. ":lock")
  if holder == token then
    rcall("DEL", job_key .. ":lock")
    rcall("SREM", K_STALLED, job_id)
    return 0
  end
  if holder then return -6 end
  return -2
end

-- The start of every transition that ends an attempt: 0 when the job was
-- active under our lock and now is not, else the code to return: -1 no such
-- job (its id also leaves active), -2/-6 as release_lock, -3 not active.
local function take_from_active(prefix, job_id, token)
  local job_key = prefix .. job_id
  if rcall("EXISTS", job_key) == 0 then
    rcall("LREM", K_ACTIVE, -1, job_id)
    return -1
  end
  local rc = release_lock(job_key, job_id, token)
  if rc ~= 0 then return rc end
  if rcall("LREM", K_ACTIVE, -1, job_id) == 0 then return -3 end
  return 0
end

local function remove_job(prefix, job_id)
  local job_key = prefix .. job_id
  rcall("DEL", job_key, job_key .. ":logs", job_key .. ":lock", job_key .. ":dependencies",
        job_key .. ":processed", job_key .. ":failed", job_key .. ":unsuccessful")
end

-- A job left active: under a global concurrency limit, workers that found the
-- queue full are waiting on the marker, so wake them for the freed slot.
local function wake_for_freed_slot(state)
  if state.concurrency and not state.blocked and
     (rcall("LLEN", K_WAIT) > 0 or rcall("ZCARD", K_PRIORITIZED) > 0) then
    rcall("ZADD", K_MARKER, 0, "0")
  end
end

local function emit_drained_if_idle(state)
  if rcall("LLEN", K_WAIT) == 0 and rcall("LLEN", K_ACTIVE) == 0 and
     rcall("ZCARD", K_PRIORITIZED) == 0 then
    emit(state, "drained")
  end
end
