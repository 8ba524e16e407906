// The fencing watchdog (pmjq(1), "Fencing"): a node whose heartbeat has not
// been renewed for half the lease stops every job it runs — SIGTERM to each
// job's process group, SIGKILL after --kill-grace — so that none of them is
// still running when the lease ends and another node runs them again.
//
// The main thread cannot be trusted to do this: on a hard-mounted NFS spool
// whose server is gone, every call on the mount blocks, and the main thread
// with it (pmjq's spool I/O is synchronous); an event loop starved by load
// runs timers late by more than a lease. So the watchdog is a worker thread,
// which runs on while the main thread is blocked in a system call. The two
// share only the cells of a SharedArrayBuffer: the time the last successful
// heartbeat began, and the process group of every running job (a job's
// process group id is its pid: jobs are started in their own session). The
// worker never touches the spool; it reads the cells, sends signals and
// writes one log line to fd 2 (watchdog-worker.ts).

import { Worker } from 'node:worker_threads';
import type { Logger } from '../util/log.js';
import { monotonicMs } from '../util/monotonic.js';

/** The cells (BigInt64) the threads share. */
export const BEAT = 0; // monotonic ms at which the last successful heartbeat began
export const STOP = 1; // 1: the worker ends
export const FENCES = 2; // how often the worker has fenced the node
export const HIGH = 3; // one past the highest slot ever used
export const HELPER = 4; // pid of the job helper (pmjq-spawn): its children are this node's jobs, watched or not yet
export const UNWATCHED_NEXT = 5; // where the worker notes the next job it stopped before it was watched
export const UNWATCHED = 6; // then those jobs' pids, a ring of UNWATCHED_MAX
export const UNWATCHED_MAX = 64;
export const SLOTS = UNWATCHED + UNWATCHED_MAX; // then the slots: 0 free, +pgid watched, −pgid stopped by the watchdog
/** Jobs watched at once (a node runs at most this many; -j 0 included). */
export const WATCHED_MAX = 1 << 16;
/** --kill-grace when not given (less when the lease is too short for it) */
export const DEFAULT_KILL_GRACE_MS = 5000;

export interface WatchdogData {
  cells: SharedArrayBuffer;
  node: string;
  leaseMs: number;
  killGraceMs: number;
  logFormat: 'text' | 'json';
  verbosity: number;
}

/**
 * The guarantee needs every job of a fenced node dead before its lease ends:
 * lease/2 + kill-grace + a tenth of the lease to spare (wake-up delays, a
 * file server's coarse timestamps) ≤ lease. So the kill grace is at most
 * 0.4 × lease.
 */
export function maxKillGraceMs(leaseMs: number): number {
  return Math.floor(leaseMs * 0.4);
}

/** Why a --lease/--kill-grace pair cannot keep the guarantee (one line), or null. */
export function fencingRefusal(leaseMs: number, killGraceMs: number): string | null {
  const max = maxKillGraceMs(leaseMs);
  if (killGraceMs <= max) return null;
  const ms = (v: number): string => (v % 1000 === 0 ? `${v / 1000}s` : `${v}ms`);
  const minLease = Math.ceil(killGraceMs / 0.4 / 100) * 100;
  return `--kill-grace ${ms(killGraceMs)} is too long for --lease ${ms(leaseMs)}: a node cut off from the spool stops its jobs half a lease after its last heartbeat, and must have killed them (SIGKILL after --kill-grace) a tenth of the lease before the lease ends; use --kill-grace ${ms(max)} or less, or --lease ${ms(minLease)} or more`;
}

export class Watchdog {
  private readonly cells: BigInt64Array;
  private readonly worker: Worker;
  /** slot of each watched process group */
  private readonly slotOf = new Map<number, number>();
  private readonly free: number[] = [];
  /** groups whose job has ended but whose leftovers may still run: watched a kill grace longer */
  private readonly lingering = new Map<number, NodeJS.Timeout>();
  private fencesSeen = 0n;
  private stopped = false;

  constructor(private readonly o: Omit<WatchdogData, 'cells'>, private readonly log: Logger) {
    this.cells = new BigInt64Array(new SharedArrayBuffer((SLOTS + WATCHED_MAX) * 8));
    // armed at once: a node that never manages a heartbeat runs nothing past half a lease
    Atomics.store(this.cells, BEAT, BigInt(monotonicMs()));
    Atomics.store(this.cells, HIGH, BigInt(SLOTS));
    for (let i = SLOTS + WATCHED_MAX - 1; i >= SLOTS; i--) this.free.push(i);
    const data: WatchdogData = { ...o, cells: this.cells.buffer as SharedArrayBuffer };
    this.worker = new Worker(new URL('./watchdog-worker.js', import.meta.url), { workerData: data });
    this.worker.unref();
    this.worker.on('error', (err) => this.failed(err.message));
    this.worker.on('exit', (code) => { if (!this.stopped) this.failed(`its thread exited (${code})`); });
  }

  /** A heartbeat that began at `startedMs` (monotonicMs) has been written: the lease runs from there. */
  renew(startedMs: number): void {
    const t = BigInt(Math.floor(startedMs));
    if (t > Atomics.load(this.cells, BEAT)) Atomics.store(this.cells, BEAT, t);
  }

  /**
   * The job helper's pid. A job runs from its exec, before the main thread
   * hears of it and watches it: the worker, fenced, stops the helper's
   * children it does not watch yet.
   */
  helper(pid: number): void {
    Atomics.store(this.cells, HELPER, BigInt(pid));
  }

  /** Watch a job's process group; false when WATCHED_MAX groups are watched already. */
  watch(pgid: number): boolean {
    const linger = this.lingering.get(pgid);
    if (linger) { clearTimeout(linger); this.lingering.delete(pgid); }
    let slot = this.slotOf.get(pgid);
    if (slot === undefined) {
      slot = this.free.pop();
      if (slot === undefined) return false;
      this.slotOf.set(pgid, slot);
      if (BigInt(slot + 1) > Atomics.load(this.cells, HIGH)) Atomics.store(this.cells, HIGH, BigInt(slot + 1));
    }
    Atomics.store(this.cells, slot, BigInt(pgid));
    // stopped by the worker before we heard it had started: it is marked so, as a watched one would be
    // (looked for only once the worker has stopped one: never, on a node that was never fenced)
    if (Atomics.load(this.cells, UNWATCHED_NEXT) > 0n) for (let i = UNWATCHED; i < UNWATCHED + UNWATCHED_MAX; i++) {
      if (Atomics.compareExchange(this.cells, i, BigInt(pgid), 0n) === BigInt(pgid)) Atomics.store(this.cells, slot, BigInt(-pgid));
    }
    return true;
  }

  /**
   * A job's process has exited: true if the watchdog stopped it (the node was
   * fenced). Its process group is watched a kill grace longer while it has
   * members left (`groupLeft`: the job's leftovers, which get SIGKILL then).
   */
  exited(pgid: number, groupLeft: boolean): boolean {
    const slot = this.slotOf.get(pgid);
    if (slot === undefined) return false;
    const stopped = Atomics.load(this.cells, slot) < 0n;
    if (groupLeft) {
      const t = setTimeout(() => { this.lingering.delete(pgid); this.release(pgid); }, this.o.killGraceMs + 1000);
      t.unref();
      this.lingering.set(pgid, t);
    } else {
      this.release(pgid);
    }
    return stopped;
  }

  /** Whether the watchdog has fenced the node since the last call (it logged `fenced`). */
  fencedSinceAsked(): boolean {
    const n = Atomics.load(this.cells, FENCES);
    if (n === this.fencesSeen) return false;
    this.fencesSeen = n;
    return true;
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.lingering.values()) clearTimeout(t);
    Atomics.store(this.cells, STOP, 1n);
    Atomics.notify(this.cells, STOP);
  }

  private release(pgid: number): void {
    const slot = this.slotOf.get(pgid);
    if (slot === undefined) return;
    this.slotOf.delete(pgid);
    Atomics.store(this.cells, slot, 0n);
    this.free.push(slot);
  }

  private failed(why: string): void {
    this.log.error('watchdog-failed', {
      node: this.o.node, error: `the fencing watchdog stopped: ${why}; a node cut off from the spool may now run jobs that other nodes run again`,
    });
  }
}

/**
 * Test-only (test/cluster/hung-mount.test.ts): with PMJQ_TEST_BLOCK_MS=N in
 * its environment, a daemon blocks its main thread for N ms at its first job
 * start — an event loop starved for longer than the lease. Where:
 * PMJQ_TEST_BLOCK_AT=started (default: once it heard the job started, and
 * watches it) or requested (once it asked the helper for it: the job runs
 * before the main thread hears of it).
 */
let testBlockMs = Number(process.env.PMJQ_TEST_BLOCK_MS ?? 0);
const testBlockAt = process.env.PMJQ_TEST_BLOCK_AT ?? 'started';

export function stallForTest(at: 'started' | 'requested'): void {
  if (!(testBlockMs > 0) || at !== testBlockAt) return;
  const ms = testBlockMs;
  testBlockMs = 0;
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
