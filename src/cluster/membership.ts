// Which nodes are alive (pmjq(1) RUNNING A CLUSTER). A node is stale when its heartbeat
// has not changed for the lease. Ages are judged by the shared filesystem's
// own clock — the mtime of our own heartbeat, just written, is "now" there —
// so nodes whose clocks drift apart never declare each other stale. A node
// on this host whose process is gone is stale at once.

import fs from 'node:fs';
import path from 'node:path';
import { pidAlive } from './recovery.js';
import { hostName, parseNodeId, type Layout } from '../spool/layout.js';
import { isErrno } from '../util/fsx.js';

export class Membership {
  constructor(private readonly layout: Layout, private readonly me: string, private readonly leaseMs: number) {}

  /**
   * Nodes that are stale given the filesystem's current time `fsNow` (ms).
   * Looks at heartbeats and at claimed areas (a node that died before its
   * first heartbeat, or whose heartbeat a recoverer removed, still has one).
   */
  stale(fsNow: number): string[] {
    const host = hostName();
    const out = new Set<string>();
    const beats = new Map<string, number | null>();
    for (const n of list(this.layout.nodes)) {
      if (n.startsWith('.')) continue;
      // null: listed, but could not be looked at. A heartbeat being replaced
      // (renamed over) can fail a stat on NFS and FUSE for an instant: that
      // node is judged next time, not now (it may just have left, too)
      try {
        beats.set(n, fs.statSync(path.join(this.layout.nodes, n)).mtimeMs);
      } catch (err) {
        if (isErrno(err, 'ENOENT', 'ESTALE')) beats.set(n, null);
      }
    }
    const claimed = list(this.layout.claimedRoot).filter((n) => !n.startsWith('.'));
    for (const n of new Set([...beats.keys(), ...claimed])) {
      if (n === this.me) continue;
      const id = parseNodeId(n);
      if (id && id.host === host && !pidAlive(id.pid)) { out.add(n); continue; }
      let seen = beats.get(n);
      if (seen === null) continue;
      if (seen === undefined) {
        // readdir can miss an entry being renamed over, too: ask for the heartbeat by name
        try { seen = fs.statSync(this.layout.heartbeat(n)).mtimeMs; } catch { /* none: judged by its claimed area */ }
      }
      if (seen === undefined) {
        try { seen = fs.statSync(this.layout.claimed(n)).mtimeMs; } catch { continue; }
      }
      if (fsNow - seen > this.leaseMs) out.add(n);
    }
    return [...out];
  }
}

function list(dir: string): string[] {
  try { return fs.readdirSync(dir); } catch { return []; }
}
