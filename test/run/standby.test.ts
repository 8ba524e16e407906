// Standbys (pmjq(1) PERFORMANCE, run/starter.ts): while jobs are short, the
// next job of a busy slot is claimed ahead and left with the job helper,
// which starts it the moment the slot's job is reaped. First the helper
// itself, driven over its stdin and stdout as the daemon drives it: a held
// job starts only after the job before it is reaped, never past its
// deadline, and not once cancelled. Then the daemon: short jobs never run
// more at once than -j, and a standby whose slot stays taken goes back and
// runs later, once.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { BIN, ROOT, ROOT_ARGS, type TestLike, archived, dropJob, eventLines, field, history, readJson, run, scratch, waitFor } from '../helpers/helpers.js';

const HELPER = path.join(ROOT, 'libexec', 'pmjq-spawn');
const monotonicMs = (): number => Number(process.hrtime.bigint() / 1_000_000n);

/** The helper as the daemon runs it: requests in, reports out (in order, with their times). */
function helper(t: TestLike, dir: string) {
  const p = spawn(HELPER, ['65536'], { stdio: ['pipe', 'pipe', 'inherit'], env: {} });
  const reports: { line: string; at: number }[] = [];
  t.teardown(() => {
    p.stdin.end();
    p.kill('SIGKILL');
    // its jobs not reaped yet (each in its own process group), should a test end before them
    const exited = new Set(reports.map((r) => /^exit (\S+) /.exec(r.line)?.[1]));
    for (const r of reports) {
      const m = /^started (\S+) (\d+)$/.exec(r.line);
      if (m && !exited.has(m[1])) try { process.kill(-Number(m[2]), 'SIGKILL'); } catch { /* over */ }
    }
  });
  let buf = Buffer.alloc(0);
  p.stdout.on('data', (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    for (let nl: number; (nl = buf.indexOf(10)) >= 0;) {
      const line = buf.toString('latin1', 0, nl);
      const d = /^d \S+ (\d+)$/.exec(line);
      if (d && buf.length < nl + 1 + Number(d[1])) return;
      buf = buf.subarray(nl + 1 + (d ? Number(d[1]) : 0));
      reports.push({ line, at: monotonicMs() });
    }
  });
  let n = 0;
  return {
    reports,
    /** start `script` (sh -c) as job TOKEN, held after `after` (a token) until `deadline` (monotonic ms) */
    job(script: string, opts: { after?: string; deadlineMs?: number } = {}): string {
      const token = `t${++n}`;
      const argv = ['/bin/sh', '-c', script];
      const fields = [opts.after ?? '-', String(opts.deadlineMs ?? 0), '', token, path.join(dir, `${token}.log`), 'log', dir, '-', '-', '-',
        String(argv.length), ...argv, '1', 'PATH=/usr/bin:/bin'];
      const req = Buffer.from(fields.join('\0'));
      p.stdin.write(Buffer.concat([Buffer.from(`${req.length}\n`), req]));
      return token;
    },
    say(line: string): void { p.stdin.write(`${line}\n`); },
    /** the first report matching re, waited for */
    when(re: RegExp, timeoutMs = 10_000): Promise<{ line: string; at: number; index: number }> {
      return waitFor(`a report ${re}`, () => {
        const index = reports.findIndex((r) => re.test(r.line));
        return index >= 0 ? { ...reports[index]!, index } : undefined;
      }, timeoutMs);
    },
  };
}

t.test('the helper holds a standby until the job before it is reaped, then starts it at once', async (t) => {
  const { dir } = scratch(t);
  const h = helper(t, dir);
  await h.when(/^ready 3$/);
  const a = h.job('sleep 0.3');
  const b = h.job(`echo ran > '${dir}/b'`, { after: a, deadlineMs: monotonicMs() + 20_000 });
  await h.when(new RegExp(`^started ${a} `));
  t.notOk(fs.existsSync(path.join(dir, 'b')), 'not started while the job before it runs');
  const exitA = await h.when(new RegExp(`^exit ${a} 0 `));
  const startedB = await h.when(new RegExp(`^started ${b} \\d+$`));
  t.ok(startedB.index > exitA.index, 'started after the job before it was reaped');
  t.ok(startedB.at - exitA.at < 2000, `and at once (${startedB.at - exitA.at} ms)`);
  await h.when(new RegExp(`^exit ${b} 0 `));
  t.equal(fs.readFileSync(path.join(dir, 'b'), 'utf8'), 'ran\n');
});

t.test('a standby whose deadline passes first never starts: "failed TOKEN 0 expired", at its deadline', async (t) => {
  const { dir } = scratch(t);
  const h = helper(t, dir);
  const c = h.job('sleep 1');
  const deadline = monotonicMs() + 200;
  const d = h.job(`echo ran > '${dir}/d'`, { after: c, deadlineMs: deadline });
  const expired = await h.when(new RegExp(`^failed ${d} 0 expired$`));
  t.ok(expired.at >= deadline, 'not before its deadline');
  t.ok(expired.at - deadline < 600, `told soon after it (${expired.at - deadline} ms)`);
  await h.when(new RegExp(`^exit ${c} 0 `));
  // (the reports after the exit: nothing more of d)
  const later = h.job('true');
  await h.when(new RegExp(`^exit ${later} `));
  t.notOk(h.reports.some((r) => r.line.startsWith(`started ${d} `)), 'never started');
  t.notOk(fs.existsSync(path.join(dir, 'd')), 'never ran');
});

t.test('a standby cancelled ("x TOKEN") never starts; a job already started goes on', async (t) => {
  const { dir } = scratch(t);
  const h = helper(t, dir);
  const e = h.job('sleep 0.4');
  const f = h.job(`echo ran > '${dir}/f'`, { after: e, deadlineMs: monotonicMs() + 20_000 });
  await h.when(new RegExp(`^started ${e} `));
  h.say(`x ${f}`);
  h.say(`x ${e}`);
  await h.when(new RegExp(`^failed ${f} 0 cancelled$`));
  await h.when(new RegExp(`^exit ${e} 0 `));
  const later = h.job('true');
  await h.when(new RegExp(`^exit ${later} `));
  t.notOk(h.reports.some((r) => r.line.startsWith(`started ${f} `)), 'the standby never started');
  t.notOk(fs.existsSync(path.join(dir, 'f')), 'nor ran');
  t.notOk(h.reports.some((r) => r.line.startsWith(`failed ${e} `)), 'the running job was not touched by its cancel');
});

t.test('a standby after a job already gone starts at once; fd 3\'s end is told only after commands', async (t) => {
  const { dir } = scratch(t);
  const h = helper(t, dir);
  const g = h.job('true', { after: 'nobody', deadlineMs: monotonicMs() + 20_000 });
  await h.when(new RegExp(`^exit ${g} 0 `));
  t.ok(h.reports.some((r) => r.line.startsWith(`started ${g} `)), 'started with nothing to wait for');
  t.notOk(h.reports.some((r) => r.line === `e ${g}`), 'a job that wrote no command: no "e" (a message saved per job)');
  // (its commands closed before it ends: a job reaped first has its fd 3 closed unread)
  const i = h.job("printf 'hello\\n' >&3; exec 3>&-; sleep 0.2");
  await h.when(new RegExp(`^d ${i} 6$`));
  h.say(`r ${i}`); // (the next chunk, as the daemon asks for it: here the end)
  await h.when(new RegExp(`^exit ${i} `));
  const lines = h.reports.map((r) => r.line);
  t.ok(lines.indexOf(`d ${i} 6`) >= 0 && lines.indexOf(`e ${i}`) > lines.indexOf(`d ${i} 6`), 'one that did: its bytes, then "e"');
});

t.test('short jobs run back to back through standbys, never more at once than -j', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const runs = path.join(dir, 'runs');
  fs.mkdirSync(runs);
  const N = 300;
  // each job counts the jobs running with it (its own mark included)
  for (let i = 0; i < N; i++) {
    dropJob(spool, `j${i}`, `#!/bin/sh
: > '${runs}'/run.$$
set -- '${runs}'/run.*
[ $# -gt 2 ] && echo $# >> '${dir}/over'
rm -f '${runs}'/run.$$
`);
  }
  const r = await run(t, BIN.pmjq, [...ROOT_ARGS, '-v', '--once', '-j', '2', '-o', archive, spool], { timeoutMs: 120_000 });
  t.equal(r.code, 0, r.stderr.slice(-2000));
  const standbys = eventLines(r.stderr, 'standby');
  t.ok(standbys.length > 0, `standbys were made (${standbys.length})`);
  t.notOk(fs.existsSync(path.join(dir, 'over')), `never more than 2 at once${fs.existsSync(path.join(dir, 'over')) ? `: ${fs.readFileSync(path.join(dir, 'over'), 'utf8')}` : ''}`);
  t.equal(archived(archive).length, N, 'every job archived');
  const recs = history(spool);
  t.equal(recs.length, N, 'one record each');
  t.ok(recs.every((x) => x.status === 'done' && x.attempt === 1), 'each done, at its first attempt');
  t.equal(new Set(recs.map((x) => x.name)).size, N, 'no job twice');
});

t.test('a standby whose slot stays taken goes back and runs once, after the job before it', async (t) => {
  // the standby is made only if the job before the long one ended quickly
  // (it is a trivial one, but a loaded machine can be slow): a few tries
  for (let attempt = 1; attempt <= 4; attempt++) {
    const { spool, archive } = scratch(t);
    const base = Date.now() / 1000 - 100;
    const drop = (name: string, body: string, age: number): void => {
      const f = dropJob(spool, name, body);
      fs.utimesSync(f, base + age, base + age);
    };
    for (let i = 0; i < 10; i++) drop(`q${i}`, '#!/bin/sh\nexit 0\n', i);
    drop('long', '#!/bin/sh\nsleep 1\n', 20);
    drop('next', '#!/bin/sh\nexit 0\n', 30);
    const r = await run(t, BIN.pmjq, [...ROOT_ARGS, '-v', '--once', '-j', '1', '-o', archive, spool], { timeoutMs: 60_000 });
    t.equal(r.code, 0, r.stderr.slice(-2000));
    const made = eventLines(r.stderr, 'standby').filter((l) => field(l, 'name') === 'next');
    if (made.length === 0) { t.comment(`try ${attempt}: no standby behind the long job (the job before it was not quick)`); continue; }
    const returned = eventLines(r.stderr, 'standby-returned').filter((l) => field(l, 'name') === 'next');
    t.equal(returned.length, 1, 'it went back when its slot was not free in time');
    t.match(returned[0], /reason="its slot was not free in time"/, 'saying why');
    const recs = history(spool);
    const next = recs.filter((x) => x.name === 'next');
    const long = recs.find((x) => x.name === 'long')!;
    t.equal(next.length, 1, 'one record: it ran once');
    t.equal(next[0]!.attempt, 1, 'its first attempt (the one it did not start gives it back)');
    t.equal(next[0]!.status, 'done');
    t.ok(Date.parse(String(next[0]!.started)) >= Date.parse(String(long.finished)), 'it started after the long job ended (-j 1)');
    const entry = archived(archive).find((a) => a.name === 'next')!;
    t.equal(readJson(`${entry.file}.json`).attempt, 1, 'its archive record says so too');
    t.same(fs.readdirSync(path.join(spool, '.pmjq/retry')), [], 'nothing left in the retry area');
    return;
  }
  t.fail('no standby was made behind the long job in four tries');
});
