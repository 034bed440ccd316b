// Failures: retries with the producer's attempts/backoff, failures without
// retry (malformed data, a deferred failure `defa`), and what a retried job
// keeps.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

import { echoJob, interopSuite, sleep, waitCompleted, waitFailed } from './lib/harness.mjs';

const suite = interopSuite();

const near = (actual, expected, tolerance, what) =>
  assert.ok(Math.abs(actual - expected) <= tolerance, `${what}: ${actual} ms, expected ${expected} ± ${tolerance} ms`);

// The events of one job, in stream order.
async function jobEvents(env, id) {
  return (await env.events()).filter((e) => e.jobId === id);
}

test('attempts 3 + exponential backoff 500: delayed at +500 and +1000 ms, then failed + retries-exhausted', { timeout: 60_000 }, suite.run(async (env) => {
  const q = env.queue();
  const qe = await env.queueEvents();
  const failedSeen = [];
  qe.on('failed', (e) => failedSeen.push(e));
  await env.worker();
  const job = await q.add('check', echoJob({ config: { throw: 'boom exponential' } }), {
    attempts: 3,
    backoff: { type: 'exponential', delay: 500 },
  });
  await waitFailed(env, [job.id], 20_000);

  const ev = await jobEvents(env, job.id);
  const delayed = ev.filter((e) => e.event === 'delayed');
  assert.equal(delayed.length, 2, `two delayed events, got ${JSON.stringify(ev.map((e) => e.event))}`);
  // `delay` is the absolute due time; the entry id says when it was written.
  near(Number(delayed[0].delay) - delayed[0].ts, 500, 150, 'first backoff');
  near(Number(delayed[1].delay) - delayed[1].ts, 1000, 150, 'second backoff');
  const actives = ev.filter((e) => e.event === 'active');
  assert.equal(actives.length, 3, 'three attempts started');
  for (let i = 0; i < 2; i++) {
    const lateness = actives[i + 1].ts - Number(delayed[i].delay);
    assert.ok(lateness >= -5 && lateness <= 250, `retry ${i + 1} started ${lateness} ms after its due time`);
  }
  const tail = ev.slice(-2).map((e) => e.event);
  assert.deepEqual(tail, ['failed', 'retries-exhausted'], 'the last events of the job');
  assert.equal(ev.filter((e) => e.event === 'failed').length, 1, 'only the last attempt emits failed');
  assert.equal(ev.at(-1).attemptsMade, '3');

  const h = await env.jobHash(job.id);
  assert.equal(h.atm, '3', 'attemptsMade');
  assert.equal(h.ats, '3', 'attemptsStarted');
  assert.match(h.failedReason, /boom exponential/);
  const st = JSON.parse(h.stacktrace);
  assert.ok(Array.isArray(st) && st.length === 3 && st.every((s) => typeof s === 'string'), `stacktrace: ${h.stacktrace}`);
  await sleep(200);
  assert.equal(failedSeen.length, 1, 'QueueEvents saw one failed event');
  assert.match(failedSeen[0].failedReason, /boom exponential/);
}));

test('backoff: 1000 (a number, i.e. fixed): both retries 1000 ms after the failure', { timeout: 60_000 }, suite.run(async (env) => {
  const q = env.queue();
  await env.worker();
  const job = await q.add('check', echoJob({ config: { throw: 'boom fixed' } }), { attempts: 3, backoff: 1000 });
  await waitFailed(env, [job.id], 20_000);
  const ev = await jobEvents(env, job.id);
  const delayed = ev.filter((e) => e.event === 'delayed');
  assert.equal(delayed.length, 2);
  for (const d of delayed) near(Number(d.delay) - d.ts, 1000, 150, 'fixed backoff');
  assert.equal((await env.jobHash(job.id)).atm, '3');
}));

test('no backoff: immediate retries (waiting prev=active, no delayed event)', { timeout: 60_000 }, suite.run(async (env) => {
  const q = env.queue();
  await env.worker();
  const job = await q.add('check', echoJob({ config: { throw: 'boom now' } }), { attempts: 3 });
  await waitFailed(env, [job.id], 20_000);
  const ev = await jobEvents(env, job.id);
  assert.equal(ev.filter((e) => e.event === 'delayed').length, 0, 'no delayed event');
  const requeued = ev.filter((e) => e.event === 'waiting' && e.prev === 'active');
  assert.equal(requeued.length, 2, `two waiting prev=active events, got ${JSON.stringify(ev.map((e) => [e.event, e.prev]))}`);
  const actives = ev.filter((e) => e.event === 'active');
  assert.equal(actives.length, 3);
  assert.ok(actives[2].ts - actives[0].ts < 1000, `three immediate attempts took ${actives[2].ts - actives[0].ts} ms`);
  const h = await env.jobHash(job.id);
  assert.equal(h.atm, '3');
  assert.equal(JSON.parse(h.stacktrace).length, 3);
}));

test('a job that fails its first attempt completes on the second; the old failedReason stays', { timeout: 60_000 }, suite.run(async (env) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'guardant-failonce-'));
  try {
    const q = env.queue();
    await env.worker();
    const job = await q.add('check', echoJob({ config: { fail_once_file: path.join(dir, 'marker') } }), { attempts: 2 });
    await waitCompleted(env, [job.id], 15_000);
    const h = await env.jobHash(job.id);
    assert.equal(h.atm, '2');
    assert.match(h.failedReason, /failing once/);
    assert.equal(JSON.parse(h.returnvalue).status, 'up');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}));

const MALFORMED = [
  { what: 'data is a string', data: 'just a string', field: 'data' },
  { what: 'data is an array', data: [1, 2, 3], field: 'data' },
  { what: 'data is null', data: null, field: 'data' },
  { what: 'service.type missing', data: { nestId: 'n', service: { id: 's', target: 't' } }, field: 'type' },
  { what: 'service.type not a string', data: { nestId: 'n', service: { id: 's', type: 42, target: 't' } }, field: 'type' },
  { what: 'service.target missing', data: { nestId: 'n', service: { id: 's', type: 'echo' } }, field: 'target' },
  { what: 'service.target not a string', data: { nestId: 'n', service: { id: 's', type: 'echo', target: ['t'] } }, field: 'target' },
  { what: 'service.config a string', data: { nestId: 'n', service: { id: 's', type: 'echo', target: 't', config: 'nope' } }, field: 'config' },
  { what: 'service.config an array', data: { nestId: 'n', service: { id: 's', type: 'echo', target: 't', config: [1] } }, field: 'config' },
  { what: 'flat form without target', data: { nestId: 'n', serviceId: 's', type: 'echo' }, field: 'target' },
  { what: 'flat form with config a number', data: { nestId: 'n', serviceId: 's', type: 'echo', target: 't', config: 7 }, field: 'config' },
];

test('malformed job data fails at once without retry (attempts 5), the reason naming the field', { timeout: 60_000 }, suite.run(async (env) => {
  const q = env.queue();
  await env.worker();
  const jobs = [];
  for (const m of MALFORMED) jobs.push({ m, job: await q.add('check', m.data, { attempts: 5, backoff: 100 }) });
  // A well-formed flat job beside them completes.
  const flat = await q.add('check', { nestId: 'n', serviceId: 'flat-svc', type: 'echo', target: 'flat-target', config: {} });
  await waitFailed(env, jobs.map(({ job }) => job.id), 20_000);
  await waitCompleted(env, [flat.id], 10_000);
  await sleep(300); // a wrongly scheduled retry would show up by now
  const ev = await env.events();
  for (const { m, job } of jobs) {
    const h = await env.jobHash(job.id);
    assert.ok(h.failedReason.startsWith('malformed job data: '), `${m.what}: failedReason ${JSON.stringify(h.failedReason)}`);
    assert.ok(h.failedReason.includes(m.field), `${m.what}: failedReason ${JSON.stringify(h.failedReason)} should name "${m.field}"`);
    assert.equal(h.atm, '1', `${m.what}: attemptsMade`);
    assert.equal(h.ats, '1', `${m.what}: attemptsStarted`);
    assert.equal(await job.getState(), 'failed', m.what);
    const mine = ev.filter((e) => e.jobId === job.id).map((e) => e.event);
    assert.ok(!mine.includes('delayed') && mine.filter((e) => e === 'active').length === 1, `${m.what}: events ${mine}`);
  }
  const rv = JSON.parse((await env.jobHash(flat.id)).returnvalue);
  assert.equal(rv.serviceId, 'flat-svc');
  assert.equal(rv.message, 'echo flat-target');
}));

test('a probe that throws fails the job with its message, retried per attempts', { timeout: 60_000 }, suite.run(async (env) => {
  const q = env.queue();
  await env.worker();
  const job = await q.add('check', echoJob({ config: { throw: 'kaboom 42 «ünïcode»' } }), { attempts: 2 });
  await waitFailed(env, [job.id], 15_000);
  const h = await env.jobHash(job.id);
  assert.ok(h.failedReason.includes('kaboom 42 «ünïcode»'), `failedReason ${JSON.stringify(h.failedReason)}`);
  assert.equal(h.atm, '2');
}));

test('a job with defa (deferred failure) fails at once with that reason, no retry, the probe never runs', { timeout: 60_000 }, suite.run(async (env) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'guardant-defa-'));
  try {
    const q = env.queue();
    const marker = path.join(dir, 'probe-ran');
    const job = await q.add('check', echoJob({ config: { fail_once_file: marker } }), { attempts: 5 });
    await env.r.hset(env.key('monitoring', job.id), 'defa', 'poisoned by the interop test');
    const plain = await q.add('check', echoJob());
    await env.worker();
    await waitFailed(env, [job.id], 15_000);
    await waitCompleted(env, [plain.id], 10_000);
    await sleep(300);
    const h = await env.jobHash(job.id);
    assert.equal(h.failedReason, 'poisoned by the interop test');
    assert.equal(h.atm, '1');
    assert.equal(h.defa, undefined, 'defa is cleared when the job fails');
    assert.equal(await job.getState(), 'failed');
    assert.equal(fs.existsSync(marker), false, 'the probe ran for a job marked defa');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}));
