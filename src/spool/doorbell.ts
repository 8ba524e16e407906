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

export function ringDoorbell(spool: string): void {
  const bell = path.join(spool, `.pmjq-bell.${process.pid}.${rings++}`);
  try {
    fs.mkdirSync(bell);
    fs.rmdirSync(bell);
  } catch { /* not allowed here, or gone: the idle pace finds it */ }
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
