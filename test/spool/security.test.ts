// A root daemon serving a spool that many users write into (pmjq(1),
// SECURITY): an unprivileged attacker made by the test tries to run code as
// root or as a victim user, to make root move things from outside the
// spool, or to read what the daemon has (environment, descriptors). Nothing
// may run as root or as the victim, nothing outside the spool may move, and
// a user's own jobs still run as that user.

import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { BIN, IS_ROOT, history, readJson, run, scratch, start, waitFor } from '../helpers/helpers.js';
import { attacker, shAs, startAs, victim, type User } from '../helpers/users.js';

if (!IS_ROOT) throw new Error('the security tests need root (CI runs as root): they make users and run a root daemon');

const A = attacker();
const V = victim();

/** A multi-user spool as pmjq(1) says to make one: root's, mode 1777; markers in a 1777 directory outside it. */
function multiUser(t: Parameters<typeof scratch>[0]): { dir: string; spool: string; archive: string; markers: string } {
  const s = scratch(t, 'pmjq-sec-');
  fs.chmodSync(s.dir, 0o755);
  fs.chmodSync(s.spool, 0o1777);
  const markers = path.join(s.dir, 'markers');
  fs.mkdirSync(markers);
  fs.chmodSync(markers, 0o1777);
  return { ...s, markers };
}

/** A job body that appends its uid to MARKERS/NAME. */
const reportsTo = (markers: string, name: string): string => `#!/bin/sh\nid -u >> '${markers}/${name}'\n`;

/** Write an executable job as user `u` (atomically: hidden name, then rename). */
function dropAs(u: User, dir: string, name: string, body: string): void {
  shAs(u, `umask 022; t="${dir}/.t.$$"; cat > "$t" <<'EOF'\n${body}EOF\nchmod 755 "$t"; mv -f "$t" "${dir}/${name}"`);
}

const marks = (markers: string, name: string): string[] => {
  try { return fs.readFileSync(path.join(markers, name), 'utf8').split('\n').filter(Boolean); } catch { return []; }
};

t.test('a spool its users could rearrange is refused at start, with one line saying why', async (t) => {
  const { spool } = multiUser(t);
  fs.chmodSync(spool, 0o777);
  let r = await run(t, BIN.pmjq, ['--once', spool]);
  t.equal(r.code, 2, 'group/other-writable and not sticky: exit 2');
  t.match(r.stderr, /spool .* is writable by others \(mode 0777\) but not sticky.*chmod \+t/, r.stderr);
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line');

  fs.chmodSync(spool, 0o1777);
  fs.mkdirSync(path.join(spool, '.pmjq'));
  fs.chownSync(path.join(spool, '.pmjq'), A.uid, A.gid);
  r = await run(t, BIN.pmjq, ['--once', spool]);
  t.equal(r.code, 2, 'a .pmjq made by a user before pmjq first started: exit 2');
  t.match(r.stderr, new RegExp(`\\.pmjq is owned by uid ${A.uid}, not by root`), r.stderr);

  fs.rmSync(path.join(spool, '.pmjq'), { recursive: true });
  fs.chownSync(spool, A.uid, A.gid);
  r = await run(t, BIN.pmjq, ['--once', spool]);
  t.equal(r.code, 2, 'a spool owned by a user: exit 2');
  t.match(r.stderr, new RegExp(`spool .* is owned by uid ${A.uid}`), r.stderr);

  fs.chownSync(spool, 0, 0);
  r = await run(t, BIN.pmjq, ['--once', spool]);
  t.equal(r.code, 0, 'root\'s sticky 1777 spool is fine');
  const st = fs.statSync(path.join(spool, '.pmjq/claimed'));
  t.equal(st.mode & 0o777, 0o755, 'pmjq makes its areas 0755');
});

t.test('a .pmjq replaced while pmjq runs is never trusted: forged retry entries do not run', async (t) => {
  const { spool, markers } = multiUser(t);
  const p = start(t, BIN.pmjq, ['--poll', '100ms', spool]);
  await p.waitLine(/event=start /);
  // the state directory goes away (an operator cleaning up); the attacker
  // is quicker than pmjq to make it again, with a retry entry saying "owner
  // 0": made beforehand, and put in place at once (were it made in place,
  // pmjq, polling, could make its own first and the attack would not happen)
  shAs(A, `umask 022; mkdir -p '${spool}/.forged/retry/0.forged' && printf '#!/bin/sh\\nid -u >> ${markers}/forged\\n' > '${spool}/.forged/retry/0.forged/x' && chmod 755 '${spool}/.forged/retry/0.forged/x' && printf '%s' '{"id":"forged","name":"x","file":"x","group":"default","dir":"","owner":0,"created":"2026-01-01T00:00:00.000Z","claimed":"2026-01-01T00:00:00.000Z","node":"n","attempt":1,"parent":null}' > '${spool}/.forged/retry/0.forged/.job.json'`);
  fs.renameSync(path.join(spool, '.pmjq'), path.join(spool, '.pmjq-old'));
  fs.renameSync(path.join(spool, '.forged'), path.join(spool, '.pmjq'));
  const line = await p.waitLine(/event=state-untrusted /);
  t.match(line, new RegExp(`\\.pmjq is owned by uid ${A.uid}`), 'the log names the path and its owner');
  // while untrusted nothing is claimed: a user's job waits
  dropAs(A, spool, 'waits', reportsTo(markers, 'waits'));
  t.match(await p.waitLine(/event=barrier-hold barrier=state /), /queued=1/, 'the job is held: claiming nothing while .pmjq is untrusted');
  t.same(marks(markers, 'waits'), [], 'it has not run');
  // the operator removes the forged directory: pmjq makes its own again and goes on
  fs.rmSync(path.join(spool, '.pmjq'), { recursive: true });
  await p.waitLine(/event=state-trusted /);
  await waitFor('the waiting job to run', () => marks(markers, 'waits').length > 0);
  t.same(marks(markers, 'waits'), [String(A.uid)], 'it runs, as its owner');
  t.same(marks(markers, 'forged'), [], 'the forged entry never ran');
  p.kill();
  t.equal(await p.exited, 0);
});

t.test('metadata naming a path outside its entry is refused, not followed', async (t) => {
  const { spool, markers } = multiUser(t);
  fs.mkdirSync(path.join(spool, '.pmjq/retry/0.evil'), { recursive: true });
  fs.writeFileSync(path.join(markers, 'outside'), reportsTo(markers, 'outside-ran'), { mode: 0o755 });
  fs.chownSync(path.join(markers, 'outside'), A.uid, A.gid);
  fs.writeFileSync(path.join(spool, '.pmjq/retry/0.evil/.job.json'), JSON.stringify({
    id: 'evil', name: 'x', file: '../../../markers/outside', group: 'default', dir: '', owner: A.uid,
    created: '2026-01-01T00:00:00.000Z', claimed: '2026-01-01T00:00:00.000Z', node: 'n', attempt: 1, parent: null,
  }));
  const r = await run(t, BIN.pmjq, ['--once', spool]);
  t.match(r.stderr, /event=retry-entry-unreadable entry=0\.evil .*field \\?"file\\?" is not a plain file name/, 'one line naming the entry and the field');
  t.same(marks(markers, 'outside-ran'), [], 'the file outside never ran');
  t.ok(fs.existsSync(path.join(markers, 'outside')), 'nor moved');
});

t.test('identity is decided after the claim: a file swapped in under a victim\'s name runs as its real owner', async (t) => {
  const { spool, archive, markers } = multiUser(t);
  // a group every user may write, without the sticky bit (pmjq(1) says to set it; here it is missing)
  const open = path.join(spool, 'open');
  fs.mkdirSync(open);
  fs.chmodSync(open, 0o777);
  fs.mkdirSync(path.join(spool, '.pmjq/control'), { recursive: true });
  await run(t, BIN.pmjqctl, ['pause', spool]);
  const p = start(t, BIN.pmjq, ['--poll', '100ms', '-o', archive, spool]);
  await p.waitLine(/event=start /);
  dropAs(V, open, 'theirs', reportsTo(markers, 'theirs'));
  await p.waitLine(/event=barrier-hold .*paused/);
  // seen (and queued) as the victim's; the attacker replaces it while it waits
  dropAs(A, open, 'theirs', reportsTo(markers, 'theirs'));
  await run(t, BIN.pmjqctl, ['resume', spool]);
  await waitFor('the job to run', () => marks(markers, 'theirs').length > 0);
  t.same(marks(markers, 'theirs'), [String(A.uid)], 'it ran as the attacker who owns the file, not as the victim');
  await waitFor('its record', () => history(spool).find((r) => r.name === 'theirs'));
  t.equal(history(spool).find((r) => r.name === 'theirs')!.owner, A.uid, 'and its record says so');
  p.kill();
  await p.exited;
});

t.test('a group directory swapped for a symlink: nothing outside the spool is claimed, rejected or run', async (t) => {
  const { dir, spool, archive, markers } = multiUser(t);
  // what the attacker points the group at: the victim's jobs, and root's
  const victimDir = path.join(dir, 'victim');
  fs.mkdirSync(victimDir);
  fs.writeFileSync(path.join(victimDir, 'x'), reportsTo(markers, 'victim-ran'), { mode: 0o755 });
  fs.chownSync(victimDir, V.uid, V.gid);
  fs.chownSync(path.join(victimDir, 'x'), V.uid, V.gid);
  const rootDir = path.join(dir, 'rootdir');
  fs.mkdirSync(rootDir);
  fs.writeFileSync(path.join(rootDir, 'x'), reportsTo(markers, 'root-ran'), { mode: 0o755 });
  execFileSync('mkfifo', [path.join(rootDir, 'y')]);
  const ino = (p: string): number => fs.lstatSync(p).ino;
  const before = { vx: ino(path.join(victimDir, 'x')), rx: ino(path.join(rootDir, 'x')), ry: ino(path.join(rootDir, 'y')) };

  shAs(A, `mkdir '${spool}/g'`);
  const p = start(t, BIN.pmjq, ['--allow-root', '--poll', '20ms', '-o', archive, spool]);
  await p.waitLine(/event=start /);
  const ROUNDS = 300;
  // the attacker drops a job and a FIFO in its group, then swaps the group
  // for a symlink and back, as fast as it can
  const loop = startAs(A, `
    cd '${spool}'
    i=0
    while [ $i -lt ${ROUNDS} ]; do
      if [ -d g ] && [ ! -L g ]; then
        printf '#!/bin/sh\\nid -u >> ${markers}/attacker-ran\\n' > g/.t 2>/dev/null && chmod 755 g/.t && mv -f g/.t g/x
        mkfifo g/y 2>/dev/null
      fi
      if [ $((i % 2)) = 0 ]; then target='${victimDir}'; else target='${rootDir}'; fi
      mv g g.real 2>/dev/null && ln -s "$target" g 2>/dev/null
      rm -f g 2>/dev/null; mv g.real g 2>/dev/null || mkdir g 2>/dev/null
      i=$((i + 1))
    done
  `);
  t.teardown(() => { try { process.kill(-loop.pid, 'SIGKILL'); } catch { /* ended */ } });
  t.equal(await loop.exited, 0, `the attacker's ${ROUNDS} rounds ended`);
  // the last job dropped is claimed (or was replaced by the next): wait for the spool to drain
  await waitFor('the group to drain', () => !fs.existsSync(path.join(spool, 'g/x')) && !fs.existsSync(path.join(spool, 'g.real/x')), 20_000);
  p.kill();
  t.equal(await p.exited, 0, 'pmjq stops cleanly');

  t.same(marks(markers, 'victim-ran'), [], 'the victim\'s job never ran');
  t.same(marks(markers, 'root-ran'), [], 'root\'s file never ran');
  t.same({ vx: ino(path.join(victimDir, 'x')), rx: ino(path.join(rootDir, 'x')), ry: ino(path.join(rootDir, 'y')) }, before,
    'nothing outside the spool moved (the victim\'s job, root\'s job, root\'s FIFO)');
  const ran = marks(markers, 'attacker-ran');
  t.ok(ran.length > 0, `the attacker's own jobs ran (${ran.length} of ${ROUNDS} rounds; the others were replaced before a claim)`);
  t.same([...new Set(ran)], [String(A.uid)], 'every one as the attacker');
  const owners = new Set(history(spool).filter((r) => r.status !== 'rejected').map((r) => r.owner));
  t.same([...owners], [A.uid], 'every record names the attacker as owner');
});

t.test('a job gets nothing of the daemon\'s: environment, descriptors; its own account\'s HOME and USER', async (t) => {
  const { dir, spool, archive, markers } = multiUser(t);
  const secretFile = path.join(dir, 'root-only');
  fs.writeFileSync(secretFile, 'root secret\n', { mode: 0o600 });
  const report = `#!/bin/sh
{
echo "uid=$(id -u)"
echo "secret=$PMJQ_DAEMON_SECRET"
echo "home=$HOME user=$USER logname=$LOGNAME shell=$SHELL"
echo "path=$PATH"
if [ -e /proc/$$/fd/200 ]; then echo fd200=open; else echo fd200=closed; fi
} > "${markers}/$(basename "$0")"
`;
  dropAs(A, spool, 'report-a', report);
  fs.writeFileSync(path.join(spool, 'report-nobody'), report, { mode: 0o755 });
  fs.chownSync(path.join(spool, 'report-nobody'), 4242, 4242);
  // fd 200 open on a root-only file, as a careless parent would leave it
  const fd = fs.openSync(secretFile, 'r+');
  const stdio = ['ignore', 'pipe', 'pipe', ...Array<'ignore'>(197).fill('ignore'), fd] as const;
  const child = spawn(process.execPath, [BIN.pmjq, '--once', '-o', archive, spool], {
    stdio: stdio as unknown as ('ignore' | 'pipe' | number)[], detached: true,
    env: { ...process.env, PMJQ_DAEMON_SECRET: 'hunter2' },
  });
  fs.closeSync(fd);
  let err = '';
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  t.teardown(() => { try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ } });
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  t.equal(code, 0, `pmjq --once exit 0\n${err}`);
  const read = (n: string): Record<string, string> => Object.fromEntries(
    fs.readFileSync(path.join(markers, n), 'utf8').split(/\s+/).filter((w) => w.includes('=')).map((w) => [w.slice(0, w.indexOf('=')), w.slice(w.indexOf('=') + 1)]));
  const a = read('report-a');
  t.equal(a.uid, String(A.uid), 'runs as its owner');
  t.equal(a.secret, '', 'the daemon\'s environment does not reach it');
  t.equal(a.fd200, 'closed', 'nor its inherited descriptor');
  t.same([a.home, a.user, a.logname, a.shell], [`/nonexistent-${A.name}`, A.name, A.name, '/usr/sbin/nologin'], 'HOME, USER, LOGNAME, SHELL from its passwd entry');
  t.equal(a.path, '/usr/local/bin:/usr/bin:/bin', 'a fixed PATH');
  const n = read('report-nobody');
  t.equal(n.uid, '4242', 'a uid without an account runs as that uid');
  t.same([n.home, n.user], ['/', '4242'], 'with HOME=/ (never root\'s) and its number as USER');
});

t.test('a file with a second name (a hard link to someone else\'s job) is rejected, never run', async (t) => {
  const { dir, spool, markers } = multiUser(t);
  const theirs = path.join(dir, 'theirs');
  fs.writeFileSync(theirs, reportsTo(markers, 'theirs-ran'), { mode: 0o755 });
  fs.chownSync(theirs, V.uid, V.gid);
  // protected_hardlinks stops a user making it locally; an NFS client need not: root stands in
  fs.linkSync(theirs, path.join(spool, 'linked'));
  const r = await run(t, BIN.pmjq, ['--once', spool]);
  t.match(r.stderr, /event=job-not-ready .*name=linked .*second name/, 'it waits for the second name to go (a submitter\'s temporary name would)');
  t.match(r.stderr, /event=rejected .*file=linked .*has 2 hard links/, 'then it is rejected, with the reason');
  t.same(marks(markers, 'theirs-ran'), [], 'never run');
  t.equal(fs.statSync(theirs).uid, V.uid, 'the victim\'s file is where it was');
});

t.test('the switch to the owner is pmjq\'s own (its helper\'s): without setpriv, pmjq and pmjqctl run still run a job as its owner, never root', async (t) => {
  const { spool, archive, markers } = multiUser(t);
  dropAs(A, spool, 'by-daemon', reportsTo(markers, 'by-daemon'));
  dropAs(A, spool, 'by-run', reportsTo(markers, 'by-run'));
  // a mount namespace where setpriv is not executable (/dev/null bound over it)
  const wrapper = path.join(path.dirname(spool), 'no-setpriv.mjs');
  fs.writeFileSync(wrapper, `import { spawnSync } from 'node:child_process';
const r = spawnSync('unshare', ['-m', 'sh', '-c', 'mount --bind /dev/null /usr/bin/setpriv && exec "$0" "$@"', process.execPath, ...process.argv.slice(2)], { stdio: 'inherit' });
process.exit(r.status ?? 1);
`);
  let r = await run(t, wrapper, [BIN.pmjqctl, 'run', spool, 'by-run', '-o', archive]);
  t.equal(r.code, 0, `pmjqctl run: exit 0\n${r.stderr}`);
  t.same(marks(markers, 'by-run'), [String(A.uid)], 'pmjqctl run ran it as its owner');
  r = await run(t, wrapper, [BIN.pmjq, '--once', '-o', archive, spool]);
  t.equal(r.code, 0, `pmjq: exit 0\n${r.stderr}`);
  t.notMatch(r.stderr, /setpriv/, 'nothing about setpriv');
  t.same(marks(markers, 'by-daemon'), [String(A.uid)], 'pmjq ran it as its owner');
  const rec = readJson(fs.readdirSync(archive).filter((f) => f.endsWith('by-run.json')).map((f) => path.join(archive, f))[0]!);
  t.equal(rec.owner, A.uid, 'the record says who ran it');
});
