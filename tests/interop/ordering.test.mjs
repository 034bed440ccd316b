// Which job runs when: priorities, delayed jobs with only our workers in the
// fleet, and several queues per worker.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { echoJob, interopSuite, sleep, waitCompleted, WORKER_KIND } from './lib/harness.mjs';

const suite = interopSuite();

test('priority order: plain job first, then priorities low to high, FIFO within one; pc gone after', { timeout: 60_000 }, suite.run(async (env) => {
  const q = env.queue();
  await q.pause();
  const add = (name, priority) =>
    q.add(name, echoJob({ serviceId: name, config: { delay_ms: 20 } }), priority ? { priority } : {});
  const jobs = [await add('plain'), await add('p5', 5), await add('p1a', 1), await add('p1b', 1), await add('p3', 3)];
  assert.equal(await env.r.zcard(env.key('monitoring', 'prioritized')), 4, 'four prioritized jobs before the worker runs');

  const w = await env.worker({ concurrency: 1 });
  await q.resume();
  await waitCompleted(env, jobs.map((j) => j.id), 20_000);

  const byId = Object.fromEntries(jobs.map((j) => [j.id, j.name]));
  const order = (await env.events()).filter((e) => e.event === 'active').map((e) => byId[e.jobId]);
  assert.deepEqual(order, ['plain', 'p1a', 'p1b', 'p3', 'p5'], 'order in which the jobs became active');
  for (const j of jobs) assert.equal((await env.jobHash(j.id)).pb, w.id, `pb of ${j.name}`);
  assert.equal(await env.r.exists(env.key('monitoring', 'pc')), 0, 'priority counter deleted once prioritized emptied');
}));

// Starts of delayed jobs, measured against their due time (timestamp + delay).
async function assertOnTime(env, job, what, toleranceMs = 250) {
  await waitCompleted(env, [job.id], 15_000);
  const h = await env.jobHash(job.id);
  const due = Number(h.timestamp) + job.opts.delay;
  const lateness = Number(h.processedOn) - due;
  assert.ok(lateness >= -5, `${what}: started ${-lateness} ms before it was due`);
  assert.ok(lateness <= toleranceMs, `${what}: started ${lateness} ms after it was due (limit ${toleranceMs} ms)`);
  return lateness;
}

test('a delayed job starts on time with only our worker in the fleet, idle or deep in a long marker wait', { timeout: 60_000 }, suite.run(async (env) => {
  const q = env.queue();
  await env.worker();
  // Just started: the worker has found nothing and waits on the marker.
  await sleep(300);
  const first = await q.add('soon', echoJob(), { delay: 1500 });
  await assertOnTime(env, first, 'delay 1500 added 300 ms after start');

  // Idle for 3 s: a worker without a known due time blocks for up to 5-10 s.
  await sleep(3000);
  const second = await q.add('idle', echoJob(), { delay: 1500 });
  await assertOnTime(env, second, 'delay 1500 added after 3 s idle');

  // A later job is already scheduled: the worker waits for its due time and
  // must notice an earlier one added meanwhile.
  const late = await q.add('late', echoJob(), { delay: 4000 });
  await sleep(500);
  const early = await q.add('early', echoJob(), { delay: 1000 });
  await assertOnTime(env, early, 'delay 1000 added while a delay 4000 job was the next due');
  await assertOnTime(env, late, 'delay 4000');
}));

test('delayed jobs with no worker idle in between: each starts on time, in due order', { timeout: 60_000 }, suite.run(async (env) => {
  const q = env.queue();
  await env.worker({ concurrency: 2 });
  const delays = [2200, 600, 1400, 1000, 1800];
  const jobs = await Promise.all(delays.map((delay, i) => q.add(`d${i}`, echoJob({ config: { delay_ms: 50 } }), { delay })));
  for (const j of jobs) await assertOnTime(env, j, `delay ${j.opts.delay}`);
  const started = (await env.events()).filter((e) => e.event === 'active').map((e) => jobs.find((j) => j.id === e.jobId).opts.delay);
  assert.deepEqual(started, [...delays].sort((a, b) => a - b), 'start order follows due times');
}));

test('one worker consumes several queues; "{region}" expands in queue names', { timeout: 60_000 }, suite.run(async (env) => {
  // bullmq 6 refuses ':' in queue names, so the regional queue is "monitoring-<region>".
  const w = await env.worker({ region: 'eu-test', queues: ['monitoring', 'monitoring-{region}'] });
  const plain = env.queue('monitoring');
  const regional = env.queue('monitoring-eu-test');
  const a = await Promise.all([1, 2, 3].map((i) => plain.add('check', echoJob({ serviceId: `plain-${i}` }))));
  const b = await Promise.all([1, 2, 3].map((i) => regional.add('check', echoJob({ serviceId: `regional-${i}` }))));
  await waitCompleted(env, a.map((j) => j.id), 15_000, 'monitoring');
  await waitCompleted(env, b.map((j) => j.id), 15_000, 'monitoring-eu-test');
  for (const j of b) {
    const h = await env.jobHash(j.id, 'monitoring-eu-test');
    assert.equal(h.pb, w.id);
    const rv = JSON.parse(h.returnvalue);
    assert.equal(rv.serviceId, j.data.service.id);
    assert.equal(rv.region, 'eu-test');
  }
  // The worker announces itself on each of its queues.
  const expected = (queue) => `bull:${Buffer.from(queue).toString('base64')}:w:${w.id}`;
  for (const [queue, q] of [['monitoring', plain], ['monitoring-eu-test', regional]]) {
    const names = (await q.getWorkers()).map((c) => c.rawname);
    assert.ok(names.includes(expected(queue)), `getWorkers() on ${queue}: ${names}`);
  }
  // A queue the worker was not given stays untouched.
  const other = env.queue('monitoring-elsewhere');
  const stray = await other.add('check', echoJob());
  await sleep(1000);
  assert.equal(await stray.getState(), 'waiting', `a job on a queue the ${WORKER_KIND} worker does not consume`);
}));
