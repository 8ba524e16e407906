// The doorbell: how pmjqctl tells every node, at once, that something it
// wrote deeper in the spool (a job in a group, a pause flag, a kill request,
// a job queued again) is there. Idle daemons on a shared mount look only at
// the top level every --poll and at idle groups rarely (Scanner.poll); a
// change of the top level's stamp has them look everywhere. Making and
// removing a hidden directory there changes it, and needs no more than the
// right to drop a job at the top level. Best effort: a bell that cannot ring
// only delays the news to the idle pace (pmjq(1), PERFORMANCE).

import fs from 'node:fs';
import path from 'node:path';

let rings = 0;
const BELL = '.pmjq-bell.';

export function ringDoorbell(spool: string): void {
  const bell = path.join(spool, `${BELL}${process.pid}.${rings++}`);
  try {
    fs.mkdirSync(bell);
    fs.rmdirSync(bell);
  } catch { /* not allowed here, or gone: the idle pace finds it */ }
}

/**
 * A bell seen in a listing of the top level is removed: one whose ringer
 * died between making and removing it would otherwise stay in the spool
 * (one still ringing loses nothing: its ringer's rmdir finds it gone).
 */
export function clearStaleBell(spool: string, name: string): void {
  if (!name.startsWith(BELL)) return;
  try { fs.rmdirSync(path.join(spool, name)); } catch { /* gone, or not an empty directory: not ours */ }
}

/**
 * Work a node found but leaves waiting (its -j, a barrier, cluster_max) is
 * announced on a shared spool, at most once a poll: other nodes look at a
 * quiet group only rarely (Scanner.poll), and would otherwise leave a burst
 * to the one node that saw it first.
 */
export class BacklogBell {
  /** performance.now() of the last ring */
  private at = -Infinity;

  constructor(private readonly spool: string, private readonly everyMs: number) {}

  ring(): void {
    const now = performance.now();
    if (now - this.at < this.everyMs) return;
    this.at = now;
    ringDoorbell(this.spool);
  }
}
