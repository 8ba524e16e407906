// Issue 9, jobs that misbehave (pmjq(1) THE JOB PROCESS: each job runs in its own
// process group; killing a job kills its whole tree): a job that forks a
// daemon child and exits — the child, still in the job's process group, is
// killed when the job ends, even one that ignores SIGTERM; a job that closes
// its stdout and stderr early; a job that ignores SIGTERM, with a child that
// does too (--timeout still ends both, with SIGKILL after --kill-grace); a
// job that spawns 1 000 children. Every process is checked by the pid it
// recorded, never by name.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { BIN, ROOT_ARGS, scratch, start, waitFor, waitLines } from '../helpers/helpers.js';
import { Ledger, eventLines, field } from '../helpers/invariants.js';

/** Recorded pids of a job (lines "PID JOBID" in WORK/pids/*), by job id. */
function pidsOf(l: Ledger, id: string): number[] {
  const out: number[] = [];
  for (const f of fs.readdirSync(l.pids)) {
    for (const line of fs.readFileSync(path.join(l.pids, f), 'utf8').split('\n')) {
      const [pid, jid] = line.split(' ');
      if (jid === id) out.push(Number(pid));
    }
  }
  return out;
}

/** Alive and not a zombie, and still carrying the job's id (pids are reused). */
function alive(pid: number, id: string): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z') return false;
    return fs.readFileSync(`/proc/${pid}/environ`).includes(`PMJQ_JOB_ID=${id}\0`);
  } catch { return false; }
}

/** How long forking and reaping n `sleep 0` processes takes here now (ms): the machine may be loaded. */
function forkMs(n: number): number {
  const t0 = Date.now();
  execFileSync('sh', ['-c', `i=0; while [ $i -lt ${n} ]; do sleep 0 & i=$((i+1)); done; wait`]);
  return Date.now() - t0;
}

t.test('misbehaving jobs: daemon children, closed stdout, ignored SIGTERM, 1 000 children — nothing survives its job', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const work = path.join(dir, 'work');
  const marks = path.join(work, 'marks');
  fs.mkdirSync(marks, { recursive: true });
  const l = new Ledger(t, { spool, archive, work });
  const TIMEOUT_S = 10;
  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '-j', '0', '--timeout', `${TIMEOUT_S}s`, '--kill-grace', '1s', '-o', archive, spool]);
  await p.waitLine(/ event=start /, 30_000);

  // a classic daemon: a background child of a background subshell (double
  // fork), reparented away from the job, still in its process group
  l.drop('', 'daemon-child', [
    '#!/bin/sh', l.recordPid,
    `( sleep 300 & echo "$! $PMJQ_JOB_ID" >> '${l.pids}'/$$.child; echo up > '${marks}/daemon-child' ) &`,
    `while [ ! -e '${marks}/daemon-child' ]; do sleep 0.05; done`,
    'exit 0', '',
  ].join('\n'), 'archive');
  // the same, but the daemon ignores SIGTERM
  l.drop('', 'daemon-child-noterm', [
    '#!/bin/sh', l.recordPid,
    `( trap '' TERM; sh -c 'trap "" TERM; echo "$$ $PMJQ_JOB_ID" >> "$0"/$$.child; echo up > "$1"; exec sleep 300' '${l.pids}' '${marks}/daemon-child-noterm' & ) &`,
    `while [ ! -e '${marks}/daemon-child-noterm' ]; do sleep 0.05; done`,
    'exit 0', '',
  ].join('\n'), 'archive');
  // stdout and stderr closed early; the job goes on and ends normally
  l.drop('', 'closes-stdout', [
    '#!/bin/sh', l.recordPid, 'echo before-close', 'exec 1>&- 2>&-', 'echo after-close', 'sleep 0.2',
    `echo ended > '${marks}/closes-stdout'`, 'exit 0', '',
  ].join('\n'), 'archive');
  // SIGTERM ignored by the job and by its child: --timeout, then SIGKILL after --kill-grace
  l.drop('', 'ignores-term', [
    '#!/bin/sh', l.recordPid, "trap '' TERM",
    `sh -c 'trap "" TERM; exec sleep 300' & ${l.recordChild}`,
    'echo trapped', 'while :; do sleep 1; done', '',
  ].join('\n'), 'archive');
  // 1 000 children, then wait: the timeout ends them all (its group's
  // timeout leaves time to fork 1 000 processes on a loaded machine)
  // (the group appears with its settings in one rename, as a user would make it;
  // its first job must run under them)
  fs.mkdirSync(path.join(spool, '.many'));
  // four times the estimate: the load of a 2-core CI machine swings while the job forks
  const manyTimeout = Math.max(30, Math.ceil((forkMs(100) * 10 * 4) / 1000));
  t.comment(`the 1000-children job's group timeout: ${manyTimeout} s (four times the time 1000 forks take on this machine now)`);
  fs.writeFileSync(path.join(spool, '.many', '.group.json'), `{"timeout": "${manyTimeout}s"}\n`);
  fs.renameSync(path.join(spool, '.many'), path.join(spool, 'many'));
  const t0 = Date.now();
  l.drop('many', 'thousand', [
    '#!/bin/sh', l.recordPid,
    `for i in $(seq 1000); do sleep 300 & ${l.recordChild}; done`,
    `echo spawned > '${marks}/thousand'`, 'wait', '',
  ].join('\n'), 'archive');

  await waitFor('the 1000 children spawned', () => fs.existsSync(path.join(marks, 'thousand')), manyTimeout * 1000);
  t.comment(`1000 children spawned ${Date.now() - t0} ms after the job was dropped`);
  const ends = await waitLines(p, / event=job-end /, 5, (manyTimeout + 30) * 1000);
  const end = (name: string): string => ends.find((x) => field(x, 'name') === name)!;
  const id = (name: string): string => field(end(name), 'id')!;

  t.equal(field(end('daemon-child'), 'status'), 'done', 'daemon-child: done');
  t.equal(field(end('daemon-child-noterm'), 'status'), 'done', 'daemon-child-noterm: done');
  t.equal(field(end('closes-stdout'), 'status'), 'done', 'closes-stdout: done');
  t.ok(fs.existsSync(path.join(marks, 'closes-stdout')), 'closes-stdout: went on after closing its output');
  const log = fs.readdirSync(archive).find((f) => f.endsWith('-closes-stdout.log'))!;
  t.equal(fs.readFileSync(path.join(archive, log), 'utf8'), 'before-close\n', 'closes-stdout: its log holds what it wrote before');
  t.match(end('ignores-term'), /status=timeout .*signal=SIGKILL/, 'ignores-term: timeout, ended by SIGKILL');
  t.equal(field(end('thousand'), 'status'), 'timeout', 'thousand: timeout');

  for (const name of ['daemon-child', 'daemon-child-noterm', 'ignores-term', 'thousand']) {
    const pids = pidsOf(l, id(name));
    const want = name === 'thousand' ? 1001 : 2;
    t.equal(pids.length, want, `${name}: ${want} pids recorded`);
    // a group that ignores SIGTERM is given --kill-grace (1 s) before SIGKILL
    await waitFor(`${name}: every recorded process gone`, () => pids.every((x) => !alive(x, id(name))), 15_000).catch(() => undefined);
    t.same(pids.filter((x) => alive(x, id(name))), [], `${name}: no process of it survives its end (by pid)`);
  }

  const ms = await l.canary(20_000);
  t.comment(`a fresh job ran ${ms} ms after it was dropped`);
  await waitFor('the canary archived', () => eventLines(p.stderr(), 'job-end').length === 6, 20_000);
  p.kill('SIGTERM');
  t.equal(await p.exited, 0, 'the daemon exits 0');
  l.check(t, true);
});
