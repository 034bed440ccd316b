// What Node sees of a finished job: the result record as returnvalue (via
// QueueEvents, Queue.getJob and the raw hash), the events stream fields
// QueueEvents relies on, retention (removeOnComplete/removeOnFail), and how
// the worker identifies itself (pb, CLIENT SETNAME).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ECHO_PLUGIN, echoJob, interopSuite, jobCounts, PREFIX, QUEUE, sleep, waitCompleted, waitFailed, waitFor } from './lib/harness.mjs';

const suite = interopSuite();

const RECORD_KEYS = ['status', 'responseTime', 'message', 'timings', 'failure', 'details', 'serviceId', 'nestId', 'workerId', 'region', 'checkedAt', 'probe'];

function assertRecordShape(rv, what) {
  for (const k of RECORD_KEYS) assert.ok(Object.hasOwn(rv, k), `${what}: record lacks "${k}": ${JSON.stringify(rv)}`);
  assert.equal(typeof rv.responseTime, 'number', `${what}: responseTime`);
  assert.equal(typeof rv.checkedAt, 'number', `${what}: checkedAt`);
  assert.ok(rv.timings && typeof rv.timings === 'object', `${what}: timings`);
  assert.ok(!Object.hasOwn(rv, 'statusCode'), `${what}: the echo probe has no protocol code`);
  assert.deepEqual(rv.probe, ECHO_PLUGIN, `${what}: probe`);
}

test('the result record: up, down and degraded complete the job; fields as in jobs-and-results.md', { timeout: 60_000 }, suite.run(async (env) => {
  const q = env.queue();
  const w = await env.worker({ region: 'rec-region' });
  const up = await q.add('check', echoJob({ serviceId: 'svc-up', nestId: 'nest-up', target: 'example:1', config: { delay_ms: 120 } }));
  const down = await q.add('check', echoJob({ serviceId: 'svc-down', config: { status: 'down', message: 'it is down' } }), { attempts: 3 });
  const degraded = await q.add('check', echoJob({ serviceId: 'svc-deg', config: { status: 'degraded', message: 'slowish' } }));
  const flat = await q.add('check', { nestId: 'nest-flat', serviceId: 'svc-flat', type: 'echo', target: 'flat:2' });
  await waitCompleted(env, [up.id, down.id, degraded.id, flat.id], 15_000);

  const rec = async (job) => {
    const h = await env.jobHash(job.id);
    const rv = JSON.parse(h.returnvalue);
    assertRecordShape(rv, job.data.service?.id ?? job.data.serviceId);
    assert.equal(rv.workerId, w.id);
    assert.equal(rv.region, 'rec-region');
    assert.ok(rv.checkedAt >= Number(h.processedOn) - 1000 && rv.checkedAt <= Number(h.finishedOn) + 1000,
      `checkedAt ${rv.checkedAt} within the attempt [${h.processedOn}, ${h.finishedOn}]`);
    return { h, rv };
  };
  {
    const { rv } = await rec(up);
    assert.equal(await env.r.exists(env.key(QUEUE, up.id, 'lock')), 0, 'the lock is released on completion');
    assert.equal(rv.status, 'up');
    assert.equal(rv.message, 'echo example:1');
    assert.equal(rv.failure, null);
    assert.deepEqual(rv.details, {});
    assert.equal(rv.serviceId, 'svc-up');
    assert.equal(rv.nestId, 'nest-up');
    assert.ok(rv.responseTime >= 100 && rv.responseTime < 5000, `responseTime ${rv.responseTime} of a 120 ms echo`);
    assert.equal(typeof rv.timings.total, 'number');
  }
  {
    const { h, rv } = await rec(down);
    assert.equal(rv.status, 'down');
    assert.equal(rv.message, 'it is down');
    assert.deepEqual(rv.failure, { reason: 'assertion', phase: 'assert', detail: 'it is down' });
    assert.equal(h.atm, '1', 'a down target is data, not a failed attempt');
  }
  {
    const { rv } = await rec(degraded);
    assert.equal(rv.status, 'degraded');
    assert.deepEqual(rv.failure, { reason: 'slow_response', phase: null, detail: 'slowish' });
  }
  {
    const { rv } = await rec(flat);
    assert.equal(rv.status, 'up');
    assert.equal(rv.serviceId, 'svc-flat');
    assert.equal(rv.nestId, 'nest-flat');
    assert.equal(rv.message, 'echo flat:2');
  }
}));

// Values carried in `details` (the record keeps details only when they are a
// JSON object, so scalars travel wrapped).
const CONTROL = Array.from({ length: 32 }, (_, i) => String.fromCharCode(i)).join('');
const BIG = Array.from({ length: 100 * 1024 / 16 }, (_, i) => `${String(i).padStart(6, '0')}-ABCDEFGHI`).join('');
const PAYLOADS = [
  { what: 'nested JSON', details: { a: { b: { c: [1, 2, { d: 'e', f: [[], [[]], {}] }] } }, t: true, f: false, n: null, pi: 3.14159, neg: -42, big: 1e21, tiny: 1e-7, maxSafe: 9007199254740991, empty: '' } },
  { what: 'unicode', details: { s: 'héllo wörld ✓ 日本語 Ελληνικά עברית 😀 𝄞 🏳️‍🌈 👩‍👩‍👧', astral: '\u{1F600}\u{10FFFF}\u{1D11E}', bom: '\uFEFF' } },
  { what: 'quotes and backslashes', details: { s: 'say "hi" \\ C:\\path\\ \\"x\\" / </script> \' `' } },
  { what: 'control characters', details: { s: CONTROL, nl: 'line1\nline2\r\n\ttab', del: '\u007F\u0080\u009F' } },
  { what: 'a 100 KB string', details: { s: BIG } },
  { what: 'null', details: { value: null } },
  { what: 'a number', details: { value: 12345.678 } },
  { what: 'an integer', details: { value: -7 } },
  { what: 'a string', details: { value: 'just a string' } },
  { what: 'an empty object', details: {} },
  { what: 'unicode keys', details: { 'ключ': 1, '😀': { '"quoted"\\key': [true] } } },
];
const MESSAGES = ['ünïcødé 😀 "quoted" \\ back\tslash', 'plain', '🏳️‍🌈'];

test('returnvalue round-trips via waitUntilFinished, Queue.getJob and the events stream; QueueEvents survives', { timeout: 90_000 }, suite.run(async (env) => {
  assert.equal(BIG.length, 100 * 1024);
  const q = env.queue();
  const qe = await env.queueEvents();
  await env.worker({ concurrency: 20 });
  const cases = Array.from({ length: 100 }, (_, i) => ({ ...PAYLOADS[i % PAYLOADS.length], message: MESSAGES[i % MESSAGES.length] }));
  const jobs = await Promise.all(
    cases.map((c, i) => q.add(`rt-${i}`, echoJob({ serviceId: `svc-${i}`, config: { details: c.details, message: c.message, delay_ms: i % 7 } }))),
  );
  const results = await Promise.all(jobs.map((j) => j.waitUntilFinished(qe, 60_000)));
  for (let i = 0; i < jobs.length; i++) {
    const c = cases[i];
    assert.deepEqual(results[i].details, c.details, `${c.what}: details via QueueEvents`);
    assert.equal(results[i].message, c.message, `${c.what}: message via QueueEvents`);
    assert.equal(results[i].serviceId, `svc-${i}`);
    const fetched = await q.getJob(jobs[i].id);
    assert.deepEqual(fetched.returnvalue, results[i], `${c.what}: Queue.getJob().returnvalue`);
  }
  // Every completed event's returnvalue is valid JSON (one that is not stops
  // QueueEvents' consumer for good).
  const completed = (await env.events()).filter((e) => e.event === 'completed');
  assert.equal(completed.length, 100);
  for (const e of completed) assert.doesNotThrow(() => JSON.parse(e.returnvalue), `completed event of job ${e.jobId}`);
  // And the consumer is still alive.
  const last = await q.add('after', echoJob({ config: { details: { done: true } } }));
  assert.deepEqual((await last.waitUntilFinished(qe, 15_000)).details, { done: true });
}));

test('events stream: active prev=waiting, completed returnvalue, failed failedReason, delayed delay = absolute due time', { timeout: 60_000 }, suite.run(async (env) => {
  const q = env.queue();
  const qe = await env.queueEvents();
  const seen = [];
  for (const name of ['active', 'completed', 'failed', 'delayed', 'waiting'])
    qe.on(name, (args) => seen.push({ name, ...args }));
  await env.worker();
  const ok = await q.add('ok', echoJob({ config: { details: { k: 'v' } } }));
  const bad = await q.add('bad', echoJob({ config: { throw: 'stream failure' } }), { attempts: 2, backoff: 300 });
  await waitCompleted(env, [ok.id], 10_000);
  await waitFailed(env, [bad.id], 10_000);
  await sleep(200);

  const ev = await env.events();
  const of = (id, name) => ev.filter((e) => e.jobId === id && e.event === name);
  const [activeOk] = of(ok.id, 'active');
  assert.equal(activeOk.prev, 'waiting');
  const [completedOk] = of(ok.id, 'completed');
  assert.equal(completedOk.prev, 'active');
  assert.deepEqual(JSON.parse(completedOk.returnvalue), JSON.parse((await env.jobHash(ok.id)).returnvalue));
  assert.deepEqual(JSON.parse(completedOk.returnvalue).details, { k: 'v' });

  const [delayedBad] = of(bad.id, 'delayed');
  const due = Number(delayedBad.delay);
  assert.ok(due > 1e12, `delay is an absolute timestamp, got ${delayedBad.delay}`);
  assert.ok(Math.abs(due - delayedBad.ts - 300) <= 150, `due ${due} is 300 ms after the event (${delayedBad.ts})`);
  const failedBad = of(bad.id, 'failed');
  assert.equal(failedBad.length, 1);
  assert.equal(failedBad[0].prev, 'active');
  assert.match(failedBad[0].failedReason, /stream failure/);

  // QueueEvents turned them into the events Node listeners rely on.
  const by = (id, name) => seen.filter((s) => s.jobId === id && s.name === name);
  assert.equal(by(ok.id, 'active')[0]?.prev, 'waiting');
  assert.deepEqual(by(ok.id, 'completed')[0]?.returnvalue?.details, { k: 'v' });
  assert.match(by(bad.id, 'failed')[0]?.failedReason ?? '', /stream failure/);
  assert.equal(by(bad.id, 'delayed')[0]?.delay, due);
}));

test('removeOnComplete true / false / count / {age, count}', { timeout: 60_000 }, suite.run(async (env) => {
  const q = env.queue();
  const qe = await env.queueEvents();
  await env.worker({ concurrency: 1 });
  const completedKey = env.key(QUEUE, 'completed');
  // Listened for before the adds: a job removed on completion may be gone
  // before job.waitUntilFinished() could look it up.
  const returned = new Map();
  qe.on('completed', ({ jobId, returnvalue }) => returned.set(jobId, returnvalue));
  const finished = (jobs) =>
    waitFor(() => jobs.every((j) => returned.has(j.id)), 10_000, `completed events of jobs ${jobs.map((j) => j.id)}`, {
      seen: () => [...returned.keys()],
    });

  // true: the hash is gone at once, but the completed event carried the value.
  const gone = await q.add('gone', echoJob({ config: { details: { kept: 'in the event' } } }), { removeOnComplete: true });
  await finished([gone]);
  assert.deepEqual(returned.get(gone.id).details, { kept: 'in the event' });
  await waitFor(async () => (await env.r.exists(env.key(QUEUE, gone.id))) === 0, 2000, 'the removeOnComplete:true job hash to be deleted');
  assert.equal(await env.r.zscore(completedKey, gone.id), null);

  // false: kept.
  const kept = await q.add('kept', echoJob(), { removeOnComplete: false });
  await finished([kept]);
  assert.notEqual(await env.r.zscore(completedKey, kept.id), null);
  assert.equal((await env.jobHash(kept.id)).name, 'kept');

  // count 3: the completed set keeps the newest 3, trimmed hashes are deleted.
  const counted = [];
  // 5 ms each, so that no two share a finishedOn (ties would order by id text).
  for (let i = 0; i < 6; i++) counted.push(await q.add(`count-${i}`, echoJob({ config: { delay_ms: 5 } }), { removeOnComplete: 3 }));
  await finished(counted);
  assert.equal(await env.r.zcard(completedKey), 3, 'ZCARD completed after count 3');
  const survivors = await env.r.zrange(completedKey, 0, -1);
  assert.deepEqual(survivors.sort(), counted.slice(3).map((j) => j.id).sort(), 'the newest three survive (concurrency 1)');
  for (const j of counted.slice(0, 3)) assert.equal(await env.r.exists(env.key(QUEUE, j.id)), 0, `trimmed hash of ${j.name}`);
  assert.equal(await env.r.exists(env.key(QUEUE, kept.id)), 0, 'count trims the whole set, including other jobs');

  // {age: 1, count: 100}: a job older than 1 s is dropped when a later one finishes.
  const old = await q.add('old', echoJob(), { removeOnComplete: { age: 1, count: 100 } });
  await finished([old]);
  await sleep(2100);
  const fresh = await q.add('fresh', echoJob(), { removeOnComplete: { age: 1, count: 100 } });
  await finished([fresh]);
  assert.equal(await env.r.zscore(completedKey, old.id), null, 'a 2 s old job removed under age 1');
  assert.equal(await env.r.exists(env.key(QUEUE, old.id)), 0);
  assert.notEqual(await env.r.zscore(completedKey, fresh.id), null, 'the fresh job is kept');

  // {age: 3600, count: 4}: count applies.
  const many = [];
  for (let i = 0; i < 6; i++) many.push(await q.add(`many-${i}`, echoJob(), { removeOnComplete: { age: 3600, count: 4 } }));
  await finished(many);
  assert.equal(await env.r.zcard(completedKey), 4);
}));

test('removeOnFail true / count / {age}; failures kept by default', { timeout: 60_000 }, suite.run(async (env) => {
  const q = env.queue();
  await env.worker({ concurrency: 1 });
  const failedKey = env.key(QUEUE, 'failed');
  const failing = echoJob({ config: { throw: 'always' } });

  const keptByDefault = await q.add('default', failing);
  const gone = await q.add('gone', failing, { removeOnFail: true });
  const kept = await q.add('kept', failing, { removeOnFail: { age: 86400 } });
  await waitFailed(env, [keptByDefault.id, kept.id], 10_000);
  await waitFor(async () => (await env.r.exists(env.key(QUEUE, gone.id))) === 0, 5000, 'the removeOnFail:true job hash to be deleted');
  assert.equal(await env.r.zscore(failedKey, gone.id), null);
  assert.equal((await env.jobHash(keptByDefault.id)).failedReason.includes('always'), true);
  assert.notEqual(await env.r.zscore(failedKey, kept.id), null);

  const counted = [];
  for (let i = 0; i < 5; i++) counted.push(await q.add(`count-${i}`, failing, { removeOnFail: 2 }));
  await waitFor(async () => { const c = await jobCounts(env); return c.wait + c.active === 0; }, 10_000, 'the counted jobs to finish');
  await waitFor(async () => (await env.r.zcard(failedKey)) === 2, 5000, 'ZCARD failed to be 2 after removeOnFail: 2', {
    seen: () => env.r.zrange(failedKey, 0, -1),
  });
}));

test('pb is the worker id; queue.getWorkers() lists the worker by its CLIENT SETNAME', { timeout: 60_000 }, suite.run(async (env) => {
  const q = env.queue();
  const w = await env.worker({ id: 'interop-named-worker' });
  const job = await q.add('check', echoJob());
  await waitCompleted(env, [job.id], 10_000);
  assert.equal((await env.jobHash(job.id)).pb, 'interop-named-worker');

  const expected = `${PREFIX}:${Buffer.from(QUEUE).toString('base64')}:w:interop-named-worker`;
  const workers = await waitFor(
    async () => {
      const list = await q.getWorkers();
      return list.some((c) => c.rawname === expected) && list;
    },
    5000,
    `getWorkers() to list a client named ${expected}`,
    { seen: () => q.getWorkers() },
  );
  assert.ok(workers.every((c) => c.name === QUEUE));

  assert.equal(await w.stop(), 0, 'exit code of a graceful stop');
  await waitFor(async () => !(await q.getWorkers()).some((c) => c.rawname === expected), 5000, 'the stopped worker to leave getWorkers()');
}));

test('deduplication: one job for two adds; the dedup key is released when our worker completes it', { timeout: 60_000 }, suite.run(async (env) => {
  const q = env.queue();
  await q.pause();
  const first = await q.add('check', echoJob({ serviceId: 'dedup' }), { deduplication: { id: 'svc-x' } });
  const second = await q.add('check', echoJob({ serviceId: 'dedup' }), { deduplication: { id: 'svc-x' } });
  assert.equal(second.id, first.id, 'the second add is deduplicated');
  assert.equal(await env.r.get(env.key(QUEUE, 'de', 'svc-x')), first.id);
  await env.worker();
  await q.resume();
  await waitCompleted(env, [first.id], 10_000);
  assert.equal(await env.r.exists(env.key(QUEUE, 'de', 'svc-x')), 0, 'dedup key deleted when the job finished');
  const ev = await env.events();
  assert.equal(ev.filter((e) => e.event === 'deduplicated').length, 1);
  const third = await q.add('check', echoJob({ serviceId: 'dedup' }), { deduplication: { id: 'svc-x' } });
  assert.notEqual(third.id, first.id, 'a new add after completion creates a new job');
  await waitCompleted(env, [third.id], 10_000);
}));
