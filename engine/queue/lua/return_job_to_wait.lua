-- Hand a job back without finishing it (graceful stop, routing): to the front
-- of wait (or prioritized), lock released, no attempt and no stall counted.
-- ARGV: 1 prefix, 2 jobId, 3 token
-- Returns 1 when handed back, 0 when the lock was not ours or it was not active.
local prefix, job_id, token = ARGV[1], ARGV[2], ARGV[3]
local job_key = prefix .. job_id
if rcall("GET", job_key .. ":lock") ~= token then return 0 end
if rcall("LREM", K_ACTIVE, 1, job_id) == 0 then return 0 end
local state = queue_state()
rcall("SREM", K_STALLED, job_id)
rcall("DEL", job_key .. ":lock")
push_ready(job_id, rcall("HGET", job_key, "priority"), true)
emit(state, "waiting", "jobId", job_id, "prev", "active")
add_ready_marker(state)
return 1
