// bench/queue: one measurement, the drain of a full queue by one worker.
//
//   node drain.mjs --impl ours|node --kind trivial|web --concurrency C --jobs N
//                  [--target URL] [--worker-bin PATH] [--plugin-dirs D1:D2]
//                  [--work DIR] [--max-seconds S] [--monitor] [--repeat R]
//
// Procedure (bench/README.md, "Queue mode"):
//   1. a fresh redis-server on a free 127.0.0.1 port (--save "" --appendonly no)
//   2. pause the queue "bench", add N jobs with Queue.addBulk in chunks of
//      1,000, default job options (completed jobs are kept, as BullMQ keeps
//      them unless told otherwise; the same for both workers)
//   3. start the worker (ours: guardant-worker --config <generated toml>,
//      ready when GET /ready answers 200; node: node_worker.mjs, ready when it
//      prints "ready" after Worker.waitUntilReady()), then let it settle 0.5 s
//   4. sample the worker's utime+stime (/proc/<pid>/stat) and Redis's
//      INFO cpu/stats/commandstats, resume the queue, poll ZCARD completed
//      and failed until they add up to N (every 2 ms near the end, rarely
//      before), sample again
//   5. read the worker's VmHWM, stop the worker and Redis
// Prints one JSON object on stdout. With --monitor, a MONITOR connection
// counts every command of the drain by origin (the worker's connections or a
// Lua script); MONITOR slows Redis down, so run.sh uses it only in separate,
// untimed protocol runs.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import IORedis from 'ioredis';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const QUEUE = 'bench';
const PREFIX = 'bull';
const CHUNK = 1000;
const POLL_MIN_MS = 2;
const POLL_MAX_MS = 100;
const SETTLE_MS = 500;

function parseArgs(argv) {
  const o = { maxSeconds: 120, monitor: false, repeat: 0, pluginDirs: '' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => argv[++i];
    switch (a) {
      case '--impl': o.impl = next(); break;
      case '--kind': o.kind = next(); break;
      case '--concurrency': o.concurrency = Number(next()); break;
      case '--jobs': o.jobs = Number(next()); break;
      case '--target': o.target = next(); break;
      case '--worker-bin': o.workerBin = next(); break;
      case '--plugin-dirs': o.pluginDirs = next(); break;
      case '--work': o.work = next(); break;
      case '--max-seconds': o.maxSeconds = Number(next()); break;
      case '--monitor': o.monitor = true; break;
      case '--repeat': o.repeat = Number(next()); break;
      default: throw new Error(`unknown argument ${a}`);
    }
  }
  if (!['ours', 'node'].includes(o.impl)) throw new Error('--impl ours|node');
  if (!['trivial', 'web'].includes(o.kind)) throw new Error('--kind trivial|web');
  if (!(o.concurrency > 0) || !(o.jobs > 0)) throw new Error('--concurrency and --jobs must be > 0');
  if (o.kind === 'web' && !o.target) throw new Error('--kind web needs --target');
  if (o.impl === 'ours' && !o.workerBin) throw new Error('--impl ours needs --worker-bin');
  o.work ??= fs.mkdtempSync("/tmp/guardant-qbench-");
  fs.mkdirSync(o.work, { recursive: true });
  return o;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// utime + stime of the whole process (every thread, living or exited), in
// clock ticks. The command name may hold spaces, so fields count from ')'.
function cpuTicks(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(f[11]), sys: Number(f[12]) }; // fields 14 and 15 of stat(5)
}
function statusKib(pid, key) {
  const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm'));
  return m ? Number(m[1]) : null;
}
const CLK_TCK = 100; // getconf CLK_TCK on Linux (USER_HZ); run.sh checks it
// On-CPU nanoseconds of the threads alive now (/proc/<pid>/task/*/schedstat):
// finer than the ticks above, but blind to threads that exited; recorded as
// a cross-check of the tick figure.
function schedNs(pid) {
  let ns = 0;
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(fs.readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      /* the thread exited meanwhile */
    }
  }
  return ns;
}

function parseInfo(text) {
  const info = {};
  const cmd = {};
  for (const line of text.split('\r\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.indexOf(':');
    const k = line.slice(0, i);
    const v = line.slice(i + 1);
    if (k.startsWith('cmdstat_')) {
      const e = Object.fromEntries(v.split(',').map((kv) => kv.split('=')));
      cmd[k.slice(8)] = { calls: Number(e.calls), usec: Number(e.usec) };
    } else {
      info[k] = v;
    }
  }
  return { info, cmd };
}

async function waitFor(what, fn, timeoutMs, stepMs = 50) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await fn()) return;
    } catch {
      /* not yet */
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(stepMs);
  }
}

// Starts a child; its exit is observable as `exited` (a promise).
function start(cmd, args, logFile, opts = {}) {
  const log = fs.openSync(logFile, 'a');
  const child = spawn(cmd, args, { stdio: ['ignore', opts.pipeStdout ? 'pipe' : log, log], ...opts.spawn });
  child.exited = new Promise((resolve) => child.on('exit', (code, sig) => resolve({ code, sig })));
  fs.closeSync(log);
  return child;
}

async function stop(child, graceMs = 10000) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await child.exited;
  clearTimeout(t);
}

function oursConfig(o, redisPort, healthPort) {
  const dirs = o.pluginDirs.split(':').filter(Boolean);
  return `# generated by bench/queue/drain.mjs
mode = "queue"
[worker]
id = "bench-cpp"
region = "default"
concurrency = ${o.concurrency}
[log]
level = "info"
[plugins]
dirs = [${dirs.map((d) => JSON.stringify(d)).join(', ')}]
[redis]
host = "127.0.0.1"
port = ${redisPort}
[queue]
names = ["${QUEUE}"]
prefix = "${PREFIX}"
[health]
bind = "127.0.0.1"
port = ${healthPort}
# Node's Worker has no per-nest limits: no limit here either (a job with no
# tier gets the default tier; "unlimited" costs no round trip).
[limits]
default_tier = "unlimited"
[results]
jsonl = ""
[results.stream]
enabled = false
[results.status]
enabled = false
`;
}

function jobsFor(o, from, to) {
  const type = o.kind === 'trivial' ? 'noop' : 'web';
  const target = o.kind === 'trivial' ? 'noop' : o.target;
  const jobs = [];
  for (let i = from; i < to; i++)
    jobs.push({ name: 'check', data: { nestId: 'bench', service: { id: `svc-${i}`, type, target, config: {} } } });
  return jobs;
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const tag = `${o.impl}-${o.kind}-c${o.concurrency}-r${o.repeat}${o.monitor ? '-mon' : ''}`;
  const redisPort = await freePort();
  const redis = start(
    'redis-server',
    ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
     '--dir', o.work, '--daemonize', 'no', '--loglevel', 'warning'],
    path.join(o.work, `redis-${tag}.log`),
  );
  let worker;
  const clients = [];
  try {
    const r = new IORedis({ host: '127.0.0.1', port: redisPort, lazyConnect: true, maxRetriesPerRequest: 1 });
    r.on('error', () => {}); // refused until redis-server listens; waitFor retries
    clients.push(r);
    await waitFor('redis-server', async () => {
      if (r.status !== 'ready') await r.connect();
      return (await r.ping()) === 'PONG';
    }, 10000);
    const q = new Queue(QUEUE, { connection: { host: '127.0.0.1', port: redisPort }, prefix: PREFIX });
    clients.push(q);
    await q.pause();
    const addStart = Date.now();
    for (let i = 0; i < o.jobs; i += CHUNK) await q.addBulk(jobsFor(o, i, Math.min(i + CHUNK, o.jobs)));
    const addMs = Date.now() - addStart;
    const waiting = await q.getWaitingCount();
    if (waiting !== o.jobs) throw new Error(`expected ${o.jobs} waiting jobs, found ${waiting}`);

    // Every connection so far is this driver's (MONITOR leaves them out).
    const driverPorts = new Set(
      [...(await r.client('LIST')).matchAll(/addr=[^ ]*:(\d+) /g)].map((m) => Number(m[1])),
    );

    // ------------------------------------------------------------ worker
    const workerLog = path.join(o.work, `worker-${tag}.log`);
    const spawnedAt = Date.now();
    if (o.impl === 'ours') {
      const healthPort = await freePort();
      const conf = path.join(o.work, `worker-${tag}.toml`);
      fs.writeFileSync(conf, oursConfig(o, redisPort, healthPort));
      worker = start(o.workerBin, ['--config', conf], workerLog);
      await waitFor('guardant-worker /ready', async () => {
        if (worker.exitCode !== null) throw new Error('exited');
        const res = await fetch(`http://127.0.0.1:${healthPort}/ready`);
        await res.arrayBuffer();
        return res.status === 200;
      }, 20000);
    } else {
      worker = start(process.execPath,
        [path.join(HERE, 'node_worker.mjs'), String(redisPort), QUEUE, String(o.concurrency)],
        workerLog, { pipeStdout: true });
      await new Promise((resolve, reject) => {
        let buf = '';
        const t = setTimeout(() => reject(new Error('node worker not ready after 20 s')), 20000);
        worker.stdout.on('data', (d) => {
          buf += d;
          if (buf.includes('ready\n')) {
            clearTimeout(t);
            resolve();
          }
        });
        worker.exited.then(() => reject(new Error('node worker exited before it was ready')));
      });
    }
    const readyMs = Date.now() - spawnedAt;
    if (worker.exitCode !== null) throw new Error(`worker exited early; see ${workerLog}`);
    await sleep(SETTLE_MS);

    // ------------------------------------------------------------ monitor (protocol runs only)
    let mon;
    const seen = { client: {}, lua: {}, connections: new Set() };
    if (o.monitor) {
      const m = new IORedis({ host: '127.0.0.1', port: redisPort });
      clients.push(m);
      await m.ping();
      const monId = await m.client('ID');
      const monAddr = (await r.client('LIST')).split('\n').find((l) => l.startsWith(`id=${monId} `));
      driverPorts.add(Number(monAddr.match(/addr=[^ ]*:(\d+) /)[1]));
      mon = await m.monitor();
      clients.push(mon);
      mon.on('monitor', (_time, args, source) => {
        const name = String(args[0]).toLowerCase();
        if (source === 'lua') {
          seen.lua[name] = (seen.lua[name] ?? 0) + 1;
          return;
        }
        const port = Number(String(source).split(':').pop());
        if (driverPorts.has(port)) return;
        seen.connections.add(port);
        seen.client[name] = (seen.client[name] ?? 0) + 1;
      });
      await sleep(100);
    }

    // ------------------------------------------------------------ drain
    const completedKey = `${PREFIX}:${QUEUE}:completed`;
    const failedKey = `${PREFIX}:${QUEUE}:failed`;
    const rssReadyKib = statusKib(worker.pid, 'VmRSS');
    const cpu0 = cpuTicks(worker.pid);
    const sched0 = schedNs(worker.pid);
    const info0 = parseInfo(await r.info('cpu', 'stats', 'commandstats'));
    const t0 = process.hrtime.bigint();
    await q.resume();
    let polls = 0;
    let done = 0;
    let failed = 0;
    const deadline = Date.now() + o.maxSeconds * 1000;
    for (;;) {
      const [[, c], [, f]] = await r.pipeline().zcard(completedKey).zcard(failedKey).exec();
      polls++;
      done = c;
      failed = f;
      if (c + f >= o.jobs) break;
      if (Date.now() > deadline) throw new Error(`drain not done after ${o.maxSeconds} s (${c} completed, ${f} failed)`);
      if (worker.exitCode !== null) throw new Error(`worker exited during the drain; see ${workerLog}`);
      // Each poll costs Redis a wake-up (tens of µs), so poll rarely while
      // the end is far and every 2 ms when it is near: a third of the time
      // the rate so far says is left, within [2, 100] ms.
      const elapsedMs = Number(process.hrtime.bigint() - t0) / 1e6;
      const leftMs = c + f > 0 ? ((o.jobs - c - f) * elapsedMs) / (c + f) : 3 * POLL_MAX_MS;
      await sleep(Math.min(POLL_MAX_MS, Math.max(POLL_MIN_MS, leftMs / 3)));
    }
    const t1 = process.hrtime.bigint();
    const cpu1 = cpuTicks(worker.pid);
    const sched1 = schedNs(worker.pid);
    const threads = fs.readdirSync(`/proc/${worker.pid}/task`).length;
    const info1 = parseInfo(await r.info('cpu', 'stats', 'commandstats'));
    const peakRssKib = statusKib(worker.pid, 'VmHWM');
    const rssEndKib = statusKib(worker.pid, 'VmRSS');
    const redisPeakRssKib = statusKib(redis.pid, 'VmHWM');
    if (mon) {
      // MONITOR lines trail the commands; let the last ones of the drain arrive.
      await sleep(300);
      mon.disconnect();
    }

    // ------------------------------------------------------------ figures
    const seconds = Number(t1 - t0) / 1e9;
    const num = (s, k) => Number(s.info[k] ?? 0);
    const redisCpu = (s) => num(s, 'used_cpu_user') + num(s, 'used_cpu_sys');
    // Commands of the drain, all origins (a script's own calls included, as
    // Redis counts them), less what this driver sent: its polls (2 ZCARD
    // each) and one INFO. The resume (one script) is left in: a constant.
    const commands = {};
    for (const [name, s1] of Object.entries(info1.cmd)) {
      const s0 = info0.cmd[name] ?? { calls: 0, usec: 0 };
      let calls = s1.calls - s0.calls;
      if (name === 'zcard') calls -= 2 * polls;
      if (name === 'info') calls -= 1;
      if (calls > 0) commands[name] = { calls, usec: s1.usec - s0.usec };
    }
    const sample = await r.hget(`${PREFIX}:${QUEUE}:1`, 'returnvalue');
    const rec = {
      impl: o.impl,
      kind: o.kind,
      concurrency: o.concurrency,
      repeat: o.repeat,
      jobs: o.jobs,
      completed: done,
      failed,
      seconds,
      jobs_per_s: o.jobs / seconds,
      worker_cpu_s: (cpu1.user + cpu1.sys - cpu0.user - cpu0.sys) / CLK_TCK,
      worker_user_s: (cpu1.user - cpu0.user) / CLK_TCK,
      worker_sys_s: (cpu1.sys - cpu0.sys) / CLK_TCK,
      worker_sched_cpu_s: (sched1 - sched0) / 1e9,
      worker_threads: threads,
      redis_cpu_s: redisCpu(info1) - redisCpu(info0),
      redis_user_s: num(info1, 'used_cpu_user') - num(info0, 'used_cpu_user'),
      redis_sys_s: num(info1, 'used_cpu_sys') - num(info0, 'used_cpu_sys'),
      worker_peak_rss_kib: peakRssKib,
      worker_rss_ready_kib: rssReadyKib,
      worker_rss_end_kib: rssEndKib,
      redis_peak_rss_kib: redisPeakRssKib,
      redis_net_in_bytes: num(info1, 'total_net_input_bytes') - num(info0, 'total_net_input_bytes'),
      redis_net_out_bytes: num(info1, 'total_net_output_bytes') - num(info0, 'total_net_output_bytes'),
      commands,
      polls,
      add_ms: addMs,
      ready_ms: readyMs,
      returnvalue_bytes: sample ? Buffer.byteLength(sample) : 0,
      returnvalue_sample: o.repeat <= 1 ? sample : undefined,
    };
    if (o.monitor) {
      rec.monitor = {
        client: seen.client,
        lua: seen.lua,
        worker_connections_seen: seen.connections.size,
      };
    }
    process.stdout.write(JSON.stringify(rec) + '\n');
  } finally {
    await stop(worker);
    for (const c of clients.reverse()) {
      try {
        if (typeof c.close === 'function') await c.close();
        else c.disconnect();
      } catch {
        /* going away anyway */
      }
    }
    await stop(redis);
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`drain.mjs: ${e.stack ?? e}`);
    process.exit(1);
  },
);
