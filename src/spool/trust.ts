// What pmjq trusts on disk, as sshd's StrictModes and atd's spool checks
// do: only what no spool user can write. The spool (and every directory
// above it) belongs to root or to the daemon's user, and if others may
// write into it, it is sticky — so nobody else can rename .pmjq, another
// user's job or another user's group away. .pmjq and its areas are real
// directories of root or the daemon's user, writable by nobody else: their
// contents (claimed jobs, retry entries, metadata) were written by pmjq.

import fs from 'node:fs';
import path from 'node:path';
import type { Layout } from './layout.js';

/** A place on disk pmjq must not trust. The message is one line: the path, what is wrong, how to fix it. */
export class TrustError extends Error {}

const S_ISVTX = 0o1000;
const GROUP_OR_OTHER_WRITE = 0o022;

const modeText = (st: fs.Stats): string => (st.mode & 0o7777).toString(8).padStart(4, '0');

function trustedOwner(st: fs.Stats, uid: number): boolean {
  return st.uid === 0 || st.uid === uid;
}

/**
 * The spool and the directories above it: owned by root or `uid`; writable
 * by others only when sticky.
 */
export function checkSpool(spool: string, uid: number): void {
  let dir = fs.realpathSync(spool);
  for (;;) {
    const st = fs.lstatSync(dir);
    const what = dir === fs.realpathSync(spool) ? 'spool' : 'directory above the spool';
    if (!trustedOwner(st, uid)) {
      throw new TrustError(`${what} ${dir} is owned by uid ${st.uid}, not by root or pmjq's user (uid ${uid}): its owner could replace pmjq's state; chown it to root`);
    }
    if ((st.mode & GROUP_OR_OTHER_WRITE) !== 0 && (st.mode & S_ISVTX) === 0) {
      throw new TrustError(`${what} ${dir} is writable by others (mode ${modeText(st)}) but not sticky: any of them could rename pmjq's state or other users' jobs; chmod +t ${dir} (or chmod go-w)`);
    }
    const up = path.dirname(dir);
    if (up === dir) return;
    dir = up;
  }
}

/** One of pmjq's own directories: a real directory of root or `uid`, writable by nobody else. */
export function checkStateDir(dir: string, uid: number): fs.Stats {
  const st = fs.lstatSync(dir);
  if (!st.isDirectory()) {
    throw new TrustError(`${dir} is ${st.isSymbolicLink() ? 'a symbolic link' : 'not a directory'}: pmjq's state must be a real directory it made; remove it and restart pmjq`);
  }
  if (!trustedOwner(st, uid)) {
    throw new TrustError(`${dir} is owned by uid ${st.uid}, not by root or pmjq's user (uid ${uid}): someone else made it; remove it (pmjq makes it again) or chown it to root`);
  }
  if ((st.mode & GROUP_OR_OTHER_WRITE) !== 0) {
    throw new TrustError(`${dir} is writable by others (mode ${modeText(st)}): they could forge jobs' state; chmod go-w ${dir}`);
  }
  return st;
}

/** .pmjq and every area in it that exists. Returns the stat of .pmjq. */
export function checkState(layout: Layout, uid: number): fs.Stats {
  const st = checkStateDir(layout.state, uid);
  for (const d of layout.areas()) {
    try {
      checkStateDir(d, uid);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return st;
}

/**
 * Check the spool, make pmjq's areas where missing, check them: the one way
 * a daemon or `pmjqctl run` gets a state directory it may trust. An existing
 * .pmjq is checked before anything is made in it (it could be a symlink to
 * /etc). Returns the stat of .pmjq.
 */
export function prepareState(layout: Layout, node: string, uid: number): fs.Stats {
  checkSpool(layout.spool, uid);
  try {
    checkStateDir(layout.state, uid);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  layout.create(node);
  return checkState(layout, uid);
}
