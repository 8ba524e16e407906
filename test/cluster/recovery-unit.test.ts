// Fast in-process tests of the recovery of a dead node's claimed area, on a
// real scratch spool, without any daemon: what the end-to-end kill -9 tests
// reach only by chance.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { removeHeartbeat } from '../../src/cluster/heartbeat.js';
import { recoverNode } from '../../src/cluster/recovery.js';
import { Finisher } from '../../src/spool/finish.js';
import { Layout, hostName } from '../../src/spool/layout.js';
import type { JobMeta } from '../../src/spool/meta.js';
import { Logger } from '../../src/util/log.js';
import { scratch } from '../helpers/helpers.js';

const T0 = 1_700_000_000_000;

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

t.test('recovery: a flat entry (a spool job, @DIR/NAME with its log .NAME=ID.log) goes back as attempt 2 with its name, group and log; what crashes leave is cleared', async (t) => {
  const { layout, finisher, log, lines } = setup(t);
  const dead = 'otherhost.44.1';
  const id = `${dead}.1700000000.123.7`;
  const where = path.join(layout.claimed(dead), '@a%3Db');
  fs.mkdirSync(where, { recursive: true });
  fs.writeFileSync(path.join(where, `.build=x.sh=${id}.log`), 'half a run\n');
  fs.writeFileSync(path.join(where, 'build=x.sh'), '#!/bin/sh\n', { mode: 0o755 });
  // a log whose job is gone (killed between unlinking the archived job and its log)
  fs.writeFileSync(path.join(where, `.gone=${dead}.1700000000.200.8.log`), 'done\n');
  // a claim cut short before its rename (the directory form: metadata, no file)
  const cut = path.join(layout.claimed(dead), `${dead}.1700000000.300.9`);
  fs.mkdirSync(cut);
  fs.writeFileSync(path.join(cut, '.job.json'), JSON.stringify({ id: path.basename(cut), name: 'q', file: 'q', group: 'default', dir: '', owner: 0, created: new Date(T0).toISOString(), claimed: new Date(T0).toISOString(), node: dead, attempt: 1, parent: null }));
  t.equal(recoverNode(layout, 'me.1.1', dead, finisher, log), 1, 'one job requeued');
  t.notOk(fs.existsSync(layout.claimed(dead)), 'the dead node\'s area is gone, leftovers and all');
  t.same(fs.readdirSync(layout.retry), [`0.${id}`], 'in retry/ under its id');
  const entry = path.join(layout.retry, `0.${id}`);
  const meta = JSON.parse(fs.readFileSync(path.join(entry, '.job.json'), 'utf8')) as JobMeta;
  t.match(meta, { id, name: 'build=x.sh', file: 'build=x.sh', group: 'a=b', dir: 'a=b', attempt: 2, interrupted: 1, claimed: '2023-11-14T22:13:20.123Z' }, 'its name, group and claim time from the names; attempt 2');
  t.ok(fs.existsSync(path.join(entry, 'build=x.sh')), 'the job file under its own name');
  t.equal(fs.readFileSync(path.join(entry, '.log'), 'utf8'), 'half a run\n', 'its log goes with it');
  t.ok(lines.some((l) => / event=recovered node=otherhost\.44\.1 requeued=1 /.test(l)), 'logged');
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

t.test('recovery: a taker that died while recovering leaves .recovering.DEAD.by.TAKER; once the taker is stale too, another node finishes it', async (t) => {
  const { layout, finisher, log, lines } = setup(t);
  const { Membership } = await import('../../src/cluster/membership.js');
  const dead = 'otherhost.60.1';
  const entry = `.recovering.${dead}.by.otherhost.61.1`;
  const left = path.join(layout.claimedRoot, entry);
  const id = `${dead}.1700000000.5.1`;
  fs.mkdirSync(path.join(left, '@'), { recursive: true });
  fs.writeFileSync(path.join(left, '@', `.job=${id}.log`), '');
  fs.writeFileSync(path.join(left, '@', 'job'), '#!/bin/sh\n', { mode: 0o755 });
  const m = new Membership(layout, 'me.1.1', 60_000);
  // its taker has a fresh heartbeat: at work, left alone
  fs.mkdirSync(layout.nodes, { recursive: true });
  fs.writeFileSync(layout.heartbeat('otherhost.61.1'), '{}');
  const now = fs.statSync(layout.heartbeat('otherhost.61.1')).mtimeMs;
  t.same(m.orphanedRecoveries(now + 1000), [], 'a live taker\'s recovery is its own');
  t.same(m.orphanedRecoveries(now + 61_000), [{ dead, entry }], 'a taker silent for the lease left it: orphaned');
  fs.unlinkSync(layout.heartbeat('otherhost.61.1'));
  t.same(m.orphanedRecoveries(now + 61_000), [{ dead, entry }], 'a taker gone altogether (no heartbeat, no area): judged by what it left');
  t.same(m.orphanedRecoveries(now + 61_000, true), [], 'at start only this host\'s dead takers count');
  t.equal(recoverNode(layout, 'me.1.1', dead, finisher, log, undefined, undefined, left), 1, 'taken over and finished: one job requeued');
  t.notOk(fs.existsSync(left), 'nothing left of it');
  t.same(fs.readdirSync(layout.retry), [`0.${id}`], 'the job is in retry/');
  t.ok(lines.some((l) => / event=recovered node=otherhost\.60\.1 requeued=1 /.test(l)), 'logged as a recovery of the dead node');
  // a dead taker on this host is orphaned at once
  const local = `.recovering.${dead}.by.${hostName()}.999999.1`;
  fs.mkdirSync(path.join(layout.claimedRoot, local));
  t.same(m.orphanedRecoveries(0, true), [{ dead, entry: local }], 'a taker on this host whose process is gone: at once');
});

t.test('a recovered node leaves no heartbeat behind, nor the temporary file of a write it died in', async (t) => {
  const { spool } = scratch(t);
  const layout = new Layout(spool);
  fs.mkdirSync(layout.nodes, { recursive: true });
  const dead = 'far-host.28688.1796053307';
  const other = `${dead}.7`; // another node whose id extends the dead one's
  for (const f of [dead, `.${dead}.28688.3.tmp`, other, `.${other}.99.1.tmp`, `.${dead}.x.tmp`]) fs.writeFileSync(path.join(layout.nodes, f), '{}');
  removeHeartbeat(layout, dead);
  t.same(fs.readdirSync(layout.nodes).sort(), [`.${dead}.x.tmp`, `.${other}.99.1.tmp`, other].sort(), 'its heartbeat and its heartbeat\'s temporary file are gone; nothing else');
});
