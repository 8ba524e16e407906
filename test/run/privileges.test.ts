// Issue 2, privileges (pmjq(1) THE JOB PROCESS): as root, a job runs with the uid, gid
// and supplementary groups of its file's owner (root-owned files only with
// --allow-root); not as root, jobs run as pmjq's user. CI runs as root; run
// as another user, the test proves the non-root behaviour instead.

import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import t from 'tap';
import { BIN, IS_ROOT, ROOT_ARGS, archivedRaw, dropJob, openToAll, readJson, scratch, start } from '../helpers/helpers.js';

type Rec = Record<string, unknown>;

const REPORT = '#!/bin/sh\necho "uid=$(id -u) gid=$(id -g) groups=$(id -G) user=$USER home=$HOME"\n';

const TEST_USER = 'pmjqtest';
const TEST_GROUP = 'pmjqtestsup';

/** A user with a supplementary group, made once (idempotent; root only). */
function testUser(): { uid: number; gid: number; sup: number } {
  const ok = (cmd: string, args: string[]): boolean => spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
  if (!ok('getent', ['group', TEST_GROUP])) execFileSync('groupadd', [TEST_GROUP]);
  if (!ok('getent', ['passwd', TEST_USER])) {
    execFileSync('useradd', ['--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', '--groups', TEST_GROUP, TEST_USER]);
  } else if (!execFileSync('id', ['-Gn', TEST_USER], { encoding: 'utf8' }).split(/\s+/).includes(TEST_GROUP)) {
    execFileSync('usermod', ['-a', '-G', TEST_GROUP, TEST_USER]);
  }
  const id = (flag: string, ...a: string[]): number => Number(execFileSync('id', [flag, ...a], { encoding: 'utf8' }).trim());
  const sup = Number(execFileSync('getent', ['group', TEST_GROUP], { encoding: 'utf8' }).split(':')[2]);
  return { uid: id('-u', TEST_USER), gid: id('-g', TEST_USER), sup };
}

function parse(line: string): Record<string, string> {
  const o: Record<string, string> = {};
  for (const m of line.matchAll(/(\w+)=((?:\S| (?=\d))*)/g)) o[m[1]!] = m[2]!;
  return o;
}

const groupsOf = (user: string): string => execFileSync('id', ['-G', user], { encoding: 'utf8' }).trim();

t.test(IS_ROOT ? 'as root: jobs run as their file\'s owner, with its groups' : 'not root: jobs run as pmjq\'s user', async (t) => {
  const { dir, spool, archive } = scratch(t);
  openToAll(dir, spool);
  const expect = new Map<string, { uid: number; gid: number; groups: string; user?: string; home?: string }>();
  if (IS_ROOT) {
    const u = testUser();
    fs.chownSync(dropJob(spool, 'as-nobody', REPORT), 65534, 65534);
    expect.set('as-nobody', { uid: 65534, gid: 65534, groups: groupsOf('nobody'), user: 'nobody', home: '/nonexistent' });
    fs.chownSync(dropJob(spool, 'as-testuser', REPORT), u.uid, u.gid);
    expect.set('as-testuser', { uid: u.uid, gid: u.gid, groups: groupsOf(TEST_USER), user: TEST_USER, home: '/nonexistent' });
    t.ok(groupsOf(TEST_USER).split(' ').includes(String(u.sup)), 'the test user has a supplementary group');
    // an owner without a passwd entry: its uid, the file's group, no supplementary groups
    fs.chownSync(dropJob(spool, 'as-unknown', REPORT), 4242, 4343);
    expect.set('as-unknown', { uid: 4242, gid: 4343, groups: '4343' });
    dropJob(spool, 'as-root', REPORT);
    expect.set('as-root', { uid: 0, gid: 0, groups: execFileSync('id', ['-G'], { encoding: 'utf8' }).trim() });
  } else {
    dropJob(spool, 'as-me', REPORT);
    expect.set('as-me', { uid: process.getuid!(), gid: process.getgid!(), groups: execFileSync('id', ['-G'], { encoding: 'utf8' }).trim() });
  }
  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '--once', '-o', archive, spool], { env: { USER: 'someone-else', HOME: '/tmp' } });
  t.equal(await p.exited, 0, 'exit 0');
  const entries = archivedRaw(archive);
  t.equal(entries.length, expect.size, 'every job ran');
  for (const e of entries) {
    const name = e.name.toString();
    const want = expect.get(name)!;
    const got = parse(fs.readFileSync(e.log, 'utf8'));
    t.equal(Number(got.uid), want.uid, `${name}: uid ${want.uid}`);
    t.equal(Number(got.gid), want.gid, `${name}: gid ${want.gid}`);
    t.same(got.groups!.split(' ').sort(), want.groups.split(' ').sort(), `${name}: groups ${want.groups}`);
    if (want.user !== undefined) t.equal(got.user, want.user, `${name}: USER is the owner's name`);
    if (want.home !== undefined) t.equal(got.home, want.home, `${name}: HOME is the owner's home`);
    const rec = readJson<Rec>(e.json);
    t.equal(rec.owner, want.uid, `${name}: record owner`);
    t.equal(rec.status, 'done');
  }
});
