-- Fetch one job: promote due delayed jobs, honour pause, global concurrency
-- and the global rate limit, take wait before prioritized, lock the job.
-- ARGV: 1 prefix, 2 now (ms), 3 lock token, 4 lock duration (ms), 5 worker name
-- Returns {fields, jobId, 0, 0} or {0, 0, rateLimitTtlMs, nextDelayedDueMs}.
return fetch_next(ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5])
