// Who a job runs as (DESIGN §5.1). As root, a job runs with the uid, gid and
// supplementary groups of its file's owner. Node's spawn can set uid and gid
// but clears the supplementary groups, so the switch is made by util-linux
// setpriv(1), which calls initgroups() for the user.

import fs from 'node:fs';
import { execaSync } from 'execa';

export interface RunAs {
  uid: number;
  gid: number;
  name: string;
  home: string;
  /** the user has a passwd entry, so its supplementary groups can be set */
  known: boolean;
}

const SETPRIV_PATHS = ['/usr/bin/setpriv', '/bin/setpriv', '/usr/sbin/setpriv', '/sbin/setpriv'];

export function findSetpriv(): string | null {
  for (const p of SETPRIV_PATHS) {
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch { /* next */ }
  }
  return null;
}

const cache = new Map<number, { at: number; user: RunAs }>();
const CACHE_MS = 60_000;

/**
 * The account of `uid` through NSS (getent, so LDAP users on a cluster are
 * found too); cached for a minute: one lookup per user, not per job.
 */
export function lookupUser(uid: number, fileGid: number): RunAs {
  const hit = cache.get(uid);
  // an unknown user runs with the file's group: that is the caller's, not the cached one
  if (hit && Date.now() - hit.at < CACHE_MS) return hit.user.known ? hit.user : { ...hit.user, gid: fileGid };
  let user: RunAs = { uid, gid: fileGid, name: String(uid), home: '/', known: false };
  try {
    const out = execaSync('getent', ['passwd', String(uid)], { reject: false, timeout: 5000 });
    const f = String(out.stdout).split('\n')[0]!.split(':');
    if (out.exitCode === 0 && f.length >= 7) {
      user = { uid, gid: Number(f[3]), name: f[0]!, home: f[5]! || '/', known: true };
    }
  } catch { /* no getent: run with the file's group and no supplementary groups */ }
  cache.set(uid, { at: Date.now(), user });
  return user;
}

/** argv prefix that runs the rest as `user`. */
export function setprivArgs(setpriv: string, user: RunAs): string[] {
  return [
    setpriv,
    `--reuid=${user.uid}`,
    `--regid=${user.gid}`,
    user.known ? '--init-groups' : '--clear-groups',
    '--',
  ];
}
