// Cluster-wide group limits (DESIGN §7.3): `cluster_max: N` gives a group N
// slots, .pmjq/slots/GROUP/0 … N−1. A slot is taken by creating a symlink
// there whose target names the holder (NODE/JOBID): creation is atomic on
// every filesystem including NFS (EEXIST when taken), and readlink tells
// who holds it in one call, so a dead node's slots can be freed.

import fs from 'node:fs';
import path from 'node:path';
import { isErrno } from '../util/fsx.js';

export class Slots {
  readonly root: string;

  constructor(stateDir: string, private readonly node: string) {
    this.root = path.join(stateDir, 'slots');
  }

  /** Take a free slot of `group` for job `id`; null when all `max` are taken. */
  acquire(group: string, max: number, id: string): string | null {
    const dir = path.join(this.root, group);
    for (let n = 0; n < max; n++) {
      const slot = path.join(dir, String(n));
      try {
        fs.symlinkSync(`${this.node}/${id}`, slot);
        return slot;
      } catch (err) {
        if (isErrno(err, 'EEXIST')) continue;
        if (isErrno(err, 'ENOENT')) { fs.mkdirSync(dir, { recursive: true }); n--; continue; }
        throw err;
      }
    }
    return null;
  }

  release(slot: string): void {
    try { fs.unlinkSync(slot); } catch { /* freed by a recovering node */ }
  }

  /** Free every slot held by `node` (it is dead). */
  releaseNode(node: string): number {
    let freed = 0;
    let groups: string[];
    try { groups = fs.readdirSync(this.root); } catch { return 0; }
    for (const g of groups) {
      let slots: string[];
      try { slots = fs.readdirSync(path.join(this.root, g)); } catch { continue; }
      for (const s of slots) {
        const p = path.join(this.root, g, s);
        try {
          if (fs.readlinkSync(p).split('/')[0] === node) { fs.unlinkSync(p); freed++; }
        } catch { /* gone */ }
      }
    }
    return freed;
  }

  /** How many of a group's slots are taken (for status). */
  taken(group: string): number {
    try { return fs.readdirSync(path.join(this.root, group)).length; } catch { return 0; }
  }
}
