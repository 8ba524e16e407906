// Cluster-wide group limits (pmjq(1) Cluster-wide limits): `cluster_max: N` gives a group N
// slots, .pmjq/slots/GROUP/0 … N−1. A slot is taken by creating a symlink
// there whose target names the holder (NODE/JOBID): creation is atomic on
// every filesystem including NFS (EEXIST when taken), and readlink tells
// who holds it in one call, so a dead node's slots can be freed.
//
// Fair turns: the node that frees a slot learns of it first and would take it
// back at once for its next queued job, again and again, while the others
// only try on their next poll. So a node that found every slot taken says so
// with a marker (GROUP/.waiting.NODE) until it gets one, and a node freeing a
// slot while others wait lets them have it for a poll interval.

import fs from 'node:fs';
import path from 'node:path';
import { isErrno } from '../util/fsx.js';

const WAITING = '.waiting.';

export class Slots {
  readonly root: string;
  /** groups whose waiting marker this node has put down */
  private readonly waitingIn = new Set<string>();

  /** `root`: .pmjq/slots */
  constructor(root: string, private readonly node: string) {
    this.root = root;
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

  /** This node waits for a slot of `group` (all were taken): others freeing one give it a turn. */
  wait(group: string): void {
    if (this.waitingIn.has(group)) return;
    try {
      fs.writeFileSync(path.join(this.root, group, `${WAITING}${this.node}`), '');
      this.waitingIn.add(group);
    } catch { /* no turn asked for: it still gets slots, just not first */ }
  }

  /** This node no longer waits for `group` (it got a slot, or has nothing queued there). */
  unwait(group: string): void {
    if (!this.waitingIn.delete(group)) return;
    try { fs.unlinkSync(path.join(this.root, group, `${WAITING}${this.node}`)); } catch { /* gone */ }
  }

  /** Whether another node waits for a slot of `group`. */
  othersWait(group: string): boolean {
    try {
      return fs.readdirSync(path.join(this.root, group)).some((f) => f.startsWith(WAITING) && f !== `${WAITING}${this.node}`);
    } catch { return false; }
  }

  /** Take back every waiting marker (stopping). */
  unwaitAll(): void {
    for (const g of [...this.waitingIn]) this.unwait(g);
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
        if (s === `${WAITING}${node}`) { try { fs.unlinkSync(p); } catch { /* gone */ } continue; }
        if (s.startsWith('.')) continue;
        try {
          if (fs.readlinkSync(p).split('/')[0] === node) { fs.unlinkSync(p); freed++; }
        } catch { /* gone */ }
      }
    }
    return freed;
  }

  /** How many of a group's slots are taken (for status). */
  taken(group: string): number {
    try { return fs.readdirSync(path.join(this.root, group)).filter((f) => !f.startsWith('.')).length; } catch { return 0; }
  }
}
