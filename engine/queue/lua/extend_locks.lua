-- Renew the locks this worker holds, in one batch. A renewed job is also
-- taken off the stalled suspects, which keeps a long check from being
-- recovered while its worker is alive.
-- ARGV: 1 prefix, 2 lock duration ms, then jobId, token pairs.
-- Returns the ids whose lock was no longer ours (lost).
local prefix, duration = ARGV[1], ARGV[2]
local lost = {}
for i = 3, #ARGV, 2 do
  local job_id, token = ARGV[i], ARGV[i + 1]
  local lock_key = prefix .. job_id .. ":lock"
  if rcall("GET", lock_key) == token then
    rcall("SET", lock_key, token, "PX", duration)
    rcall("SREM", K_STALLED, job_id)
  else
    lost[#lost + 1] = job_id
  end
end
return lost
