// Redis crashes and comes back (appendonly, fsync always, same port) while
// jobs flow: the worker reconnects by itself and nothing is lost.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { echoJob, interopSuite, jobCounts, sleep, waitCompleted, waitFor } from './lib/harness.mjs';

const suite = interopSuite({ persistent: true });

// Adds with a fixed jobId, retrying until Redis accepts it: a job id that
// already exists is not added twice, so a retried add cannot duplicate.
async function addSurely(q, i) {
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      return await q.add(`r-${i}`, echoJob({ serviceId: `svc-${i}`, config: { delay_ms: 200 } }), { jobId: `r-${i}`, attempts: 3 });
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`could not add job r-${i}: ${e.message}`);
      await sleep(200);
    }
  }
}

test('Redis restarted mid-run: every job completes, the worker resumes without a restart', { timeout: 90_000 }, suite.run(async (env) => {
  const q = env.queue();
  // Short locks: a job whose finish was lost with the connection is
  // recovered by the stall checker within seconds instead of 30.
  const w = await env.worker({ concurrency: 5, lockDurationMs: 3000, stalledIntervalMs: 1000 });
  const pid = w.pid;
  const ids = [];
  let restartedAt = 0;
  for (let i = 0; i < 60; i++) {
    if (i === 20) {
      await waitFor(async () => (await jobCounts(env)).completed >= 5, 10_000, 'some jobs completed before the restart');
      await suite.redis.restart();
      restartedAt = Date.now();
    }
    ids.push((await addSurely(q, i)).id);
    await sleep(50);
  }
  await waitCompleted(env, ids, 45_000);
  assert.ok(w.running, `${w.describe()} is still running`);
  assert.equal(w.pid, pid, 'the same worker process');
  const counts = await jobCounts(env);
  assert.equal(counts.active, 0);
  assert.equal(counts.failed, 0);
  assert.equal(counts.completed, 60);
  const after = [];
  for (const id of ids) {
    const h = await env.jobHash(id);
    assert.equal(h.pb, w.id);
    if (Number(h.processedOn) > restartedAt) after.push(id);
  }
  assert.ok(after.length >= 20, `${after.length} jobs started after the restart`);
}));
