// SCRIPT of `enqueue` and `repeat`, resolved as the job's own user would
// resolve it. A root daemon's access(2) answers for root; here every
// directory on the way must be searchable, and the file executable, by the
// job's owner (uid, gid, supplementary groups; mode bits, as the kernel
// checks them without ACLs). Symbolic links are followed as the kernel does,
// each directory of their targets checked too.
//
// A file the user cannot reach is answered exactly as a file that does not
// exist: the answer must not tell a user what lies in directories closed to
// them (/root/.bashrc and /root/nonexistent look the same). Once every
// directory on the way is open to the user, they could stat the file
// themselves, so "not executable" and "not a regular file" say more.

import fs from 'node:fs/promises';
import type { Stats } from 'node:fs';
import path from 'node:path';
import type { JobOwner } from '../owner.js';

/** The kernel's bound on symbolic links followed in one lookup. */
const MAX_LINKS = 40;

/** SCRIPT: absolute, or relative to the tree; an executable regular file for `owner`. Returns its absolute path. */
export async function resolveScript(tree: string, script: string, owner: JobOwner): Promise<string> {
  if (script === '') throw new Error('SCRIPT is empty');
  const file = path.isAbsolute(script) ? path.normalize(script) : path.resolve(tree, script);
  const absent = (): Error => new Error(`script ${file} does not exist (or is out of reach of this job's user)`);
  const st = await lookup(file, owner);
  if (!st) throw absent();
  if (!st.isFile()) throw new Error(`script ${file} is not a regular file`);
  if (!may(st, owner, 1)) throw new Error(`script ${file} is not executable (for this job's user)`);
  return file;
}

/**
 * The file at `file` (links followed) if every directory on the way is
 * searchable by `owner`; null if it does not exist or cannot be reached.
 */
async function lookup(file: string, owner: JobOwner): Promise<Stats | null> {
  const todo = file.split('/').filter((p) => p !== '' && p !== '.');
  let dir = '/';
  let dirSt: Stats;
  let links = 0;
  try {
    dirSt = await fs.stat(dir);
    for (;;) {
      if (!dirSt.isDirectory() || !may(dirSt, owner, 1)) return null;
      const name = todo.shift();
      if (name === undefined) return dirSt;
      if (name === '..') {
        dir = path.dirname(dir);
        dirSt = await fs.stat(dir);
        continue;
      }
      const next = path.join(dir, name);
      const st = await fs.lstat(next);
      if (st.isSymbolicLink()) {
        if (++links > MAX_LINKS) return null;
        const target = await fs.readlink(next);
        if (target.startsWith('/')) {
          dir = '/';
          dirSt = await fs.stat(dir);
        }
        todo.unshift(...target.split('/').filter((p) => p !== '' && p !== '.'));
        continue;
      }
      if (todo.length === 0) return st;
      dir = next;
      dirSt = st;
    }
  } catch {
    return null; // ENOENT, ENOTDIR, EACCES on the daemon's side: all "not there" for the user
  }
}

/**
 * Would the kernel grant `owner` the access `bit` (1 = execute/search) by the
 * mode bits? Root: search always, execute when anyone may.
 */
function may(st: Stats, owner: JobOwner, bit: number): boolean {
  if (owner.uid === 0) return st.isDirectory() || (st.mode & 0o111) !== 0;
  if (st.uid === owner.uid) return (st.mode & (bit << 6)) !== 0;
  if (st.gid === owner.gid || owner.groups.includes(st.gid)) return (st.mode & (bit << 3)) !== 0;
  return (st.mode & bit) !== 0;
}
