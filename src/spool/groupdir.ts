// Acting inside a group directory without following a symlink put in its
// place. A group directory may belong to a user, who can swap it for a
// symlink to anywhere at any instant (between our lstat and our rename,
// say). So the directory is held open (OpenDir: O_NOFOLLOW, then
// /proc/self/fd/N, which names the directory opened whatever its name
// points to by then): a claim or a reject never moves anything from
// outside the spool. The top level is the spool itself, which only root (or
// the daemon's user) can change (see trust.ts).

import type { Layout } from './layout.js';
import { OpenDir } from '../util/open-dir.js';

/**
 * Run `fn` with a path that names `dir` (spool-relative, '' = the top
 * level) for as long as it runs. Throws ELOOP/ENOTDIR if the group's name
 * is not a directory now, ENOENT if it is gone.
 */
export function inGroupDir<T>(layout: Layout, dir: string, fn: (where: string) => T): T {
  if (dir === '') return fn(layout.spool);
  const d = OpenDir.open(layout.groupDir(dir), layout.groupDir(dir), false);
  try {
    return fn(d.at('') as string);
  } finally {
    d.close();
  }
}
