// Crashes: a worker killed mid-job loses its lock, stalled-job recovery hands
// the job to another worker (stc=1); a second crash fails it; a long job whose
// lock is renewed is never taken away.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { echoJob, interopSuite, sleep, waitCompleted, waitFailed, waitFor } from './lib/harness.mjs';

const suite = interopSuite();

// Short locks so that recovery happens within seconds.
const FAST = { lockDurationMs: 2000, stalledIntervalMs: 1000, maxStalledCount: 1 };

// Waits until `job` is active on `worker` (its pb, and attemptsStarted = ats).
async function waitActiveOn(env, job, worker, ats, timeoutMs = 15_000) {
  await waitFor(
    async () => {
      const h = await env.jobHash(job.id);
      const active = await env.r.lrange(env.key('monitoring', 'active'), 0, -1);
      return h.pb === worker.id && h.ats === String(ats) && active.includes(job.id);
    },
    timeoutMs,
    `job ${job.id} to be active on ${worker.id} (ats ${ats})`,
    { seen: () => env.jobHash(job.id) },
  );
}

test('a job whose worker was SIGKILLed mid-check reruns on another worker with stc=1', { timeout: 60_000 }, suite.run(async (env) => {
  const q = env.queue();
  const a = await env.worker(FAST);
  const job = await q.add('check', echoJob({ config: { delay_ms: 3000 } }), { attempts: 5 });
  await waitActiveOn(env, job, a, 1);
  await sleep(300);
  await a.kill();
  const killedAt = Date.now();
  const b = await env.worker(FAST);
  await waitCompleted(env, [job.id], 20_000);
  const h = await env.jobHash(job.id);
  assert.equal(h.stc, '1', 'stalled counter');
  assert.equal(h.pb, b.id, 'completed by the second worker');
  assert.equal(h.ats, '2');
  assert.equal(h.atm, '1', 'a stall is not an attempt made');
  assert.ok(Number(h.processedOn) > killedAt, 'the rerun started after the kill');
  assert.equal(JSON.parse(h.returnvalue).workerId, b.id);
  const ev = (await env.events()).filter((e) => e.jobId === job.id).map((e) => e.event);
  assert.ok(ev.includes('stalled'), `a stalled event, got ${ev}`);
  assert.equal(ev.filter((e) => e === 'completed').length, 1);
}));

test('a job that stalls twice (maxStalledCount 1) fails with "job stalled more than allowable limit", no retry', { timeout: 60_000 }, suite.run(async (env) => {
  const q = env.queue();
  const a = await env.worker(FAST);
  const job = await q.add('check', echoJob({ config: { delay_ms: 4000 } }), { attempts: 5 });
  await waitActiveOn(env, job, a, 1);
  await a.kill();
  const b = await env.worker(FAST);
  await waitActiveOn(env, job, b, 2, 20_000);
  await b.kill();
  await env.worker(FAST);
  await waitFailed(env, [job.id], 20_000);
  const h = await env.jobHash(job.id);
  assert.match(h.failedReason, /job stalled more than allowable limit/);
  assert.equal(h.stc, '2');
  assert.equal(await job.getState(), 'failed');
  await sleep(500);
  assert.equal(await job.getState(), 'failed', 'not retried although attempts remain');
  const ev = (await env.events()).filter((e) => e.jobId === job.id).map((e) => e.event);
  assert.ok(!ev.includes('completed'), `never completed: ${ev}`);
}));

test('a job running 3x lockDuration keeps its lock and completes once', { timeout: 60_000 }, suite.run(async (env) => {
  const q = env.queue();
  await env.worker(FAST);
  // A second worker runs the stall checker too and would take the job if its lock lapsed.
  await env.worker(FAST);
  const job = await q.add('check', echoJob({ config: { delay_ms: 6500 } }), { attempts: 3 });
  await waitCompleted(env, [job.id], 20_000);
  const h = await env.jobHash(job.id);
  assert.equal(h.stc, undefined, 'never counted as stalled');
  assert.equal(h.ats, '1', 'started once');
  assert.equal(h.atm, '1');
  assert.ok(Number(h.finishedOn) - Number(h.processedOn) >= 6400, 'ran its full 6.5 s');
  const ev = (await env.events()).filter((e) => e.jobId === job.id).map((e) => e.event);
  assert.equal(ev.filter((e) => e === 'active').length, 1, `one active event: ${ev}`);
  assert.equal(ev.filter((e) => e === 'completed').length, 1);
  assert.ok(!ev.includes('stalled'), `no stalled event: ${ev}`);
}));
