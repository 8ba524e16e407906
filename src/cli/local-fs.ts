// Whether a path lies on local filesystems only, found without touching any
// other. pmjqctl's default guard against a hung spool (hang-guard.ts) costs a
// worker thread, a tenth of a plain submit's time, and only a network or FUSE
// filesystem hangs the way it guards against. /proc/self/mountinfo (procfs:
// it answers) says which filesystem each directory of the path is on, from
// the root down; a directory is looked at (lstat) only once it is known to
// be on a local one, and a symbolic link on the way ends the search: such a
// path counts as not local, whatever it leads to.

import fs from 'node:fs';
import path from 'node:path';

/** Filesystem types that live on this machine: their calls return. */
const LOCAL = new Set([
  'ext2', 'ext3', 'ext4', 'xfs', 'btrfs', 'bcachefs', 'f2fs', 'jfs', 'reiserfs', 'nilfs2', 'zfs',
  'vfat', 'exfat', 'tmpfs', 'ramfs', 'devtmpfs', 'overlay',
]);

interface Mount {
  at: string;
  type: string;
}

/** The mounts of /proc/self/mountinfo, in its order (a later one over an earlier one at the same place). */
function mounts(): Mount[] | null {
  let text: string;
  try { text = fs.readFileSync('/proc/self/mountinfo', 'utf8'); } catch { return null; }
  const out: Mount[] = [];
  for (const line of text.split('\n')) {
    // ID PARENT MAJ:MIN ROOT MOUNT-POINT OPTIONS [OPTIONAL…] - TYPE SOURCE SUPER-OPTIONS
    const f = line.split(' ');
    const dash = f.indexOf('-', 6);
    if (f.length < 7 || dash < 0 || dash + 1 >= f.length) continue;
    out.push({ at: f[4]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8))), type: f[dash + 1]! });
  }
  return out;
}

/** The type of the filesystem `dir` (absolute, without symbolic links) is on. */
function typeOf(all: Mount[], dir: string): string {
  let best: Mount | null = null;
  for (const m of all) {
    const under = dir === m.at || m.at === '/' || dir.startsWith(m.at + '/');
    if (under && (best === null || m.at.length >= best.at.length)) best = m;
  }
  return best?.type ?? '';
}

/** True when every directory from / down to `p` is on a local filesystem and none is a symbolic link. */
export function onLocalFilesystems(p: string): boolean {
  const all = mounts();
  if (all === null) return false;
  let dir = '/';
  for (const part of ['', ...path.resolve(p).split('/').filter(Boolean)]) {
    dir = path.join(dir, part);
    if (!LOCAL.has(typeOf(all, dir))) return false;
    try {
      if (fs.lstatSync(dir).isSymbolicLink()) return false;
    } catch {
      return false;
    }
  }
  return true;
}
