// Issue 9, the archive step failing (pmjq(5), pmjq(5) RECORDS): the archive and errors
// directories on small tmpfs mounts made by the test, filled to the last
// page or remounted read-only. A job that ended keeps its claimed directory
// (file, metadata, log) — a recoverable place — the daemon logs one
// `archive-failed` line per job and goes on running jobs; once space (or
// write access) returns, the backlog is archived (`archive-recovered`, one
// line per job). A job never runs again because its archive step failed,
// not even across a restart.
//
// The archive on another filesystem (EXDEV) with the daemon killed -9 at an
// exact syscall of its archive step (strace fault injection).
//
// Needs root (mount, ptrace) and strace; fails, never skips, without them.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { BIN, IS_ROOT, ROOT_ARGS, claimedJobs, history, readJson, scratch, signalAtSyscall, start, waitFor, waitLines, type Proc } from '../helpers/helpers.js';
import { Ledger, eventLines, field, tmpfs } from '../helpers/invariants.js';

if (!IS_ROOT) throw new Error('the archive fault tests mount tmpfs filesystems: run them as root');

/** Fill the filesystem of dir to its last byte with FILE; returns the file. */
function fill(dir: string, name = '.filler'): string {
  const file = path.join(dir, name);
  const fd = fs.openSync(file, 'a');
  const chunk = Buffer.alloc(4096, 0x78);
  try {
    for (;;) fs.writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    fs.closeSync(fd);
  }
  // the last partial page too
  try { for (;;) fs.appendFileSync(file, 'x'); } catch { /* full */ }
  return file;
}

/** Wait until the daemon has rewritten its heartbeat n more times: n × lease/4 of its own timers have run. */
async function beats(spool: string, node: string, n: number): Promise<void> {
  const hb = path.join(spool, '.pmjq/nodes', node);
  let last = fs.statSync(hb).mtimeMs;
  for (let i = 0; i < n; i++) {
    await waitFor(`heartbeat ${i + 1} of ${n}`, () => {
      try { const m = fs.statSync(hb).mtimeMs; if (m !== last) { last = m; return true; } } catch { /* being replaced */ }
      return false;
    }, 20_000);
  }
}

/** A job: records its pid, counts its runs in RUNS/NAME, prints `lines` lines of 64 bytes, exits `code`. */
function job(l: Ledger, runs: string, lines: number, code: number): string {
  return [
    '#!/bin/sh',
    l.recordPid,
    `echo "$PMJQ_JOB_ID $PMJQ_ATTEMPT" >> '${runs}'/"$PMJQ_JOB_NAME"`,
    lines ? `i=0; while [ $i -lt ${lines} ]; do echo "line $i of a job whose log fills pages: 0123456789012345678901234"; i=$((i+1)); done` : '',
    `exit ${code}`,
    '',
  ].join('\n');
}

function runCounts(runs: string): Map<string, number> {
  return new Map(fs.readdirSync(runs).map((f) => [f, fs.readFileSync(path.join(runs, f), 'utf8').split('\n').filter(Boolean).length]));
}

const nodeOf = (p: Proc): string => field(eventLines(p.stderr(), 'start')[0]!, 'node')!;

t.test('archive and errors directories on full filesystems: jobs stay claimed, one line each, the backlog finishes when space returns', async (t) => {
  const { dir, spool } = scratch(t);
  const archive = path.join(dir, 'archive');
  const errors = path.join(dir, 'errors');
  tmpfs(t, archive, '256k');
  tmpfs(t, errors, '256k');
  const work = path.join(dir, 'work');
  const runs = path.join(work, 'runs');
  fs.mkdirSync(runs, { recursive: true });
  const l = new Ledger(t, { spool, archive, errors, work });
  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '-j', '4', '--poll', '100ms', '--lease', '2s', '-o', archive, '-e', errors, spool]);
  await p.waitLine(/ event=start /, 30_000);
  const node = nodeOf(p);

  const fillers = [fill(archive), fill(errors)];
  const jobs: [string, number, number][] = [
    ['ok-small-1', 0, 0], ['ok-small-2', 1, 0], ['ok-big-1', 200, 0], ['ok-big-2', 200, 0],
    ['fail-small-1', 1, 3], ['fail-big-1', 200, 3], ['fail-big-2', 200, 3],
  ];
  for (const [name, lines, code] of jobs) l.drop('', name, job(l, runs, lines, code), code === 0 ? 'archive' : 'errors');
  const failed = await waitLines(p, / event=archive-failed /, jobs.length, 60_000);
  t.ok(failed.every((x) => /ENOSPC/.test(x)), 'each archive-failed line gives the cause (ENOSPC)');
  for (const x of failed) {
    const kept = field(x, 'kept_in')!;
    t.ok(fs.existsSync(path.join(kept, '.job.json')), `${field(x, 'name')}: kept in its claimed directory ${kept}`);
  }
  t.equal(p.child.exitCode, null, 'the daemon runs on');
  const ms = await l.canary(20_000);
  t.comment(`a fresh job ran ${ms} ms after it was dropped, with both archives full`);

  // a little space: a job file fits, its log or record does not — a half-done
  // archive step must be undone, not left behind (or taken for a job that
  // removed its own file)
  for (const f of fillers) fs.truncateSync(f, fs.statSync(f).size - 4096);
  // (a retry moves the job file in and back out within microseconds: what
  // stays is what two samples, heartbeats apart, both show)
  // (tmpfs counts its pages per CPU, approximately: a whole entry may fit)
  const half = (): string[] => l.places().problems;
  await beats(spool, node, 2);
  const first = half();
  await beats(spool, node, 2);
  t.same(half().filter((x) => first.includes(x)), [], 'with a page or two free, nothing half-archived stays in either directory');

  for (const f of fillers) fs.rmSync(f);
  // the canary may or may not have fitted into the full archive (an empty log takes no page)
  const failedIds = eventLines(p.stderr(), 'archive-failed').map((x) => field(x, 'id')!);
  const recovered = await waitLines(p, / event=archive-recovered /, failedIds.length, 60_000);
  t.same([...new Set(failedIds)].sort(), failedIds.sort(), 'one archive-failed line per job, not one per retry');
  t.same(recovered.map((x) => field(x, 'id')).sort(), failedIds.sort(), 'one archive-recovered line per job that failed to archive');
  for (const [name, , code] of jobs) {
    const where = code === 0 ? archive : errors;
    const rec = fs.readdirSync(where).filter((f) => f.endsWith(`-${name}.json`));
    t.equal(rec.length, 1, `${name}: archived once in ${path.basename(where)}`);
    t.equal(readJson(path.join(where, rec[0]!)).status, code === 0 ? 'done' : 'failed', `${name}: with its status`);
  }
  t.ok([...runCounts(runs).values()].every((n) => n === 1), 'every job ran exactly once');
  const ms2 = await l.canary(20_000);
  t.comment(`after the backlog: a fresh job ran ${ms2} ms after it was dropped`);
  await waitFor('the last canary archived', () => l.places().at.size === l.size && claimedJobs(path.join(spool, '.pmjq/claimed', node)).length === 0, 20_000);
  p.kill('SIGTERM');
  t.equal(await p.exited, 0, 'the daemon exits 0');
  t.notMatch(p.stderr(), /event=(job-lost-to-recovery|requeue-failed) /, 'nothing was taken for lost');
  l.check(t, true);
});

t.test('an archive remounted read-only: jobs stay claimed, the daemon carries on, and archives them once it is writable again', async (t) => {
  const { dir, spool } = scratch(t);
  const archive = path.join(dir, 'archive');
  const fsx = tmpfs(t, archive, '1m');
  const work = path.join(dir, 'work');
  const runs = path.join(work, 'runs');
  fs.mkdirSync(runs, { recursive: true });
  const l = new Ledger(t, { spool, archive, work });
  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '-j', '2', '--poll', '100ms', '-o', archive, spool]);
  await p.waitLine(/ event=start /, 30_000);
  fsx.remount('ro');
  t.teardown(() => { try { fsx.remount('rw'); } catch { /* unmounted */ } });
  for (let i = 0; i < 4; i++) l.drop('', `ro-${i}`, job(l, runs, 2, 0), 'archive');
  const failed = await waitLines(p, / event=archive-failed /, 4, 60_000);
  t.ok(failed.every((x) => /EROFS/.test(x)), 'the line gives the cause (EROFS)');
  const ms = await l.canary(20_000);
  t.comment(`a fresh job ran ${ms} ms after it was dropped, with the archive read-only`);
  fsx.remount('rw');
  await waitLines(p, / event=archive-recovered /, 5, 60_000);
  t.equal(fs.readdirSync(archive).filter((f) => f.endsWith('.json')).length, 5, 'all five archived');
  t.ok([...runCounts(runs).values()].every((n) => n === 1), 'every job ran exactly once');
  p.kill('SIGTERM');
  t.equal(await p.exited, 0, 'the daemon exits 0');
  l.check(t, true);
});

t.test('stopped while the archive is full: the jobs stay claimed; the next pmjq archives them without running them again', async (t) => {
  const { dir, spool } = scratch(t);
  const archive = path.join(dir, 'archive');
  tmpfs(t, archive, '256k');
  const work = path.join(dir, 'work');
  const runs = path.join(work, 'runs');
  fs.mkdirSync(runs, { recursive: true });
  const l = new Ledger(t, { spool, archive, work });
  const args = [...ROOT_ARGS, '-j', '2', '--poll', '100ms', '-o', archive, spool];
  const p = start(t, BIN.pmjq, args);
  await p.waitLine(/ event=start /, 30_000);
  const filler = fill(archive);
  for (let i = 0; i < 3; i++) l.drop('', `full-${i}`, job(l, runs, 1, 0), ['claimed', 'archive']);
  await waitLines(p, / event=archive-failed /, 3, 60_000);
  p.kill('SIGTERM');
  t.equal(await p.exited, 0, 'the daemon exits 0 on SIGTERM');
  l.check(t, false);
  const node = nodeOf(p);
  t.equal(claimedJobs(path.join(spool, '.pmjq/claimed', node)).length, 3, 'the three jobs wait in its claimed area');

  fs.rmSync(filler);
  const q = start(t, BIN.pmjq, args);
  await waitFor('the three jobs archived by the next pmjq', () => fs.readdirSync(archive).filter((f) => f.endsWith('.json')).length === 3, 60_000);
  t.same([...runCounts(runs).entries()].filter(([, n]) => n !== 1), [], 'none of them ran again: each ran exactly once');
  for (const f of fs.readdirSync(archive).filter((x) => x.endsWith('.json'))) {
    t.equal(readJson(path.join(archive, f)).status, 'done', `${f}: archived as done, the outcome of its only run`);
  }
  const ms = await l.canary(20_000);
  t.comment(`the next pmjq ran a fresh job ${ms} ms after it was dropped`);
  await waitFor('the canary archived', () => fs.readdirSync(archive).filter((f) => f.endsWith('.json')).length === 4, 20_000);
  q.kill('SIGTERM');
  t.equal(await q.exited, 0, 'the next pmjq exits 0');
  for (const name of ['full-0', 'full-1', 'full-2']) l.add('', name, 'archive');
  l.check(t, true);
});

// A daemon killed -9 inside its archive step, at an exact syscall. With the
// archive on another filesystem than the spool (EXDEV) the job file is
// copied to a staging name and the entry linked to that copy. A half entry
// (no record yet) is found by inode by the next pmjq, removed with the copy,
// and the job runs again: no orphan copy, no file without its record (a
// kill9 CI round once left one). A whole entry (record written, only the
// claimed file not yet unlinked) is kept and the job is not run again.
// (nth counts the daemon's calls of that syscall from the moment strace
// attaches, in the order finish.ts makes them; `leaves` checks that the
// count hit the intended point.)
interface Cut { what: string; otherFs: boolean; syscall: string; nth: number; leaves: string[]; historyLine: boolean; whole: boolean }
const cuts: Cut[] = [
  { what: 'the entry linked to the staging copy, the log not yet copied', otherFs: true, syscall: 'link', nth: 3, leaves: ['staging copy', 'entry'], historyLine: false, whole: false },
  { what: 'the log copied beside it, the record written under its staging name, not yet linked', otherFs: true, syscall: 'link', nth: 4, leaves: ['staging copy', 'entry', 'log'], historyLine: false, whole: false },
  { what: 'the record linked into place, no history line yet', otherFs: true, syscall: 'unlink', nth: 2, leaves: ['staging copy', 'entry', 'log', 'record'], historyLine: false, whole: true },
  { what: 'the record and history line written, the claimed file not yet unlinked', otherFs: true, syscall: 'unlink', nth: 3, leaves: ['staging copy', 'entry', 'log', 'record'], historyLine: true, whole: true },
  { what: 'the record and history line written, the claimed file not yet unlinked', otherFs: false, syscall: 'unlink', nth: 2, leaves: ['entry', 'log', 'record'], historyLine: true, whole: true },
  { what: 'the claimed file unlinked, its log not yet', otherFs: false, syscall: 'unlink', nth: 3, leaves: ['entry', 'log', 'record'], historyLine: true, whole: true },
  { what: 'the claimed file unlinked, the staging copy and its log not yet', otherFs: true, syscall: 'unlink', nth: 4, leaves: ['staging copy', 'entry', 'log', 'record'], historyLine: true, whole: true },
];
for (const c of cuts) {
  const where = c.otherFs ? 'archive on another filesystem' : 'archive on the spool\'s filesystem';
  const then = c.whole ? 'the next pmjq completes the step and does not run the job again' : 'the next pmjq undoes the half entry and runs the job once more';
  t.test(`${where}, kill -9 with ${c.what}: ${then}`, async (t) => {
    const { dir, spool } = scratch(t);
    const archive = path.join(dir, 'archive');
    if (c.otherFs) tmpfs(t, archive, '4m'); else fs.mkdirSync(archive, { recursive: true });
    const work = path.join(dir, 'work');
    const runs = path.join(work, 'runs');
    fs.mkdirSync(runs, { recursive: true });
    const l = new Ledger(t, { spool, archive, work });
    const args = [...ROOT_ARGS, '-j', '1', '--poll', '100ms', '-o', archive, spool];
    const p = start(t, BIN.pmjq, args);
    await p.waitLine(/ event=start /, 30_000);
    await signalAtSyscall(t, p.child.pid!, c.syscall, c.nth, 'KILL');
    l.drop('', 'cut-job', job(l, runs, 3, 0), 'archive');
    await waitFor('the daemon killed inside its archive step', () => p.child.exitCode !== null || p.child.signalCode !== null, 30_000);
    t.equal(await p.exited, 128 + 9, 'the daemon died of SIGKILL inside its archive step');
    const left = fs.readdirSync(archive);
    const found = [
      left.some((f) => f.startsWith('.pmjq-staging.')) ? 'staging copy' : null,
      left.some((f) => f.endsWith('-cut-job')) ? 'entry' : null,
      left.some((f) => f.endsWith('-cut-job.log')) ? 'log' : null,
      left.some((f) => f.endsWith('-cut-job.json')) ? 'record' : null,
    ].filter(Boolean);
    t.same(found, c.leaves, `it left ${c.leaves.join(', ')} in the archive`);
    const lines = history(spool).filter((r) => r.name === 'cut-job' && r.status === 'done').length;
    t.equal(lines, c.historyLine ? 1 : 0, c.historyLine ? 'and its history line' : 'and no history line yet');

    const q = start(t, BIN.pmjq, args);
    await q.waitLine(/ event=start /, 30_000);
    await waitFor('the job archived for good', () => l.places().at.get('default\0cut-job')?.join() === 'archive', 30_000);
    const rec = readJson(path.join(archive, fs.readdirSync(archive).find((f) => f.endsWith('-cut-job.json'))!));
    t.equal(rec.status, 'done', 'archived as done');
    const runsOf = c.whole ? 1 : 2;
    t.equal(rec.attempt, runsOf, c.whole ? 'on its first attempt' : 'on its second attempt (the first was interrupted)');
    t.equal(fs.readFileSync(path.join(archive, String(rec.log).split('/').pop()!), 'utf8').split('\n').filter(Boolean).length, 3 * runsOf,
      c.whole ? 'with the log of its one run' : 'its log holds both runs, once each (the half-moved copy was dropped)');
    t.same(runCounts(runs).get('cut-job'), runsOf, c.whole ? 'it ran once' : 'it ran twice: its first outcome died with the node, so it was run again');
    q.kill('SIGTERM');
    t.equal(await q.exited, 0, 'the next pmjq exits 0');
    const done = history(spool).filter((r) => r.name === 'cut-job' && r.status === 'done');
    t.equal(done.length, 1, 'the history has one done record of it');
    t.same(fs.readdirSync(archive).filter((f) => f.startsWith('.pmjq-staging.')), [], 'no staging copy is left');
    l.check(t, true);
  });
}
