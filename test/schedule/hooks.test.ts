// Issue 3, hooks (pmjq(1) HOOKS): --on-idle fires once per idle period and
// --on-saturated once per saturated period, never in a loop; the node's
// state is in the hook's environment; a failing hook is logged and pmjq goes
// on running jobs.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { BIN, ROOT_ARGS, dropJob, scratch, start, waitFor, waitLines } from '../helpers/helpers.js';
import { elapse, events } from '../helpers/sched.js';

const lines = (f: string): string[] => {
  try { return fs.readFileSync(f, 'utf8').split('\n').filter(Boolean); } catch { return []; }
};

/** A hook command that appends one line with its environment to `file`. */
const recorder = (file: string, word: string): string =>
  `echo "${word} hook=$PMJQ_HOOK queued=$PMJQ_QUEUED running=$PMJQ_RUNNING node=$PMJQ_NODE spool=$PMJQ_SPOOL since=$PMJQ_SINCE load=$PMJQ_LOAD held_by=$PMJQ_HELD_BY" >> '${file}'`;

t.test('--on-idle fires once per idle period, not in a loop', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const file = path.join(dir, 'idle.out');
  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '--poll', '100ms', '--on-idle', recorder(file, 'idle'), '--idle-after', '300ms', '-o', archive, spool]);
  const node = /event=start node=(\S+)/.exec(await p.waitLine(/event=start /, 20_000))![1]!;

  // an empty spool: idle from the start
  await waitFor('the first idle hook', () => lines(file).length >= 1, 20_000);
  await p.waitLine(/event=hook-end hook=idle/, 20_000);
  const first = lines(file)[0]!;
  t.match(first, /^idle hook=idle queued=0 running=0 /, 'PMJQ_HOOK=idle, PMJQ_QUEUED=0, PMJQ_RUNNING=0');
  t.match(first, ` node=${node} `, 'PMJQ_NODE is this node');
  t.match(first, ` spool=${spool} `, 'PMJQ_SPOOL is the spool');
  t.match(first, / since=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z load=\d+\.\d\d held_by=$/, 'PMJQ_SINCE (ISO), PMJQ_LOAD, PMJQ_HELD_BY (empty)');

  // about 4 idle periods later (and ~10 rescans): still once
  await elapse(t, dir, 1200);
  t.equal(lines(file).length, 1, 'still fired once after ~4 more idle periods');

  // a job makes the node busy; when the spool drains it is idle again: once more
  dropJob(spool, 'work', '#!/bin/sh\nsleep 0.5\n');
  await p.waitLine(/event=job-end .*status=done/, 20_000);
  await waitFor('the second idle hook', () => lines(file).length >= 2, 20_000);
  await elapse(t, dir, 1200);
  t.equal(lines(file).length, 2, 'fired exactly once more after the job, not in a loop');
  t.equal(events(p, 'hook-start').length, 2, 'two hook-start lines');
  t.equal(events(p, 'hook-end').length, 2, 'two hook-end lines');
});

t.test('--on-saturated with -j 1 and several slow jobs fires once', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const file = path.join(dir, 'sat.out');
  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '-j', '1', '--poll', '100ms', '--on-saturated', recorder(file, 'sat'), '--saturated-after', '300ms', '-o', archive, spool]);
  const node = /event=start node=(\S+)/.exec(await p.waitLine(/event=start /, 20_000))![1]!;
  for (let i = 0; i < 4; i++) dropJob(spool, `slow${i}`, '#!/bin/sh\nsleep 0.8\n');
  await waitLines(p, /event=job-end .*status=done/, 4, 40_000);
  // after the last job: nothing queued, the saturated period is over; wait a few periods more
  await elapse(t, dir, 1000);
  const l = lines(file);
  t.equal(l.length, 1, 'fired once during the saturated period');
  t.match(l[0], /^sat hook=saturated queued=[123] running=1 /, 'PMJQ_HOOK=saturated, PMJQ_QUEUED (jobs held back), PMJQ_RUNNING=1');
  t.match(l[0], ` node=${node} `, 'PMJQ_NODE is this node');
  t.equal(events(p, 'hook-start').length, 1, 'one hook-start line');
});

t.test('a failing hook is logged (hook-failed) and the daemon keeps running jobs', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const ran = path.join(dir, 'ran');
  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '--poll', '100ms', '--on-idle', 'echo going down; exit 3', '--idle-after', '200ms', '-o', archive, spool]);
  const failed = await p.waitLine(/event=hook-failed /, 20_000);
  t.match(failed, /hook=idle exit=3 /, 'hook-failed names the hook and its exit status: ' + failed);
  t.match(failed, /output="going down"/, 'and has its output');
  t.match(failed, /level=warn/, 'a warning, not fatal');
  dropJob(spool, 'after', `#!/bin/sh\necho ran >> '${ran}'\n`);
  await p.waitLine(/event=job-end .*status=done/, 20_000);
  t.same(lines(ran), ['ran'], 'a job dropped afterwards runs');
  await waitLines(p, /event=hook-failed /, 2, 20_000);
  t.equal(p.child.exitCode, null, 'the daemon is still running');
});
