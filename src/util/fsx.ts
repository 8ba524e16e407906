// Small filesystem moves with the spool's safety rules: never overwrite a
// file that is already there (rename(2) would), cope with a destination on
// another filesystem, and write shared files by temp-then-rename.
//
// The hot path uses node:fs synchronous calls: each is one syscall of a few
// microseconds on a local disk, and a promise per call would cost more than
// the call itself at thousands of jobs per second.

import fs from 'node:fs';
import path from 'node:path';

export type PathLike = string | Buffer;

/**
 * Whether a name exists (not following a symlink). No exception for the
 * usual answer, "no": an ENOENT error object per call is measurable on the
 * hot path (claim, archive).
 */
export function exists(p: PathLike): boolean {
  try {
    return fs.lstatSync(p, { throwIfNoEntry: false }) !== undefined;
  } catch {
    return false;
  }
}

/**
 * Move `src` to `dst` only if `dst` does not exist. Returns false (and leaves
 * src alone) on EEXIST. link+unlink is atomic against overwrite; where links
 * are impossible (EXDEV: other filesystem, EPERM: no hard links) the file is
 * copied with COPYFILE_EXCL and the source removed after the copy is complete.
 */
export function moveNoReplace(src: PathLike, dst: PathLike): boolean {
  if (!linkNoReplace(src, dst)) return false;
  fs.unlinkSync(src);
  return true;
}

/**
 * Make `dst` the same file as `src` (a hard link; a complete copy where links
 * are impossible) unless `dst` exists: false on EEXIST. `src` stays.
 */
export function linkNoReplace(src: PathLike, dst: PathLike): boolean {
  try {
    fs.linkSync(src, dst);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS') throw err;
    try {
      fs.copyFileSync(src, dst, fs.constants.COPYFILE_EXCL);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
      // a partial copy must not stay behind looking like an archive entry
      try { fs.unlinkSync(dst); } catch { /* it was not created */ }
      throw e;
    }
    const st = fs.statSync(src);
    try { fs.chmodSync(dst, st.mode & 0o7777); } catch { /* best effort */ }
  }
  return true;
}

let tmpCounter = 0;

/** Write a whole file so that readers see the old content or the new one, never half. */
export function writeFileAtomic(file: string, data: string | Buffer): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${tmpCounter++}.tmp`);
  try {
    fs.writeFileSync(tmp, data);
    fs.renameSync(tmp, file);
  } catch (err) {
    try { fs.unlinkSync(tmp); } catch { /* never written */ }
    throw err;
  }
}

export function isErrno(err: unknown, ...codes: string[]): boolean {
  return err instanceof Error && codes.includes((err as NodeJS.ErrnoException).code ?? '');
}

export function errText(err: unknown): string {
  if (err instanceof Error) {
    const e = err as NodeJS.ErrnoException;
    return e.code ? `${e.code}: ${e.message.replace(/^[A-Z]+: /, '')}` : e.message;
  }
  return String(err);
}

/** Remove a directory tree, ignoring what is already gone. */
export function removeTree(p: PathLike): void {
  fs.rmSync(p, { recursive: true, force: true });
}
