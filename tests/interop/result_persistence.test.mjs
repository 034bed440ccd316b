// Result persistence in queue mode, seen from outside: every check result is
// written beside the BullMQ returnvalue to the results stream, the last
// status hash of its service and a JSON Lines file; while Redis is away the
// results wait in the spool file and reach the stream, in order and once
// each, when it is back, across a worker crash too; a damaged trailing spool
// record is reported and skipped. The bullmq npm package is the producer;
// everything else is the guardant-worker binary on a real redis-server
// (appendonly with fsync always, so a killed and restarted server keeps every
// acknowledged write).
//
// Formats: engine/results/redis_result_writer.hpp (stream fields, status
// hash, idempotency markers), engine/results/result_spool.hpp (spool records
// `<len>\t<crc32>\t<json>\n`), engine/results/result_persister.hpp (spooled
// payloads, metrics).
//
// Result persistence exists only in the C++ worker: with
// GUARDANT_INTEROP_WORKER=node every test here is skipped, saying so.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import zlib from 'node:zlib';

import { echoJob, interopSuite, jobCounts, QUEUE, sleep, waitCompleted, waitFor, WORKER_KIND } from './lib/harness.mjs';

const suite = interopSuite({ persistent: true });

const cppOnly =
  WORKER_KIND === 'node' ? 'result persistence (stream, status hash, spool) is a C++ worker feature the Node emulation does not have' : false;

const STREAM = 'guardant:results';
const STATUS_PREFIX = 'guardant:status:';
const MARKER_PREFIX = 'guardant:results:written:';
const STREAM_FIELDS = ['result', 'serviceId', 'nestId', 'status', 'checkedAt', 'workerId', 'region', 'idempotencyKey'];

// The idempotency key of a job attempt (worker_app.cpp: queue:jobId:ats).
const keyOf = (jobId, attempt = 1) => `${QUEUE}:${jobId}:${attempt}`;

// Entries of the results stream, oldest first, as { id, ...fields }.
async function streamEntries(env) {
  const entries = await env.r.xrange(STREAM, '-', '+');
  return entries.map(([id, fields]) => {
    const e = { id };
    for (let i = 0; i + 1 < fields.length; i += 2) e[fields[i]] = fields[i + 1];
    return e;
  });
}

async function waitStreamLength(env, n, timeoutMs, what) {
  return waitFor(
    async () => {
      const entries = await streamEntries(env);
      return entries.length >= n ? entries : null;
    },
    timeoutMs,
    `${n} entries in ${STREAM} (${what})`,
    { interval: 50, seen: async () => (await streamEntries(env)).map((e) => e.idempotencyKey) },
  );
}

// One spool record line, as ResultSpool::encode writes it.
function encodeSpoolRecord(payload) {
  const bytes = Buffer.from(payload, 'utf8');
  return `${bytes.length}\t${zlib.crc32(bytes).toString(16).padStart(8, '0')}\t${payload}\n`;
}

// The spool file's records, each checked (length, CRC) and parsed; a damaged
// record fails the assertion (the tests read spools only the worker wrote).
function spoolRecords(file) {
  if (!fs.existsSync(file)) return [];
  const text = fs.readFileSync(file);
  const out = [];
  let at = 0;
  while (at < text.length) {
    const nl = text.indexOf(0x0a, at);
    assert.ok(nl >= 0, `spool ${file}: a record without its newline at offset ${at}`);
    const line = text.subarray(at, nl).toString('utf8');
    const m = /^(\d+)\t([0-9a-f]{8})\t(.*)$/s.exec(line);
    assert.ok(m, `spool ${file}: malformed record at offset ${at}: ${line.slice(0, 200)}`);
    const payload = Buffer.from(m[3], 'utf8');
    assert.equal(payload.length, Number(m[1]), `spool record at ${at}: length`);
    assert.equal(zlib.crc32(payload).toString(16).padStart(8, '0'), m[2], `spool record at ${at}: crc32`);
    out.push(JSON.parse(m[3]));
    at = nl + 1;
  }
  return out;
}

const fileSize = (file) => (fs.existsSync(file) ? fs.statSync(file).size : 0);

// The value of one sample of /metrics (0 when the sample is not there yet).
async function metric(w, name, labels = '') {
  const text = await w.metrics();
  const sample = `${name}${labels ? `{${labels}}` : ''}`;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    if (sp > 0 && line.slice(0, sp) === sample) return Number(line.slice(sp + 1));
  }
  return 0;
}

function jsonlRecords(file) {
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l));
}

// A completed job's returnvalue, parsed.
async function returnvalue(env, jobId) {
  const h = await env.jobHash(jobId);
  assert.ok(h.returnvalue, `job ${jobId} has a returnvalue: ${JSON.stringify(h)}`);
  return JSON.parse(h.returnvalue);
}

// Waits until every given job is active at the worker (its check started).
async function waitActive(env, ids, timeoutMs) {
  await waitFor(
    async () => {
      const active = await env.r.lrange(env.key(QUEUE, 'active'), 0, -1);
      const processed = await Promise.all(ids.map(async (id) => (await env.jobHash(id)).processedOn));
      return ids.every((id, i) => active.includes(id) && processed[i]);
    },
    timeoutMs,
    `jobs ${ids.join(', ')} to be active`,
    { interval: 10, seen: () => jobCounts(env) },
  );
}

// Every entry has each stream field, and one idempotency key at most once.
function assertOncePerKey(entries, what) {
  const seen = new Map();
  for (const e of entries) {
    for (const f of STREAM_FIELDS) assert.ok(Object.hasOwn(e, f), `${what}: entry ${e.id} lacks "${f}": ${JSON.stringify(e)}`);
    seen.set(e.idempotencyKey, (seen.get(e.idempotencyKey) ?? 0) + 1);
  }
  const twice = [...seen].filter(([, n]) => n > 1);
  assert.deepEqual(twice, [], `${what}: results written more than once`);
}

test('sinks: every result is in the stream (= returnvalue), the last status per service, JSON Lines and an idempotency marker', { timeout: 30_000, skip: cppOnly }, suite.run(async (env) => {
  const jsonl = path.join(env.logDir, 'results.jsonl');
  const w = await env.cppWorker({ region: 'persist-region', results: { jsonl, spoolPath: path.join(env.logDir, 'spool') } });
  const q = env.queue();
  // 4 services x 3 rounds; a later round runs longer, so each service's
  // latest result is its round 2 (checkedAt 100+ ms after round 1's).
  const jobs = [];
  for (let round = 0; round < 3; round++) {
    for (let s = 0; s < 4; s++) {
      const status = (s + round) % 3 === 1 ? 'down' : (s + round) % 5 === 2 ? 'degraded' : 'up';
      const job = await q.add('check', echoJob({
        serviceId: `svc-${s}`,
        nestId: `nest-${s % 2}`,
        config: { delay_ms: 150 * round, status, message: `svc-${s} round ${round} ${status}` },
      }));
      jobs.push({ job, s, round, status });
    }
  }
  const N = jobs.length;
  await waitCompleted(env, jobs.map((j) => j.job.id), 15_000);
  const entries = await waitStreamLength(env, N, 10_000, 'one per job');
  assert.equal(entries.length, N, 'one stream entry per job');
  assertOncePerKey(entries, 'stream');
  const statuses = new Set();
  for (const { job, status } of jobs) {
    const rv = await returnvalue(env, job.id);
    const key = keyOf(job.id);
    const e = entries.find((x) => x.idempotencyKey === key);
    assert.ok(e, `a stream entry with idempotencyKey ${key}: ${JSON.stringify(entries.map((x) => x.idempotencyKey))}`);
    assert.deepEqual(JSON.parse(e.result), rv, `job ${job.id}: the stream's result is the returnvalue`);
    assert.equal(rv.status, status);
    statuses.add(rv.status);
    assert.equal(e.serviceId, job.data.service.id);
    assert.equal(e.nestId, job.data.nestId);
    assert.equal(e.status, rv.status);
    assert.equal(e.checkedAt, String(rv.checkedAt));
    assert.equal(e.workerId, w.id);
    assert.equal(e.region, 'persist-region');
    const ttl = await env.r.pttl(MARKER_PREFIX + key);
    assert.ok(ttl > 23 * 3600_000 && ttl <= 24 * 3600_000, `marker ${MARKER_PREFIX}${key}: PTTL ${ttl} (24 h)`);
  }
  assert.deepEqual([...statuses].sort(), ['degraded', 'down', 'up'], 'up, down and degraded results');

  // The status hash of each service: its round-2 result, which is also its
  // last entry in the stream.
  for (let s = 0; s < 4; s++) {
    const latest = jobs.find((j) => j.s === s && j.round === 2);
    const rv = await returnvalue(env, latest.job.id);
    const hash = await env.r.hgetall(`${STATUS_PREFIX}nest-${s % 2}:svc-${s}`);
    assert.deepEqual(
      { status: hash.status, responseTime: hash.responseTime, checkedAt: hash.checkedAt, workerId: hash.workerId, region: hash.region, message: hash.message },
      { status: rv.status, responseTime: String(rv.responseTime), checkedAt: String(rv.checkedAt), workerId: w.id, region: 'persist-region', message: rv.message },
      `status hash of svc-${s} holds its latest result`,
    );
    const last = entries.filter((e) => e.serviceId === `svc-${s}`).at(-1);
    assert.equal(last.idempotencyKey, keyOf(latest.job.id), `svc-${s}: the latest result is the service's last stream entry`);
  }
  const statusKeys = (await env.r.keys(`${STATUS_PREFIX}*`)).sort();
  assert.deepEqual(statusKeys, [0, 1, 2, 3].map((s) => `${STATUS_PREFIX}nest-${s % 2}:svc-${s}`).sort(), 'one status hash per service');

  // JSON Lines: one line per result, the same records.
  await waitFor(() => jsonlRecords(jsonl).length >= N, 5000, `${N} lines in ${jsonl}`);
  const lines = jsonlRecords(jsonl);
  assert.equal(lines.length, N, 'one JSON line per result');
  const byCheck = (a, b) => a.message.localeCompare(b.message);
  assert.deepEqual(lines.sort(byCheck), entries.map((e) => JSON.parse(e.result)).sort(byCheck), 'JSON Lines hold the stream\'s records');

  assert.equal(await metric(w, 'guardant_results_written_total', 'sink="redis"'), N);
  assert.equal(await metric(w, 'guardant_results_spooled_total'), 0, 'Redis was up: nothing spooled');
  assert.equal(fileSize(path.join(env.logDir, 'spool')), 0, 'the spool file is empty');
}));

test('Redis stopped mid-run: results completed meanwhile go to the spool, then reach the stream in completion order, once each', { timeout: 45_000, skip: cppOnly }, suite.run(async (env) => {
  const jsonl = path.join(env.logDir, 'results.jsonl');
  const spool = path.join(env.logDir, 'spool');
  const w = await env.cppWorker({ results: { jsonl, spoolPath: spool } });
  const q = env.queue();

  // Before the outage: written directly.
  const before = [];
  for (let i = 0; i < 3; i++) before.push(await q.add('check', echoJob({ serviceId: `svc-before-${i}` })));
  await waitCompleted(env, before.map((j) => j.id), 10_000);
  await waitStreamLength(env, 3, 10_000, 'results before the outage');

  // In flight when Redis goes: 6 checks finishing 150 ms apart, last first
  // in the queue so completion order differs from the order they were added.
  // 2 s each: slack for a loaded machine between "all active" and the kill.
  const during = [];
  for (let i = 5; i >= 0; i--) {
    during.push(await q.add('check', echoJob({
      serviceId: `svc-during-${i}`,
      config: { delay_ms: 2000 + 150 * i, status: i % 2 ? 'down' : 'up', message: `during ${i}` },
    })));
  }
  await waitActive(env, during.map((j) => j.id), 1500);
  const killedAt = Date.now();
  await suite.redis.kill();

  // The checks complete with Redis down: their results are spooled.
  await waitFor(() => spoolRecords(spool).length >= 6, 10_000, '6 records in the spool', { seen: () => spoolRecords(spool).map((r) => r.key) });
  const spooled = spoolRecords(spool);
  for (const r of spooled)
    assert.ok(r.record.checkedAt >= killedAt, `${r.serviceId} ended (${r.record.checkedAt}) after Redis was killed (${killedAt})`);
  assert.deepEqual(spooled.map((r) => r.serviceId), [0, 1, 2, 3, 4, 5].map((i) => `svc-during-${i}`), 'spooled in completion order');
  assert.equal(await metric(w, 'guardant_results_spooled_total'), 6);
  assert.equal(await metric(w, 'guardant_results_spool_size'), 6);
  assert.ok(w.running, `${w.describe()} keeps running while Redis is down`);

  await suite.redis.spawn(); // the same port, the AOF keeps everything acknowledged
  const entries = await waitStreamLength(env, 9, 20_000, 'the spooled results after Redis is back');
  await waitFor(async () => fileSize(spool) === 0 && (await metric(w, 'guardant_results_spool_size')) === 0, 10_000, 'the spool to be emptied',
    { seen: async () => ({ bytes: fileSize(spool), gauge: await metric(w, 'guardant_results_spool_size') }) });
  // The queue side writes the held outcomes after its reconnect.
  await waitCompleted(env, [...before, ...during].map((j) => j.id), 20_000);
  await sleep(300); // a duplicate write, if any, would land now

  const final = await streamEntries(env);
  assert.equal(final.length, 9, 'nine results, none twice');
  assertOncePerKey(final, 'stream');
  assert.equal(new Set(final.map((e) => e.serviceId)).size, 9, 'one result per service');
  // Completion order: what the worker recorded (the JSON Lines file is
  // written as each check ends) is the stream's order.
  const completed = jsonlRecords(jsonl).map((r) => r.serviceId);
  assert.deepEqual(final.map((e) => e.serviceId), completed, 'the stream is in completion order');
  assert.deepEqual(completed.slice(3), [0, 1, 2, 3, 4, 5].map((i) => `svc-during-${i}`));
  assert.deepEqual(final.slice(3).map((e) => e.idempotencyKey), spooled.map((r) => r.key), 'the spool flushed in its order');
  for (const job of [...before, ...during]) {
    const e = final.find((x) => x.idempotencyKey === keyOf(job.id));
    assert.ok(e, `job ${job.id} has its result in the stream`);
    assert.deepEqual(JSON.parse(e.result), await returnvalue(env, job.id), `job ${job.id}: stream result = returnvalue`);
  }
  const counts = await jobCounts(env);
  assert.equal(counts.completed, 9);
  assert.equal(counts.failed, 0);
  assert.equal(await metric(w, 'guardant_results_written_total', 'sink="redis"'), 9);
}));

test('worker killed while the spool holds results: a new worker on the same spool writes them all, once each; re-sent, they are skipped', { timeout: 45_000, skip: cppOnly }, suite.run(async (env) => {
  const spool = path.join(env.logDir, 'spool');
  const w1 = await env.cppWorker({ results: { spoolPath: spool } });
  const q = env.queue();
  const jobs = [];
  for (let i = 0; i < 5; i++) {
    jobs.push(await q.add('check', echoJob({ serviceId: `svc-${i}`, config: { delay_ms: 2000 + 100 * i, message: `crash ${i}` } })));
  }
  await waitActive(env, jobs.map((j) => j.id), 1500);
  const killedAt = Date.now();
  await suite.redis.kill();
  await waitFor(() => spoolRecords(spool).length >= 5, 10_000, '5 records in the spool', { seen: () => spoolRecords(spool).map((r) => r.key) });
  await w1.kill(); // SIGKILL: no flush, no clean shutdown
  const spooled = spoolRecords(spool);
  assert.deepEqual(spooled.map((r) => r.key), jobs.map((j) => keyOf(j.id)), 'the spool survives the crash, in completion order');
  for (const r of spooled) {
    assert.equal(r.record.workerId, w1.id);
    assert.ok(r.record.checkedAt >= killedAt, `${r.serviceId} ended after Redis was killed`);
  }
  const spoolBytes = fs.readFileSync(spool);

  await suite.redis.spawn();
  const w2 = await env.cppWorker({ results: { spoolPath: spool } });
  await waitStreamLength(env, 5, 20_000, 'the dead worker\'s spooled results');
  await waitFor(() => fileSize(spool) === 0, 10_000, 'the spool to be emptied', { seen: () => fileSize(spool) });
  await sleep(300); // a duplicate write, if any, would land now
  const final = await streamEntries(env);
  assert.equal(final.length, 5, `five results, none twice: ${JSON.stringify(final.map((e) => e.idempotencyKey))}`);
  assertOncePerKey(final, 'stream');
  assert.deepEqual(final.map((e) => e.idempotencyKey), spooled.map((r) => r.key), 'nothing lost, in spool order');
  for (let i = 0; i < final.length; i++) {
    assert.deepEqual(JSON.parse(final[i].result), spooled[i].record, `entry ${i}: the spooled record`);
    assert.equal(final[i].workerId, w1.id, 'the record names the worker that ran the check');
    assert.equal(await env.r.exists(MARKER_PREFIX + spooled[i].key), 1, `marker of ${spooled[i].key}`);
  }
  assert.equal(await metric(w2, 'guardant_results_written_total', 'sink="redis"'), 5);
  assert.equal(await metric(w2, 'guardant_results_spool_size'), 0);
  assert.ok(w2.log.grep(/5 result\(s\) waiting from an earlier run/).length >= 1, 'the new worker says it found 5 results from an earlier run');

  // A crash after the writes but before the spool was emptied: the next
  // worker sends them all again and the idempotency markers skip every one.
  await w2.kill();
  fs.writeFileSync(spool, spoolBytes);
  const w3 = await env.cppWorker({ results: { spoolPath: spool } });
  await waitFor(async () => fileSize(spool) === 0 && (await metric(w3, 'guardant_results_duplicates_skipped_total')) === 5, 10_000,
    'the re-sent spool to be skipped as duplicates',
    { seen: async () => ({ bytes: fileSize(spool), duplicates: await metric(w3, 'guardant_results_duplicates_skipped_total') }) });
  assert.equal(await metric(w3, 'guardant_results_written_total', 'sink="redis"'), 0, 'nothing written again');
  assert.deepEqual((await streamEntries(env)).map((e) => e.idempotencyKey), spooled.map((r) => r.key), 'still each result once');
}));

test('a damaged trailing spool record: the worker starts, reports it, and flushes the good records', { timeout: 30_000, skip: cppOnly }, suite.run(async (env) => {
  const spool = path.join(env.logDir, 'spool');
  const now = Date.now();
  const good = [0, 1, 2].map((i) => ({
    key: `${QUEUE}:earlier-${i}:1`,
    nestId: 'nest-old',
    serviceId: `svc-old-${i}`,
    record: {
      status: i === 1 ? 'down' : 'up',
      responseTime: 10 + i,
      message: `earlier ${i}`,
      timings: { total: 10 + i },
      failure: null,
      details: {},
      serviceId: `svc-old-${i}`,
      nestId: 'nest-old',
      workerId: 'worker-before',
      region: 'old-region',
      checkedAt: now - 60_000 + i,
      probe: { type: 'echo', plugin: 'interop-echo', version: '1.0.0' },
    },
  }));
  // A crash in the middle of an append: the last record is cut short.
  const torn = encodeSpoolRecord(JSON.stringify({ ...good[0], key: `${QUEUE}:torn:1` }));
  fs.writeFileSync(spool, good.map((g) => encodeSpoolRecord(JSON.stringify(g))).join('') + torn.slice(0, Math.floor(torn.length / 2)));

  const w = await env.cppWorker({ results: { spoolPath: spool } });
  await waitFor(() => w.log.grep(/damaged/).some((l) => l.includes(spool)), 5000, `the worker to log the damaged record of ${spool}`);
  assert.ok((await metric(w, 'guardant_results_spool_corrupt_total')) >= 1, 'guardant_results_spool_corrupt_total >= 1');
  const entries = await waitStreamLength(env, 3, 10_000, 'the good spooled records');
  await waitFor(() => fileSize(spool) === 0, 10_000, 'the spool to be emptied', { seen: () => fileSize(spool) });
  assert.deepEqual(entries.map((e) => e.idempotencyKey), good.map((g) => g.key), 'the good records, in order');
  for (let i = 0; i < 3; i++) {
    assert.deepEqual(JSON.parse(entries[i].result), good[i].record);
    assert.equal(entries[i].serviceId, good[i].serviceId);
    assert.equal(entries[i].status, good[i].record.status);
  }
  const oldStatus = await env.r.hgetall(`${STATUS_PREFIX}nest-old:svc-old-1`);
  assert.equal(oldStatus.status, 'down');
  assert.equal(oldStatus.message, 'earlier 1');

  // The worker goes on as usual: a new check's result follows them.
  const job = await env.queue().add('check', echoJob({ serviceId: 'svc-new' }));
  await waitCompleted(env, [job.id], 10_000);
  const after = await waitStreamLength(env, 4, 10_000, 'the new result after the spooled ones');
  assert.equal(after.length, 4);
  assert.equal(after[3].idempotencyKey, keyOf(job.id));
  assert.deepEqual(JSON.parse(after[3].result), await returnvalue(env, job.id));
  assert.ok(w.running, `${w.describe()} is still running`);
  assert.equal(await metric(w, 'guardant_results_written_total', 'sink="redis"'), 4);
}));
