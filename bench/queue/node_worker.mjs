// bench/queue: the Node side we are compared with, a plain bullmq Worker
// (the package pinned in package.json) with bullmq's defaults except the
// concurrency. It runs the bench's two job kinds the way guardant-worker does
// and returns a result record of the same shape (shared/spec/jobs-and-results.md):
//
//   noop  completes `up` at once (an async function returning the record)
//   web   GET service.target with Node's http module on a fresh connection
//         (agent: false, so `Connection: close`, as our web probe opens a
//         new connection per check by default), reads the whole body, `up`
//         on 2xx/3xx, otherwise `down`
//
// Usage (bench/queue/drain.mjs starts it):
//   node node_worker.mjs <redis port> <queue> <concurrency> [worker name]
// Prints "ready" on stdout once the Worker's connections are ready; exits on
// SIGTERM after closing the Worker.
import http from 'node:http';
import { Worker } from 'bullmq';

const [port, queueName, concurrencyArg, name = 'bench-node'] = process.argv.slice(2);
const concurrency = Number(concurrencyArg);
if (!port || !queueName || !(concurrency > 0)) {
  console.error('usage: node node_worker.mjs <redis port> <queue> <concurrency> [worker name]');
  process.exit(2);
}
const WEB_TIMEOUT_MS = 30000; // guardant's default_timeout_ms

function record(service, job, fields) {
  return {
    status: 'up',
    responseTime: 0,
    message: '',
    timings: {},
    failure: null,
    details: {},
    ...fields,
    serviceId: service.id,
    nestId: job.data.nestId ?? null,
    workerId: name,
    region: 'default',
    checkedAt: Date.now(),
    probe: { type: service.type, plugin: 'bench-node', version: '1.0.0' },
  };
}

const ms = (t0) => Math.round(Number(process.hrtime.bigint() - t0) / 1000) / 1000;

function web(service, job) {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    let connectMs;
    let firstByteMs;
    const down = (reason, phase, detail) =>
      resolve(
        record(service, job, {
          status: 'down',
          responseTime: ms(t0),
          message: detail,
          timings: { total: ms(t0) },
          failure: { reason, phase, detail },
        }),
      );
    const req = http.get(service.target, { agent: false, timeout: WEB_TIMEOUT_MS }, (res) => {
      firstByteMs = ms(t0);
      let bytes = 0;
      res.on('data', (chunk) => {
        bytes += chunk.length;
      });
      res.on('end', () => {
        const total = ms(t0);
        const ok = res.statusCode >= 200 && res.statusCode < 400;
        const message = `HTTP ${res.statusCode}`;
        resolve(
          record(service, job, {
            status: ok ? 'up' : 'down',
            responseTime: total,
            message,
            statusCode: res.statusCode,
            timings: { connect: connectMs, wait: firstByteMs, total },
            failure: ok ? null : { reason: 'http_status', phase: 'assert', detail: message },
            details: { bytes },
          }),
        );
      });
      res.on('error', (e) => down('transfer_error', 'transfer', e.message));
    });
    req.on('socket', (s) => s.on('connect', () => (connectMs = ms(t0))));
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (e) => down('connect_error', 'connect', e.message));
  });
}

async function processor(job) {
  const service = job.data.service;
  if (service.type === 'noop') return record(service, job, { message: 'noop' });
  if (service.type === 'web') return web(service, job);
  throw new Error(`no probe for type '${service.type}'`);
}

const worker = new Worker(queueName, processor, {
  connection: { host: '127.0.0.1', port: Number(port) },
  name,
  concurrency,
});
worker.on('error', (e) => console.error('worker error:', e?.message ?? e));
await worker.waitUntilReady();
process.stdout.write('ready\n');

let closing = false;
process.on('SIGTERM', async () => {
  if (closing) process.exit(0);
  closing = true;
  await worker.close(true).catch(() => {});
  process.exit(0);
});
