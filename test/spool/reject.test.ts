// Issue 2, what is a job (pmjq(5)): symlinks, FIFOs, sockets, devices,
// setuid/setgid files, files writable by others, directories inside a group
// and (as root, without --allow-root) root-owned files are moved to
// .pmjq/rejected/ID/ with a .reject.json naming the reason — never opened,
// never run, never deleted — and the daemon goes on running good jobs.
// Dotfiles and non-executable files are left alone.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import t, { type Test } from 'tap';
import { BIN, IS_ROOT, ROOT_ARGS, archivedRaw, dropJob, history, openToAll, readJson, scratch, start, waitFor, waitLines } from '../helpers/helpers.js';

type Rec = Record<string, unknown>;

interface Bad {
  /** spool-relative dir ('' = top level) */
  dir: string;
  name: string;
  reason: RegExp;
  /** the rejected entry still is what it was */
  same: (st: fs.Stats) => boolean;
}

/** A job body that leaves a marker if it is ever run. */
const runs = (markers: string, what: string): string => `#!/bin/sh\ntouch '${markers}/${what}'\n`;

/** Listen on a Unix socket at p (the socket file exists while the server is open; closing it unlinks the path). */
async function socketAt(t: Test, p: string): Promise<net.Server> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(p, resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return server;
}

/** Find the rejected entry of `name` in `group`: the directory and its .reject.json. */
function rejectedEntry(spool: string, group: string, name: string): { dir: string; rec: Rec } | undefined {
  const root = path.join(spool, '.pmjq/rejected');
  for (const id of fs.readdirSync(root)) {
    const rec = readJson<Rec>(path.join(root, id, '.reject.json'));
    if (rec.name === name && rec.group === group) return { dir: path.join(root, id), rec };
  }
  return undefined;
}

function checkRejected(t: Test, spool: string, markers: string, b: Bad): void {
  const group = b.dir === '' ? 'default' : b.dir;
  const what = `${b.dir ? b.dir + '/' : ''}${b.name}`;
  t.notOk(fs.existsSync(path.join(spool, b.dir, b.name)) || isLink(path.join(spool, b.dir, b.name)), `${what}: gone from the spool`);
  const e = rejectedEntry(spool, group, b.name);
  if (!t.ok(e, `${what}: has a .reject.json in .pmjq/rejected/ID/`)) return;
  const moved = path.join(e!.dir, b.name);
  t.ok(b.same(fs.lstatSync(moved)), `${what}: moved there as it was`);
  t.equal(e!.rec.status, 'rejected', `${what}: status rejected`);
  t.match(e!.rec.error, b.reason, `${what}: the reason is named (${e!.rec.error as string})`);
  t.equal(e!.rec.archive, moved, `${what}: the record says where it is`);
  t.match(path.basename(e!.dir), /^.+\.\d+\.\d+\.\d{3}\.\d+$/, 'the rejected entry is named by a job id');
  t.ok(history(spool).some((h) => h.id === e!.rec.id && h.status === 'rejected'), `${what}: in history as rejected`);
  t.notOk(fs.existsSync(path.join(markers, b.name)), `${what}: never run`);
}

function isLink(p: string): boolean {
  try { return fs.lstatSync(p).isSymbolicLink(); } catch { return false; }
}

t.test('every unacceptable kind of file is rejected with its reason and never run; the daemon goes on', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const markers = path.join(dir, 'markers');
  fs.mkdirSync(markers);
  const target = path.join(dir, 'target.sh');
  fs.writeFileSync(target, runs(markers, 'symlink'), { mode: 0o755 });
  fs.mkdirSync(path.join(spool, 'grp'));

  const bad: Bad[] = [];
  fs.symlinkSync(target, path.join(spool, 'symlink'));
  bad.push({ dir: '', name: 'symlink', reason: /symbolic link/, same: (st) => st.isSymbolicLink() });
  execFileSync('mkfifo', [path.join(spool, 'fifo')]);
  bad.push({ dir: '', name: 'fifo', reason: /FIFO/, same: (st) => st.isFIFO() });
  const server = await socketAt(t, path.join(spool, 'socket'));
  bad.push({ dir: '', name: 'socket', reason: /socket/, same: (st) => st.isSocket() });
  if (IS_ROOT) {
    execFileSync('mknod', [path.join(spool, 'device'), 'c', '1', '3']);
    bad.push({ dir: '', name: 'device', reason: /device/, same: (st) => st.isCharacterDevice() && st.rdev === fs.statSync('/dev/null').rdev });
  } else {
    t.throws(() => execFileSync('mknod', [path.join(dir, 'device'), 'c', '1', '3'], { stdio: 'ignore' }), 'not root: a device file cannot be made, so that kind is proved as root only');
  }
  dropJob(spool, 'setuid', runs(markers, 'setuid'), 0o4755);
  bad.push({ dir: '', name: 'setuid', reason: /setuid/, same: (st) => (st.mode & 0o7777) === 0o4755 });
  dropJob(path.join(spool, 'grp'), 'setgid', runs(markers, 'setgid'), 0o2755);
  bad.push({ dir: 'grp', name: 'setgid', reason: /setgid/, same: (st) => (st.mode & 0o7777) === 0o2755 });
  dropJob(spool, 'group-writable', runs(markers, 'group-writable'), 0o775);
  bad.push({ dir: '', name: 'group-writable', reason: /writable by users other than its owner/, same: (st) => (st.mode & 0o7777) === 0o775 });
  dropJob(path.join(spool, 'grp'), 'world-writable', runs(markers, 'world-writable'), 0o757);
  bad.push({ dir: 'grp', name: 'world-writable', reason: /writable by users other than its owner/, same: (st) => (st.mode & 0o7777) === 0o757 });
  fs.mkdirSync(path.join(spool, 'grp', 'nested'));
  dropJob(path.join(spool, 'grp', 'nested'), 'inner', runs(markers, 'inner'));
  bad.push({ dir: 'grp', name: 'nested', reason: /directory inside a group/, same: (st) => st.isDirectory() });

  // left alone: dotfiles (even executable ones) and files without an execute bit
  dropJob(spool, '.hidden', runs(markers, 'hidden'));
  dropJob(path.join(spool, 'grp'), '.partial', runs(markers, 'partial'));
  dropJob(spool, 'data', runs(markers, 'data'), 0o644);
  const alone = ['.hidden', 'grp/.partial', 'data'].map((f) => ({ f, st: fs.statSync(path.join(spool, f)), body: fs.readFileSync(path.join(spool, f)) }));

  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '-o', archive, spool]);
  await waitLines(p, /level=warn event=rejected /, bad.length);
  // the daemon still runs a good job
  dropJob(spool, 'good', '#!/bin/sh\necho good\n');
  await waitFor('the good job archived', () => archivedRaw(archive).some((e) => e.name.toString() === 'good'), 5000);
  // and rejects what is dropped while it runs
  fs.symlinkSync(target, path.join(spool, 'late-link'));
  dropJob(path.join(spool, 'grp'), 'late-writable', runs(markers, 'late-writable'), 0o777);
  await waitLines(p, /level=warn event=rejected /, bad.length + 2, 5000);
  bad.push({ dir: '', name: 'late-link', reason: /symbolic link/, same: (st) => st.isSymbolicLink() });
  bad.push({ dir: 'grp', name: 'late-writable', reason: /writable/, same: (st) => (st.mode & 0o777) === 0o777 });

  for (const b of bad) checkRejected(t, spool, markers, b);
  t.ok(fs.existsSync(path.join(spool, '.pmjq/rejected', path.basename(rejectedEntry(spool, 'grp', 'nested')!.dir), 'nested', 'inner')), 'the nested directory keeps its content');
  t.equal(fs.readdirSync(path.join(spool, '.pmjq/rejected')).length, bad.length, 'one rejected entry per bad file');
  t.equal(fs.readFileSync(target, 'utf8'), runs(markers, 'symlink'), 'a symlink\'s target is never touched');
  for (const a of alone) {
    const st = fs.statSync(path.join(spool, a.f));
    t.ok(st.ino === a.st.ino && st.mode === a.st.mode && st.mtimeMs === a.st.mtimeMs, `${a.f}: left in place, untouched`);
    t.same(fs.readFileSync(path.join(spool, a.f)), a.body, `${a.f}: content unchanged`);
  }
  t.same(fs.readdirSync(markers), [], 'nothing bad or hidden ever ran');
  const rec = readJson<Rec>(archivedRaw(archive).find((e) => e.name.toString() === 'good')!.json);
  t.equal(rec.status, 'done', 'the good job is done');

  // a non-executable file is not a job *yet*: once made executable, it runs
  fs.chmodSync(path.join(spool, 'data'), 0o755);
  await waitFor('data, made executable, to run', () => fs.existsSync(path.join(markers, 'data')), 5000);
  t.pass('a file made executable later is taken as a job');
  server.close();
  p.child.kill('SIGTERM');
  t.equal(await p.exited, 0, 'exit 0');
});

t.test(IS_ROOT ? 'as root: a root-owned job is rejected without --allow-root' : 'not root: jobs owned by pmjq\'s user run without --allow-root', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const markers = path.join(dir, 'markers');
  fs.mkdirSync(markers);
  fs.chmodSync(markers, 0o777);
  openToAll(dir, spool);
  dropJob(spool, 'mine', runs(markers, 'mine'));
  if (IS_ROOT) {
    // a good job that is not root's: owned by nobody
    const good = dropJob(spool, 'nobodys', runs(markers, 'nobodys'));
    fs.chownSync(good, 65534, 65534);
  }
  const p = start(t, BIN.pmjq, ['--once', '-o', archive, spool]);
  const code = await p.exited;
  t.ok(code === 0 || code === 1, `pmjq --once ends normally (exit ${code})`);
  if (IS_ROOT) {
    checkRejected(t, spool, markers, { dir: '', name: 'mine', reason: /owned by root.*--allow-root/, same: (st) => st.isFile() && st.uid === 0 });
    t.ok(fs.existsSync(path.join(markers, 'nobodys')), 'a job owned by another user runs');
    t.same(archivedRaw(archive).map((e) => e.name.toString()), ['nobodys'], 'and is archived');
  } else {
    t.ok(fs.existsSync(path.join(markers, 'mine')), 'the user\'s own job runs');
    t.same(archivedRaw(archive).map((e) => e.name.toString()), ['mine']);
    t.same(fs.readdirSync(path.join(spool, '.pmjq/rejected')), [], 'nothing rejected');
  }
});
