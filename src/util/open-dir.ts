// A directory held open, so that what is done "in it" is done in that very
// directory even if its path is swapped for a symbolic link or renamed away
// meanwhile: the directory is opened with O_NOFOLLOW (a symlink in its place
// is refused, not followed) and names inside it are reached through
// /proc/self/fd/N/NAME, which the kernel resolves to the open directory
// itself — Node has no openat(2). Where /proc is not mounted, the path is
// used and `unchanged()` tells whether it still names the same directory.

import fs from 'node:fs';
import path from 'node:path';

const PROC_FD = '/proc/self/fd';
/**
 * Linux's O_PATH (the generic value, that of every architecture Node runs
 * on): the directory is held without being read, so that search permission
 * is enough, as for a path. Node's fs.constants lacks it.
 */
const O_PATH = process.platform === 'linux' ? 0o10000000 : 0;
let procChecked: boolean | undefined;

function haveProc(): boolean {
  procChecked ??= fs.existsSync(PROC_FD);
  return procChecked;
}

export class OpenDir {
  private statAtOpen: fs.Stats | undefined;

  private constructor(readonly dir: string, readonly fd: number) {}

  /** What the directory opened was at open() (its owner; what `unchanged()` compares with). */
  get st(): fs.Stats {
    return (this.statAtOpen ??= fs.fstatSync(this.fd));
  }

  /**
   * Opens `dir`, which must be a directory and not a symbolic link. Throws
   * the errno error (ELOOP or ENOTDIR for a symlink or a file in its place).
   * `via`: the path to open it by, when it is not `dir` itself (a name
   * inside another OpenDir); `dir` stays the path `unchanged()` checks.
   * `stat`: look at it now (false: only what is done in it matters, as for
   * a claim — one call less per job).
   */
  static open(dir: string, via: string = dir, stat = true): OpenDir {
    const fd = fs.openSync(via, O_PATH | fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW);
    const d = new OpenDir(dir, fd);
    try {
      if (stat) void d.st;
      return d;
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  /** The path of `name` inside this very directory. */
  at(name: string | Buffer): string | Buffer {
    const base = haveProc() ? `${PROC_FD}/${this.fd}` : this.dir;
    return typeof name === 'string' ? path.join(base, name) : Buffer.concat([Buffer.from(`${base}/`), name]);
  }

  /** Does `dir` still name this directory (not replaced, renamed, or swapped for a symlink)? */
  unchanged(): boolean {
    try {
      const now = fs.lstatSync(this.dir);
      return now.isDirectory() && now.ino === this.st.ino && now.dev === this.st.dev;
    } catch {
      return false;
    }
  }

  close(): void {
    try { fs.closeSync(this.fd); } catch { /* closed */ }
  }
}
