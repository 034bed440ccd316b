-- The fleet-wide stalled-job check, at most once per interval for the whole
-- fleet: active jobs that were suspects last round and whose lock has expired
-- belonged to a dead worker; they go back to wait. A job that stalled more
-- than the allowed count gets a deferred failure (`defa`) that the next worker
-- to fetch it honours, so a poison job stops looping.
-- ARGV: 1 prefix, 2 now, 3 max stalled count, 4 interval ms
-- Returns {recovered ids}.
local prefix, now = ARGV[1], ARGV[2]
local max_stalled = tonumber(ARGV[3])
if rcall("EXISTS", K_STALLED_CHECK) == 1 then return {} end
rcall("SET", K_STALLED_CHECK, now, "PX", ARGV[4])

local state = queue_state()
rcall("XTRIM", K_EVENTS, "MAXLEN", "~", state.max_events)

local recovered = {}
local suspects = rcall("SMEMBERS", K_STALLED)
if #suspects > 0 then
  rcall("DEL", K_STALLED)
  for _, id in ipairs(suspects) do
    local job_key = prefix .. id
    if rcall("EXISTS", job_key .. ":lock") == 0 and rcall("LREM", K_ACTIVE, 1, id) > 0 then
      local stalls = rcall("HINCRBY", job_key, "stc", 1)
      if stalls > max_stalled then
        -- A job of a live scheduler is never failed for stalling: the next
        -- iteration exists already and this one simply runs again.
        local scheduler = rcall("HGET", job_key, "rjk")
        if not (scheduler and rcall("ZSCORE", K_REPEAT, scheduler)) then
          rcall("HSET", job_key, "defa", "job stalled more than allowable limit")
        end
      end
      rcall("RPUSH", K_WAIT, id)
      emit(state, "waiting", "jobId", id, "prev", "active")
      emit(state, "stalled", "jobId", id)
      recovered[#recovered + 1] = id
    end
  end
  if #recovered > 0 then add_ready_marker(state) end
end

-- Every job active now is a suspect for the next round unless its worker
-- renews the lock (extend_locks.lua removes it from the set).
local active = rcall("LRANGE", K_ACTIVE, 0, -1)
for i = 1, #active, 5000 do
  rcall("SADD", K_STALLED, unpack(active, i, math.min(i + 4999, #active)))
end
return recovered
