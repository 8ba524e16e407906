// What a directory entry in the spool is (pmjq(5)): a job, something to
// leave alone, or something to reject. Decided from lstat alone: a rejected
// file is never opened, never run, never deleted.

import type fs from 'node:fs';

export type Verdict =
  | { kind: 'job' }
  | { kind: 'group' }
  | { kind: 'ignore'; why: string }
  | { kind: 'reject'; reason: string };

export interface ClassifyContext {
  /** the entry is directly in the spool (true) or inside a group directory (false) */
  topLevel: boolean;
  /** pmjq runs as root: jobs run as their owner, root-owned jobs need allowRoot */
  asRoot: boolean;
  allowRoot: boolean;
}

const S_ISUID = 0o4000;
const S_ISGID = 0o2000;
const ANY_EXEC = 0o111;
const GROUP_OR_WORLD_WRITE = 0o022;

/** Names starting with '.' are never jobs: partial uploads, .nfsXXXX, our own state. */
export function isHidden(name: Buffer | string): boolean {
  return typeof name === 'string' ? name.startsWith('.') : name[0] === 0x2e;
}

export function classify(st: fs.Stats, ctx: ClassifyContext): Verdict {
  if (st.isSymbolicLink()) return { kind: 'reject', reason: 'symbolic link (jobs must be regular files)' };
  if (st.isDirectory()) {
    return ctx.topLevel ? { kind: 'group' } : { kind: 'reject', reason: 'directory inside a group (groups do not nest)' };
  }
  if (st.isFIFO()) return { kind: 'reject', reason: 'FIFO (jobs must be regular files)' };
  if (st.isSocket()) return { kind: 'reject', reason: 'socket (jobs must be regular files)' };
  if (st.isCharacterDevice() || st.isBlockDevice()) return { kind: 'reject', reason: 'device file (jobs must be regular files)' };
  if (!st.isFile()) return { kind: 'reject', reason: 'not a regular file' };

  const mode = st.mode;
  // Not executable yet: the user may still be writing it, or it is data.
  if ((mode & ANY_EXEC) === 0) return { kind: 'ignore', why: 'not executable' };
  if (mode & (S_ISUID | S_ISGID)) return { kind: 'reject', reason: 'setuid/setgid bit set' };
  if (mode & GROUP_OR_WORLD_WRITE) {
    return { kind: 'reject', reason: `writable by users other than its owner (mode ${(mode & 0o777).toString(8)})` };
  }
  if (ctx.asRoot && st.uid === 0 && !ctx.allowRoot) {
    return { kind: 'reject', reason: 'owned by root (pmjq runs jobs as their owner; use --allow-root to run root-owned jobs)' };
  }
  return { kind: 'job' };
}
