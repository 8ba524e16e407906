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
      if (n !== this.me && this.isStale(n, beats.get(n), fsNow, host)) out.add(n);
    }
    return [...out];
  }

  /**
   * Recoveries left half done: areas `.pmjq/claimed/.recovering.DEAD.by.TAKER`
   * whose taker is stale too (it died while recovering DEAD), to be taken
   * over in turn. `localOnly`: only those whose taker ran on this host and is
   * gone (at start, before the filesystem's clock is known).
   */
  orphanedRecoveries(fsNow: number, localOnly = false): { dead: string; entry: string }[] {
    const host = hostName();
    const out: { dead: string; entry: string }[] = [];
    for (const e of list(this.layout.claimedRoot)) {
      const p = parseRecovering(e);
      if (!p || p.taker === this.me) continue;
      const id = parseNodeId(p.taker);
      const local = id !== null && id.host === host;
      if (localOnly && !local) continue;
      if (this.isStale(p.taker, undefined, localOnly ? -Infinity : fsNow, host, path.join(this.layout.claimedRoot, e))) out.push({ dead: p.dead, entry: e });
    }
    return out;
  }

  /**
   * Node `n` is stale: on this host with its process gone, or silent for the
   * lease by its heartbeat (`seen`: its mtime as listed, null when it could not
   * be looked at), or, without one, by its claimed area (or `lastResort`).
   */
  private isStale(n: string, seen: number | null | undefined, fsNow: number, host: string, lastResort?: string): boolean {
    const id = parseNodeId(n);
    if (id && id.host === host && !pidAlive(id.pid)) return true;
    if (seen === null) return false;
    if (seen === undefined) {
      // readdir can miss an entry being renamed over, too: ask for the heartbeat by name
      try { seen = fs.statSync(this.layout.heartbeat(n)).mtimeMs; } catch { /* none: judged by its claimed area */ }
    }
    for (const p of [this.layout.claimed(n), lastResort]) {
      if (seen !== undefined || p === undefined) break;
      try { seen = fs.statSync(p).mtimeMs; } catch { /* not there */ }
    }
    return seen !== undefined && fsNow - seen > this.leaseMs;
  }
}

/** `.recovering.DEAD.by.TAKER`: DEAD's claimed area, taken over by TAKER. */
export function parseRecovering(entry: string): { dead: string; taker: string } | null {
  const m = /^\.recovering\.(.+)\.by\.(.+\.\d+\.\d+)$/.exec(entry);
  return m ? { dead: m[1]!, taker: m[2]! } : null;
}

function list(dir: string): string[] {
  try { return fs.readdirSync(dir); } catch { return []; }
}
