// Issue 3, groups (pmjq(1) GROUPS, pmjq(5) "Order"): a group's `max` bounds its own
// overlap while an unlimited group runs beside it; groups take turns; the
// command line's --group wins over .group.json; --groups serves only the
// named groups; bad --group values are usage errors. Overlap is computed from
// the jobs' own start/end stamps.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { BIN, ROOT_ARGS, archived, dropJob, history, run, scratch, start, waitFor } from '../helpers/helpers.js';
import { events, intervals, peakOverlap, stampJob } from '../helpers/sched.js';

t.test('max: 2 in .group.json bounds the group; an unlimited group beside it overlaps freely', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const lim = path.join(spool, 'lim');
  const free = path.join(spool, 'free');
  fs.mkdirSync(lim);
  fs.mkdirSync(free);
  fs.writeFileSync(path.join(lim, '.group.json'), '{"max": 2}\n');
  const limStamps = path.join(dir, 'lim.stamps');
  const freeStamps = path.join(dir, 'free.stamps');
  for (let i = 0; i < 8; i++) dropJob(lim, `l${i}`, stampJob(limStamps, 'sleep 0.4'));
  for (let i = 0; i < 8; i++) dropJob(free, `f${i}`, stampJob(freeStamps, 'sleep 1.5'));

  const t0 = Date.now();
  const r = await run(t, BIN.pmjq, [...ROOT_ARGS, '--once', '-j', '0', '-o', archive, spool], { timeoutMs: 45_000 });
  t.comment(`16 jobs in ${Date.now() - t0} ms`);
  t.equal(r.code, 0, 'pmjq --once exits 0');
  t.equal(archived(archive).length, 16, 'all 16 jobs archived');
  t.match(r.stderr, /event=settings group=lim .*max=2/, 'the settings of lim are logged');

  const l = intervals(limStamps);
  const f = intervals(freeStamps);
  t.equal(l.length, 8, 'every lim job stamped its start and end');
  t.equal(f.length, 8, 'every free job stamped its start and end');
  const pl = peakOverlap(l);
  const pf = peakOverlap(f);
  t.comment(`peak overlap: lim (max 2) ${pl}, free (unlimited) ${pf}`);
  t.ok(pl <= 2, `lim never has more than 2 jobs overlapping (peak ${pl})`);
  t.equal(pl, 2, 'lim does use its 2 slots');
  t.ok(pf > 2, `free overlaps more than 2 with -j 0 (peak ${pf})`);
  // and lim's limit did not hold free back: free ran beside lim
  // biome-ignore lint/complexity/useMathMinMax: bigints (Math.max takes numbers)
  const lEnd = l.reduce((m, i) => (i.end > m ? i.end : m), 0n);
  // biome-ignore lint/complexity/useMathMinMax: bigints (Math.min takes numbers)
  const fStartFirst = f.reduce((m, i) => (i.start < m ? i.start : m), f[0]!.start);
  t.ok(fStartFirst < lEnd, 'free started while lim was still running');
});

t.test('round-robin: 3 jobs of a small group start among the first few, beside 300 of a big group (-j 1)', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const big = path.join(spool, 'big');
  const small = path.join(spool, 'small');
  fs.mkdirSync(big);
  fs.mkdirSync(small);
  const order = path.join(dir, 'order');
  const body = `#!/bin/sh\necho "$PMJQ_GROUP $(date +%s%N) $PMJQ_JOB_NAME" >> '${order}'\n`;
  // the big group's jobs are all older than the small group's: oldest-first
  // across groups would run all 300 before the first small one
  const old = Date.now() / 1000 - 3600;
  for (let i = 0; i < 300; i++) {
    const f = dropJob(big, `b${String(i).padStart(3, '0')}`, body);
    fs.utimesSync(f, old + i, old + i);
  }
  for (let i = 0; i < 3; i++) dropJob(small, `s${i}`, body);

  // all 303 are queued before the daemon starts; the first 20 starts show
  // the turns, so the daemon is stopped then (SIGTERM: the rest stay queued)
  const t0 = Date.now();
  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '--once', '-j', '1', '-o', archive, spool]);
  const readOrder = (): string[][] => {
    try { return fs.readFileSync(order, 'utf8').split('\n').filter(Boolean).map((l) => l.split(' ')); } catch { return []; }
  };
  await waitFor('20 jobs started', () => readOrder().length >= 20, 40_000);
  // SIGTERM to the daemon's pid (as `kill PID`), not its process group: a job
  // forked a moment before might not have left that group yet
  p.child.kill('SIGTERM');
  t.equal(await p.exited, 0, 'pmjq exits 0 on SIGTERM');
  t.comment(`first 20 of 303 jobs at -j 1 in ${Date.now() - t0} ms`);

  const lines = readOrder();
  const left = fs.readdirSync(big).length + fs.readdirSync(small).length;
  const retry = fs.readdirSync(path.join(spool, '.pmjq/retry'));
  t.equal(lines.length + left + retry.length, 303,
    `every job ran once, is still queued or was put back (${lines.length} ran, ${left} queued, ${retry.length} put back)`,
    { stderr: p.stderr(), archived: archived(archive).map((e) => e.name).join(' ') });
  // the order the jobs started in, by their own stamps (-j 1: no overlap, so this is also the file order)
  lines.sort((a, b) => (BigInt(a[1]!) < BigInt(b[1]!) ? -1 : 1));
  const positions = lines.map((l, i) => (l[0] === 'small' ? i + 1 : 0)).filter(Boolean);
  t.comment(`small group's jobs started as numbers ${positions.join(', ')} of 303`);
  t.equal(positions.length, 3, 'the 3 small jobs ran');
  t.ok(positions.every((n) => n <= 8), 'all 3 small jobs are among the first 8 started');
  // within the big group: oldest first
  const bigNames = lines.filter((l) => l[0] === 'big').map((l) => l[2]);
  t.same(bigNames, Array.from({ length: bigNames.length }, (_, i) => `b${String(i).padStart(3, '0')}`), 'the big group ran oldest first');
  // the history agrees (with -j 1 jobs finish in the order they start)
  const smallHist = history(spool)
    .filter((rec) => rec.status === 'done')
    .sort((a, b) => Date.parse(a.started as string) - Date.parse(b.started as string))
    .map((rec, i) => (rec.group === 'small' ? i + 1 : 0)).filter(Boolean);
  t.ok(smallHist.length === 3 && smallHist.every((p) => p <= 8), `history: small started as ${smallHist.join(', ')}`);
});

t.test('--group NAME:max=1 on the command line wins over .group.json', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const g = path.join(spool, 'g');
  fs.mkdirSync(g);
  fs.writeFileSync(path.join(g, '.group.json'), '{"max": 3}\n');
  const stamps = path.join(dir, 'stamps');
  for (let i = 0; i < 5; i++) dropJob(g, `j${i}`, stampJob(stamps, 'sleep 0.3'));
  const r = await run(t, BIN.pmjq, [...ROOT_ARGS, '--once', '-j', '0', '-o', archive, '-g', 'other:max=5', '--group', 'g:max=1', spool], { timeoutMs: 45_000 });
  t.equal(r.code, 0, 'exit 0 (repeated -g/--group, each taking one value, before SPOOL)');
  const iv = intervals(stamps);
  t.equal(iv.length, 5, 'all 5 jobs ran');
  const peak = peakOverlap(iv);
  t.equal(peak, 1, `the group ran one at a time (peak ${peak}), not 3 as its file says`);
  t.match(r.stderr, /event=settings group=g .*max=1/, 'the effective settings (max=1) are logged');
});

t.test('--groups a,b serves only a and b; jobs of other groups stay queued, untouched', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const ran = path.join(dir, 'ran');
  const body = `#!/bin/sh\necho "$PMJQ_GROUP $PMJQ_JOB_NAME" >> '${ran}'\n`;
  const untouched: { file: string; st: fs.Stats }[] = [];
  for (const grp of ['a', 'b', 'c']) {
    fs.mkdirSync(path.join(spool, grp));
    for (let i = 0; i < 2; i++) {
      const f = dropJob(path.join(spool, grp), `${grp}${i}`, body);
      if (grp === 'c') untouched.push({ file: f, st: fs.statSync(f) });
    }
  }
  // the top level is the group "default": not named, not served
  const top = dropJob(spool, 'top0', body);
  untouched.push({ file: top, st: fs.statSync(top) });

  const r = await run(t, BIN.pmjq, [...ROOT_ARGS, '--once', '--groups', 'a,b', '-o', archive, spool], { timeoutMs: 45_000 });
  t.equal(r.code, 0, 'exit 0 once a and b are drained');
  const lines = fs.readFileSync(ran, 'utf8').split('\n').filter(Boolean).sort();
  t.same(lines, ['a a0', 'a a1', 'b b0', 'b b1'], 'exactly the jobs of a and b ran');
  t.same(archived(archive).map((e) => e.name).sort(), ['a0', 'a1', 'b0', 'b1'], 'and only they are archived');
  for (const u of untouched) {
    const st = fs.statSync(u.file);
    t.ok(st.ino === u.st.ino && st.mtimeMs === u.st.mtimeMs && st.ctimeMs === u.st.ctimeMs && st.mode === u.st.mode,
      `${path.relative(spool, u.file)} is still queued, untouched`);
  }
  t.same(fs.readdirSync(path.join(spool, '.pmjq/rejected')), [], 'nothing rejected');
  t.notOk(history(spool).some((rec) => rec.group === 'c' || rec.group === 'default'), 'no record of c or default');
});

t.test('bad --group values: exit 2 with one line naming the problem', async (t) => {
  const { spool } = scratch(t);
  const cases: [string, RegExp][] = [
    ['nocolon', /--group: 'nocolon' is not NAME:key=value/],
    [':max=1', /--group: ':max=1' is not NAME:key=value/],
    ['g:max', /--group: 'max' in 'g:max' is not key=value/],
    ['g:max=-1', /--group: max: "-1" is not a whole number/],
    ['g:max=1.5', /--group: max: "1.5" is not a whole number/],
    ['g:max=two', /--group: max: "two" is not a whole number/],
    ['g:nope=1', /--group: nope: unknown setting/],
    ['g:load=-0.5', /--group: load: "-0.5" is not a number/],
    ['g:cpu=250', /--group: cpu: "250" is above 100/],
    ['g:timeout=soon', /--group: timeout: 'soon' is not a duration/],
    ['g:backoff=1x', /--group: backoff: '1x' is not a duration/],
    ['g:retries=-2', /--group: retries: "-2" is not a whole number/],
  ];
  // independent runs: all at once (each is a node start-up, slow on a busy machine)
  const results = await Promise.all(cases.map(([value]) => run(t, BIN.pmjq, [...ROOT_ARGS, '--once', '--group', value, spool], { timeoutMs: 40_000 })));
  cases.forEach(([value, re], i) => {
    const r = results[i]!;
    t.equal(r.code, 2, `--group ${value}: exit 2`);
    const lines = r.stderr.split('\n').filter(Boolean);
    // the message is one line; usage errors add the usual "Try 'pmjq --help'" hint
    t.match(lines[0], re, `--group ${value}: ${lines[0]}`);
    t.ok(lines.length === 1 || (lines.length === 2 && /^Try 'pmjq --help'/.test(lines[1]!)), `--group ${value}: one line (plus the --help hint)`);
    t.equal(events(r.stderr, 'start').length, 0, `--group ${value}: the daemon did not start`);
  });
  t.same(fs.readdirSync(spool), [], 'the spool was not even set up');
});
