// Issue 12, `pmjqctl serve` and group settings in a multi-user spool: a root
// daemon and a root server (with a token, submitting as the attacker) on a
// sticky spool. The attacker (a user made here with useradd) tries a DNS
// rebinding page's requests (a foreign Host), settings files that are
// symlinks to root-only files (their bytes must not come out in the daemon's
// log, `pmjqctl status` or /api/status), and group directories that are
// symlinks, or are swapped for one while the server writes (nothing may land
// outside the spool).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import t from 'tap';
import { BIN, IS_ROOT, field, openToAll, run, scratch, start, waitFor } from '../helpers/helpers.js';
import { TOKEN, postJson, request, startServer } from '../helpers/http.js';
import { as, attacker, dirOf, dropAs } from '../helpers/security.js';

const SECRET = 'TOPSECRET-7f3a';

/** Exchanges the names race and race.x (a directory and a symlink) atomically, over and over. */
const FLIP = `
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
while True:
    libc.renameat2(-100, b'race', -100, b'race.x', 2)
`;

/** A raw HTTP/1.0 request without a Host header; resolves with the status line and body. */
function withoutHost(url: string, route: string): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(u.port), u.hostname, () => s.end(`GET ${route} HTTP/1.0\r\n\r\n`));
    let data = '';
    s.on('data', (d: Buffer) => { data += d.toString(); });
    s.on('end', () => resolve(data));
    s.on('error', reject);
    s.setTimeout(10_000, () => s.destroy(new Error('no answer')));
  });
}

t.test('pmjqctl serve and group settings, as an attacker tries them', async (t) => {
  if (!IS_ROOT) {
    t.fail('these tests need root: they make users (useradd) and run a root daemon and server');
    return;
  }
  const A = attacker();
  const { dir, spool, archive } = scratch(t, 'pmjq-security-http-');
  openToAll(dir);
  fs.chmodSync(spool, 0o1777);
  const agroup = dirOf(A, path.join(spool, 'agroup'));
  const outside = dirOf(null, path.join(dir, 'outside'));
  const daemon = start(t, BIN.pmjq, ['-j', '0', '--poll', '200ms', '-o', archive, spool]);
  await daemon.waitLine(/event=start /, 60_000);
  const tokenDir = dirOf(null, path.join(dir, 'token'), 0o700);
  fs.writeFileSync(path.join(tokenDir, 'token'), `${TOKEN}\n`, { mode: 0o600 });
  const server = await startServer(t, spool, { args: ['--token-file', path.join(tokenDir, 'token'), '--submit-user', A.name] });
  const port = new URL(server.url).port;
  const api = server.url.replace(/\/$/, '');

  await t.test('a Host that does not name this server is refused (DNS rebinding)', async (t) => {
    dropAs(A, agroup, 'logjob', '#!/bin/sh\necho SECRET-LOG-4711\n');
    const end = await daemon.waitLine(/event=job-end .*name=logjob /, 30_000);
    const id = field(end, 'id')!;
    const mine = await request(`${api}/api/jobs/${id}`);
    t.equal(mine.status, 200, 'with the URL\'s own Host: 200');
    t.match(mine.text, /SECRET-LOG-4711/, '… with the job\'s log');
    for (const host of [`evil.example:${port}`, 'evil.example', `127.0.0.1.evil.example:${port}`, `localhost.evil.example:${port}`, `127.0.0.1:${port}@evil.example`]) {
      for (const route of [`/api/jobs/${id}`, '/api/status', '/api/events', '/', '/metrics']) {
        const r = await request(`${api}${route}`, { headers: { host: host }, timeoutMs: 10_000 });
        t.equal(r.status, 421, `Host ${host} ${route}: 421`);
        t.notMatch(r.text, /SECRET-LOG|agroup|"jobs"/, '… and nothing of the spool');
      }
    }
    const refused = await request(`${api}/api/status`, { headers: { host: `evil.example:${port}` } });
    t.equal(refused.json?.error, 'misdirected', 'a one-line JSON error');
    t.notMatch(refused.text, /\n./, '… on one line');
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`, 'localhost', `LOCALHOST:${port}`]) {
      const r = await request(`${api}/api/status`, { headers: { host } });
      t.equal(r.status, 200, `Host ${host}: 200`);
    }
    t.match(await withoutHost(server.url, '/api/status'), /^HTTP\/1\.[01] 421 /, 'no Host at all (HTTP/1.0): 421');
  });

  await t.test('.group.json as a symlink to a root-only file: refused, and its bytes never come out', async (t) => {
    const secretText = path.join(dir, 'secret.txt');
    fs.writeFileSync(secretText, `${SECRET} root:x:0:0:not json\n`, { mode: 0o600 });
    const secretJson = path.join(dir, 'secret.json');
    fs.writeFileSync(secretJson, `{"max": "${SECRET}-b", "${SECRET}-key": 1}\n`, { mode: 0o600 });
    const link = (group: string, target: string): void => {
      const g = dirOf(A, path.join(spool, group));
      const l = path.join(g, '.group.json');
      fs.symlinkSync(target, l);
      fs.lchownSync(l, A.uid, A.gid);
    };
    link('leak1', secretText);
    link('leak2', secretJson);
    // the attacker's own file with a bad value and an unknown key: described, not quoted
    const own = dirOf(A, path.join(spool, 'leak3'));
    dropAs(A, own, '.group.json', `{"max": "${SECRET}-c"}\n`, 0o644);
    const open = dirOf(A, path.join(spool, 'leak4'));
    dropAs(A, open, '.group.json', '{"max": 1}\n', 0o666);
    for (const g of ['leak1', 'leak2', 'leak3', 'leak4']) dropAs(A, path.join(spool, g), 'job', '#!/bin/sh\ntrue\n');
    const invalid = await Promise.all(['leak1', 'leak2', 'leak3', 'leak4'].map((g) => daemon.waitLine(new RegExp(`event=settings-invalid group=${g} `), 30_000)));
    t.match(invalid[0], /symbolic link: never followed/, 'leak1: a symlink is never followed');
    t.match(invalid[1], /symbolic link: never followed/, 'leak2: the same');
    t.match(invalid[2], /max: the string given is not a whole number/, 'leak3: a bad value is described, not quoted');
    t.match(invalid[3], /writable by group or others \(mode 666\)/, 'leak4: a file others may write is refused');
    t.notMatch(daemon.stderr(), SECRET, 'the daemon\'s log holds none of it');
    const status = await run(t, BIN.pmjqctl, ['status', spool]);
    const statusJson = await run(t, BIN.pmjqctl, ['status', '--json', spool]);
    t.notMatch(status.stdout + status.stderr + statusJson.stdout + statusJson.stderr, SECRET, 'pmjqctl status and status --json hold none of it');
    const st = await request(`${api}/api/status`);
    t.equal(st.status, 200);
    t.notMatch(st.text, SECRET, '/api/status holds none of it');
    const errors = (st.json.groups as { group: string; settings_error: string | null }[]).filter((g) => g.group.startsWith('leak'));
    t.ok(errors.length === 4 && errors.every((g) => g.settings_error), 'each group reports its settings error');
    t.notMatch(fs.readFileSync(path.join(spool, '.pmjq/history', fs.readdirSync(path.join(spool, '.pmjq/history'))[0]!), 'utf8'), SECRET, 'nor does the history');
  });

  // from here on no daemon: it would take the symlinks below for rejected jobs and move them away
  daemon.kill('SIGTERM');
  t.equal(await daemon.exited, 0, 'the daemon stopped cleanly');

  await t.test('submit into a group that is a symlink or a file: refused, nothing written outside the spool', async (t) => {
    const evil = path.join(spool, 'evil');
    fs.symlinkSync(outside, evil);
    fs.lchownSync(evil, A.uid, A.gid);
    fs.writeFileSync(path.join(spool, 'afile'), '');
    fs.chownSync(path.join(spool, 'afile'), A.uid, A.gid);
    for (const group of ['evil', 'afile']) {
      const r = await postJson(`${api}/api/jobs`, { script: '#!/bin/sh\necho hi\n', group });
      t.ok(r.status >= 400 && r.status < 500, `group ${group}: ${r.status} ${r.json?.message}`);
      t.match(r.json?.message, /symbolic link or not a directory/, '… saying why');
    }
    t.same(fs.readdirSync(outside), [], 'nothing was written outside the spool');
    const ok = await postJson(`${api}/api/jobs`, { script: '#!/bin/sh\necho hi\n', group: 'fresh' });
    t.equal(ok.status, 201, 'a plain group still works');
    t.equal(fs.statSync(path.join(spool, 'fresh', ok.json.name)).uid, A.uid, '… the job is the submit user\'s');
  });

  await t.test('a group directory swapped for a symlink while the server writes: nothing lands outside the spool', async (t) => {
    // two names exchanged atomically (renameat2 RENAME_EXCHANGE), over and over, by the attacker
    dirOf(A, path.join(spool, 'race'));
    const link = path.join(spool, 'race.x');
    fs.symlinkSync(outside, link);
    fs.lchownSync(link, A.uid, A.gid);
    const argv = [...as(A), 'python3', '-c', FLIP];
    // the system's python3 (a per-user one, such as a pyenv shim in root's home, is out of the attacker's reach)
    const flip = spawn(argv[0]!, argv.slice(1), { cwd: spool, detached: true, stdio: 'ignore', env: { ...process.env, PATH: '/usr/local/bin:/usr/bin:/bin' } });
    const stop = (): void => { try { process.kill(-flip.pid!, 'SIGKILL'); } catch { /* gone */ } };
    t.teardown(stop);
    await waitFor('the swapping to start', () => fs.lstatSync(path.join(spool, 'race')).isSymbolicLink(), 10_000);
    let placed = 0;
    let refused = 0;
    const ROUNDS = 150;
    for (let i = 0; i < ROUNDS; i++) {
      const r = await postJson(`${api}/api/jobs`, { script: '#!/bin/sh\necho hi\n', group: 'race', name: `r${i}` });
      if (r.status === 201) placed++;
      else refused++;
    }
    stop();
    t.comment(`${ROUNDS} submissions into a group swapped with a symlink: ${placed} placed in the spool, ${refused} refused`);
    t.same(fs.readdirSync(outside), [], 'nothing was ever written outside the spool');
    t.ok(refused > 0, 'some submissions met the symlink and were refused');
    const now = ['race', 'race.x'].map((n) => path.join(spool, n)).find((p) => fs.lstatSync(p).isDirectory())!;
    const inDir = fs.readdirSync(now).filter((n) => /^r\d+$/.test(n)).length;
    t.equal(inDir, placed, `the ${placed} jobs answered 201 are all in the group directory, and no other`);
  });
});
