// Fencing and membership, as the daemon lives them: the heartbeat is renewed
// (and, once renewed, stale nodes are recovered: their claimed jobs
// requeued, their cluster slots freed); a heartbeat left unrenewed for half
// the lease fences the node — it claims nothing, and the watchdog stops its
// jobs from its own thread (pmjq(1), "Fencing") — until one is renewed.
// Also counts what became of the jobs the watchdog stopped, to say so once.

import fs from 'node:fs';
import path from 'node:path';
import type { ClaimedEntry, ClaimedJob } from '../spool/claim.js';
import type { Finisher, Outcome } from '../spool/finish.js';
import type { Layout } from '../spool/layout.js';
import { errText } from '../util/fsx.js';
import type { Logger } from '../util/log.js';
import { monotonicMs } from '../util/monotonic.js';
import { Heartbeat, removeHeartbeat, type NodeState } from './heartbeat.js';
import { Membership } from './membership.js';
import { deadLocalNodes, recoverNode } from './recovery.js';
import type { Slots } from './slots.js';
import { Watchdog } from './watchdog.js';

/** Node crashes a job may live through before it is archived as failed (a job that kills its node must not do so forever). */
const MAX_INTERRUPTIONS = 3;

export type NodeSnapshot = Pick<NodeState, 'groups' | 'running' | 'queued' | 'state' | 'jobs' | 'lease_ms' | 'holds'>;

export interface FencingDeps {
  layout: Layout;
  node: string;
  version: string;
  opts: { leaseMs: number; killGraceMs: number; logFormat: 'text' | 'json'; verbosity: number };
  log: Logger;
  finisher: Finisher;
  slots: Slots;
  /** what the heartbeat says about this node */
  snapshot: (fenced: boolean) => NodeSnapshot;
  /** a recovered job that had ended but cannot be archived yet: archived later */
  keepUnarchived: (job: ClaimedEntry, outcome: Outcome) => void;
  /** each heartbeat written tells the file server's clock (its mtime) */
  fsClock: (fsNow: number) => void;
  /** recovery may have put jobs in the retry area */
  scanRetry: () => void;
  /** there may be jobs to claim (stale nodes recovered, the quiet after unfencing over): a scheduling pass */
  mayClaim: () => void;
  /** jobs running on this node */
  running: () => number;
  stopping: () => boolean;
}

export class Fencing {
  private heartbeat: Heartbeat | null = null;
  /** stops our jobs when the heartbeat goes unrenewed for half the lease, even while this thread is blocked */
  private watchdog: Watchdog | null = null;
  private helperPid = 0;
  private readonly membership: Membership;
  /** monotonicMs() at which the last heartbeat written in time began */
  private lastBeat = monotonicMs();
  /** performance.now() when other nodes' heartbeats are looked at again */
  private nextMembership = 0;
  /** the heartbeat could not be renewed for half the lease: claim nothing, run nothing */
  private fencedNow = false;
  /** monotonicMs() until which a node just unfenced still claims nothing */
  private quietUntil = 0;
  /** its end: a scheduling pass (it keeps a --once run alive till then) */
  private quietTimer: NodeJS.Timeout | null = null;
  /** while fenced: what became of the jobs the watchdog stopped */
  private tally: { left: number; requeued: number } | null = null;

  constructor(private readonly d: FencingDeps) {
    this.membership = new Membership(d.layout, d.node, d.opts.leaseMs);
  }

  /**
   * Fenced: claim nothing until a heartbeat is renewed (the watchdog may have
   * fenced us meanwhile), and for a quiet period after (see beaten()).
   */
  get fenced(): boolean {
    this.notice();
    return this.fencedNow || monotonicMs() < this.quietUntil;
  }

  /** Start the watchdog and the heartbeat; recover the nodes that died on this host. */
  start(): void {
    const { d } = this;
    this.watchdog = new Watchdog({ node: d.node, leaseMs: d.opts.leaseMs, killGraceMs: d.opts.killGraceMs, logFormat: d.opts.logFormat, verbosity: d.opts.verbosity }, d.log);
    if (this.helperPid) this.watchdog.helper(this.helperPid);
    this.heartbeat = new Heartbeat(d.layout, d.node, d.version, new Date(), () => d.snapshot(this.fencedNow), Math.min(5000, d.opts.leaseMs / 4));
    this.heartbeat.start((fsNow, startedMs) => this.beaten(fsNow, startedMs), (err) => this.beatFailed(err));
    for (const dead of deadLocalNodes(d.layout, d.node)) this.recover(dead);
    for (const o of this.membership.orphanedRecoveries(0, true)) this.recover(o.dead, o.entry);
    d.scanRetry();
  }

  /** Timers run late while jobs keep ending: a busy node beats from the scheduling pass. */
  beatIfDue(): void {
    this.heartbeat?.beatIfDue();
  }

  /** When (monotonicMs) the watchdog fences this node unless a heartbeat succeeds first: no job may start after it. */
  get fencingAtMs(): number {
    return this.lastBeat + this.d.opts.leaseMs / 2;
  }

  /** The job helper's pid (pmjq-spawn): its children are this node's jobs, watched or about to be. */
  helper(pid: number): void {
    this.helperPid = pid;
    this.watchdog?.helper(pid);
  }

  /** The watchdog watches a job's process group; false if it watches too many already. */
  watch(pgid: number): boolean {
    return this.watchdog === null || this.watchdog.watch(pgid);
  }

  /** Whether the watchdog stopped this process group (it was one of ours when the node was fenced). */
  stoppedByWatchdog(pgid: number, groupLeft: boolean): boolean {
    return this.watchdog?.exited(pgid, groupLeft) ?? false;
  }

  /** A job the watchdog stopped was put back to run again. */
  requeued(): void {
    this.fenceTally().requeued++;
  }

  /** A job the watchdog stopped, whose claimed directory another node took over. */
  lost(job: ClaimedJob): void {
    this.fenceTally().left++;
    this.d.log.warn('job-lost-to-recovery', {
      id: job.id, name: job.meta.name, attempt: job.meta.attempt,
      error: 'stopped by the watchdog while this node was fenced; another node took its claimed directory over and runs it again',
    });
  }

  /** Every job the watchdog stopped has been dealt with: say where they went. */
  handled(): void {
    const f = this.tally;
    if (!f || this.d.running() > 0) return;
    if (f.left + f.requeued > 0) {
      this.d.log.warn('jobs-left-to-recovery', {
        node: this.d.node, jobs: f.left + f.requeued, taken_over: f.left, requeued: f.requeued,
        note: 'jobs stopped by the watchdog: taken over by the node that recovered ours, or put back to run again',
      });
    }
    if (this.fencedNow) { f.left = 0; f.requeued = 0; } else { this.tally = null; }
  }

  stop(): void {
    this.heartbeat?.stop();
    this.watchdog?.stop();
    if (this.quietTimer) clearTimeout(this.quietTimer);
  }

  private beaten(fsNow: number, startedMs: number): void {
    const { d } = this;
    this.notice();
    const silent = startedMs - this.lastBeat;
    this.lastBeat = startedMs;
    this.watchdog?.renew(startedMs);
    d.fsClock(fsNow);
    if (this.fencedNow) {
      this.fencedNow = false;
      if (d.running() === 0) this.tally = null;
      // Another node may have judged us stale just before this beat (by a
      // heartbeat it read a moment earlier, or from an attribute cache) and
      // be about to take our claimed area: a job claimed into it now would
      // be requeued by that node while it runs here. Claiming waits until
      // such a take-over is done; what is claimed then goes to a fresh area.
      const quiet = Math.min(5000, Math.max(2000, d.opts.leaseMs / 4));
      this.quietUntil = monotonicMs() + quiet;
      if (this.quietTimer) clearTimeout(this.quietTimer);
      this.quietTimer = setTimeout(() => { this.quietTimer = null; d.mayClaim(); }, quiet);
      d.log.warn('unfenced', { node: d.node, silent_ms: Math.round(silent), quiet_ms: quiet, note: 'heartbeat renewed: claiming again after quiet_ms' });
    }
    // a node taken for dead has lost its claimed area to a recoverer: make a new one
    fs.mkdirSync(d.layout.claimed(d.node), { recursive: true });
    if (d.stopping()) return;
    // a stale node is one silent for a lease: looking every quarter lease is soon enough, and spares the file server
    const now = performance.now();
    if (now < this.nextMembership) return;
    this.nextMembership = now + d.opts.leaseMs / 4;
    const stale = this.membership.stale(fsNow);
    for (const dead of stale) this.recover(dead);
    // a taker that died while recovering: what it left is taken over in turn
    const orphans = this.membership.orphanedRecoveries(fsNow);
    for (const o of orphans) this.recover(o.dead, o.entry);
    if (stale.length || orphans.length) { d.scanRetry(); d.mayClaim(); }
  }

  /**
   * Self-fencing: unable to renew the heartbeat for half the lease, claim
   * nothing. The watchdog stops our jobs then, and logs `fenced` — from its
   * own thread, so that it does so even while this one is blocked on a hung
   * filesystem.
   */
  private beatFailed(err: unknown): void {
    const silent = monotonicMs() - this.lastBeat;
    this.d.log.warn('heartbeat-failed', { node: this.d.node, error: errText(err), silent_ms: Math.round(silent) });
    this.notice();
    if (silent >= this.d.opts.leaseMs / 2) this.enterFence();
  }

  /** The watchdog has fenced the node since we last looked. */
  private notice(): void {
    if (this.watchdog?.fencedSinceAsked()) this.enterFence();
  }

  private enterFence(): void {
    this.fencedNow = true;
    this.fenceTally();
  }

  private fenceTally(): { left: number; requeued: number } {
    return (this.tally ??= { left: 0, requeued: 0 });
  }

  /** Take over a stale node's claimed jobs (`entry`: left in a recovery not finished), free its cluster slots, remove its heartbeat. */
  private recover(dead: string, entry?: string): void {
    const { d } = this;
    try {
      const exhausted = (m: { interrupted?: number }): boolean => (m.interrupted ?? 0) >= MAX_INTERRUPTIONS;
      recoverNode(d.layout, d.node, dead, d.finisher, d.log, exhausted, (job, outcome) => {
        d.log.error('archive-failed', { id: job.id, name: job.meta.name, node: dead, kept_in: job.dir ?? job.file, retry: 'the archive step is tried again every poll interval' });
        d.keepUnarchived(job, outcome);
      }, entry === undefined ? undefined : path.join(d.layout.claimedRoot, entry));
      const freed = d.slots.releaseNode(dead);
      if (freed) d.log.info('slots-freed', { node: dead, slots: freed });
      removeHeartbeat(d.layout, dead);
    } catch (err) {
      d.log.error('recover-failed', { node: dead, error: errText(err) });
    }
  }
}
