// Issue 3, group settings at run time (pmjq(1) GROUPS): a changed .group.json
// takes effect without a restart (on the next rescan, or at once on SIGHUP);
// a broken one is reported with one log line naming the file and the field
// or reason, the group keeps its last good settings, and jobs still run.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { BIN, ROOT_ARGS, dropJob, scratch, start, waitLines } from '../helpers/helpers.js';
import { events, intervals, peakOverlap, replaceFile, stampJob } from '../helpers/sched.js';

t.test('a settings file changed while the daemon runs takes effect without restart (max 1 -> 3)', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const g = path.join(spool, 'g');
  fs.mkdirSync(g);
  const settings = path.join(g, '.group.json');
  fs.writeFileSync(settings, '{"max": 1}\n');
  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '-j', '0', '--poll', '100ms', '-o', archive, spool]);
  await p.waitLine(/event=settings group=g .*max=1/, 20_000);

  const s1 = path.join(dir, 'phase1');
  for (let i = 0; i < 3; i++) dropJob(g, `one${i}`, stampJob(s1, 'sleep 0.4'));
  await waitLines(p, /event=job-end .*status=done/, 3, 30_000);
  const peak1 = peakOverlap(intervals(s1));
  t.equal(peak1, 1, `max 1: one job at a time (peak ${peak1})`);

  replaceFile(settings, '{"max": 3}\n');
  await p.waitLine(/event=settings group=g .*max=3/, 20_000);
  const s2 = path.join(dir, 'phase2');
  for (let i = 0; i < 6; i++) dropJob(g, `three${i}`, stampJob(s2, 'sleep 1.5'));
  await waitLines(p, /event=job-end .*status=done/, 9, 40_000);
  const peak2 = peakOverlap(intervals(s2));
  t.comment(`peak overlap: ${peak1} under max 1, ${peak2} after the change to max 3`);
  t.equal(peak2, 3, `max 3: the overlap rose to 3 (peak ${peak2}), never above`);
  t.equal(events(p, 'start').length, 1, 'the same daemon all along: no restart');
  t.equal(events(p, 'settings-invalid').length, 0, 'no settings-invalid');
});

t.test('SIGHUP re-reads the settings at once', async (t) => {
  const { spool, archive } = scratch(t);
  const g = path.join(spool, 'g');
  fs.mkdirSync(g);
  const settings = path.join(g, '.group.json');
  fs.writeFileSync(settings, '{"max": 1}\n');
  // no periodic rescan during the test: only the signal can make it read the file
  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '-j', '0', '--poll', '1h', '-o', archive, spool]);
  await p.waitLine(/event=settings group=g .*max=1/, 20_000);
  await p.waitLine(/event=start /, 20_000);
  replaceFile(settings, '{"max": 4, "timeout": "90s"}\n');
  p.child.kill('SIGHUP');
  await p.waitLine(/event=reload reason=SIGHUP/, 20_000);
  const line = await p.waitLine(/event=settings group=g .*max=4/, 20_000);
  t.match(line, /timeout=90000/, 'the new settings, timeout in ms: ' + line);
  t.equal(p.child.exitCode, null, 'still running after SIGHUP');
});

t.test('broken settings files: one line each naming file and reason; last good settings stay; jobs still run', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const g = path.join(spool, 'g');
  const h = path.join(spool, 'h');
  fs.mkdirSync(g);
  fs.mkdirSync(h);
  const settings = path.join(g, '.group.json');
  fs.writeFileSync(settings, '{"max": 1}\n');
  // broken from the start: no last good settings, the group runs with none
  fs.writeFileSync(path.join(h, '.group.json'), '[1, 2]\n');
  const hStamps = path.join(dir, 'h.stamps');
  for (let i = 0; i < 3; i++) dropJob(h, `h${i}`, stampJob(hStamps, 'sleep 1'));

  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '-j', '0', '--poll', '100ms', '-o', archive, spool]);
  await p.waitLine(/event=settings group=g .*max=1/, 20_000);
  const hLine = await p.waitLine(/event=settings-invalid group=h /, 20_000);
  t.match(hLine, `file=${path.join(h, '.group.json')} `, 'h: the line names the file');
  t.match(hLine, /error="settings must be a JSON object/, 'h: and the reason');
  await waitLines(p, /event=job-end .*group=h .*status=done/, 3, 30_000);
  t.ok(peakOverlap(intervals(hStamps)) > 1, 'h (no good settings ever) ran its jobs without a limit');

  const tmp = (): string => path.join(g, `.new-${Math.random().toString(36).slice(2)}`);
  const variants: { what: string; install(): void; reason: RegExp }[] = [
    { what: 'invalid JSON', install: () => replaceFile(settings, '{"max": 3,\n'), reason: /error="is not valid JSON/ },
    { what: 'an unknown field', install: () => replaceFile(settings, '{"max": 3, "maxx": 4}\n'), reason: /error="key number 2 is not a setting \(known: max, / },
    { what: 'a negative max', install: () => replaceFile(settings, '{"max": -1}\n'), reason: /error="max: the number given is not a whole number/ },
    { what: 'a string where a duration is wanted', install: () => replaceFile(settings, '{"timeout": "soon"}\n'), reason: /error="timeout: the string given is not a duration/ },
    {
      what: 'a FIFO',
      install: () => { const f = tmp(); execFileSync('mkfifo', [f]); fs.renameSync(f, settings); },
      reason: /error="not a regular file/,
    },
    {
      what: 'a symlink to /dev/zero',
      install: () => { const f = tmp(); fs.symlinkSync('/dev/zero', f); fs.renameSync(f, settings); },
      reason: /error="is a symbolic link: never followed/,
    },
  ];
  let jobs = 3;
  for (const [k, v] of variants.entries()) {
    v.install();
    const lines = await waitLines(p, /event=settings-invalid group=g /, k + 1, 20_000);
    const line = lines[k]!;
    t.match(line, `file=${settings} `, `${v.what}: the line names the file`);
    t.match(line, v.reason, `${v.what}: and the field or reason: ${line.replace(/^.*error=/, '')}`);
    t.match(line, /level=warn/, `${v.what}: logged as a warning`);
    // jobs still run, under the last good settings (max 1)
    const stamps = path.join(dir, `g${k}.stamps`);
    for (let i = 0; i < 2; i++) dropJob(g, `g${k}-${i}`, stampJob(stamps, 'sleep 0.4'));
    jobs += 2;
    await waitLines(p, /event=job-end .*status=done/, jobs, 30_000);
    const peak = peakOverlap(intervals(stamps));
    t.equal(peak, 1, `${v.what}: jobs ran, one at a time: the last good max 1 stays (peak ${peak})`);
    // many rescans (every 100 ms) later, still one line for this file
    t.equal(events(p, 'settings-invalid').filter((l) => l.includes('group=g ')).length, k + 1, `${v.what}: reported once, not on every rescan`);
  }
  t.equal(events(p, 'settings').filter((l) => l.includes('group=g ')).length, 1, 'no broken file was taken as settings');

  // a good file again is taken at once
  replaceFile(settings, '{"max": 2}\n');
  await p.waitLine(/event=settings group=g .*max=2/, 20_000);
  t.pass('a good file replaces the last good settings');
  t.equal(p.child.exitCode, null, 'the daemon kept running throughout');
  t.notMatch(p.stderr(), /level=error/, 'no errors logged');
});
