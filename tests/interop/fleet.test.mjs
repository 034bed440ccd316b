// A mixed fleet: Node bullmq workers and C++ workers on one queue, with
// priorities, delays and jobs that fail their first attempt. Every job must
// complete exactly once, whoever ran which attempt.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

import { echoJob, interopSuite, jobCounts, sleep, waitCompleted, WORKER_KIND } from './lib/harness.mjs';

const suite = interopSuite();

// Deterministic pseudo-random numbers, so a failure can be reproduced.
function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

test('2 Node + 2 C++ workers: 400 jobs with priorities, delays and first-attempt failures each complete exactly once', { timeout: 120_000 }, suite.run(async (env) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'guardant-fleet-'));
  try {
    const q = env.queue();
    const qe = await env.queueEvents();
    const completedEvents = new Map();
    qe.on('completed', ({ jobId }) => completedEvents.set(jobId, (completedEvents.get(jobId) ?? 0) + 1));
    const opts = { concurrency: 5 };
    const fleet = [await env.nodeWorker(opts), await env.nodeWorker(opts), await env.cppWorker(opts), await env.cppWorker(opts)];
    const cppIds = fleet.slice(2).map((w) => w.id);
    const nodeIds = fleet.slice(0, 2).map((w) => w.id);

    const rand = rng(20261204);
    const N = 400;
    const specs = Array.from({ length: N }, (_, i) => {
      const r = rand();
      const priority = r < 0.25 ? undefined : [1, 5, 8][Math.floor(rand() * 3)];
      const delay = rand() < 0.3 ? Math.floor(rand() * 2000) : 0;
      const failOnce = rand() < 0.1;
      const config = { delay_ms: Math.floor(rand() * 30) };
      if (failOnce) config.fail_once_file = path.join(dir, `job-${i}`);
      return { i, priority, delay, failOnce, config };
    });
    const jobs = [];
    // Added in bulk batches while the fleet already runs.
    for (let start = 0; start < N; start += 50) {
      const batch = specs.slice(start, start + 50).map((s) => ({
        name: `fleet-${s.i}`,
        data: echoJob({ serviceId: `svc-${s.i}`, config: s.config }),
        opts: { attempts: 2, priority: s.priority, delay: s.delay || undefined },
      }));
      jobs.push(...(await q.addBulk(batch)));
      await sleep(50);
    }
    const ids = jobs.map((j) => j.id);
    assert.equal(new Set(ids).size, N);
    await waitCompleted(env, ids, 90_000);
    await sleep(500); // late duplicate completions would show up by now

    const counts = await jobCounts(env);
    assert.equal(counts.active, 0, 'active ends empty');
    assert.equal(counts.failed, 0, 'nothing failed');
    assert.equal(counts.completed, N);
    const streamCompleted = new Map();
    for (const e of await env.events()) if (e.event === 'completed') streamCompleted.set(e.jobId, (streamCompleted.get(e.jobId) ?? 0) + 1);
    const pbs = new Map();
    for (const [k, s] of specs.entries()) {
      const id = ids[k];
      assert.equal(streamCompleted.get(id), 1, `completed events in the stream for job ${id}`);
      assert.equal(completedEvents.get(id), 1, `completed events seen by QueueEvents for job ${id}`);
      const h = await env.jobHash(id);
      pbs.set(h.pb, (pbs.get(h.pb) ?? 0) + 1);
      const rv = JSON.parse(h.returnvalue);
      assert.equal(rv.serviceId, `svc-${s.i}`);
      assert.equal(rv.workerId, h.pb, `record of job ${id} names the worker that finished it`);
      if (s.failOnce) {
        assert.equal(h.atm, '2', `job ${id} failed once then completed`);
        assert.match(h.failedReason, /failing once/);
      } else {
        assert.equal(h.atm, '1', `job ${id} completed on its first attempt`);
      }
    }
    const byCpp = cppIds.reduce((n, id) => n + (pbs.get(id) ?? 0), 0);
    const byNode = nodeIds.reduce((n, id) => n + (pbs.get(id) ?? 0), 0);
    assert.ok(byCpp > 0 && byNode > 0, `pb shows both kinds (${WORKER_KIND} workers ${byCpp}, node workers ${byNode}): ${JSON.stringify([...pbs])}`);
    assert.equal(byCpp + byNode, N);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}));

test('a mixed fleet with SIGKILLs mid-run: replacements recover the lost jobs, each job completes exactly once', { timeout: 120_000 }, suite.run(async (env) => {
  const q = env.queue();
  // Short locks so lost jobs come back within seconds; a job may be hit by
  // both kills, so allow it two stalls.
  const opts = { concurrency: 5, lockDurationMs: 2000, stalledIntervalMs: 1000, maxStalledCount: 2 };
  const cppA = await env.cppWorker(opts);
  const nodeA = await env.nodeWorker(opts);
  await env.cppWorker(opts);
  await env.nodeWorker(opts);
  const rand = rng(4242);
  const jobs = await q.addBulk(
    Array.from({ length: 200 }, (_, i) => ({
      name: `k-${i}`,
      data: echoJob({ serviceId: `svc-${i}`, config: { delay_ms: 100 + Math.floor(rand() * 400) } }),
      opts: { attempts: 2, priority: rand() < 0.5 ? undefined : 1 + Math.floor(rand() * 8) },
    })),
  );
  await sleep(1000);
  await cppA.kill();
  await env.cppWorker(opts);
  await sleep(1000);
  await nodeA.kill();
  await env.nodeWorker(opts);
  await waitCompleted(env, jobs.map((j) => j.id), 60_000);
  await sleep(500);
  const counts = await jobCounts(env);
  assert.equal(counts.active, 0, 'active ends empty');
  assert.equal(counts.failed, 0);
  const completions = new Map();
  for (const e of await env.events()) if (e.event === 'completed') completions.set(e.jobId, (completions.get(e.jobId) ?? 0) + 1);
  for (const j of jobs) assert.equal(completions.get(j.id), 1, `completed events for job ${j.id}`);
  const recovered = [];
  for (const j of jobs) if ((await env.jobHash(j.id)).stc) recovered.push(j.id);
  assert.ok(recovered.length > 0, 'some jobs were recovered from the killed workers');
}));
