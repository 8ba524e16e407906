// Has a directory changed since it was last read? One stat answers, where a
// listing costs an open, two getdents and a close (and, on a shared mount,
// as many requests to the file server). An idle daemon polling a shared
// spool asks this of each directory instead of reading it.
//
// Two traps. A timestamp has a granularity (a jiffy on Linux, 1 s or 2 s on
// some filesystems and servers): an entry added within the tick of our
// listing leaves the stamp as it was. So a directory is read again until one
// listing has been made at least GRANULARITY_MS after its stamp was first
// seen: any later change falls in a later tick, and changes the stamp. Only
// elapsed time matters here, so the clocks of this node and the file server
// need not agree; and when the file server's clock is known (the mtime of
// our heartbeat, just written), a stamp already older than GRANULARITY_MS
// by that clock needs no second listing. And NFS clients cache attributes (a directory's for up to
// 60 s by default): stat(2) may answer from that cache, while open(2)
// always asks the server (close-to-open consistency), so on NFS the stamp is
// read from an open directory.

import fs from 'node:fs';

/** mtime granularities up to FAT's 2 s are covered */
export const GRANULARITY_MS = 2000;

export type DirLook = 'gone' | 'changed' | 'unsure' | 'same';

export class DirStamp {
  private stamp = '';
  /** performance.now() when this stamp was first seen */
  private since = 0;
  /** a listing made GRANULARITY_MS after `since` has been asked for: the stamp is trustworthy */
  private sure = false;
  /** the last look found another stamp (or the directory appeared or went) */
  private moved = false;

  /** Forget the stamp: the next look says 'changed'. */
  reset(): void {
    this.stamp = '';
  }

  /**
   * Look at the directory (one stat; on NFS open, fstat, close). 'changed'
   * and 'unsure' mean: read it now. 'gone': it cannot be looked at.
   */
  look(dir: string | Buffer, openFirst: boolean, fsNow?: number, now = performance.now()): DirLook {
    let stamp = GONE;
    let changedMs = 0;
    try {
      const st = openFirst ? statOpen(dir) : fs.statSync(dir, { bigint: true });
      if (st.isDirectory()) {
        stamp = `${st.dev}:${st.ino}:${st.mtimeNs}:${st.ctimeNs}:${st.size}:${st.nlink}`;
        // biome-ignore lint/complexity/useMathMinMax: bigints (Math.max takes numbers)
        changedMs = Number((st.mtimeNs > st.ctimeNs ? st.mtimeNs : st.ctimeNs) / 1_000_000n);
      }
    } catch { /* gone, or out of reach */ }
    this.moved = stamp !== this.stamp;
    if (this.moved) {
      this.stamp = stamp;
      this.since = now;
      // last changed a while ago by the file server's clock: any later change will be in a later tick
      this.sure = fsNow !== undefined && changedMs <= fsNow - GRANULARITY_MS;
    }
    if (stamp === GONE) return 'gone';
    if (this.moved) return 'changed';
    if (this.sure) return 'same';
    if (now - this.since >= GRANULARITY_MS) this.sure = true; // this listing is the one that settles it
    return 'unsure';
  }

  /** Has it changed (appeared and gone included), or is it unsure: is a read due? One look. */
  due(dir: string | Buffer, openFirst: boolean, fsNow?: number): boolean {
    const look = this.look(dir, openFirst, fsNow);
    return this.moved || look === 'unsure';
  }
}

const GONE = 'gone';

function statOpen(dir: string | Buffer): fs.BigIntStats {
  const fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  try {
    return fs.fstatSync(fd, { bigint: true });
  } finally {
    fs.closeSync(fd);
  }
}
