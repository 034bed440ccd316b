// The fleet features of queue mode, seen from outside: per-nest rate limits
// shared by two workers, the worker registry (record, `workers` command,
// SIGTERM / SIGKILL / duplicate id), routing by probe type, region and
// required capabilities with bounded hand-backs, and bad input (job data,
// tiers, config). The bullmq npm package is the producer; everything else is
// the guardant-worker binary on a real redis-server.
//
// These features exist only in the C++ worker: with GUARDANT_INTEROP_WORKER=
// node every test here is skipped, saying so.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { test } from 'node:test';

import {
  ECHO_PLUGIN,
  interopSuite,
  jobCounts,
  runWorkerCommand,
  sleep,
  waitCompleted,
  waitFailed,
  waitFor,
  within,
  WORKER_KIND,
} from './lib/harness.mjs';

const suite = interopSuite();

const cppOnly =
  WORKER_KIND === 'node'
    ? 'rate limits, the worker registry and routing are C++ worker features the Node emulation does not have'
    : false;

const RATELIMIT_PREFIX = 'guardant:ratelimit:';
const WORKER_PREFIX = 'guardant:workers:';

// Job data of the nested form with a tier and routing of its own.
function checkJob({ nestId, serviceId, type = 'echo', target = 'target-1', config = {}, tier, serviceTier, routing }) {
  const data = { nestId, service: { id: serviceId, nestId, type, target, config } };
  if (tier !== undefined) data.tier = tier;
  if (serviceTier !== undefined) data.service.tier = serviceTier;
  if (routing !== undefined) data.routing = routing;
  return data;
}

// The value of one series of a Prometheus text exposition (undefined: absent).
function metricValue(text, name, labels) {
  const want = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .join(',');
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$/.exec(line);
    if (m && m[1] === name && (m[2] ?? '{}') === `{${want}}`) return Number(m[3]);
  }
  return undefined;
}

// Events of the queue's stream by job id.
async function eventsByJob(env) {
  const by = new Map();
  for (const e of await env.events()) {
    if (!e.jobId) continue;
    if (!by.has(e.jobId)) by.set(e.jobId, []);
    by.get(e.jobId).push(e);
  }
  return by;
}

// Watches a nest's sliding window in Redis (a sorted set of the start times,
// Redis TIME in µs, of the checks the limiter let through in the last
// window) and keeps every entry it ever saw. An entry stays at least one
// window, so polling much faster than that sees all of them: the result is
// the limiter's own log of admissions, on the fleet's one clock.
function watchNestWindows(env, nests, intervalMs = 50) {
  const seen = new Map(nests.map((n) => [n, new Map()]));
  const existed = new Set();
  let running = true;
  const loop = (async () => {
    while (running) {
      for (const n of nests) {
        const z = await env.r.zrange(RATELIMIT_PREFIX + n, 0, -1, 'WITHSCORES');
        if (z.length) existed.add(n);
        for (let i = 0; i + 1 < z.length; i += 2) seen.get(n).set(z[i], Number(z[i + 1]));
      }
      await sleep(intervalMs);
    }
  })();
  return {
    existed,
    // Sorted start times (µs) of the nest's admitted checks.
    starts: (n) => [...seen.get(n).values()].sort((a, b) => a - b),
    stop: async () => {
      running = false;
      await within(loop, 5000, 'the window watcher to stop');
    },
  };
}

test('per-nest rate limits: two workers share a free nest\'s 5 per 2 s, other nests run at once, nothing fails or counts an attempt', { timeout: 60_000, skip: cppOnly }, suite.run(async (env) => {
  const WINDOW_MS = 2000;
  const LIMIT = 5;
  const limits = { defaultTier: 'unlimited', windowMs: WINDOW_MS, tiers: { free: LIMIT } };
  const workers = [await env.cppWorker({ limits }), await env.cppWorker({ limits })];
  const q = env.queue();
  const watch = watchNestWindows(env, ['nest-A', 'nest-B', 'nest-C']);
  const counts = { A: 15, B: 5, C: 10 };
  // A names its tier at the top, B in service.tier, C is unlimited.
  const tierOf = { A: { tier: 'free' }, B: { serviceTier: 'free' }, C: { tier: 'unlimited' } };
  const specs = [];
  for (const [nest, n] of Object.entries(counts))
    for (let i = 0; i < n; i++) specs.push({ nest, i });
  const jobs = await q.addBulk(
    specs.map(({ nest, i }) => ({
      name: `rl-${nest}-${i}`,
      data: checkJob({ nestId: `nest-${nest}`, serviceId: `svc-${nest}-${i}`, ...tierOf[nest] }),
      opts: { attempts: 3 },
    })),
  );
  const idsOf = (nest) => jobs.filter((_, k) => specs[k].nest === nest).map((j) => j.id);
  await waitCompleted(env, jobs.map((j) => j.id), 30_000);
  await sleep(300); // the watcher's last poll; late duplicates would show by now
  await watch.stop();

  const c = await jobCounts(env);
  assert.equal(c.failed, 0, 'nothing failed');
  assert.equal(c.completed, jobs.length, 'every job completed');
  assert.equal(c.delayed + c.wait + c.active + c.prioritized, 0, 'nothing left behind');

  // The limiter's own log: each A job was let through exactly once, and no
  // 2 s window holds more than 5 of them (entry i and i+5 at least a window
  // apart), so the 15 took at least two more windows after the first.
  const a = watch.starts('nest-A');
  assert.equal(a.length, counts.A, `nest A admissions recorded by the limiter: ${a.length}`);
  for (let i = 0; i + LIMIT < a.length; i++)
    assert.ok(
      a[i + LIMIT] - a[i] >= WINDOW_MS * 1000,
      `admissions ${i} and ${i + LIMIT} of nest A are ${(a[i + LIMIT] - a[i]) / 1000} ms apart: 6 in one window`,
    );
  assert.ok(a.at(-1) - a[0] >= 2 * WINDOW_MS * 1000, 'the 15th A check started two windows after the first');
  assert.equal(watch.starts('nest-B').length, counts.B, 'B (tier from service.tier) counted in its own window');
  assert.ok(!watch.existed.has('nest-C'), 'an unlimited nest gets no window in Redis');

  // The same seen from BullMQ: processedOn is the last fetch, a moment
  // before the limiter's decision, so allow that moment (slack) when
  // checking the windows on it.
  const SLACK_MS = 150;
  const hashes = new Map();
  for (const j of jobs) hashes.set(j.id, await env.jobHash(j.id));
  const processed = (nest) => idsOf(nest).map((id) => Number(hashes.get(id).processedOn)).sort((x, y) => x - y);
  const pa = processed('A');
  for (let i = 0; i + LIMIT < pa.length; i++)
    assert.ok(pa[i + LIMIT] - pa[i] >= WINDOW_MS - SLACK_MS, `A jobs ${i} and ${i + LIMIT} processed ${pa[i + LIMIT] - pa[i]} ms apart`);
  assert.ok(pa.at(-1) - pa[0] >= 2 * WINDOW_MS - SLACK_MS, `A's last job started ${pa.at(-1) - pa[0]} ms after its first`);
  // B and C never waited for A: all of them started before A could start
  // its 6th check (one window after its first).
  for (const nest of ['B', 'C']) {
    const last = processed(nest).at(-1);
    assert.ok(last < pa[0] + WINDOW_MS, `nest ${nest}'s last job started ${last - pa[0]} ms after A's first`);
  }

  // Postponed, not attempted: every job completed on attempt 1; the A jobs
  // past the first 5 went through delayed, B and C never did.
  const ev = await eventsByJob(env);
  const delayedCount = (id) => (ev.get(id) ?? []).filter((e) => e.event === 'delayed').length;
  let aDelays = 0;
  let aPostponed = 0;
  for (const id of idsOf('A')) {
    const h = hashes.get(id);
    assert.equal(h.atm, '1', `A job ${id} attemptsMade`);
    assert.equal(h.ats, '1', `A job ${id} attemptsStarted (postponements taken back)`);
    assert.equal(JSON.parse(h.returnvalue).status, 'up');
    aDelays += delayedCount(id);
    if (delayedCount(id) > 0) aPostponed++;
  }
  assert.ok(aPostponed >= counts.A - LIMIT, `${aPostponed} A jobs were postponed, expected at least ${counts.A - LIMIT}`);
  for (const nest of ['B', 'C'])
    for (const id of idsOf(nest)) {
      assert.equal(delayedCount(id), 0, `nest ${nest} job ${id} was never delayed`);
      assert.equal(hashes.get(id).atm, '1');
    }

  // Each postponement is counted in /metrics under the tier, on the worker
  // that made it.
  let free = 0;
  for (const w of workers) {
    const text = await w.metrics();
    const v = metricValue(text, 'guardant_ratelimit_delayed_total', { tier: 'free' });
    assert.ok(v !== undefined, `${w.id} exposes guardant_ratelimit_delayed_total{tier="free"}`);
    assert.equal(metricValue(text, 'guardant_ratelimit_delayed_total', { tier: 'unlimited' }), 0);
    free += v;
  }
  assert.ok(free > 0, 'the limiter delayed jobs');
  assert.equal(free, aDelays, 'guardant_ratelimit_delayed_total{tier="free"} over both workers = delayed events of nest A');
}));

test('worker registry: the record, the workers table, a refused duplicate id, gone on SIGTERM, expires after SIGKILL', { timeout: 60_000, skip: cppOnly }, suite.run(async (env) => {
  const narrow = await env.cppWorker({ id: 'reg-narrow', region: 'eu-test', concurrency: 4, capabilities: ['echo'] });
  const full = await env.cppWorker({ id: 'reg-full', region: 'us-test', concurrency: 3 });
  const record = async (id) => {
    const text = await env.r.get(WORKER_PREFIX + id);
    return text === null ? null : JSON.parse(text);
  };

  const rn = await record('reg-narrow');
  assert.ok(rn, 'the narrowed worker has a record');
  assert.equal(rn.id, 'reg-narrow');
  assert.equal(rn.region, 'eu-test');
  assert.deepEqual(rn.capabilities, ['echo'], 'capabilities narrowed by [worker] capabilities');
  assert.equal(rn.concurrency, 4);
  assert.equal(rn.inFlight, 0);
  assert.equal(rn.pid, narrow.pid);
  assert.ok(typeof rn.version === 'string' && rn.version.length > 0, `version: ${rn.version}`);
  assert.ok(Math.abs(rn.lastSeen - Date.now()) < 10_000, `lastSeen ${rn.lastSeen} is recent`);
  assert.ok(rn.startedAt <= rn.lastSeen);
  const echoPlugin = rn.plugins.find((p) => p.name === ECHO_PLUGIN.plugin);
  assert.deepEqual(echoPlugin, { name: ECHO_PLUGIN.plugin, version: ECHO_PLUGIN.version, types: ['echo'] });
  const ttl = await env.r.pttl(WORKER_PREFIX + 'reg-narrow');
  assert.ok(ttl > 0 && ttl <= 15_000, `the record has a TTL of at most 15 s: ${ttl} ms`);

  const rf = await record('reg-full');
  assert.ok(rf, 'the other worker has a record');
  assert.equal(rf.region, 'us-test');
  assert.equal(rf.concurrency, 3);
  assert.ok(rf.capabilities.includes('echo') && rf.capabilities.includes('tcp'), `every loaded type: ${rf.capabilities}`);
  const tcpPlugin = rf.plugins.find((p) => p.types.includes('tcp'));
  assert.ok(tcpPlugin && /^\d+\.\d+\.\d+/.test(tcpPlugin.version), `the tcp plugin with its version: ${JSON.stringify(rf.plugins)}`);

  // The workers command, pointed at a worker's own config file.
  const listed = await runWorkerCommand(['workers', '--config', narrow.configFile]);
  assert.equal(listed.code, 0, `workers exits 0; stderr: ${listed.stderr}`);
  const lines = listed.stdout.trimEnd().split('\n');
  assert.match(lines[0], /^ID\s+REGION\s+CAPABILITIES\s/, `header: ${lines[0]}`);
  const rowOf = (id) => lines.find((l) => l.split(/\s+/)[0] === id);
  assert.ok(rowOf('reg-narrow'), `reg-narrow listed:\n${listed.stdout}`);
  assert.match(rowOf('reg-narrow'), /\beu-test\b.*\becho\b.*\b0\/4\b/, 'region, capabilities, in-flight/concurrency');
  assert.doesNotMatch(rowOf('reg-narrow'), /\btcp\b/);
  assert.match(rowOf('reg-full'), /\bus-test\b.*\btcp\b.*\b0\/3\b/);

  // A second live worker with the same id refuses to start and says why;
  // the first keeps its record.
  const dupConfig = await env.cppConfigFile({ id: 'reg-narrow', region: 'eu-test', capabilities: ['echo'] });
  const dup = await runWorkerCommand(['--config', dupConfig], { timeoutMs: 15_000 });
  assert.equal(dup.code, 1, `the duplicate exits 1; stderr: ${dup.stderr}`);
  assert.match(dup.stderr, /worker id 'reg-narrow' is already in use by a live worker/);
  assert.ok(narrow.running, 'the first worker still runs');
  const rnAfter = await record('reg-narrow');
  assert.equal(rnAfter.pid, narrow.pid, 'the record still names the first worker');
  assert.equal(rnAfter.instance, rn.instance);

  // SIGKILL: the record stays until its TTL runs out.
  await full.kill();
  const left = await env.r.pttl(WORKER_PREFIX + 'reg-full');
  assert.ok(left > 0, `the killed worker's record is still there (PTTL ${left})`);
  const killedAt = Date.now();

  // SIGTERM: exit 0, the record deleted on the way out.
  assert.equal(await narrow.stop(), 0, 'exit code after SIGTERM');
  assert.equal(await env.r.exists(WORKER_PREFIX + 'reg-narrow'), 0, 'record deleted on clean shutdown');

  await waitFor(async () => (await env.r.exists(WORKER_PREFIX + 'reg-full')) === 0, left + 3000, 'the killed worker\'s record to expire', {
    interval: 100,
  });
  assert.ok(Date.now() - killedAt >= left - 1000, 'it expired with its TTL, not before');
  const empty = await runWorkerCommand(['workers', '--config', narrow.configFile]);
  assert.equal(empty.code, 0);
  assert.equal(empty.stdout, 'no workers registered\n');
}));

test('routing: a tcp job and a job requiring tcp, fetched first by an echo-only worker, end on the worker that has tcp', { timeout: 60_000, skip: cppOnly }, suite.run(async (env) => {
  const server = net.createServer((s) => s.end());
  server.listen(0, '127.0.0.1');
  await within(new Promise((resolve) => server.once('listening', resolve)), 5000, 'the tcp target to listen');
  try {
    const target = `127.0.0.1:${server.address().port}`;
    const opts = { handbackDelayMs: 100, maxHandbacks: 200 };
    const echoOnly = await env.cppWorker({ ...opts, id: 'route-echo', capabilities: ['echo'] });
    const q = env.queue();
    const tcpJob = await q.add('tcp', checkJob({ nestId: 'n1', serviceId: 'svc-tcp', type: 'tcp', target }), { attempts: 3 });
    const needsTcp = await q.add(
      'needs-tcp',
      checkJob({ nestId: 'n1', serviceId: 'svc-needs-tcp', routing: { requiredCapabilities: ['tcp'] } }),
      { attempts: 3 },
    );
    const ids = [tcpJob.id, needsTcp.id];
    // The echo-only worker has taken both and handed them back.
    await waitFor(
      async () => (await Promise.all(ids.map((id) => env.jobHash(id)))).every((h) => Number(h.handbacks) >= 1),
      10_000,
      'both jobs to be handed back by the echo-only worker',
      { seen: () => Promise.all(ids.map((id) => env.jobHash(id))) },
    );
    const both = await env.cppWorker({ ...opts, id: 'route-tcp', capabilities: ['echo', 'tcp'] });
    await waitCompleted(env, ids, 20_000);

    for (const id of ids) {
      const h = await env.jobHash(id);
      assert.equal(h.pb, both.id, `job ${id} was finished by the worker with tcp`);
      const rv = JSON.parse(h.returnvalue);
      assert.equal(rv.workerId, both.id);
      assert.equal(rv.status, 'up', `job ${id}: ${h.returnvalue}`);
      assert.equal(h.atm, '1', `job ${id}: hand-backs are not attempts`);
      assert.ok(Number(h.handbacks) >= 1, `job ${id} handbacks ${h.handbacks}`);
      assert.equal(h.failedReason, undefined, `job ${id} never failed`);
    }
    assert.equal(JSON.parse((await env.jobHash(tcpJob.id)).returnvalue).probe.type, 'tcp');
    const handedBack = echoOnly.log.grep(/handed back/);
    assert.ok(handedBack.some((l) => l.includes(`job ${tcpJob.id} `) && l.includes("it needs probe type 'tcp'")), handedBack.join('\n'));
    assert.ok(handedBack.some((l) => l.includes(`job ${needsTcp.id} `) && l.includes('it requires capabilities [tcp]')), handedBack.join('\n'));
  } finally {
    server.close();
  }
}));

test('routing: jobs no worker can run fail after max_handbacks naming what is missing; a job for this region runs', { timeout: 60_000, skip: cppOnly }, suite.run(async (env) => {
  const opts = { maxHandbacks: 3, handbackDelayMs: 100, region: 'test' };
  await env.cppWorker({ ...opts, capabilities: ['echo'] });
  await env.cppWorker({ ...opts, capabilities: ['echo', 'tcp'] });
  const q = env.queue();
  const add = (name, data) => q.add(name, data, { attempts: 3, backoff: 100 });
  const nosuch = await add('nosuch', checkJob({ nestId: 'n1', serviceId: 'svc-nosuch', type: 'nosuch' }));
  const elsewhere = await add('elsewhere', checkJob({ nestId: 'n1', serviceId: 'svc-elsewhere', routing: { region: 'elsewhere' } }));
  const browser = await add(
    'browser',
    checkJob({ nestId: 'n1', serviceId: 'svc-browser', routing: { requiredCapabilities: ['browser'], region: 'test' } }),
  );
  const here = await add('here', checkJob({ nestId: 'n1', serviceId: 'svc-here', routing: { region: 'test', requiredCapabilities: ['echo'] } }));
  await waitFailed(env, [nosuch.id, elsewhere.id, browser.id], 20_000);
  await waitCompleted(env, [here.id], 10_000);

  const worker = String.raw`worker cpp-\d+ is in region 'test' with capabilities \[echo(, tcp)?\]`;
  const expected = {
    [nosuch.id]: new RegExp(String.raw`^no worker took this job after 3 hand-back\(s\): it needs probe type 'nosuch'; ${worker}$`),
    [elsewhere.id]: new RegExp(String.raw`^no worker took this job after 3 hand-back\(s\): it is routed to region 'elsewhere'; ${worker}$`),
    [browser.id]: new RegExp(String.raw`^no worker took this job after 3 hand-back\(s\): it requires capabilities \[browser\]; ${worker}$`),
  };
  const ev = await eventsByJob(env);
  for (const [id, re] of Object.entries(expected)) {
    const h = await env.jobHash(id);
    assert.match(h.failedReason, re, `job ${id}`);
    assert.equal(h.handbacks, '3', `job ${id} handbacks`);
    assert.equal(h.atm, '1', `job ${id}: failed on its one attempt, not retried despite attempts: 3`);
    const names = ev.get(id).map((e) => e.event);
    assert.equal(names.filter((n) => n === 'delayed').length, 3, `job ${id} events: ${names}`);
    assert.equal(names.filter((n) => n === 'failed').length, 1, `job ${id} events: ${names}`);
  }
  const h = await env.jobHash(here.id);
  assert.equal(h.handbacks, undefined, 'a job routed to this region is never handed back');
  assert.equal(h.atm, '1');
  assert.equal(JSON.parse(h.returnvalue).region, 'test');
  assert.equal((await jobCounts(env)).delayed, 0, 'nothing left in delayed');
}));

test('bad input: a non-string nestId fails at once without retry; its neighbour completes', { timeout: 30_000, skip: cppOnly }, suite.run(async (env) => {
  // Limits on, so the job would reach the limiter if it got past parsing.
  await env.cppWorker({ limits: { defaultTier: 'free', windowMs: 1000, tiers: { free: 100 } } });
  const q = env.queue();
  const bad = await q.add('bad', { nestId: { x: 1 }, service: { id: 'svc-bad', type: 'echo', target: 't' } }, { attempts: 3, backoff: 100 });
  const good = await q.add('good', checkJob({ nestId: 'nest-ok', serviceId: 'svc-good' }), { attempts: 3 });
  await waitFailed(env, [bad.id], 10_000);
  await waitCompleted(env, [good.id], 10_000);
  const h = await env.jobHash(bad.id);
  assert.match(h.failedReason, /^malformed job data: nestId must be a string/);
  assert.equal(h.atm, '1', 'not retried');
  const names = (await eventsByJob(env)).get(bad.id).map((e) => e.event);
  assert.equal(names.filter((n) => n === 'delayed').length, 0, `no delay: ${names}`);
  assert.equal(names.filter((n) => n === 'active').length, 1, `one attempt: ${names}`);
  assert.equal(JSON.parse((await env.jobHash(good.id)).returnvalue).status, 'up');
}));

test('bad input: a job naming an unknown tier runs under the default tier, with one warning naming it', { timeout: 30_000, skip: cppOnly }, suite.run(async (env) => {
  const w = await env.cppWorker({ limits: { defaultTier: 'free', windowMs: 1500, tiers: { free: 2 } } });
  const q = env.queue();
  const jobs = await q.addBulk(
    Array.from({ length: 4 }, (_, i) => ({ name: `gold-${i}`, data: checkJob({ nestId: 'nest-gold', serviceId: `svc-${i}`, tier: 'gold' }) })),
  );
  await waitCompleted(env, jobs.map((j) => j.id), 15_000);
  for (const j of jobs) assert.equal((await env.jobHash(j.id)).atm, '1');
  // Four checks at the free tier's 2 per window: some had to wait, counted
  // under "free", and job data added no "gold" series.
  const text = await w.metrics();
  assert.ok(metricValue(text, 'guardant_ratelimit_delayed_total', { tier: 'free' }) >= 2, text);
  assert.doesNotMatch(text, /tier="gold"/);
  const warnings = w.log.grep(/names tier 'gold'/);
  assert.equal(warnings.length, 1, `one warning:\n${warnings.join('\n')}`);
  assert.match(warnings[0], /\bwarn/i);
  assert.match(warnings[0], /which limits\.tiers does not define; the default tier 'free' applies/);
}));

test('bad input: --check-config refuses a negative or zero tier limit, naming the key and its line', { timeout: 30_000, skip: cppOnly }, suite.run(async (env) => {
  for (const [value, ok] of [[-5, false], [0, false], [5, true]]) {
    const file = await env.cppConfigFile({ limits: { defaultTier: 'free', windowMs: 2000, tiers: { free: value } } });
    const line = fs.readFileSync(file, 'utf8').split('\n').indexOf(`free = ${value}`) + 1;
    assert.ok(line > 0, 'the tier line is in the file');
    const r = await runWorkerCommand(['--check-config', '--config', file]);
    if (ok) {
      assert.equal(r.code, 0, `free = ${value} is valid; stderr: ${r.stderr}`);
      assert.match(r.stdout, /^config OK/);
      continue;
    }
    assert.equal(r.code, 1, `free = ${value}: exit code; stdout: ${r.stdout}`);
    assert.ok(r.stderr.includes(`${file}:${line}:`), `free = ${value}: the error names ${file}:${line}:\n${r.stderr}`);
    assert.match(r.stderr, new RegExp(String.raw`limits\.tiers\.free: expected a positive integer \(checks per window\) or "unlimited", got integer ${value}`));
  }
}));
