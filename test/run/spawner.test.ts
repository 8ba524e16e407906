// The job helper (pmjq(1) THE JOB PROCESS): jobs are forked and exec'd by
// libexec/pmjq-spawn. A job is its child with exactly fds 0-4, 3 and 4 being
// sockets to pmjq; without perl pmjq refuses to start, saying so, and leaves
// the queue alone; a helper that dies takes nothing with it: its running
// job is stopped and runs again, and the next jobs run through a new helper.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { BIN, ROOT_ARGS, archived, dropJob, run, scratch, start, waitFor } from '../helpers/helpers.js';

const read = (f: string): string => fs.readFileSync(f, 'utf8');

t.test('a job is the helper\'s child, with fds 0-4 only, fd 3 and 4 two sockets', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const out = path.join(dir, 'out');
  dropJob(spool, 'probe', `#!/bin/sh
tr '\\0' ' ' < /proc/$PPID/cmdline > '${out}.parent'
readlink /proc/$$/fd/3 /proc/$$/fd/4 > '${out}.sockets'
# (from a process of its own: a shell keeps descriptors of its own about)
exec ls -l /proc/self/fd
`);
  const r = await run(t, BIN.pmjq, [...ROOT_ARGS, '--once', '-o', archive, spool]);
  t.equal(r.code, 0, r.stderr);
  // (ls's own, on the directory it lists, aside)
  const listing = read(archived(archive).find((a) => a.name === 'probe')!.file + '.log');
  const fds = [...listing.matchAll(/ (\d+) -> (.*)$/gm)].map((m) => ({ fd: Number(m[1]), to: m[2]! }));
  const others = fds.filter((f) => f.fd > 4 && !/^\/proc\/\d+\/fd$/.test(f.to));
  t.same(fds.map((f) => f.fd).filter((fd) => fd <= 4).sort(), [0, 1, 2, 3, 4], 'descriptors 0-4');
  t.same(others, [], 'nothing of pmjq\'s or its helper\'s');
  t.match(read(`${out}.parent`), /perl .*libexec\/pmjq-spawn /, 'its parent is pmjq-spawn');
  const sockets = read(`${out}.sockets`).trim().split('\n');
  t.match(sockets[0], /^socket:\[\d+\]$/, 'fd 3 is a socket');
  t.match(sockets[1], /^socket:\[\d+\]$/, 'fd 4 is a socket');
  t.not(sockets[0], sockets[1], 'two of them: closing fd 3 ends the commands, as with a pipe');
});

t.test('without perl, pmjq says so at start and leaves the queue as it was', async (t) => {
  const { dir, spool, archive } = scratch(t);
  dropJob(spool, 'waiting', '#!/bin/sh\nexit 0\n');
  // a mount namespace where perl is not executable (/dev/null bound over it)
  const wrapper = path.join(dir, 'no-perl.mjs');
  fs.writeFileSync(wrapper, `import { spawnSync } from 'node:child_process';
const r = spawnSync('unshare', ['-m', 'sh', '-c', 'mount --bind /dev/null "$(readlink -f /usr/bin/perl)" && exec "$0" "$@"', process.execPath, ...process.argv.slice(2)], { stdio: 'inherit' });
process.exit(r.status ?? 1);
`);
  const r = await run(t, wrapper, [BIN.pmjq, ...ROOT_ARGS, '--once', '-o', archive, spool]);
  t.equal(r.code, 1, 'exit 1');
  const lines = r.stderr.trim().split('\n').filter((l) => !/event=start /.test(l));
  t.equal(lines.length, 1, `one line:\n${r.stderr}`);
  t.match(lines[0], /cannot run the job helper .*pmjq-spawn.*is perl installed\?/, 'it names the helper and perl');
  t.ok(fs.existsSync(path.join(spool, 'waiting')), 'the job is still queued');
  t.same(archived(archive), [], 'nothing was run or archived');
});

t.test('a helper that dies: its running job is stopped and runs again, later jobs run through a new helper', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const out = path.join(dir, 'out');
  fs.mkdirSync(out);
  // the first attempt waits (and tells its parent); the second ends at once
  dropJob(spool, 'long', `#!/bin/sh
echo "$PMJQ_ATTEMPT $PPID" >> '${out}/long'
[ -e '${out}/long.2' ] && exit 0
touch '${out}/long.2'
while :; do sleep 0.05; done
`);
  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '--poll', '200ms', '--kill-grace', '1s', '-o', archive, spool]);
  const first = await waitFor('the first run', () => fs.existsSync(`${out}/long.2`) && read(`${out}/long`).trim());
  const helper = Number(first.split(' ')[1]);
  t.match(read(`/proc/${helper}/cmdline`), /pmjq-spawn/, 'the job\'s parent is the helper');
  process.kill(helper, 'SIGKILL');
  await p.waitLine(/event=job-helper .*exited \(SIGKILL\)/);
  await waitFor('the job archived', () => archived(archive).some((a) => a.name === 'long'), 20_000);
  const runs = read(`${out}/long`).trim().split('\n');
  t.equal(runs.length, 2, 'it ran again after its first run was stopped');
  t.not(runs[1]!.split(' ')[1], String(helper), 'through a new helper');
  dropJob(spool, 'after', `#!/bin/sh\necho ran > '${out}/after'\n`);
  await waitFor('the next job archived', () => fs.existsSync(`${out}/after`) && archived(archive).some((a) => a.name === 'after'));
  t.pass('later jobs run as usual');
  t.equal(p.child.exitCode, null, 'pmjq kept running');
  p.kill('SIGTERM');
  t.equal(await p.exited, 0, 'and stops as usual');
});

t.test('the socket directory of a pmjq killed -9 is removed by a later one, once a minute old', async (t) => {
  const { dir: scratchDir, spool, archive } = scratch(t);
  const first = start(t, BIN.pmjq, [...ROOT_ARGS, '-o', archive, spool]);
  await first.waitLine(/event=start /);
  const dir = await waitFor('its socket', () => socketDirOf(first.child.pid!));
  t.match(path.basename(dir), /^pmjq-spawn-/, `its socket is in ${dir}`);
  first.kill('SIGKILL');
  await first.exited;
  t.ok(fs.existsSync(dir), 'left behind by the killed pmjq');
  // a young socket that refuses may be a pmjq starting this very moment (bound, not listening yet): spared
  const second = start(t, BIN.pmjq, [...ROOT_ARGS, '-o', archive, spool]);
  await second.waitLine(/event=start /);
  dropJob(spool, 'through-second', `#!/bin/sh\ntouch '${scratchDir}/second-ran'\n`);
  await waitFor('a job through the second pmjq', () => fs.existsSync(`${scratchDir}/second-ran`));
  t.ok(fs.existsSync(dir), 'spared while younger than a minute');
  second.kill('SIGTERM');
  t.equal(await second.exited, 0);
  const longAgo = new Date(Date.now() - 120_000);
  fs.utimesSync(path.join(dir, 's'), longAgo, longAgo);
  const third = start(t, BIN.pmjq, [...ROOT_ARGS, '-o', archive, spool]);
  await third.waitLine(/event=start /);
  await waitFor('the stale directory removed', () => !fs.existsSync(dir));
  t.pass('removed once a minute old, by the next pmjq, which runs on');
  third.kill('SIGTERM');
  t.equal(await third.exited, 0);
});

t.test('a socket removed under pmjq (a /tmp cleaner): the next job runs all the same, through a new one', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const out = path.join(dir, 'out');
  fs.mkdirSync(out);
  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '-o', archive, spool]);
  await p.waitLine(/event=start /);
  dropJob(spool, 'first', `#!/bin/sh\necho ran > '${out}/first'\n`);
  await waitFor('the first job', () => fs.existsSync(`${out}/first`));
  const old = await waitFor('its socket', () => socketDirOf(p.child.pid!));
  fs.rmSync(old, { recursive: true });
  dropJob(spool, 'second', `#!/bin/sh\nprintf 'nosuchcommand\\n' >&3; read -r a <&4; echo "$a" > '${out}/second'\n`);
  await waitFor('the second job', () => fs.existsSync(`${out}/second`) && read(`${out}/second`));
  t.match(read(`${out}/second`), /^E /, 'it ran, and talked to pmjq on fd 3/4');
  t.match(p.stderr(), /event=job-helper .*is gone .*listening on a new one/, 'pmjq said what happened');
  t.match(p.stderr(), /event=job-not-ready .*name=second .*could not be started by the job helper \(connect: ENOENT\)/, 'the start it cost was a not-ready, not a failure');
  const now = socketDirOf(p.child.pid!);
  t.ok(now && now !== old, `a new socket: ${now}`);
  await waitFor('both archived', () => archived(archive).length === 2);
  t.same(archived(archive).map((a) => a.name).sort(), ['first', 'second'], 'both archived');
  t.notMatch(p.stderr(), /status=failed/, 'nothing failed');
  p.kill('SIGTERM');
  t.equal(await p.exited, 0);
});

/** The directory of the Unix socket process `pid` listens on for its jobs (from /proc/net/unix), if any. */
function socketDirOf(pid: number): string | undefined {
  const inodes = new Set<string>();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch { /* closed meanwhile */ }
  }
  for (const line of read('/proc/net/unix').split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 8 && inodes.has(f[6]!) && /\/pmjq-spawn-[^/]+\/s$/.test(f[7]!)) return path.dirname(f[7]!);
  }
  return undefined;
}

t.test('what a job leaves running in its process group is stopped with it; an empty group is never signalled', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const trace = path.join(dir, 'kills');
  dropJob(spool, 'alone', `#!/bin/sh\necho $$ > '${dir}/alone.pid'\n`);
  // (its child keeps the group: the helper reports it left, and pmjq stops it)
  dropJob(spool, 'leaver', `#!/bin/sh\necho $$ > '${dir}/leaver.pid'\nsleep 60 > /dev/null 2>&1 &\necho $! > '${dir}/child.pid'\n`);
  t.teardown(() => { try { process.kill(Number(read(`${dir}/child.pid`)), 'SIGKILL'); } catch { /* gone, as it should be */ } });
  // every kill(2) of pmjq and its helper, seen from outside
  const r = spawnSync('strace', ['-f', '-qq', '-e', 'trace=kill', '-o', trace, process.execPath, BIN.pmjq, ...ROOT_ARGS, '--once', '-j', '1', '-o', archive, spool], { encoding: 'utf8', timeout: 60_000 });
  t.equal(r.status, 0, r.stderr);
  const kills = read(trace);
  const alone = read(`${dir}/alone.pid`).trim();
  const leaver = read(`${dir}/leaver.pid`).trim();
  t.match(kills, new RegExp(`kill\\(-${leaver}, SIGTERM\\)`), 'the group of the job that left a process behind is sent SIGTERM');
  t.notMatch(kills, new RegExp(`kill\\(-${alone}, SIG`), 'the group of the job that left nothing is sent nothing: its id may be another\'s by then');
  const child = Number(read(`${dir}/child.pid`));
  await waitFor('the process left behind to be gone', () => { try { process.kill(child, 0); return false; } catch { return true; } }, 10_000);
});
