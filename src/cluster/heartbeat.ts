// This node's heartbeat file in .pmjq/nodes (pmjq(1) RUNNING A CLUSTER): who runs here and
// what it is doing, rewritten every few seconds by temp-then-rename.
//
// A beat has a deadline: one that took longer than its period to complete
// counts as failed (the file server is too slow to be relied on). Only a
// beat completed in time renews the lease, and it renews it from the moment
// it began, since the file server may have stamped it any time after that.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { hostName, type Layout } from '../spool/layout.js';
import { writeFileAtomic } from '../util/fsx.js';
import { monotonicMs } from '../util/monotonic.js';

export interface NodeState {
  node: string;
  host: string;
  pid: number;
  version: string;
  started: string;
  updated: string;
  groups: string[] | null;
  running: number;
  queued: number;
  load: number;
  state: 'idle' | 'processing' | 'stopping' | 'fenced';
  /** -j of this node (0 = no limit), for ETAs */
  jobs: number;
  lease_ms: number;
  /** the barriers holding jobs back now, e.g. "node: load 2.10 >= 2" (null: none) */
  holds: string[] | null;
}

export class Heartbeat {
  private timer: NodeJS.Timeout | null = null;
  private tick: (() => void) | null = null;
  /** performance.now() of the last beat (attempted) */
  private lastTick = 0;

  constructor(
    private readonly layout: Layout,
    private readonly node: string,
    private readonly version: string,
    private readonly started: Date,
    private readonly snapshot: () => Pick<NodeState, 'groups' | 'running' | 'queued' | 'state' | 'jobs' | 'lease_ms' | 'holds'>,
    private readonly everyMs = 5000,
  ) {}

  /** Write the heartbeat; returns its mtime: the shared filesystem's clock, now. */
  beat(): number {
    const s = this.snapshot();
    const state: NodeState = {
      node: this.node,
      host: hostName(),
      pid: process.pid,
      version: this.version,
      started: this.started.toISOString(),
      updated: new Date().toISOString(),
      load: os.loadavg()[0]!,
      ...s,
    };
    const file = this.layout.heartbeat(this.node);
    writeFileAtomic(file, JSON.stringify(state) + '\n');
    return fs.statSync(file).mtimeMs;
  }

  /**
   * Beat now and every `everyMs`. `onBeat` gets the filesystem time and the
   * monotonicMs() at which the beat began; `onError` the failure — a write
   * that failed, or one that took longer than `everyMs`.
   */
  start(onBeat: (fsNow: number, startedMs: number) => void, onError: (err: unknown) => void): void {
    const tick = (): void => {
      this.lastTick = performance.now();
      const started = monotonicMs();
      let fsNow: number;
      try { fsNow = this.beat(); } catch (err) { onError(err); return; }
      const took = monotonicMs() - started;
      if (took > this.everyMs) {
        onError(new Error(`the heartbeat write took ${took} ms, more than its deadline of ${this.everyMs} ms: the file server is too slow or hung`));
        return;
      }
      onBeat(fsNow, started);
    };
    this.tick = tick;
    tick();
    this.timer = setInterval(tick, this.everyMs);
    this.timer.unref();
  }

  /**
   * Beat now if the last beat is a period old. The daemon calls this from its
   * work path: while child processes keep exiting and being spawned, Node
   * runs timers late — on a loaded machine by more than a lease (seen: 60 s
   * while 4 nodes drained 2 000 jobs) — and a busy node whose heartbeat
   * waits for its timer is taken for dead and its running jobs run twice.
   */
  beatIfDue(): void {
    if (this.tick && performance.now() - this.lastTick >= this.everyMs) this.tick();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.tick = null;
    try { fs.unlinkSync(this.layout.heartbeat(this.node)); } catch { /* gone */ }
  }
}

/**
 * Remove a dead node's heartbeat, and what a kill -9 in the middle of
 * writing one left (writeFileAtomic's `.NODE.PID.N.tmp`): a recoverer
 * leaves nothing of the node behind.
 */
export function removeHeartbeat(layout: Layout, node: string): void {
  try { fs.unlinkSync(layout.heartbeat(node)); } catch { /* gone */ }
  const prefix = `.${node}.`;
  let names: string[];
  try { names = fs.readdirSync(layout.nodes); } catch { return; }
  for (const name of names) {
    if (name.startsWith(prefix) && /^\d+\.\d+\.tmp$/.test(name.slice(prefix.length))) {
      try { fs.unlinkSync(path.join(layout.nodes, name)); } catch { /* gone */ }
    }
  }
}
