// Fast in-process tests of two models the end-to-end tests can only
// sample: the load barrier's prediction (with a load source the test sets,
// and explicit times) and the recovery of a dead node's claimed area (on a
// real scratch spool, without any daemon).

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { LoadModel } from '../src/schedule/barrier.js';
import { recoverNode } from '../src/cluster/recovery.js';
import { Finisher } from '../src/spool/finish.js';
import { Layout } from '../src/spool/layout.js';
import type { JobMeta } from '../src/spool/meta.js';
import { Logger } from '../src/util/log.js';
import { scratch } from './helpers.js';

const T0 = 1_700_000_000_000;
const s = (n: number): number => n * 1000;

t.test('load model: a job started just now counts fully; the kernel\'s average catches up over a minute', async (t) => {
  let kernel = 0;
  const m = new LoadModel(() => kernel);
  t.equal(m.predictedLoad(T0), 0, 'idle');
  m.jobStarted('a', T0);
  t.equal(m.predictedLoad(T0), 1, 'one job just started: 1');
  // a minute on, the kernel shows 1 − e^(−1) of it; the model adds the rest
  kernel = 1 - Math.exp(-1);
  t.ok(Math.abs(m.predictedLoad(T0 + s(60)) - 1) < 1e-9, 'a minute on: still 1 in all');
  m.jobEnded('a', T0 + s(60));
  // just ended: the kernel still shows it; the model takes it away
  t.ok(Math.abs(m.predictedLoad(T0 + s(60))) < 1e-9, 'just ended: 0');
});

t.test('load model: -C 2 on an idle machine with 50 jobs queued starts 2, not 50', async (t) => {
  const m = new LoadModel(() => 0);
  let started = 0;
  for (let i = 0; i < 50; i++) {
    if (m.holds({ load: 2 }, T0) !== null) break;
    m.jobStarted(`j${i}`, T0);
    started++;
  }
  t.equal(started, 2, 'two start');
  t.match(m.holds({ load: 2 }, T0), /^load 2\.00 >= 2$/, 'the hold says why');
});

t.test('load model: the CPU barrier counts jobs started since the last sample as busy CPUs', async (t) => {
  const m = new LoadModel(() => 0);
  const cpus = (await import('node:os')).availableParallelism();
  const now = Date.now();
  const before = m.cpuUtilisation(now);
  for (let i = 0; i < cpus; i++) m.jobStarted(`j${i}`, now);
  t.equal(m.cpuUtilisation(now), 1, `${cpus} jobs just started on ${cpus} CPUs: fully busy (was ${before.toFixed(2)})`);
  t.match(m.holds({ cpu: 0.9 }, now), /^cpu 100% >= 90%$/, 'the hold says why');
});

/** A dead node's claimed area with one job in it, as a daemon leaves it. */
function deadNodeJob(layout: Layout, dead: string, meta: Partial<JobMeta> = {}): JobMeta {
  const m: JobMeta = {
    id: `${dead}.1.000.0`, name: 'job', file: 'job', group: 'default', dir: '', owner: 0,
    created: new Date(T0).toISOString(), claimed: new Date(T0).toISOString(), node: dead, attempt: 1, parent: null, ...meta,
  };
  const dir = path.join(layout.claimed(dead), m.id);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, '.job.json'), JSON.stringify(m));
  fs.writeFileSync(path.join(dir, 'job'), '#!/bin/sh\n', { mode: 0o755 });
  fs.writeFileSync(path.join(dir, '.log'), 'half a run\n');
  return m;
}

function setup(t: Parameters<typeof scratch>[0]): { layout: Layout; finisher: Finisher; log: Logger; lines: string[]; records: () => Record<string, unknown>[] } {
  const { spool, archive } = scratch(t);
  const layout = new Layout(spool);
  layout.create('me.1.1');
  const lines: string[] = [];
  const log = new Logger({ write: (l) => { lines.push(l); } });
  const records = (): Record<string, unknown>[] =>
    fs.readdirSync(archive).filter((f) => f.endsWith('.json')).map((f) => JSON.parse(fs.readFileSync(path.join(archive, f), 'utf8')) as Record<string, unknown>);
  return { layout, finisher: new Finisher(layout, 'me.1.1', { archive, keep: Infinity, keepAgeMs: Infinity }), log, lines, records };
}

t.test('recovery: a dead node\'s job goes back for another attempt, interrupted, its log kept', async (t) => {
  const { layout, finisher, log, lines } = setup(t);
  const m = deadNodeJob(layout, 'otherhost.42.1');
  t.equal(recoverNode(layout, 'me.1.1', 'otherhost.42.1', finisher, log), 1, 'one job requeued');
  t.notOk(fs.existsSync(layout.claimed('otherhost.42.1')), 'the dead node\'s area is gone');
  const entries = fs.readdirSync(layout.retry);
  t.same(entries, [`0.${m.id}`], 'in retry/, due at once');
  const meta = JSON.parse(fs.readFileSync(path.join(layout.retry, entries[0]!, '.job.json'), 'utf8')) as JobMeta;
  t.match(meta, { attempt: 2, interrupted: 1, previous: 'interrupted: node otherhost.42.1 died' }, 'attempt 2, one interruption');
  t.equal(fs.readFileSync(path.join(layout.retry, entries[0]!, '.log'), 'utf8'), 'half a run\n', 'its log goes with it');
  t.ok(lines.some((l) => / event=recovered node=otherhost\.42\.1 requeued=1 /.test(l)), 'logged');
  t.equal(recoverNode(layout, 'me.1.1', 'otherhost.42.1', finisher, log), null, 'a second taker gets nothing');
});

t.test('recovery: a job interrupted too often is archived as failed, not run again', async (t) => {
  const { layout, finisher, log, records } = setup(t);
  deadNodeJob(layout, 'otherhost.43.1', { attempt: 4, interrupted: 3 });
  t.equal(recoverNode(layout, 'me.1.1', 'otherhost.43.1', finisher, log, (meta) => (meta.interrupted ?? 0) >= 3), 0, 'none requeued');
  t.same(fs.readdirSync(layout.retry), [], 'nothing in retry/');
  t.match(records(), [{ status: 'failed', attempt: 4, error: /interrupted too often/ }], 'archived as failed, saying why');
});

t.test('recovery: a job that ended but was not archived is archived with its outcome, never run again', async (t) => {
  const { layout, finisher, log, records } = setup(t);
  deadNodeJob(layout, 'otherhost.44.1', { ended: { status: 'done', exit_code: 0, signal: null, started: new Date(T0).toISOString(), finished: new Date(T0 + 5).toISOString() } });
  t.equal(recoverNode(layout, 'me.1.1', 'otherhost.44.1', finisher, log), 0, 'none requeued');
  t.same(fs.readdirSync(layout.retry), [], 'nothing in retry/');
  t.match(records(), [{ status: 'done', exit_code: 0 }], 'archived with the outcome it had');
});

t.test('recovery: metadata naming a path outside its entry is refused and left for an operator', async (t) => {
  const { layout, finisher, log, lines } = setup(t);
  deadNodeJob(layout, 'otherhost.45.1', { file: '../../../../etc/passwd' });
  t.equal(recoverNode(layout, 'me.1.1', 'otherhost.45.1', finisher, log), 0, 'none requeued');
  t.ok(lines.some((l) => / event=recover-failed .*not a plain file name/.test(l)), 'one line says why');
});
