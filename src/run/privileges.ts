// Who a job runs as. As root, a job runs with the uid, gid and
// supplementary groups of its owner, looked up here (NSS, cached a minute);
// the job helper (libexec/pmjq-spawn) makes the switch in the job's process,
// setgroups, setgid and setuid before the exec, and checks it took.

import { execFileSync } from 'node:child_process';
import type { JobOwner } from './owner.js';

/** An owner's account: what the job's HOME, USER, LOGNAME and SHELL say. */
export interface Account {
  uid: number;
  gid: number;
  name: string;
  home: string;
  shell: string;
  /** supplementary groups, with gid */
  groups: number[];
  /** the uid has a passwd entry (otherwise name is the number, home '/') */
  known: boolean;
}

const cache = new Map<number, { at: number; account: Account }>();
const CACHE_MS = 60_000;

/**
 * The account of `uid` through NSS (getent, so LDAP users on a cluster are
 * found too); cached for a minute: one lookup per user, not per job. A uid
 * without an account gets HOME=/ and its number for a name — never root's
 * home, never the daemon's.
 */
export function lookupAccount(uid: number): Account {
  const hit = cache.get(uid);
  if (hit && Date.now() - hit.at < CACHE_MS) return hit.account;
  let account: Account = { uid, gid: -1, name: String(uid), home: '/', shell: '/bin/sh', groups: [], known: false };
  try {
    const f = run('getent', ['passwd', String(uid)]).split('\n')[0]!.split(':');
    if (f.length >= 7 && Number(f[2]) === uid) {
      const gid = Number(f[3]);
      account = { uid, gid, name: f[0]!, home: f[5]! || '/', shell: f[6]! || '/bin/sh', groups: groupsOf(f[0]!, gid), known: true };
    }
  } catch { /* no such account (getent exits 2), or no getent: an unknown user */ }
  cache.set(uid, { at: Date.now(), account });
  return account;
}

function groupsOf(name: string, gid: number): number[] {
  try {
    const ids = run('id', ['-G', '--', name]).trim().split(/\s+/).map(Number).filter(Number.isInteger);
    if (ids.length > 0) return [...new Set([gid, ...ids])];
  } catch { /* no id(1), or no such user: the primary group alone */ }
  return [gid];
}

/** A lookup command's output; throws when it fails (not found: getent exits 2). */
function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'] });
}

/**
 * The owner of a claimed job file: its uid, with the account's groups; a
 * uid without an account keeps the file's group and no other.
 */
export function ownerOf(uid: number, fileGid: number): JobOwner {
  const a = lookupAccount(uid);
  return a.known ? { uid, gid: a.gid, groups: a.groups } : { uid, gid: fileGid, groups: [fileGid] };
}

