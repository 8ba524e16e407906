// Issue 2, watching (docs/ARCHITECTURE.md, Watching): a running daemon notices new jobs through
// inotify at once (the rescan is set to a minute here, so only inotify can
// explain a quick pickup), watches group directories created at run time, and
// with --watch poll finds jobs by rescanning.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { BIN, ROOT_ARGS, archivedRaw, dropJob, inotifyWatches, scratch, start, waitFor, waitWatching } from '../helpers/helpers.js';

const PICKUP_MS = 5000;

/** Wait for an archive entry named `name` (bounded); returns how long it took. */
async function archivedWithin(archive: string, name: string, since: number, n = 1): Promise<number> {
  await waitFor(`${n} archived ${name}`, () => archivedRaw(archive).filter((e) => e.name.toString() === name).length >= n, PICKUP_MS);
  return Date.now() - since;
}

t.test('inotify: a dropped job is picked up at once, and a group directory made at run time is watched', async (t) => {
  const { spool, archive } = scratch(t);
  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '--poll', '60s', '-o', archive, spool]);
  t.match(await p.waitLine(/event=start /), /watch=inotify/, 'a local filesystem is watched with inotify');
  await waitWatching(p.child.pid!, spool);

  let t0 = Date.now();
  dropJob(spool, 'top', '#!/bin/sh\necho top\n');
  t.comment(`pickup to archive: ${await archivedWithin(archive, 'top', t0)} ms`);

  const grp = path.join(spool, 'newgroup');
  fs.mkdirSync(grp);
  t0 = Date.now();
  dropJob(grp, 'first', '#!/bin/sh\necho first\n');
  t.comment(`job in a new group: ${await archivedWithin(archive, 'first', t0)} ms`);
  await waitWatching(p.child.pid!, grp);
  t.pass('the new group directory is watched');
  t0 = Date.now();
  dropJob(grp, 'second', '#!/bin/sh\necho second\n');
  t.comment(`second job in the new group: ${await archivedWithin(archive, 'second', t0)} ms`);

  const recs = archivedRaw(archive).map((e) => JSON.parse(fs.readFileSync(e.json, 'utf8')) as { name: string; group: string; status: string });
  t.same(recs.map((r) => `${r.group}/${r.name}/${r.status}`).sort(), ['default/top/done', 'newgroup/first/done', 'newgroup/second/done']);
  p.child.kill('SIGTERM');
  t.equal(await p.exited, 0);
});

t.test('inotify: a name that was just claimed is noticed again when dropped again', async (t) => {
  const { spool, archive } = scratch(t);
  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '--poll', '60s', '-j', '0', '-o', archive, spool]);
  await p.waitLine(/event=start /);
  await waitWatching(p.child.pid!, spool);
  for (let i = 0; i < 10; i++) {
    const t0 = Date.now();
    dropJob(spool, 'again', `#!/bin/sh\necho round ${i}\n`);
    await archivedWithin(archive, 'again', t0, i + 1);
  }
  t.equal(archivedRaw(archive).length, 10, 'ten rounds, each noticed without waiting for the rescan');
  p.child.kill('SIGTERM');
  t.equal(await p.exited, 0);
});

t.test('inotify: jobs whose names are not UTF-8 are picked up at once, at the top level and in a group', async (t) => {
  const { spool, archive } = scratch(t);
  const grp = path.join(spool, 'g');
  fs.mkdirSync(grp);
  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '--poll', '60s', '-o', archive, spool]);
  await p.waitLine(/event=start /);
  await waitWatching(p.child.pid!, spool);
  await waitWatching(p.child.pid!, grp);
  // latin1 bytes, invalid as UTF-8: the event's name must arrive as bytes, or only the rescan (a minute here) finds them
  for (const [dir, name] of [[spool, Buffer.from([0x6a, 0xff, 0xfe, 0x01])], [grp, Buffer.from([0xe9, 0x74, 0xe9])]] as const) {
    const t0 = Date.now();
    dropJob(dir, name, '#!/bin/sh\necho odd name\n');
    await waitFor(`the job ${JSON.stringify(name.toString('latin1'))} archived`, () => archivedRaw(archive).some((e) => e.name.equals(name)), PICKUP_MS);
    t.pass(`${dir === spool ? 'top level' : 'group g'}: ${name.toString('hex')} picked up in ${Date.now() - t0} ms`);
  }
  p.child.kill('SIGTERM');
  t.equal(await p.exited, 0);
});

t.test('--watch poll --poll 200ms: jobs are found by rescanning', async (t) => {
  const { spool, archive } = scratch(t);
  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '--watch', 'poll', '--poll', '200ms', '-o', archive, spool]);
  t.match(await p.waitLine(/event=start /), /watch=poll .*poll_ms=200/, 'start line says poll, 200 ms');
  let t0 = Date.now();
  dropJob(spool, 'polled', '#!/bin/sh\necho polled\n');
  t.comment(`pickup by poll: ${await archivedWithin(archive, 'polled', t0)} ms`);
  const grp = path.join(spool, 'g');
  fs.mkdirSync(grp);
  t0 = Date.now();
  dropJob(grp, 'in-group', '#!/bin/sh\necho in-group\n');
  t.comment(`pickup in a new group by poll: ${await archivedWithin(archive, 'in-group', t0)} ms`);
  t.notOk(inotifyWatches(p.child.pid!).has(fs.statSync(spool).ino), 'no inotify watch on the spool in poll mode');
  p.child.kill('SIGTERM');
  t.equal(await p.exited, 0);
});

t.test('an executable made before its content is written (touch; chmod +x; cat >>) runs with its content', async (t) => {
  const { spool, archive } = scratch(t);
  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '-v', '--poll', '100ms', '-o', archive, spool]);
  await p.waitLine(/event=start /);
  await waitWatching(p.child.pid!, spool);
  const f = path.join(spool, 'late');
  fs.writeFileSync(f, '');
  fs.chmodSync(f, 0o755);
  t.match(await p.waitLine(/event=settling file=late /), /wait_ms=2000 reason="empty/, 'seen empty: it waits');
  fs.appendFileSync(f, '#!/bin/sh\necho the content\n');
  await waitFor('the job archived', () => archivedRaw(archive).length === 1, PICKUP_MS);
  t.equal(fs.readFileSync(archivedRaw(archive)[0]!.log, 'utf8'), 'the content\n', 'it ran with the content written after chmod');
  // an empty executable that stays empty runs once it has held still for the wait (as an empty job)
  const t0 = Date.now();
  fs.writeFileSync(path.join(spool, 'empty'), '', { mode: 0o755 });
  await waitFor('the empty job archived', () => archivedRaw(archive).length === 2, PICKUP_MS);
  t.ok(Date.now() - t0 >= 1900, `an empty one waits about 2 s (${Date.now() - t0} ms)`);
  p.child.kill('SIGTERM');
  t.equal(await p.exited, 0);
});

t.test('a doorbell whose ringer died between making and removing it does not stay in the spool', async (t) => {
  const { spool, archive } = scratch(t);
  // what a pmjqctl or a node killed -9 in the middle of ringing leaves
  fs.mkdirSync(path.join(spool, '.pmjq-bell.999999.0'));
  // a hidden directory of another name is the user's: left alone
  fs.mkdirSync(path.join(spool, '.mine'));
  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '--watch', 'poll', '--poll', '200ms', '-o', archive, spool]);
  await p.waitLine(/event=start /);
  await waitFor('the stale bell removed', () => !fs.existsSync(path.join(spool, '.pmjq-bell.999999.0')), 10_000);
  t.ok(fs.existsSync(path.join(spool, '.mine')), 'other hidden entries stay');
  p.child.kill('SIGTERM');
  t.equal(await p.exited, 0);
});
