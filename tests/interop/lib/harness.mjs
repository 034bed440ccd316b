// Test harness of the BullMQ interop suite.
//
// Starts the real parts a test needs and cleans them up: a redis-server on a
// free 127.0.0.1 port, workers (the C++ guardant-worker binary, or Node
// workers running lib/node_worker.mjs), bullmq Queues and QueueEvents.
//
// Which implementation plays "the C++ worker" is chosen by the environment:
//   GUARDANT_INTEROP_WORKER=cpp (default)  spawn $GUARDANT_WORKER_BIN
//   GUARDANT_INTEROP_WORKER=node           a Node worker emulating it
// so the whole suite can be validated against Node first.
//
// Other environment: GUARDANT_INTEROP_PLUGIN_DIR (the echo probe),
// GUARDANT_PLUGIN_DIR (the built-in probes), GUARDANT_INTEROP_KEEP_LOGS=1
// keeps the temp dirs with the worker logs even when tests pass.
//
// Usage in a test file:
//   const suite = interopSuite();              // one redis-server per file
//   test('name', { timeout: 60_000 }, suite.run(async (env) => { ... }));
// `env` is a fresh TestEnv per test (Redis flushed); whatever it started is
// stopped when the test ends, and the logs of its workers are printed when
// the test fails.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';

import { Queue, QueueEvents } from 'bullmq';
import IORedis from 'ioredis';

const here = path.dirname(fileURLToPath(import.meta.url));

export const WORKER_KIND = process.env.GUARDANT_INTEROP_WORKER || 'cpp';
if (!['cpp', 'node'].includes(WORKER_KIND))
  throw new Error(`GUARDANT_INTEROP_WORKER must be "cpp" or "node", got "${WORKER_KIND}"`);

export const PREFIX = 'bull';
export const QUEUE = 'monitoring';
// The echo plugin's identity as the C++ worker reports it in `probe`.
export const ECHO_PLUGIN = { type: 'echo', plugin: 'interop-echo', version: '1.0.0' };

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const show = (v) => {
  try {
    const s = JSON.stringify(v);
    return s === undefined ? String(v) : s.length > 2000 ? `${s.slice(0, 2000)}…` : s;
  } catch {
    return String(v);
  }
};

// Thrown by a waitFor() predicate when waiting longer is pointless (e.g. the
// process being waited for has exited): waitFor rethrows it at once.
export class FatalWaitError extends Error {}

// Polls `fn` (sync or async) until it returns a truthy value, which is
// returned. Fails after `timeoutMs` with a message naming what was awaited
// and what was seen last (the last value, or what `seen()` describes).
export async function waitFor(fn, timeoutMs, what, { interval = 25, seen } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  let lastError;
  for (;;) {
    try {
      last = await fn();
      lastError = undefined;
      if (last) return last;
    } catch (e) {
      if (e instanceof FatalWaitError) throw e;
      lastError = e;
    }
    if (Date.now() >= deadline) break;
    await sleep(interval);
  }
  let detail;
  try {
    detail = seen ? await seen() : last;
  } catch (e) {
    detail = `(seen() threw: ${e.message})`;
  }
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${what}; last seen: ${show(detail)}` +
      (lastError ? `; last error: ${lastError.message}` : ''),
  );
}

// Races a promise against a deadline, naming what was awaited.
export async function within(promise, timeoutMs, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// A port that was free a moment ago on 127.0.0.1.
export async function freePort() {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address();
  srv.close();
  await once(srv, 'close');
  return port;
}

// GET on 127.0.0.1: { status, body } (status 0 when nothing answered).
export function httpGet(port, urlPath, timeoutMs = 2000) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, timeout: timeoutMs }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', () => resolve({ status: 0, body: '' }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve({ status: 0, body: '' }));
  });
}

function httpGetStatus(port, urlPath, timeoutMs = 1000) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(0));
  });
}

// Data of a job for the echo probe, in the nested form the API produces.
export function echoJob({ serviceId = 'svc-1', nestId = 'nest-1', target = 'target-1', config = {} } = {}) {
  return { nestId, service: { id: serviceId, nestId, type: 'echo', target, config } };
}

// Processes started by any test of this file, killed at exit whatever happens
// (a timed-out test never reaches its own cleanup).
const children = new Set();
process.on('exit', () => {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
});

// Captures a child's stdout+stderr into a log file and a bounded in-memory
// tail, so a failing test can print what its workers said.
class OutputLog {
  constructor(file) {
    this.file = file;
    this.fd = fs.openSync(file, 'a');
    this.tail = [];
    this.partial = '';
  }
  attach(stream, tag) {
    stream.on('data', (chunk) => {
      const text = chunk.toString('utf8');
      try {
        fs.writeSync(this.fd, text);
      } catch {
        /* closed */
      }
      const lines = (this.partial + text).split('\n');
      this.partial = lines.pop();
      for (const l of lines) this.tail.push(tag ? `${tag} ${l}` : l);
      if (this.tail.length > 4000) this.tail.splice(0, this.tail.length - 3000);
    });
  }
  text(maxLines = 300) {
    const lines = this.partial ? [...this.tail, this.partial] : this.tail;
    return lines.slice(-maxLines).join('\n');
  }
  grep(re) {
    return fs.readFileSync(this.file, 'utf8').split('\n').filter((l) => re.test(l));
  }
  close() {
    try {
      fs.closeSync(this.fd);
    } catch {
      /* closed */
    }
  }
}

// ---------------------------------------------------------------------------
// redis-server
// ---------------------------------------------------------------------------

export class RedisServer {
  // persistent: appendonly with fsync on every write, in `dir`, so that
  // restart() keeps every acknowledged write.
  constructor({ dir, persistent = false }) {
    this.dir = dir;
    this.persistent = persistent;
    this.port = 0;
    this.proc = null;
    this.log = null;
    this.clients = new Set();
  }

  static async start(opts) {
    const server = new RedisServer(opts);
    server.port = await freePort();
    await server.spawn();
    return server;
  }

  get connection() {
    return { host: '127.0.0.1', port: this.port };
  }

  async spawn() {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--dir', this.dir];
    args.push(...(this.persistent ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']));
    if (!this.log) this.log = new OutputLog(path.join(this.dir, 'redis.log'));
    const proc = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(proc);
    proc.on('exit', () => children.delete(proc));
    this.log.attach(proc.stdout);
    this.log.attach(proc.stderr);
    this.proc = proc;
    const spawnError = new Promise((_, reject) => proc.on('error', reject));
    await within(Promise.race([this.waitForPing(), spawnError]), 10_000, `redis-server on port ${this.port} to answer PING`);
  }

  async waitForPing() {
    await waitFor(
      async () => {
        if (this.proc.exitCode !== null) throw new Error(`redis-server exited with ${this.proc.exitCode}:\n${this.log.text(30)}`);
        const c = new IORedis({ ...this.connection, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
        c.on('error', () => {});
        try {
          await c.connect();
          return (await c.ping()) === 'PONG';
        } catch {
          return false;
        } finally {
          c.disconnect();
        }
      },
      10_000,
      `PING on redis port ${this.port}`,
    );
  }

  // A raw client (commands as ioredis methods), closed with the server.
  client() {
    const c = new IORedis({ ...this.connection, maxRetriesPerRequest: null });
    c.on('error', () => {}); // reconnects by itself; errors surface on commands
    this.clients.add(c);
    return c;
  }

  async kill() {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode) return;
    const exited = once(this.proc, 'exit');
    this.proc.kill('SIGKILL');
    await within(exited, 10_000, 'redis-server to exit after SIGKILL');
  }

  async stop() {
    for (const c of this.clients) c.disconnect();
    this.clients.clear();
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode) return;
    const exited = once(this.proc, 'exit');
    this.proc.kill('SIGTERM');
    await within(exited, 10_000, 'redis-server to exit after SIGTERM');
    this.log.close();
  }

  // Crash (SIGKILL) and start again on the same port; with `persistent`
  // nothing acknowledged is lost.
  async restart() {
    await this.kill();
    await this.spawn();
  }
}

// ---------------------------------------------------------------------------
// Workers
// ---------------------------------------------------------------------------

// Options common to both implementations (names as in the C++ TOML, camelCase):
//   id, region, concurrency, drainTimeoutMs, queues (names, "{region}"
//   expanded by the worker), lockDurationMs, stalledIntervalMs, maxStalledCount
// C++ worker only (the Node worker ignores them; left out, the TOML does not
// set them and the worker's defaults apply, except [limits], see below):
//   capabilities      [worker] capabilities (array of probe types)
//   maxHandbacks, handbackDelayMs   [queue] max_handbacks, handback_delay_ms
//   limits            { defaultTier, windowMs, tiers: { name: n | "unlimited" } };
//                     when absent, default_tier = "unlimited"
//   waitReady         false: start() returns once the process is spawned
//                     instead of waiting for GET /ready (a worker expected
//                     to refuse to start)
//   results           { jsonl, spoolPath, stream: { enabled, key, maxlen },
//                     status: { enabled, prefix } }: the [results] sections,
//                     a key left out keeps the worker's default; when absent,
//                     jsonl = "" and the stream and status sinks are off
const WORKER_DEFAULTS = {
  region: 'test',
  concurrency: 10,
  drainTimeoutMs: 10_000,
  queues: [QUEUE],
  lockDurationMs: 30_000,
  stalledIntervalMs: 30_000,
  maxStalledCount: 1,
};

// dir/base+ext, or dir/base-2+ext, -3 ... when taken (two workers of a test
// may share an id).
function unusedPath(dir, base, ext) {
  let p = path.join(dir, base + ext);
  for (let n = 2; fs.existsSync(p); n++) p = path.join(dir, `${base}-${n}${ext}`);
  return p;
}

class WorkerProcess {
  constructor(kind, opts, logDir) {
    this.kind = kind;
    this.opts = opts;
    this.id = opts.id;
    this.logDir = logDir;
    this.log = new OutputLog(unusedPath(logDir, `${kind}-${opts.id}`, '.log'));
    this.proc = null;
    this.exit = null; // Promise<{code, signal}>
  }

  get pid() {
    return this.proc?.pid;
  }

  get running() {
    return this.proc && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  launch(cmd, args, env) {
    const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    this.proc = proc;
    children.add(proc);
    this.log.attach(proc.stdout);
    this.log.attach(proc.stderr);
    this.exit = new Promise((resolve) => {
      proc.on('exit', (code, signal) => {
        children.delete(proc);
        resolve({ code, signal });
      });
      proc.on('error', (err) => {
        this.log.tail.push(`spawn error: ${err.message}`);
        children.delete(proc);
        resolve({ code: -1, signal: null, error: err });
      });
    });
  }

  async failIfExited(what) {
    if (!this.running) {
      const { code, signal, error } = await this.exit;
      throw new FatalWaitError(
        `${this.describe()} exited (code ${code}, signal ${signal}${error ? `, ${error.message}` : ''}) ${what}\n` +
          `--- log of ${this.describe()} ---\n${this.log.text(60)}`,
      );
    }
  }

  describe() {
    return `${this.kind} worker ${this.id}`;
  }

  // SIGTERM: graceful stop. Resolves with the exit code (null if by signal).
  async stop(timeoutMs = 30_000) {
    if (!this.running) return (await this.exit).code;
    this.proc.kill('SIGTERM');
    const { code } = await within(this.exit, timeoutMs, `${this.describe()} to exit after SIGTERM`);
    return code;
  }

  signal(sig) {
    if (this.running) this.proc.kill(sig);
  }

  // SIGKILL: a crash. Resolves once the process is gone.
  async kill() {
    if (!this.running) return;
    this.proc.kill('SIGKILL');
    await within(this.exit, 10_000, `${this.describe()} to die after SIGKILL`);
  }
}

function tomlString(s) {
  return JSON.stringify(s); // TOML basic strings accept JSON's escapes
}

// The environment of a guardant-worker process: the config file is the whole
// truth, so no env override may change it.
export function cppWorkerEnv() {
  const env = { ...process.env };
  for (const k of ['REDIS_HOST', 'REDIS_PORT', 'REDIS_PASSWORD', 'WORKER_ID', 'WORKER_CONCURRENCY', 'WORKER_REGION',
    'WORKER_CAPABILITIES', 'HEALTH_PORT', 'LOG_LEVEL', 'GUARDANT_CONFIG'])
    delete env[k];
  return env;
}

export class CppWorker extends WorkerProcess {
  constructor(opts, logDir) {
    super('cpp', opts, logDir);
  }

  config(redisPort) {
    const o = this.opts;
    const pluginDirs = [process.env.GUARDANT_INTEROP_PLUGIN_DIR, process.env.GUARDANT_PLUGIN_DIR].filter(Boolean);
    return `# written by tests/interop/lib/harness.mjs
mode = "queue"

[worker]
id = ${tomlString(o.id)}
region = ${tomlString(o.region)}
concurrency = ${o.concurrency}
drain_timeout_ms = ${o.drainTimeoutMs}
${o.capabilities ? `capabilities = [${o.capabilities.map(tomlString).join(', ')}]\n` : ''}
[log]
level = "debug"

[plugins]
dirs = [${pluginDirs.map(tomlString).join(', ')}]

[redis]
host = "127.0.0.1"
port = ${redisPort}

[queue]
names = [${o.queues.map(tomlString).join(', ')}]
prefix = ${tomlString(PREFIX)}
lock_duration_ms = ${o.lockDurationMs}
stalled_interval_ms = ${o.stalledIntervalMs}
max_stalled_count = ${o.maxStalledCount}
${o.maxHandbacks !== undefined ? `max_handbacks = ${o.maxHandbacks}\n` : ''}${o.handbackDelayMs !== undefined ? `handback_delay_ms = ${o.handbackDelayMs}\n` : ''}
[health]
enabled = true
bind = "127.0.0.1"
port = ${this.healthPort}

${this.limitsToml()}
${this.resultsToml()}`;
  }

  resultsToml() {
    const r = this.opts.results;
    // Result persistence is not what most of this suite tests: by default
    // nothing but the returnvalue.
    if (!r) return '[results]\njsonl = ""\n\n[results.stream]\nenabled = false\n\n[results.status]\nenabled = false\n';
    const keys = (o, names) =>
      Object.entries(names).filter(([js]) => o?.[js] !== undefined).map(([js, toml]) => {
        const v = o[js];
        return `${toml} = ${typeof v === 'string' ? tomlString(v) : v}\n`;
      }).join('');
    return `[results]\njsonl = ${tomlString(r.jsonl ?? '')}\n${keys(r, { spoolPath: 'spool_path' })}` +
      `\n[results.stream]\n${keys(r.stream, { enabled: 'enabled', key: 'key', maxlen: 'maxlen' })}` +
      `\n[results.status]\n${keys(r.status, { enabled: 'enabled', prefix: 'prefix' })}`;
  }

  limitsToml() {
    const l = this.opts.limits;
    // Nest rate limits are not what most of this suite tests: by default
    // never delay a job for them.
    if (!l) return '# Nest rate limits are not what this suite tests: never delay a job for them.\n[limits]\ndefault_tier = "unlimited"\n';
    let t = `[limits]\ndefault_tier = ${tomlString(l.defaultTier ?? 'unlimited')}\n`;
    if (l.windowMs !== undefined) t += `window_ms = ${l.windowMs}\n`;
    if (l.tiers) {
      t += '\n[limits.tiers]\n';
      for (const [name, v] of Object.entries(l.tiers)) t += `${name} = ${typeof v === 'string' ? tomlString(v) : v}\n`;
    }
    return t;
  }

  // The worker's /metrics text (Prometheus exposition).
  async metrics() {
    const { status, body } = await httpGet(this.healthPort, '/metrics');
    if (status !== 200) throw new Error(`${this.describe()}: GET /metrics answered ${status}`);
    return body;
  }

  // Writes the TOML this worker runs with (also what `guardant-worker
  // workers --config` or `--check-config` can be pointed at).
  async writeConfig(redisPort) {
    this.healthPort = await freePort();
    this.configFile = unusedPath(this.logDir, `cpp-${this.id}`, '.toml');
    fs.writeFileSync(this.configFile, this.config(redisPort));
    return this.configFile;
  }

  async start(redisPort) {
    const bin = process.env.GUARDANT_WORKER_BIN;
    if (!bin) throw new Error('GUARDANT_WORKER_BIN is not set (ctest sets it; or run with GUARDANT_INTEROP_WORKER=node)');
    if (!process.env.GUARDANT_INTEROP_PLUGIN_DIR)
      throw new Error('GUARDANT_INTEROP_PLUGIN_DIR is not set: the echo probe cannot be found');
    const file = await this.writeConfig(redisPort);
    this.launch(bin, ['--config', file], cppWorkerEnv());
    if (this.opts.waitReady === false) return;
    await waitFor(
      async () => {
        await this.failIfExited('before it was ready');
        return (await httpGetStatus(this.healthPort, '/ready')) === 200;
      },
      20_000,
      `${this.describe()}: GET /ready on port ${this.healthPort} to answer 200`,
      { interval: 50, seen: () => this.log.text(20) },
    );
  }
}

export class NodeWorker extends WorkerProcess {
  constructor(opts, logDir) {
    super('node', opts, logDir);
  }

  async start(redisPort) {
    const cfg = { ...this.opts, redisPort, prefix: PREFIX };
    this.launch(process.execPath, [path.join(here, 'node_worker.mjs'), JSON.stringify(cfg)], process.env);
    await waitFor(
      async () => {
        await this.failIfExited('before it was ready');
        return this.log.tail.some((l) => l.includes('node-worker ready'));
      },
      20_000,
      `${this.describe()} to print "node-worker ready"`,
      { interval: 25, seen: () => this.log.text(20) },
    );
  }
}

// Runs $GUARDANT_WORKER_BIN once with `args` (a one-shot command such as
// `workers` or `--check-config`, or a worker expected to exit by itself) and
// resolves { code, signal, stdout, stderr }; killed and rejected after
// `timeoutMs`.
export async function runWorkerCommand(args, { timeoutMs = 15_000 } = {}) {
  const bin = process.env.GUARDANT_WORKER_BIN;
  if (!bin) throw new Error('GUARDANT_WORKER_BIN is not set (ctest sets it)');
  const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: cppWorkerEnv() });
  children.add(proc);
  const out = [];
  const err = [];
  proc.stdout.on('data', (c) => out.push(c));
  proc.stderr.on('data', (c) => err.push(c));
  const done = new Promise((resolve, reject) => {
    proc.on('error', reject);
    proc.on('close', (code, signal) => {
      children.delete(proc);
      resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
  });
  try {
    return await within(done, timeoutMs, `guardant-worker ${args.join(' ')} to exit`);
  } catch (e) {
    proc.kill('SIGKILL');
    throw new Error(`${e.message}\nstdout: ${Buffer.concat(out).toString('utf8')}\nstderr: ${Buffer.concat(err).toString('utf8')}`);
  }
}

// ---------------------------------------------------------------------------
// Per-test environment
// ---------------------------------------------------------------------------

let workerCounter = 0;

export class TestEnv {
  constructor(redis, logDir) {
    this.redis = redis;
    this.logDir = logDir;
    this.r = redis.client();
    this.workers = [];
    this.closables = [];
  }

  // The implementation under test (GUARDANT_INTEROP_WORKER).
  async worker(opts = {}) {
    return WORKER_KIND === 'node' ? this.nodeWorker(opts) : this.cppWorker(opts);
  }

  async cppWorker(opts = {}) {
    const o = { ...WORKER_DEFAULTS, id: `cpp-${++workerCounter}`, ...opts };
    return this.launchWorker(WORKER_KIND === 'node' ? new NodeWorker(o, this.logDir) : new CppWorker(o, this.logDir));
  }

  // Always a Node worker (mixed fleets).
  async nodeWorker(opts = {}) {
    const o = { ...WORKER_DEFAULTS, id: `node-${++workerCounter}`, ...opts };
    return this.launchWorker(new NodeWorker(o, this.logDir));
  }

  // Writes the TOML a C++ worker with these options would run with, without
  // starting it (for `--check-config`, or a process the test spawns itself).
  async cppConfigFile(opts = {}) {
    const w = new CppWorker({ ...WORKER_DEFAULTS, id: `cpp-${++workerCounter}`, ...opts }, this.logDir);
    return w.writeConfig(this.redis.port);
  }

  // The names of the brief.
  startCppWorker(opts) {
    return this.cppWorker(opts);
  }
  startNodeWorker(opts) {
    return this.nodeWorker(opts);
  }

  async launchWorker(w) {
    this.workers.push(w);
    await w.start(this.redis.port);
    return w;
  }

  // A bullmq Queue (producer side), closed when the test ends.
  queue(name = QUEUE, opts = {}) {
    const q = new Queue(name, { connection: this.redis.connection, prefix: PREFIX, ...opts });
    q.on('error', () => {}); // connection errors while Redis restarts; commands still report theirs
    q.setMaxListeners(0); // many concurrent add() calls each listen for 'closing'
    this.closables.push(q);
    return q;
  }

  // A QueueEvents listener, ready (its XREAD started) when this resolves.
  async queueEvents(name = QUEUE) {
    const qe = new QueueEvents(name, { connection: this.redis.connection, prefix: PREFIX });
    qe.on('error', () => {});
    this.closables.push(qe);
    await qe.waitUntilReady();
    // QueueEvents reads from "$": give its first XREAD a moment to be issued.
    await sleep(100);
    return qe;
  }

  key(...parts) {
    return [PREFIX, ...parts].join(':');
  }

  // The job's hash as Redis holds it ({} when it does not exist).
  async jobHash(id, queue = QUEUE) {
    return this.r.hgetall(this.key(queue, id));
  }

  // Every entry of the queue's events stream, oldest first:
  // { id, ts (ms, Redis clock), event, ...fields }.
  async events(queue = QUEUE) {
    const entries = await this.r.xrange(this.key(queue, 'events'), '-', '+');
    return entries.map(([id, fields]) => {
      const e = { id, ts: Number(id.split('-')[0]) };
      for (let i = 0; i + 1 < fields.length; i += 2) e[fields[i]] = fields[i + 1];
      return e;
    });
  }

  // Worker log tails, for failure reports.
  dumpLogs() {
    const parts = [];
    for (const w of this.workers)
      parts.push(`----- ${w.describe()} (pid ${w.pid}, log ${w.log.file}) -----\n${w.log.text(200)}`);
    return parts.join('\n');
  }

  async close() {
    await Promise.allSettled(this.workers.map((w) => w.kill()));
    for (const w of this.workers) w.log.close();
    await Promise.allSettled(this.closables.map((c) => within(c.close(), 5000, 'bullmq close')));
    try {
      await within(this.r.flushall(), 5000, 'FLUSHALL');
    } catch {
      /* the next test's FLUSHALL will tell */
    }
  }
}

// One redis-server per test file; `run(fn)` wraps a test body with a fresh
// TestEnv, prints the workers' logs if it fails, and cleans up either way.
export function interopSuite({ persistent = false } = {}) {
  const state = { redis: null, dir: null, failed: false };
  before(async () => {
    state.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'guardant-interop-'));
    state.redis = await RedisServer.start({ dir: state.dir, persistent });
  });
  after(async () => {
    if (state.redis) await state.redis.stop();
    if (state.failed || process.env.GUARDANT_INTEROP_KEEP_LOGS) {
      process.stderr.write(`interop: logs kept in ${state.dir}\n`);
    } else if (state.dir) {
      fs.rmSync(state.dir, { recursive: true, force: true });
    }
  });
  return {
    get redis() {
      return state.redis;
    },
    run(fn) {
      return async (t) => {
        const logDir = fs.mkdtempSync(path.join(state.dir, 'test-'));
        const env = new TestEnv(state.redis, logDir);
        env.t = t;
        await env.r.flushall();
        try {
          await fn(env, t);
        } catch (e) {
          state.failed = true;
          process.stderr.write(
            `\n===== ${t.name} failed (worker kind: ${WORKER_KIND}): ${e?.message}\n${env.dumpLogs()}\n===== end of logs\n`,
          );
          throw e;
        } finally {
          await env.close();
        }
      };
    },
  };
}

// ---------------------------------------------------------------------------
// Assertions on queue state
// ---------------------------------------------------------------------------

// Waits until every id is in the completed set; fails naming the ids left
// and their states.
export async function waitCompleted(env, ids, timeoutMs, queue = QUEUE) {
  const key = env.key(queue, 'completed');
  await waitFor(
    async () => {
      const scores = await Promise.all(ids.map((id) => env.r.zscore(key, id)));
      return scores.every((s) => s !== null);
    },
    timeoutMs,
    `${ids.length} job(s) to complete on ${queue}`,
    {
      interval: 50,
      seen: async () => {
        const left = [];
        for (const id of ids) if ((await env.r.zscore(key, id)) === null) left.push(id);
        const sample = await Promise.all(
          left.slice(0, 5).map(async (id) => ({ id, hash: await env.jobHash(id, queue) })),
        );
        return { left: left.length, of: ids.length, sample, counts: await jobCounts(env, queue) };
      },
    },
  );
}

export async function waitFailed(env, ids, timeoutMs, queue = QUEUE) {
  const key = env.key(queue, 'failed');
  await waitFor(
    async () => (await Promise.all(ids.map((id) => env.r.zscore(key, id)))).every((s) => s !== null),
    timeoutMs,
    `${ids.length} job(s) to fail on ${queue}`,
    {
      interval: 50,
      seen: async () => ({
        counts: await jobCounts(env, queue),
        jobs: await Promise.all(ids.slice(0, 5).map(async (id) => ({ id, hash: await env.jobHash(id, queue) }))),
      }),
    },
  );
}

export async function jobCounts(env, queue = QUEUE) {
  const k = (s) => env.key(queue, s);
  const [wait, active, prioritized, delayed, completed, failed] = await Promise.all([
    env.r.llen(k('wait')),
    env.r.llen(k('active')),
    env.r.zcard(k('prioritized')),
    env.r.zcard(k('delayed')),
    env.r.zcard(k('completed')),
    env.r.zcard(k('failed')),
  ]);
  return { wait, active, prioritized, delayed, completed, failed };
}
