// Issue 9, the spool itself under attack (pmjq(5)): the spool directory
// removed and recreated while the daemon runs; a group directory removed
// while jobs in it are queued; the spool out of reach for a while (renamed
// away and back, or hidden under a tmpfs mounted over it — root is not
// stopped by chmod). Each time the daemon survives, loses nothing it still
// holds, and runs fresh jobs afterwards.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { BIN, IS_ROOT, ROOT_ARGS, scratch, start, waitFor } from '../helpers/helpers.js';
import { Ledger, eventLines, field, tmpfs } from '../helpers/invariants.js';

const CANARY_MS = 20_000;

function setup(t: Parameters<typeof scratch>[0], args: string[] = []) {
  const { dir, spool, archive } = scratch(t);
  const work = path.join(dir, 'work');
  const l = new Ledger(t, { spool, archive, work });
  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '--poll', '200ms', ...args, '-o', archive, spool]);
  return { dir, spool, archive, work, l, p };
}

t.test('the spool removed and recreated while the daemon runs: it goes on running jobs there', async (t) => {
  const { spool, archive, l, p } = setup(t);
  await p.waitLine(/ event=start /, 30_000);
  t.comment(`before: a fresh job ran in ${await l.canary(CANARY_MS)} ms`);
  await waitFor('the first canary archived', () => eventLines(p.stderr(), 'job-end').length === 1, CANARY_MS);
  const gone = fs.readdirSync(archive).filter((f) => f.endsWith('.json')).map((f) => String((JSON.parse(fs.readFileSync(path.join(archive, f), 'utf8')) as { id: string }).id));

  fs.rmSync(spool, { recursive: true, force: true });
  fs.mkdirSync(spool);
  const ms = await l.canary(CANARY_MS);
  t.comment(`after the spool was removed and recreated: a fresh job ran in ${ms} ms`);
  const ms2 = await l.canary(CANARY_MS);
  t.comment(`and the next one in ${ms2} ms`);
  await waitFor('both canaries archived', () => eventLines(p.stderr(), 'job-end').length === 3, CANARY_MS);
  t.equal(p.child.exitCode, null, 'the daemon survived');
  p.kill('SIGTERM');
  t.equal(await p.exited, 0, 'the daemon exits 0');
  // the history of the first job went with the removed spool
  l.check(t, true, gone);
});

t.test('a group directory removed while jobs in it are queued: the daemon goes on, the group works again when recreated', async (t) => {
  const { dir, spool, l, p } = setup(t, ['-j', '1']);
  await p.waitLine(/ event=start /, 30_000);
  const go = path.join(dir, 'go');
  // holds the only slot (-j 1) so that the group's jobs stay queued
  l.drop('', 'holder', `#!/bin/sh\n${l.recordPid}\nwhile [ ! -e '${go}' ]; do sleep 0.05; done\n`, 'archive');
  await p.waitLine(/ event=job-start .*name=holder /, CANARY_MS);
  fs.mkdirSync(path.join(spool, 'g'));
  for (let i = 0; i < 5; i++) l.drop('g', `queued-${i}`, `#!/bin/sh\n${l.recordPid}\n`);
  fs.rmSync(path.join(spool, 'g'), { recursive: true });
  for (let i = 0; i < 5; i++) l.withdraw('g', `queued-${i}`);
  fs.writeFileSync(go, '');
  await p.waitLine(/ event=job-end .*name=holder /, CANARY_MS);
  t.comment(`after the group was removed: a fresh job ran in ${await l.canary(CANARY_MS)} ms`);
  fs.mkdirSync(path.join(spool, 'g'));
  t.comment(`in the recreated group: a fresh job ran in ${await l.canary(CANARY_MS, 'g')} ms`);
  await waitFor('everything archived', () => eventLines(p.stderr(), 'job-end').length === 3, CANARY_MS);
  t.same(eventLines(p.stderr(), 'job-start').map((x) => field(x, 'name')).filter((n) => n!.startsWith('queued-')), [], 'none of the removed jobs ran');
  t.notMatch(p.stderr(), /level=error/, 'no error logged');
  p.kill('SIGTERM');
  t.equal(await p.exited, 0, 'the daemon exits 0');
  l.check(t, true);
});

t.test('the spool renamed away while a job runs and ends, then back: the job is archived, the daemon runs jobs again', async (t) => {
  const { dir, spool, l, p } = setup(t);
  await p.waitLine(/ event=start /, 30_000);
  const go = path.join(dir, 'go');
  l.drop('', 'running', `#!/bin/sh\n${l.recordPid}\nwhile [ ! -e '${go}' ]; do sleep 0.05; done\necho ended\n`, 'archive');
  await p.waitLine(/ event=job-start .*name=running /, CANARY_MS);
  const away = path.join(dir, 'away');
  fs.renameSync(spool, away);
  fs.writeFileSync(go, '');
  // the job ended while its claimed directory was out of reach: kept, not given up
  const line = await p.waitLine(/ event=(archive-failed|job-lost-to-recovery|job-end) /, CANARY_MS);
  t.match(line, / event=archive-failed /, `its archive step failed and will be retried: ${line.replace(/^.* event=/, '')}`);
  fs.renameSync(away, spool);
  await p.waitLine(/ event=archive-recovered /, CANARY_MS);
  t.comment(`after the spool came back: a fresh job ran in ${await l.canary(CANARY_MS)} ms`);
  await waitFor('the canary archived', () => eventLines(p.stderr(), 'job-end').length === 1, CANARY_MS);
  p.kill('SIGTERM');
  t.equal(await p.exited, 0, 'the daemon exits 0');
  l.check(t, true);
});

t.test('the spool hidden under a tmpfs for a while: the daemon survives and runs jobs once it is back', async (t) => {
  if (!IS_ROOT) throw new Error('mounting a tmpfs over the spool needs root');
  // --lease 4s: a heartbeat every second, so the stand-in is noticed soon
  const { spool, l, p } = setup(t, ['--lease', '4s']);
  await p.waitLine(/ event=start /, 30_000);
  t.comment(`before: a fresh job ran in ${await l.canary(CANARY_MS)} ms`);
  await waitFor('the canary archived', () => eventLines(p.stderr(), 'job-end').length === 1, CANARY_MS);
  const node = field(eventLines(p.stderr(), 'start')[0]!, 'node')!;
  const over = tmpfs(t, spool, '1m');
  // the daemon notices the empty stand-in: it makes its places there, or its heartbeat fails
  const noticed = await p.waitLine(/ event=(heartbeat-failed|spool-recreated) /, CANARY_MS);
  t.comment(`noticed: ${noticed.replace(/^.* event=/, '')}`);
  over.unmount();
  t.ok(fs.existsSync(path.join(spool, '.pmjq/claimed', node)), 'its claimed area is there again');
  t.comment(`after the spool came back: a fresh job ran in ${await l.canary(CANARY_MS)} ms`);
  await waitFor('the canary archived', () => eventLines(p.stderr(), 'job-end').length === 2, CANARY_MS);
  t.equal(p.child.exitCode, null, 'the daemon survived');
  p.kill('SIGTERM');
  t.equal(await p.exited, 0, 'the daemon exits 0');
  l.check(t, true);
});
