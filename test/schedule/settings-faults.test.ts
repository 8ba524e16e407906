// Issue 9, hostile group settings (pmjq(1) GROUPS), beyond what
// settings.test.ts covers (invalid JSON, an unknown field, a negative
// max, a bad duration string, a FIFO, a symlink to /dev/zero): huge values,
// negative numbers in every other field, a file over the size limit, a
// directory, a symlink loop — one settings-invalid line each, however many
// rescans pass, the last good settings kept and jobs still running — and
// valid but extreme values: a timeout of 30 days must not end jobs at once
// (timers over 2^31−1 ms fire after 1 ms in Node).

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { BIN, ROOT_ARGS, scratch, start, waitFor, waitLines } from '../helpers/helpers.js';
import { Ledger, eventLines, field } from '../helpers/invariants.js';

/** Replace a file (or whatever is there) atomically: make it under a hidden name, then rename. */
function install(g: string, make: (tmp: string) => void): void {
  const tmp = path.join(g, `.new-${Math.random().toString(36).slice(2)}`);
  make(tmp);
  fs.renameSync(tmp, path.join(g, '.group.json'));
}

t.test('hostile .group.json: one line each, the last good settings stay, jobs still run', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const work = path.join(dir, 'work');
  const l = new Ledger(t, { spool, archive, work });
  const g = path.join(spool, 'g');
  fs.mkdirSync(g);
  fs.writeFileSync(path.join(g, '.group.json'), '{"max": 1}\n');
  // --lease 2s: a heartbeat every 500 ms, the clock the test counts rescans by (--poll 100ms)
  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '-j', '0', '--poll', '100ms', '--lease', '2s', '-o', archive, spool]);
  await p.waitLine(/ event=settings group=g .*max=1/, 30_000);
  const node = field(eventLines(p.stderr(), 'start')[0]!, 'node')!;
  const hb = path.join(spool, '.pmjq/nodes', node);
  const beats = async (n: number): Promise<void> => {
    let last = fs.statSync(hb).mtimeMs;
    for (let i = 0; i < n; i++) {
      await waitFor('a heartbeat', () => { try { const m = fs.statSync(hb).mtimeMs; if (m !== last) { last = m; return true; } } catch { /* replaced */ } return false; }, 20_000);
    }
  };

  const variants: { what: string; make(tmp: string): void; reason: RegExp }[] = [
    { what: 'a huge max', make: (f) => fs.writeFileSync(f, '{"max": 1e12}'), reason: /max: .* is not a whole number/ },
    { what: 'a number beyond double range', make: (f) => fs.writeFileSync(f, '{"load": 1e400}'), reason: /load: .*not a number/ },
    { what: 'a negative timeout', make: (f) => fs.writeFileSync(f, '{"timeout": -5}'), reason: /timeout: / },
    { what: 'a negative backoff string', make: (f) => fs.writeFileSync(f, '{"backoff": "-1s"}'), reason: /backoff: / },
    { what: 'a negative load', make: (f) => fs.writeFileSync(f, '{"load": -0.5}'), reason: /load: / },
    { what: 'a negative cpu', make: (f) => fs.writeFileSync(f, '{"cpu": -1}'), reason: /cpu: / },
    { what: 'negative retries', make: (f) => fs.writeFileSync(f, '{"retries": -3}'), reason: /retries: / },
    { what: 'a negative cluster_max', make: (f) => fs.writeFileSync(f, '{"cluster_max": -1}'), reason: /cluster_max: / },
    { what: 'a file over the size limit', make: (f) => fs.writeFileSync(f, `{"max": 1, "pad": "${'x'.repeat(100_000)}"}`), reason: /too large/ },
    { what: 'deeply nested JSON', make: (f) => fs.writeFileSync(f, '['.repeat(20_000) + ']'.repeat(20_000)), reason: /must be a JSON object|invalid JSON/ },
    { what: 'a directory', make: (f) => fs.mkdirSync(f), reason: /not a regular file/ },
    { what: 'a symlink loop', make: (f) => fs.symlinkSync('.group.json', f), reason: /is a symbolic link: never followed/ },
  ];
  let n = 0;
  for (const [k, v] of variants.entries()) {
    // a directory or a loop cannot be renamed over a file: the old one goes first
    if (v.what === 'a directory' || v.what === 'a symlink loop') fs.rmSync(path.join(g, '.group.json'), { recursive: true, force: true });
    install(g, v.make);
    const lines = await waitLines(p, / event=settings-invalid group=g /, k + 1, 20_000);
    t.match(lines[k], v.reason, `${v.what}: ${lines[k]!.replace(/^.* error=/, '').slice(0, 120)}`);
    await beats(2);
    t.equal(eventLines(p.stderr(), 'settings-invalid').length, k + 1, `${v.what}: one line, not one per rescan`);
    l.drop('g', `after-${k}`, `#!/bin/sh\n${l.recordPid}\n`, 'archive');
    n++;
    await waitFor(`job after-${k} archived`, () => eventLines(p.stderr(), 'job-end').length === n, 20_000);
  }
  t.equal(eventLines(p.stderr(), 'settings').filter((x) => x.includes('group=g ')).length, 1, 'the last good settings (max 1) were never replaced by a bad file');
  t.equal(p.child.exitCode, null, 'the daemon kept running');

  // valid but extreme: a 30-day timeout
  fs.rmSync(path.join(g, '.group.json'), { recursive: true, force: true });
  install(g, (f) => fs.writeFileSync(f, '{"timeout": "30d", "backoff": "1000000s"}'));
  await p.waitLine(/ event=settings group=g .*timeout=2592000000/, 20_000);
  l.drop('g', 'long-timeout', `#!/bin/sh\n${l.recordPid}\nsleep 0.5\n`, 'archive');
  const end = await p.waitLine(/ event=job-end .*name=long-timeout /, 20_000);
  t.equal(field(end, 'status'), 'done', `a job under a 30-day timeout runs to its end: ${end.replace(/^.* event=/, '')}`);

  t.comment(`after all that: a fresh job ran in ${await l.canary(20_000)} ms`);
  await waitFor('the canary archived', () => eventLines(p.stderr(), 'job-end').length === n + 2, 20_000);
  p.kill('SIGTERM');
  t.equal(await p.exited, 0, 'the daemon exits 0');
  l.check(t, true);
});
