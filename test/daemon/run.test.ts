// Issue 2, core path: jobs run exactly once and are archived with a log and a
// record (pmjq(5) RECORDS); same-named jobs never overwrite each other; --once exit
// codes; -e; the .pmjq/done retention without -o.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import {
  BIN, ISO_MS, RECORD_FIELDS, ROOT_ARGS, archivedRaw, claimedJobs, dropJob, field, history, jobProcesses, readJson, run, scratch, start, waitFor, waitLines,
} from '../helpers/helpers.js';
// a gate jobs wait at (`flock -s LOCK`): all waiting jobs are released in the same instant
import { gate } from '../helpers/cluster.js';

type Rec = Record<string, unknown>;

const HOST = os.hostname().replace(/[/\s]/g, '_') || 'localhost';

/**
 * Open the gate while pmjq is stopped (SIGSTOP) and let it go on only once
 * every job has exited: it then reaps them all in one turn of its event loop,
 * so that they finish in the same millisecond or nearly.
 */
async function releaseTogether(pid: number, spool: string, g: { open(): void }): Promise<void> {
  process.kill(pid, 'SIGSTOP');
  try {
    g.open();
    await waitFor('the released jobs to exit', () => jobProcesses(spool).length === 0, 10_000);
  } finally {
    process.kill(pid, 'SIGCONT');
  }
}

function checkRecord(t: Test, rec: Rec, e: { file: string; log: string; group: string; node: string; status?: string; exit?: number }): void {
  for (const f of RECORD_FIELDS) t.ok(f in rec, `record has ${f}`);
  t.match(rec.id, new RegExp(`^${HOST.replace(/[.]/g, '\\.')}\\.\\d+\\.\\d+\\.\\d{3}\\.\\d+$`), 'id is HOST.PID.SECONDS.MILLIS.COUNTER');
  t.equal(rec.group, e.group, 'group');
  t.equal(rec.node, e.node, 'node');
  t.equal(rec.owner, process.getuid!(), 'owner is the file owner uid');
  for (const f of ['created', 'claimed', 'started', 'finished']) t.match(rec[f], ISO_MS, `${f} is ISO 8601 UTC with ms`);
  const ms = (f: string): number => Date.parse(rec[f] as string);
  t.ok(ms('claimed') <= ms('started') && ms('started') <= ms('finished'), 'claimed <= started <= finished');
  t.equal(rec.status, e.status ?? 'done', 'status');
  t.equal(rec.exit_code, e.exit ?? 0, 'exit_code');
  t.equal(rec.signal, null, 'signal');
  t.equal(rec.attempt, 1, 'attempt');
  t.equal(rec.archive, e.file, 'archive is the archived file');
  t.equal(rec.log, e.log, 'log is the .log beside it');
}

t.test('50 jobs each run exactly once, each archived with its log and record', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const runs = path.join(dir, 'runs');
  fs.mkdirSync(runs);
  const expected = new Map<string, { group: string; body: string }>();
  for (let i = 0; i < 50; i++) {
    const group = i < 20 ? '' : i < 35 ? 'g1' : 'g2';
    const name = `job-${String(i).padStart(2, '0')}`;
    const body = `#!/bin/sh\necho "ran $PMJQ_JOB_ID"\necho once >> '${runs}/${name}'\n`;
    if (group) fs.mkdirSync(path.join(spool, group), { recursive: true });
    dropJob(group ? path.join(spool, group) : spool, name, body);
    expected.set(name, { group: group || 'default', body });
  }
  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '--once', '-j', '8', '-o', archive, spool]);
  t.equal(await p.exited, 0, 'pmjq --once exits 0');
  const node = /event=start node=(\S+)/.exec(p.stderr())?.[1];
  t.ok(node, 'start line names the node');
  t.match(node, new RegExp(`^.+\\.${p.child.pid}\\.\\d+$`), 'node id is HOST.PID.STARTSECONDS');

  for (const name of expected.keys()) {
    t.equal(fs.readFileSync(path.join(runs, name), 'utf8'), 'once\n', `${name} ran exactly once`);
  }
  const entries = archivedRaw(archive);
  t.equal(entries.length, 50, '50 archive entries');
  t.equal(fs.readdirSync(archive).length, 150, 'each with a .log and a .json, nothing else');
  const ids = new Set<string>();
  const byId = new Map<string, Rec>();
  for (const e of entries) {
    const name = e.name.toString();
    const want = expected.get(name);
    if (!t.ok(want, `archived ${name} was dropped`)) continue;
    t.match(e.entry.toString(), /^\d{8}T\d{6}\.\d{3}Z-job-\d\d$/, 'archive name is TIMESTAMP-NAME');
    t.equal(fs.readFileSync(e.file, 'utf8'), want!.body, 'archived file is the job, unchanged');
    const rec = readJson<Rec>(e.json);
    t.equal(rec.name, name, 'record name');
    checkRecord(t, rec, { file: e.file.toString(), log: e.log.toString(), group: want!.group, node: node! });
    t.equal(fs.readFileSync(e.log, 'utf8'), `ran ${rec.id}\n`, 'log holds the job output');
    // the timestamp prefix is the finish time
    const stamp = e.entry.toString().slice(0, 20);
    t.equal(stamp, (rec.finished as string).replace(/[-:]/g, ''), 'prefix is the finish time');
    ids.add(rec.id as string);
    byId.set(rec.id as string, rec);
  }
  t.equal(ids.size, 50, 'ids are unique');
  const hist = history(spool);
  t.equal(hist.length, 50, '50 history records');
  for (const h of hist) t.same(h, byId.get(h.id as string), `history record ${h.id as string} matches the archive`);
  t.same(fs.readdirSync(spool).sort(), ['.pmjq', 'g1', 'g2'], 'the spool is drained');
  t.same(fs.readdirSync(path.join(spool, 'g1')), [], 'group g1 is drained');
  t.same(fs.readdirSync(path.join(spool, '.pmjq/claimed')), [], 'nothing left claimed');
});

t.test('same-named jobs of 30 groups finishing together never overwrite each other (-j 8)', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const g = await gate(t, dir);
  for (let i = 0; i < 30; i++) {
    const gdir = path.join(spool, `g${String(i).padStart(2, '0')}`);
    fs.mkdirSync(gdir);
    dropJob(gdir, 'same', `#!/bin/sh\nflock -s '${g.lock}' true\necho "group=$PMJQ_GROUP"\n`);
  }
  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '--once', '-j', '8', '-o', archive, spool]);
  await waitLines(p, /event=job-start /, 8);
  await releaseTogether(p.child.pid!, spool, g);
  t.equal(await p.exited, 0, 'pmjq --once exits 0');
  const entries = archivedRaw(archive);
  t.equal(entries.length, 30, '30 archive entries');
  t.equal(fs.readdirSync(archive).length, 90, 'with 30 logs and 30 records');
  t.ok(entries.every((e) => e.name.toString() === 'same'), 'all named same');
  const groups = new Set<string>();
  for (const e of entries) {
    const rec = readJson<Rec>(e.json);
    t.equal(fs.readFileSync(e.log, 'utf8'), `group=${rec.group as string}\n`, `log and record of ${e.entry.toString()} belong together`);
    t.equal(rec.archive, e.file.toString(), 'record points at its own entry');
    groups.add(rec.group as string);
  }
  t.equal(groups.size, 30, 'every group\'s job is kept');
  const stamps = entries.map((e) => e.entry.toString().slice(0, 20));
  const collided = stamps.length - new Set(stamps).size;
  t.comment(`${collided} jobs finished in a millisecond another same-named job finished in`);
  t.equal(history(spool).length, 30, '30 history records');
});

t.test('30 rounds of a job named "same" in one directory, all released together (-j 0)', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const g = await gate(t, dir);
  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '-j', '0', '-o', archive, spool]);
  await p.waitLine(/event=start /);
  for (let i = 0; i < 30; i++) {
    dropJob(spool, 'same', `#!/bin/sh\nflock -s '${g.lock}' true\necho round=${i}\n`);
    // the next one is dropped only once this one has been claimed
    await waitFor(`round ${i} claimed`, () => !fs.existsSync(path.join(spool, 'same')), 5000);
  }
  await waitLines(p, /event=job-start /, 30);
  // one runs under its name in the group's part of the claimed area; the name taken, the others in directories of their own
  const node = field(p.stderr(), 'node')!;
  const claimed = claimedJobs(path.join(spool, '.pmjq/claimed', node));
  t.equal(claimed.filter((c) => c === '@/same').length, 1, 'one claimed as @/same');
  t.equal(claimed.filter((c) => !c.startsWith('@')).length, 29, 'the 29 others in the directory form');
  await releaseTogether(p.child.pid!, spool, g);
  await waitLines(p, /event=job-end /, 30);
  p.child.kill('SIGTERM');
  t.equal(await p.exited, 0, 'pmjq exits 0 on SIGTERM');
  const entries = archivedRaw(archive);
  t.equal(entries.length, 30, '30 archive entries');
  t.equal(fs.readdirSync(archive).length, 90, 'with 30 logs and 30 records');
  const rounds = new Set<string>();
  for (const e of entries) {
    t.equal(e.name.toString(), 'same');
    const out = fs.readFileSync(e.log, 'utf8');
    const body = fs.readFileSync(e.file, 'utf8');
    t.ok(body.includes(`echo ${out.trim()}\n`), `entry ${e.entry.toString()}: log (${out.trim()}) comes from its own job file`);
    t.equal(readJson<Rec>(e.json).archive, e.file.toString(), 'record points at its own entry');
    rounds.add(out.trim());
  }
  t.equal(rounds.size, 30, 'every round is kept');
  const stamps = entries.map((e) => e.entry.toString().slice(0, 20));
  t.comment(`${stamps.length - new Set(stamps).size} jobs finished in a millisecond another "same" finished in`);
});

t.test('an archive entry is never overwritten: decoys for every millisecond of the run', async (t) => {
  // Whatever millisecond the jobs finish in, the archive already holds
  // entries of that name: "TIMESTAMP-same" (a same-named job's file) and
  // "TIMESTAMP-x.log" (what a job named "x.log" leaves; it is also the log
  // name of a job "x"). Both jobs must be archived whole beside them, and no
  // decoy may change.
  const { dir, spool, archive } = scratch(t);
  const decoy = path.join(dir, 'decoy');
  fs.writeFileSync(decoy, 'decoy\n');
  const from = Date.now();
  const WINDOW_MS = 15_000;
  for (let ms = from; ms < from + WINDOW_MS; ms++) {
    const stamp = new Date(ms).toISOString().replace(/[-:]/g, '');
    fs.linkSync(decoy, path.join(archive, `${stamp}-same`));
    fs.linkSync(decoy, path.join(archive, `${stamp}-x.log`));
  }
  dropJob(spool, 'same', '#!/bin/sh\necho same-output\n');
  dropJob(spool, 'x', '#!/bin/sh\necho x-output\n');
  const r = await run(t, BIN.pmjq, [...ROOT_ARGS, '--once', '-o', archive, spool], { timeoutMs: 20_000 });
  t.equal(r.code, 0, 'exit 0');
  const recs = history(spool);
  t.equal(recs.length, 2, 'both jobs finished');
  for (const rec of recs) {
    const fin = Date.parse(rec.finished as string);
    t.ok(fin >= from && fin < from + WINDOW_MS, `${rec.name as string} finished inside the decoy window`);
    const file = rec.archive as string;
    t.ok(file.startsWith(archive + '/'), 'archived in the archive');
    t.equal(fs.readFileSync(file, 'utf8'), `#!/bin/sh\necho ${rec.name as string}-output\n`, `${rec.name as string}: its own file`);
    t.equal(rec.log, `${file}.log`, 'its log beside it');
    t.equal(fs.readFileSync(`${file}.log`, 'utf8'), `${rec.name as string}-output\n`, `${rec.name as string}: its own output in its log`);
    t.same(readJson(`${file}.json`), rec, 'its record beside it');
  }
  t.match(path.basename(recs.find((h) => h.name === 'same')!.archive as string), /^\d{8}T\d{6}\.\d{3}Z\.\d+-same$/, 'same: a suffixed name beside the decoy');
  const ino = fs.statSync(decoy).ino;
  t.equal(fs.statSync(decoy).nlink, 1 + 2 * WINDOW_MS, 'every decoy is still there');
  t.equal(fs.readFileSync(decoy, 'utf8'), 'decoy\n', 'and unchanged');
  const foreign = fs.readdirSync(archive).filter((f) => fs.statSync(path.join(archive, f)).ino !== ino);
  t.equal(foreign.length, 6, 'the two jobs added a file, a log and a record each');
});

t.test('-j 2: at most two jobs at once', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const g = await gate(t, dir);
  for (let i = 0; i < 6; i++) dropJob(spool, `j${i}`, `#!/bin/sh\nflock -s '${g.lock}' true\n`);
  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '--once', '-j', '2', '-o', archive, spool]);
  await waitLines(p, /event=job-start /, 2);
  await waitFor('two jobs running', () => jobProcesses(spool).length >= 2, 5000);
  // a scheduling pass starts all it may at once: had it been allowed more, they would be running now
  t.equal(p.stderr().split('event=job-start ').length - 1, 2, 'two jobs started');
  t.equal(fs.readdirSync(spool).filter((f) => !f.startsWith('.')).length, 4, 'four still queued, unclaimed');
  g.open();
  t.equal(await p.exited, 0);
  let running = 0;
  let max = 0;
  for (const l of p.stderr().split('\n')) {
    if (/event=job-start /.test(l)) max = Math.max(max, ++running);
    if (/event=job-end /.test(l)) running--;
  }
  t.equal(max, 2, 'never more than two running');
  t.equal(archivedRaw(archive).length, 6, 'all six ran');
});

t.test('--once exits 0 when every job succeeds and 1 when one fails', async (t) => {
  const ok = scratch(t);
  for (let i = 0; i < 3; i++) dropJob(ok.spool, `ok${i}`, '#!/bin/sh\nexit 0\n');
  const r0 = await run(t, BIN.pmjq, [...ROOT_ARGS, '--once', '-o', ok.archive, ok.spool], { timeoutMs: 20_000 });
  t.equal(r0.code, 0, 'all succeeded: exit 0');
  t.equal(archivedRaw(ok.archive).length, 3);

  const bad = scratch(t);
  for (let i = 0; i < 3; i++) dropJob(bad.spool, `ok${i}`, '#!/bin/sh\nexit 0\n');
  dropJob(bad.spool, 'fails', '#!/bin/sh\necho oops >&2\nexit 3\n');
  const r1 = await run(t, BIN.pmjq, [...ROOT_ARGS, '--once', '-o', bad.archive, bad.spool], { timeoutMs: 20_000 });
  t.equal(r1.code, 1, 'one failed: exit 1');
  const entries = archivedRaw(bad.archive);
  t.equal(entries.length, 4, 'all four archived (the errors directory defaults to the archive)');
  const failed = entries.find((e) => e.name.toString() === 'fails')!;
  const rec = readJson<Rec>(failed.json);
  t.equal(rec.status, 'failed');
  t.equal(rec.exit_code, 3);
  t.equal(fs.readFileSync(failed.log, 'utf8'), 'oops\n', 'stderr is in the log');
  t.match(r1.stderr, /level=warn event=job-end .*status=failed exit=3/, 'the failure is logged as a warning');
});

t.test('--once drains the whole spool though the jobs found first end while its first scan goes on', async (t) => {
  const { spool, archive } = scratch(t);
  // each group: one job among 4 000 names that are not jobs (not executable), the scan's slow part
  dropJob(spool, 'top', '#!/bin/sh\nexit 0\n');
  for (let g = 0; g < 4; g++) {
    const dir = path.join(spool, `g${g}`);
    fs.mkdirSync(dir);
    for (let i = 0; i < 4000; i++) fs.writeFileSync(path.join(dir, `n${i}`), '');
    dropJob(dir, `job${g}`, '#!/bin/sh\nexit 0\n');
  }
  const r = await run(t, BIN.pmjq, [...ROOT_ARGS, '--once', '-o', archive, spool], { timeoutMs: 60_000 });
  t.equal(r.code, 0, 'exit 0');
  t.same(archivedRaw(archive).map((e) => e.name.toString()).sort(), ['job0', 'job1', 'job2', 'job3', 'top'], 'every job ran before it exited');
});

t.test('-e DIR: failed jobs go there, successful ones to the archive', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const errors = path.join(dir, 'errors');
  dropJob(spool, 'good', '#!/bin/sh\necho fine\n');
  dropJob(spool, 'bad', '#!/bin/sh\nexit 7\n');
  dropJob(spool, 'killed', '#!/bin/sh\nkill -KILL $$\n');
  const r = await run(t, BIN.pmjq, [...ROOT_ARGS, '--once', '-o', archive, '-e', errors, spool], { timeoutMs: 20_000 });
  t.equal(r.code, 1, 'exit 1: jobs failed');
  t.ok(fs.statSync(errors).isDirectory(), 'the errors directory is created');
  t.same(archivedRaw(archive).map((e) => e.name.toString()), ['good'], 'only the good job is in the archive');
  const errs = archivedRaw(errors);
  t.same(errs.map((e) => e.name.toString()).sort(), ['bad', 'killed'], 'failed jobs are in the errors directory');
  for (const e of errs) {
    const rec = readJson<Rec>(e.json);
    t.equal(rec.archive, e.file.toString(), 'record points into the errors directory');
    t.ok(fs.existsSync(e.log), 'log beside it');
    if (e.name.toString() === 'bad') {
      t.equal(rec.status, 'failed');
      t.equal(rec.exit_code, 7);
    } else {
      t.equal(rec.status, 'failed', 'a job killed by a signal it sent itself has failed');
      t.equal(rec.signal, 'SIGKILL');
      t.equal(rec.exit_code, null);
    }
  }
});

t.test('without -o: the job file is removed, its log and record kept in .pmjq/done; --keep 3', async (t) => {
  const { spool } = scratch(t);
  const done = path.join(spool, '.pmjq/done');
  for (let i = 0; i < 6; i++) dropJob(spool, `j${i}`, `#!/bin/sh\necho out${i}\n`);
  const r = await run(t, BIN.pmjq, [...ROOT_ARGS, '--once', '-j', '2', '--keep', '3', spool], { timeoutMs: 20_000 });
  t.equal(r.code, 0);
  t.same(fs.readdirSync(spool), ['.pmjq'], 'job files are removed');
  const hist = history(spool);
  t.equal(hist.length, 6, 'history has all six');
  const last3 = hist.slice(-3).map((h) => h.id as string);
  const files = fs.readdirSync(done).sort();
  t.same(files, last3.flatMap((id) => [`${id}.json`, `${id}.log`]).sort(), 'only the last 3 jobs\' log and record are kept');
  for (const id of last3) {
    const rec = readJson<Rec>(path.join(done, `${id}.json`));
    t.equal(rec.id, id);
    t.equal(rec.archive, null, 'no archive: the file was removed');
    t.equal(rec.log, path.join(done, `${id}.log`), 'record points at the kept log');
    t.equal(fs.readFileSync(path.join(done, `${id}.log`), 'utf8'), `out${(rec.name as string).slice(1)}\n`, 'log holds the output');
    t.same(rec, hist.find((h) => h.id === id), 'record equals the history record');
  }
});
