// Queue-wide controls set from Node: pause/resume, global concurrency and the
// global rate limit, honoured by our worker.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { echoJob, interopSuite, jobCounts, sleep, waitCompleted, waitFor, WORKER_KIND } from './lib/harness.mjs';

const suite = interopSuite();

test('queue.pause() stops fetching (no job added after it starts), resume() continues', { timeout: 60_000 }, suite.run(async (env) => {
  const q = env.queue();
  await env.worker();
  const before = [];
  for (let i = 0; i < 10; i++) {
    before.push(await q.add(`before-${i}`, echoJob({ config: { delay_ms: 100 } })));
    await sleep(50);
  }
  await q.pause();
  const pausedAt = Date.now();
  // Jobs already fetched may finish; nothing new may start.
  const during = [];
  for (let i = 0; i < 20; i++) {
    during.push(await q.add(`during-${i}`, echoJob()));
    await sleep(100);
  }
  await waitCompleted(env, before.map((j) => j.id), 10_000);
  const started = (await env.events()).filter((e) => e.event === 'active');
  const lastStart = Math.max(...started.map((e) => e.ts));
  assert.ok(lastStart <= pausedAt + 5000, `fetching stopped within 5 s of pause (last start ${lastStart - pausedAt} ms after)`);
  const duringIds = new Set(during.map((j) => j.id));
  assert.deepEqual(started.filter((e) => duringIds.has(e.jobId)).map((e) => e.jobId), [], 'jobs added while paused never started');
  assert.equal((await jobCounts(env)).wait, 20, 'they wait');

  await q.resume();
  await waitCompleted(env, during.map((j) => j.id), 15_000);
}));

test('setGlobalConcurrency(2): LLEN active never above 2 with worker concurrency 10', { timeout: 60_000 }, suite.run(async (env) => {
  const q = env.queue();
  await q.setGlobalConcurrency(2);
  await env.worker({ concurrency: 10 });
  const jobs = await q.addBulk(Array.from({ length: 20 }, (_, i) => ({ name: `gc-${i}`, data: echoJob({ config: { delay_ms: 300 } }) })));
  const samples = [];
  let done = false;
  const sampler = (async () => {
    while (!done) {
      samples.push(await env.r.llen(env.key('monitoring', 'active')));
      await sleep(20);
    }
  })();
  try {
    await waitCompleted(env, jobs.map((j) => j.id), 30_000);
  } finally {
    done = true;
    await sampler;
  }
  const max = Math.max(...samples);
  assert.ok(max <= 2, `LLEN active peaked at ${max}`);
  assert.equal(max, 2, 'the worker used both global slots');
  const ev = (await env.events()).filter((e) => e.event === 'active' || e.event === 'completed');
  let running = 0;
  let peak = 0;
  for (const e of ev) {
    running += e.event === 'active' ? 1 : -1;
    peak = Math.max(peak, running);
  }
  assert.ok(peak <= 2, `the events stream shows ${peak} jobs running at once`);
}));

test('setGlobalRateLimit(5, 1000): 15 jobs take >= ~2 s, never 6 starts within 800 ms', { timeout: 60_000 }, suite.run(async (env) => {
  const q = env.queue();
  await q.setGlobalRateLimit(5, 1000);
  await env.worker({ concurrency: 10 });
  const jobs = await q.addBulk(Array.from({ length: 15 }, (_, i) => ({ name: `rl-${i}`, data: echoJob() })));
  await waitCompleted(env, jobs.map((j) => j.id), 30_000);
  const starts = (await env.events()).filter((e) => e.event === 'active').map((e) => e.ts).sort((a, b) => a - b);
  assert.equal(starts.length, 15);
  const span = starts.at(-1) - starts[0];
  assert.ok(span >= 1800, `15 jobs at 5 per second started within ${span} ms`);
  // The limiter's window opens at the first job of a window, so starts come
  // in bursts a window apart; allow 200 ms of slack.
  for (let i = 0; i + 5 < starts.length; i++)
    assert.ok(starts[i + 5] - starts[i] >= 800, `starts ${i}..${i + 5} within ${starts[i + 5] - starts[i]} ms: ${starts.map((s) => s - starts[0])}`);
}));

test('removing the global concurrency lets the worker use its own slots again', { timeout: 60_000 }, suite.run(async (env) => {
  const q = env.queue();
  await q.setGlobalConcurrency(1);
  await env.worker({ concurrency: 5 });
  const first = await q.addBulk(Array.from({ length: 3 }, (_, i) => ({ name: `one-${i}`, data: echoJob({ config: { delay_ms: 200 } }) })));
  await waitCompleted(env, first.map((j) => j.id), 15_000);
  await q.removeGlobalConcurrency();
  const second = await q.addBulk(Array.from({ length: 5 }, (_, i) => ({ name: `five-${i}`, data: echoJob({ config: { delay_ms: 1500 } }) })));
  await waitFor(async () => (await jobCounts(env)).active === 5, 5000, 'five jobs active at once', { seen: () => jobCounts(env) });
  await waitCompleted(env, second.map((j) => j.id), 15_000);
}));
