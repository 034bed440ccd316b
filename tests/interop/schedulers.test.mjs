// Job schedulers (repeatable jobs) served only by our workers: the worker
// itself creates each next iteration (updateJobScheduler), so without it a
// schedule ends after one run.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { echoJob, interopSuite, sleep, waitFor } from './lib/harness.mjs';

const suite = interopSuite();

// Completed iterations of a scheduler, oldest first: [{ id, millis, h }].
async function iterations(env, schedulerId) {
  const ids = await env.r.zrange(env.key('monitoring', 'completed'), 0, -1);
  const mine = ids.filter((id) => id.startsWith(`repeat:${schedulerId}:`));
  const out = [];
  for (const id of mine) out.push({ id, millis: Number(id.split(':').at(-1)), h: await env.jobHash(id) });
  return out.sort((a, b) => a.millis - b.millis);
}

async function schedulerHash(env, schedulerId) {
  return env.r.hgetall(env.key('monitoring', 'repeat', schedulerId));
}

async function assertNoDuplicated(env) {
  const dup = (await env.events()).filter((e) => e.event === 'duplicated');
  assert.deepEqual(dup, [], 'no duplicated events');
}

test('every 1000 ms: the chain continues on our worker alone, ic rises, runs 1 s apart', { timeout: 60_000 }, suite.run(async (env) => {
  const q = env.queue();
  const w = await env.worker();
  await q.upsertJobScheduler('every-1s', { every: 1000 }, { name: 'check', data: echoJob({ serviceId: 'sched-every' }) });
  const runs = await waitFor(async () => {
    const it = await iterations(env, 'every-1s');
    return it.length >= 5 && it;
  }, 15_000, 'five iterations of every-1s', { seen: async () => ({ done: await iterations(env, 'every-1s'), sched: await schedulerHash(env, 'every-1s') }) });
  for (let i = 1; i < runs.length; i++) assert.equal(runs[i].millis - runs[i - 1].millis, 1000, 'iterations are 1000 ms apart');
  for (const r of runs) {
    assert.equal(r.h.pb, w.id);
    assert.equal(r.h.rjk, 'every-1s');
    const lateness = Number(r.h.processedOn) - r.millis;
    assert.ok(lateness >= -5 && lateness <= 300, `iteration ${r.id} started ${lateness} ms after its time`);
    assert.equal(JSON.parse(r.h.returnvalue).serviceId, 'sched-every');
  }
  const ic = Number((await schedulerHash(env, 'every-1s')).ic);
  assert.ok(ic >= 5, `ic ${ic} rises with the iterations`);
  // The chain goes on: a next iteration is waiting.
  const next = await env.r.zrange(env.key('monitoring', 'delayed'), 0, -1);
  assert.ok(next.some((id) => id.startsWith('repeat:every-1s:')), `a next iteration is delayed: ${next}`);
  await assertNoDuplicated(env);
}));

test('cron */2 * * * * * in Europe/Berlin: iterations on even seconds', { timeout: 60_000 }, suite.run(async (env) => {
  const q = env.queue();
  await env.worker();
  await q.upsertJobScheduler('cron-2s', { pattern: '*/2 * * * * *', tz: 'Europe/Berlin' }, { name: 'check', data: echoJob({ serviceId: 'sched-cron' }) });
  const runs = await waitFor(async () => {
    const it = await iterations(env, 'cron-2s');
    return it.length >= 3 && it;
  }, 15_000, 'three iterations of cron-2s', { seen: () => iterations(env, 'cron-2s') });
  for (const r of runs) {
    assert.equal(r.millis % 2000, 0, `iteration ${r.id} is on an even second`);
    const lateness = Number(r.h.processedOn) - r.millis;
    assert.ok(lateness >= -5 && lateness <= 300, `iteration ${r.id} started ${lateness} ms after its time`);
  }
  for (let i = 1; i < runs.length; i++) assert.equal(runs[i].millis - runs[i - 1].millis, 2000);
  const sched = await schedulerHash(env, 'cron-2s');
  assert.equal(sched.tz, 'Europe/Berlin');
  assert.ok(Number(sched.ic) >= 3, `ic ${sched.ic}`);
  await assertNoDuplicated(env);
}));

test('limit 3: exactly three iterations run, then the schedule stops', { timeout: 60_000 }, suite.run(async (env) => {
  const q = env.queue();
  await env.worker();
  await q.upsertJobScheduler('limited', { every: 500, limit: 3 }, { name: 'check', data: echoJob({ serviceId: 'sched-limit' }) });
  await waitFor(async () => (await iterations(env, 'limited')).length >= 3, 10_000, 'three iterations of limited', {
    seen: () => iterations(env, 'limited'),
  });
  await sleep(2000); // four more periods: nothing else may run
  const runs = await iterations(env, 'limited');
  assert.equal(runs.length, 3, `iterations: ${runs.map((r) => r.id)}`);
  const pending = [
    ...(await env.r.zrange(env.key('monitoring', 'delayed'), 0, -1)),
    ...(await env.r.lrange(env.key('monitoring', 'wait'), 0, -1)),
    ...(await env.r.lrange(env.key('monitoring', 'active'), 0, -1)),
  ].filter((id) => id.startsWith('repeat:limited:'));
  assert.deepEqual(pending, [], 'no further iteration pending');
  await assertNoDuplicated(env);
}));

test('a failing iteration does not break the chain', { timeout: 60_000 }, suite.run(async (env) => {
  const q = env.queue();
  await env.worker();
  await q.upsertJobScheduler('failing', { every: 700 }, { name: 'check', data: echoJob({ config: { throw: 'scheduled failure' } }) });
  const failed = await waitFor(async () => {
    const ids = (await env.r.zrange(env.key('monitoring', 'failed'), 0, -1)).filter((id) => id.startsWith('repeat:failing:'));
    return ids.length >= 3 && ids;
  }, 10_000, 'three failed iterations of failing');
  assert.ok(failed.length >= 3);
  assert.match((await env.jobHash(failed[0])).failedReason, /scheduled failure/);
  await assertNoDuplicated(env);
}));

test('every 500 ms across a fleet change: C++ → Node → C++ mid-chain, the chain continues, no iteration twice', { timeout: 60_000 }, suite.run(async (env) => {
  const q = env.queue();
  await q.upsertJobScheduler('handover', { every: 500 }, { name: 'check', data: echoJob({ serviceId: 'sched-handover' }) });
  const runUntil = async (n) =>
    waitFor(async () => (await iterations(env, 'handover')).length >= n, 10_000, `${n} iterations of handover`, {
      seen: () => iterations(env, 'handover'),
    });
  const a = await env.cppWorker();
  await runUntil(3);
  assert.equal(await a.stop(), 0);
  const b = await env.nodeWorker();
  await runUntil(6);
  assert.equal(await b.stop(), 0);
  const c = await env.cppWorker();
  await runUntil(9);
  await c.stop();
  const runs = await iterations(env, 'handover');
  const pbs = new Set(runs.map((r) => r.h.pb));
  for (const w of [a, b, c]) assert.ok(pbs.has(w.id), `${w.id} ran iterations: ${[...pbs]}`);
  // Stops and starts may skip slots (every re-aligns), but never run one twice.
  const millis = runs.map((r) => r.millis);
  assert.equal(new Set(millis).size, millis.length, 'no iteration ran twice');
  for (let i = 1; i < millis.length; i++) assert.equal((millis[i] - millis[0]) % 500, 0, 'iterations stay on the 500 ms grid');
  await assertNoDuplicated(env);
}));
