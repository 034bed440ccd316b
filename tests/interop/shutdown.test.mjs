// Graceful stops (SIGTERM with and without time to drain) and a SCRIPT FLUSH
// under the worker's feet.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { echoJob, interopSuite, jobCounts, sleep, waitCompleted, waitFor, within } from './lib/harness.mjs';

const suite = interopSuite();

const activeIds = (env) => env.r.lrange(env.key('monitoring', 'active'), 0, -1);

test('SIGTERM with 5 jobs in flight (1.5 s < drain timeout): all complete, exit 0, nothing new fetched, no stc', { timeout: 60_000 }, suite.run(async (env) => {
  const q = env.queue();
  const w = await env.worker({ concurrency: 5, drainTimeoutMs: 10_000 });
  const jobs = await q.addBulk(Array.from({ length: 5 }, (_, i) => ({ name: `drain-${i}`, data: echoJob({ config: { delay_ms: 1500 } }) })));
  await waitFor(async () => (await activeIds(env)).length === 5, 5000, 'five jobs active');
  w.signal('SIGTERM');
  await sleep(100);
  // Added after the signal: must stay for another worker.
  const late = await q.addBulk(Array.from({ length: 3 }, (_, i) => ({ name: `late-${i}`, data: echoJob() })));
  const { code } = await within(w.exit, 15_000, `${w.describe()} to exit after SIGTERM`);
  assert.equal(code, 0, 'exit code');
  for (const j of jobs) {
    const h = await env.jobHash(j.id);
    assert.equal(await j.getState(), 'completed', `${j.name} completed during the drain`);
    assert.equal(h.stc, undefined, `${j.name} has no stalled counter`);
    assert.equal(h.pb, w.id);
  }
  assert.deepEqual(await activeIds(env), [], 'active is empty');
  for (const j of late) assert.equal(await j.getState(), 'waiting', `${j.name}, added after SIGTERM, was not taken`);
  assert.equal((await jobCounts(env)).wait, 3);
}));

test('SIGTERM with jobs longer than the drain timeout: quick exit 0, jobs back to wait without stc, completed by the next worker', { timeout: 60_000 }, suite.run(async (env) => {
  const q = env.queue();
  const a = await env.worker({ concurrency: 5, drainTimeoutMs: 500 });
  const jobs = await q.addBulk(Array.from({ length: 3 }, (_, i) => ({ name: `long-${i}`, data: echoJob({ config: { delay_ms: 5000 } }) })));
  await waitFor(async () => (await activeIds(env)).length === 3, 5000, 'three jobs active');
  const signalledAt = Date.now();
  a.signal('SIGTERM');
  const { code } = await within(a.exit, 10_000, `${a.describe()} to exit after SIGTERM`);
  const took = Date.now() - signalledAt;
  assert.equal(code, 0, 'exit code');
  assert.ok(took < 3000, `exited ${took} ms after SIGTERM with a 500 ms drain timeout`);
  assert.deepEqual(await activeIds(env), [], 'nothing left active');
  for (const j of jobs) {
    assert.equal(await j.getState(), 'waiting', `${j.name} handed back to wait`);
    const h = await env.jobHash(j.id);
    assert.equal(h.stc, undefined, `${j.name}: no stall counted`);
    assert.ok(h.atm === undefined || h.atm === '0', `${j.name}: no attempt counted (atm ${h.atm})`);
  }
  const b = await env.worker({ concurrency: 5 });
  await waitCompleted(env, jobs.map((j) => j.id), 15_000);
  for (const j of jobs) {
    const h = await env.jobHash(j.id);
    assert.equal(h.pb, b.id);
    assert.equal(h.stc, undefined);
    assert.equal(h.atm, '1');
  }
}));

test('SCRIPT FLUSH mid-run: the worker reloads its scripts and every job completes', { timeout: 60_000 }, suite.run(async (env) => {
  const q = env.queue();
  await env.worker({ concurrency: 5 });
  const first = await q.addBulk(Array.from({ length: 40 }, (_, i) => ({ name: `a-${i}`, data: echoJob({ config: { delay_ms: 100 } }) })));
  await waitFor(async () => (await jobCounts(env)).completed >= 10, 10_000, 'ten jobs completed');
  assert.equal(await env.r.script('FLUSH'), 'OK');
  const second = [];
  for (let i = 0; i < 20; i++) {
    second.push(await q.add(`b-${i}`, echoJob({ config: { delay_ms: 20 } }), { attempts: 2 }));
    if (i === 10) assert.equal(await env.r.script('FLUSH'), 'OK');
  }
  await waitCompleted(env, [...first, ...second].map((j) => j.id), 30_000);
  assert.equal((await jobCounts(env)).failed, 0);
}));
