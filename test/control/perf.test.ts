// pmjqctl status and ls on a spool with 100 000 queued jobs (issue 6: under
// 2 s). Queued jobs cost one readdir per group and no stat; ls stats only
// the rows it prints. Timed as the real binary, with bash's `time`: the CPU
// time (user + sys) is what the commands cost; the wall time is reported
// too, but on a shared test machine it mostly measures the other tests.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { BIN, scratch } from '../helpers/helpers.js';

const N = 100_000;
const BUDGET_S = 2;

function timed(args: string[]): { wall: number; cpu: number; stdout: string } {
  const quoted = args.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const out = path.join(process.env.TMPDIR ?? '/tmp', `ctl-perf-${process.pid}.out`);
  const r = spawnSync('bash', ['-c', `TIMEFORMAT='%R %U %S'; time '${process.execPath}' '${BIN.pmjqctl}' ${quoted} > '${out}'`], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, NO_COLOR: '1' } });
  const stdout = fs.readFileSync(out, 'utf8');
  fs.rmSync(out, { force: true });
  if (r.status !== 0) throw new Error(`pmjqctl ${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
  const [wall, user, sys] = r.stderr.trim().split('\n').pop()!.split(' ').map(Number);
  return { wall: wall!, cpu: user! + sys!, stdout };
}

t.test(`status and ls with ${N} queued jobs`, async (t) => {
  const { spool } = scratch(t);
  const big = path.join(spool, 'big');
  fs.mkdirSync(big);
  fs.mkdirSync(path.join(spool, 'small'));
  const t0 = Date.now();
  for (let i = 0; i < N; i++) fs.writeFileSync(path.join(big, `job-${i}`), '', { mode: 0o755 });
  for (let i = 0; i < 3; i++) fs.writeFileSync(path.join(spool, 'small', `s-${i}`), '', { mode: 0o755 });
  t.comment(`created ${N + 3} empty executable files in ${Date.now() - t0} ms`);

  const best = (args: string[]): { wall: number; cpu: number; stdout: string } => {
    // the better of two: the machine is shared with other tests
    const runs = [timed(args), timed(args)];
    return runs.reduce((a, b) => (b.cpu < a.cpu ? b : a));
  };
  const cases: [string, string[], (out: string) => boolean][] = [
    ['status', ['status', spool], (o) => /big\s+100000\s/.test(o) && /TOTAL\s+100003\s/.test(o)],
    ['status --json', ['status', spool, '--json'], (o) => (JSON.parse(o) as { totals: { queued: number } }).totals.queued === N + 3],
    ['ls', ['ls', spool], (o) => o.split('\n').length === 103 && o.includes('… 99903 more (of 100003;')],
    ['ls --json', ['ls', spool, '--json'], (o) => (JSON.parse(o) as { total: number; jobs: unknown[] }).total === N + 3],
    ['ls --grep', ['ls', spool, '--grep', '^job-9999[0-9]$'], (o) => o.split('\n').length === 12],
    ['ls --sort eta --reverse', ['ls', spool, '--sort', 'eta', '--reverse', '--limit', '10'], (o) => o.split('\n').length === 13],
  ];
  for (const [what, args, ok] of cases) {
    const r = best(args);
    t.comment(`${what}: cpu ${r.cpu.toFixed(2)} s, wall ${r.wall.toFixed(2)} s (load ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ')[0]})`);
    t.ok(ok(r.stdout), `${what}: the right answer`);
    t.ok(r.cpu < BUDGET_S, `${what}: ${r.cpu.toFixed(2)} s of CPU, under ${BUDGET_S} s`);
  }
});
