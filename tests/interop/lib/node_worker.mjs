// A Node bullmq Worker that behaves like guardant-worker in queue mode, as
// far as the queue can tell. Used as the second kind of worker in mixed
// fleets, and in place of the C++ worker (GUARDANT_INTEROP_WORKER=node) to
// validate the suite before the C++ worker exists.
//
// Usage: node node_worker.mjs '<json options>'
//   { id, region, concurrency, drainTimeoutMs, queues, lockDurationMs,
//     stalledIntervalMs, maxStalledCount, redisPort, prefix }
// Prints "node-worker ready" once every Worker is connected.
//
// Semantics emulated (see tests/interop/echo_probe.cpp and
// engine/results/check_record.cpp for the C++ side):
//  - job data {nestId, service:{id, nestId?, type, target, config?}} or flat
//    {nestId, serviceId, type, target, config}; anything malformed fails at
//    once without retry, failedReason "malformed job data: <field> ...";
//  - the `echo` probe, with its config keys delay_ms, status, message,
//    details, throw, fail_once_file;
//  - a check result completes the job with the result record as returnvalue;
//    a probe that threw fails the job (retryable) with "probe threw: <text>";
//  - SIGTERM: stop fetching, let running jobs finish for up to
//    drainTimeoutMs, hand the rest back to wait (no stall counted), exit 0.
//    A second SIGTERM/SIGINT exits at once.
import fs from 'node:fs';

import { Job, Queue, UnrecoverableError, Worker } from 'bullmq';

const opts = JSON.parse(process.argv[2]);
const queueNames = opts.queues.map((q) => q.replaceAll('{region}', opts.region));
const log = (...args) => console.log(`[${new Date().toISOString()}] node-worker ${opts.id}:`, ...args);

class ConfigError extends UnrecoverableError {}

// ---------------------------------------------------------------------------
// Job data → check request
// ---------------------------------------------------------------------------

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

function malformed(what) {
  return new UnrecoverableError(`malformed job data: ${what}`);
}

function parseJobData(data) {
  if (!isObject(data)) throw malformed(`data must be a JSON object, got ${Array.isArray(data) ? 'array' : data === null ? 'null' : typeof data}`);
  let svc;
  let where;
  if (data.service !== undefined) {
    if (!isObject(data.service)) throw malformed('service must be an object');
    svc = { id: data.service.id, nestId: data.service.nestId ?? data.nestId, type: data.service.type, target: data.service.target, config: data.service.config };
    where = 'service.';
  } else {
    svc = { id: data.serviceId, nestId: data.nestId, type: data.type, target: data.target, config: data.config };
    where = '';
  }
  if (typeof svc.type !== 'string') throw malformed(`${where}type must be a string`);
  if (typeof svc.target !== 'string') throw malformed(`${where}target must be a string`);
  if (svc.config !== undefined && svc.config !== null && !isObject(svc.config)) throw malformed(`${where}config must be an object`);
  return {
    serviceId: svc.id === undefined || svc.id === null ? '' : String(svc.id),
    nestId: typeof (data.nestId ?? svc.nestId) === 'string' ? data.nestId ?? svc.nestId : null,
    type: svc.type,
    target: svc.target,
    config: svc.config ?? {},
  };
}

// ---------------------------------------------------------------------------
// The echo probe
// ---------------------------------------------------------------------------

const round3 = (v) => Math.round(v * 1000) / 1000;

function option(config, key, type) {
  const v = config[key];
  if (v === undefined || v === null) return undefined;
  const got = Array.isArray(v) ? 'array' : typeof v;
  if (got !== type) throw new ConfigError(`option '${key}' must be a ${type}, got ${got}`);
  return v;
}

async function runEcho(target, config) {
  const delayMs = option(config, 'delay_ms', 'number') ?? 0;
  if (delayMs < 0 || delayMs > 3_600_000) throw new ConfigError("option 'delay_ms' must be a number between 0 and 3600000");
  const status = option(config, 'status', 'string') ?? 'up';
  if (!['up', 'down', 'degraded'].includes(status))
    throw new ConfigError(`option 'status' must be one of "up", "down", "degraded", got "${status}"`);
  const message = option(config, 'message', 'string') ?? `echo ${target}`;
  const details = config.details ?? undefined;
  const throwText = option(config, 'throw', 'string');
  const failOnceFile = option(config, 'fail_once_file', 'string');

  const started = performance.now();
  await new Promise((resolve) => setTimeout(resolve, delayMs));
  if (failOnceFile !== undefined) {
    let created = false;
    try {
      fs.writeFileSync(failOnceFile, '', { flag: 'wx' });
      created = true;
    } catch (e) {
      if (e.code !== 'EEXIST') throw new Error(`probe threw: fail_once_file: cannot create ${failOnceFile}: ${e.message}`);
    }
    if (created) throw new Error('probe threw: failing once');
  }
  if (throwText !== undefined) throw new Error(`probe threw: ${throwText}`);

  const elapsed = performance.now() - started;
  let failure = null;
  if (status === 'down') failure = { reason: 'assertion', phase: 'assert', detail: message };
  if (status === 'degraded') failure = { reason: 'slow_response', phase: null, detail: message };
  // The record builder keeps details only when they are a JSON object.
  const recordDetails = details === undefined ? {} : isObject(details) ? details : { invalidDetails: 'details are not a JSON object' };
  return { status, responseTime: round3(elapsed), message, timings: { total: round3(elapsed) }, failure, details: recordDetails };
}

// ---------------------------------------------------------------------------
// Processing
// ---------------------------------------------------------------------------

const active = new Map(); // `${queue}/${jobId}` → { job, token, done }

async function process_(job, token) {
  const key = `${job.queueName}/${job.id}`;
  let finished;
  active.set(key, { job, token, done: new Promise((r) => (finished = r)) });
  try {
    const req = parseJobData(job.data);
    if (req.type !== 'echo') throw new Error(`no probe for type '${req.type}' on this worker`);
    const r = await runEcho(req.target, req.config);
    return {
      status: r.status,
      responseTime: r.responseTime,
      message: r.message,
      timings: r.timings,
      failure: r.failure,
      details: r.details,
      serviceId: req.serviceId,
      nestId: req.nestId,
      workerId: opts.id,
      region: opts.region,
      checkedAt: Date.now(),
      probe: { type: req.type, plugin: 'interop-echo', version: '1.0.0' },
    };
  } finally {
    active.delete(key);
    finished();
  }
}

const connection = { host: '127.0.0.1', port: opts.redisPort };
const workers = queueNames.map((name) => {
  const w = new Worker(name, process_, {
    connection,
    prefix: opts.prefix,
    name: opts.id,
    concurrency: opts.concurrency,
    lockDuration: opts.lockDurationMs,
    stalledInterval: opts.stalledIntervalMs,
    maxStalledCount: opts.maxStalledCount,
    autorun: true,
  });
  w.on('error', (err) => log(`error on ${name}:`, err?.message ?? err));
  w.on('active', (job) => log(`active ${name}/${job.id}`));
  w.on('completed', (job) => log(`completed ${name}/${job.id}`));
  w.on('failed', (job, err) => log(`failed ${name}/${job?.id}: ${err?.message}`));
  w.on('stalled', (id) => log(`stalled ${name}/${id}`));
  return w;
});

let stopping = false;
async function gracefulStop(signal) {
  if (stopping) {
    log(`second ${signal}: exiting now`);
    process.exit(0);
  }
  stopping = true;
  log(`${signal}: draining ${active.size} job(s) for up to ${opts.drainTimeoutMs} ms`);
  await Promise.all(workers.map((w) => w.pause(true)));
  const drained = Promise.all([...active.values()].map((e) => e.done));
  let timer;
  await Promise.race([drained, new Promise((r) => (timer = setTimeout(r, opts.drainTimeoutMs)))]);
  clearTimeout(timer);
  const left = [...active.values()].map(({ job, token }) => ({ queueName: job.queueName, id: job.id, token }));
  // Close the Workers first: a paused Worker may still be inside its marker
  // wait and would fetch a job handed back under its nose.
  await Promise.allSettled(workers.map((w) => w.close(true)));
  for (const { queueName, id, token } of left) {
    const q = new Queue(queueName, { connection, prefix: opts.prefix });
    try {
      const job = await Job.fromId(q, id);
      await job.moveToWait(token);
      log(`handed ${queueName}/${id} back to wait`);
    } catch (e) {
      log(`could not hand ${queueName}/${id} back: ${e.message}`);
    } finally {
      await q.close();
    }
  }
  log('stopped');
  process.exit(0);
}
process.on('SIGTERM', () => gracefulStop('SIGTERM'));
process.on('SIGINT', () => gracefulStop('SIGINT'));

await Promise.all(workers.map((w) => w.waitUntilReady()));
log(`node-worker ready on ${queueNames.join(', ')}`);
