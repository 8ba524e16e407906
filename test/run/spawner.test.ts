// The job helper (pmjq(1) THE JOB PROCESS): jobs are forked and exec'd by
// libexec/pmjq-spawn. A job is its child with exactly fds 0-4, 3 and 4 being
// two pipes of the helper's; without the helper (not built, or built from
// another version) pmjq refuses to start, saying so, and leaves the queue alone; a helper that dies takes nothing with it: its
// running job is stopped and runs again, and the next jobs run through a new
// helper. The socket that chaqum's line-by-line output comes through is
// made anew when removed, and one left by a killed manager is cleaned up.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { BIN, ROOT, ROOT_ARGS, archived, dropJob, run, scratch, start, waitFor } from '../helpers/helpers.js';

const read = (f: string): string => fs.readFileSync(f, 'utf8');
const HELPER = path.join(ROOT, 'libexec', 'pmjq-spawn');

t.test('a job is the helper\'s child, with fds 0-4 only, fd 3 and 4 two pipes', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const out = path.join(dir, 'out');
  dropJob(spool, 'probe', `#!/bin/sh
tr '\\0' ' ' < /proc/$PPID/cmdline > '${out}.parent'
readlink /proc/$$/fd/3 /proc/$$/fd/4 > '${out}.sockets'
# (from a process of its own: a shell keeps descriptors of its own about)
exec ls -l /proc/self/fd
`);
  const tmp = path.join(dir, 'tmp');
  fs.mkdirSync(tmp);
  const r = await run(t, BIN.pmjq, [...ROOT_ARGS, '--once', '-o', archive, spool], { env: { ...process.env, TMPDIR: tmp } });
  t.equal(r.code, 0, r.stderr);
  // (ls's own, on the directory it lists, aside)
  const listing = read(archived(archive).find((a) => a.name === 'probe')!.file + '.log');
  const fds = [...listing.matchAll(/ (\d+) -> (.*)$/gm)].map((m) => ({ fd: Number(m[1]), to: m[2]! }));
  const others = fds.filter((f) => f.fd > 4 && !/^\/proc\/\d+\/fd$/.test(f.to));
  t.same(fds.map((f) => f.fd).filter((fd) => fd <= 4).sort(), [0, 1, 2, 3, 4], 'descriptors 0-4');
  t.same(others, [], 'nothing of pmjq\'s or its helper\'s');
  t.match(read(`${out}.parent`), /^\S*libexec\/pmjq-spawn \d+ $/, 'its parent is pmjq-spawn');
  const sockets = read(`${out}.sockets`).trim().split('\n');
  t.match(sockets[0], /^pipe:\[\d+\]$/, 'fd 3 is a pipe');
  t.match(sockets[1], /^pipe:\[\d+\]$/, 'fd 4 is a pipe');
  t.not(sockets[0], sockets[1], 'two of them: closing fd 3 ends the commands');
  t.same(fs.readdirSync(tmp), [], 'no socket made for jobs whose output goes to their log');
});

// not built (/dev/null bound over it), or built from another version of its source (the one of the last session said "ready" alone)
for (const c of [
  { what: 'without the helper', old: null, says: /cannot run the job helper \S*libexec\/pmjq-spawn: .*; build it with npm run build \(needs a C compiler/ },
  { what: 'with a helper out of date', old: '#!/bin/sh\necho ready\nexec cat > /dev/null\n', says: /the job helper \S*libexec\/pmjq-spawn is out of date \(protocol none, this pmjq's is \d+\): build it with npm run build/ },
]) t.test(`${c.what}, pmjq says so at start and leaves the queue as it was`, async (t) => {
  const { dir, spool, archive } = scratch(t);
  dropJob(spool, 'waiting', '#!/bin/sh\nexit 0\n');
  // a mount namespace where the helper's path is that file instead
  const stand = c.old === null ? '/dev/null' : path.join(dir, 'old-helper');
  if (c.old !== null) fs.writeFileSync(stand, c.old, { mode: 0o755 });
  const wrapper = path.join(dir, 'wrapper.mjs');
  fs.writeFileSync(wrapper, `import { spawnSync } from 'node:child_process';
const r = spawnSync('unshare', ['-m', 'sh', '-c', 'mount --bind "${stand}" "${HELPER}" && exec "$0" "$@"', process.execPath, ...process.argv.slice(2)], { stdio: 'inherit' });
process.exit(r.status ?? 1);
`);
  const r = await run(t, wrapper, [BIN.pmjq, ...ROOT_ARGS, '--once', '-o', archive, spool]);
  t.equal(r.code, 1, 'exit 1');
  const lines = r.stderr.trim().split('\n').filter((l) => !/event=start /.test(l));
  t.equal(lines.length, 1, `one line:\n${r.stderr}`);
  t.match(lines[0], c.says, 'it names the helper and how to build it');
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

// chaqum reads its jobs' output line by line, through a socket of its own
function tree(dir: string, entry: string): string {
  const d = path.join(dir, 'tree');
  fs.mkdirSync(d, { recursive: true });
  fs.writeFileSync(path.join(d, 'entry'), entry, { mode: 0o755 });
  return d;
}

t.test('chaqum logs its jobs\' output, line by line, the last line of a job that ends at once included', async (t) => {
  const { dir } = scratch(t);
  const d = tree(dir, '#!/bin/sh\necho first line\necho second line >&2\nprintf \'enqueue -- quick\\n\' >&3; read -r a <&4\n');
  fs.writeFileSync(path.join(d, 'quick'), '#!/bin/sh\necho quick ran\n', { mode: 0o755 });
  const r = await run(t, BIN.chaqum, [d]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stderr, /event=output id=\S+ job=entry line="first line"/, 'a line of stdout');
  t.match(r.stderr, /event=output id=\S+ job=entry line="second line"/, 'a line of stderr');
  t.match(r.stderr, /event=output id=\S+ job=quick line="quick ran"/, 'the line of a job that ended at once');
});

t.test('the socket directory of a chaqum killed -9 is removed by a later one, once a minute old', async (t) => {
  const { dir: scratchDir } = scratch(t);
  // a TMPDIR of its own: only these managers' directories are in it
  const tmp = path.join(scratchDir, 'tmp');
  fs.mkdirSync(tmp);
  const env = { ...process.env, TMPDIR: tmp };
  const d = tree(scratchDir, `#!/bin/sh\necho $$ > '${scratchDir}/entry.pid'\necho up\nexec sleep 60\n`);
  t.teardown(() => { try { process.kill(-Number(read(`${scratchDir}/entry.pid`)), 'SIGKILL'); } catch { /* gone */ } });
  const first = start(t, BIN.chaqum, [d], { env });
  await first.waitLine(/event=output .*line=up/);
  const dir = socketDirOf(first.child.pid!);
  t.ok(dir && path.dirname(dir) === tmp && /^pmjq-spawn-/.test(path.basename(dir)), `its socket is in ${dir}`);
  first.kill('SIGKILL');
  await first.exited;
  t.ok(fs.existsSync(dir!), 'left behind by the killed chaqum');
  // a young socket that refuses may be a manager starting this very moment (bound, not listening yet): spared
  fs.writeFileSync(path.join(d, 'entry'), '#!/bin/sh\necho second\n');
  const second = await run(t, BIN.chaqum, [d], { env });
  t.equal(second.code, 0, second.stderr);
  t.ok(fs.existsSync(dir!), 'spared while younger than a minute');
  const longAgo = new Date(Date.now() - 120_000);
  fs.utimesSync(path.join(dir!, 's'), longAgo, longAgo);
  // (its entry waits for the directory to go, so that the manager is still there to see to it)
  fs.writeFileSync(path.join(d, 'entry'), `#!/bin/sh\nfor i in $(seq 200); do [ -e '${dir}' ] || exit 0; sleep 0.05; done; exit 1\n`);
  const third = await run(t, BIN.chaqum, [d], { env });
  t.equal(third.code, 0, `removed once a minute old, by the next chaqum\n${third.stderr}`);
  t.same(fs.readdirSync(tmp).filter((e) => e.startsWith('pmjq-spawn-')), [], 'and that one removed its own when it ended');
});

t.test('a socket removed under chaqum (a /tmp cleaner): the next job runs all the same, through a new one', async (t) => {
  const { dir } = scratch(t);
  const d = tree(dir, `#!/bin/sh
echo up
for i in $(seq 400); do [ -e '${dir}/go' ] && break; sleep 0.05; done
printf 'enqueue -- second\\n' >&3; read -r a <&4
`);
  fs.writeFileSync(path.join(d, 'second'), '#!/bin/sh\necho second ran\n', { mode: 0o755 });
  const p = start(t, BIN.chaqum, [d]);
  await p.waitLine(/event=output .*line=up/);
  const old = socketDirOf(p.child.pid!);
  t.ok(old, `its socket: ${old}`);
  fs.rmSync(old!, { recursive: true });
  fs.writeFileSync(path.join(dir, 'go'), '');
  t.equal(await p.exited, 0, 'every job succeeded');
  t.match(p.stderr(), /event=job-helper .*is gone .*listening on a new one/, 'chaqum said what happened');
  t.match(p.stderr(), /event=job-not-ready .*name=second .*could not be started by the job helper \(connect: ENOENT\)/, 'the start it cost was a not-ready, not a failure');
  t.match(p.stderr(), /event=output .*job=second line="second ran"/, 'the job ran, its output through the new socket');
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
