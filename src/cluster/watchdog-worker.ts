// The fencing watchdog's thread (see watchdog.ts). It must keep working while
// the main thread is blocked in a system call on a hung filesystem, so it
// never touches the spool and never waits for the main thread: it reads the
// shared cells, signals process groups, and writes its one log line straight
// to fd 2 (a worker's process.stderr goes through the main thread) — only
// once the killing is done, so that a log that blocks cannot delay a SIGKILL.

import fs from 'node:fs';
import { workerData } from 'node:worker_threads';
import { Logger } from '../util/log.js';
import { monotonicMs } from '../util/monotonic.js';
import { BEAT, FENCES, HELPER, HIGH, SLOTS, STOP, UNWATCHED, UNWATCHED_MAX, UNWATCHED_NEXT, type WatchdogData } from './watchdog.js';

/** How often a fenced node looks for jobs to stop (one started as it fenced) and groups to SIGKILL. */
const FENCED_POLL_MS = 50;

const d = workerData as WatchdogData;
const cells = new BigInt64Array(d.cells);
const half = d.leaseMs / 2;
const log = new Logger({ format: d.logFormat, verbosity: d.verbosity, write: writeStderr });

/** Groups sent SIGTERM, by slot: SIGKILL at killAt unless their end is seen first. */
const stopping = new Map<number, { pgid: number; killAt: number }>();
/** Jobs not watched yet, sent SIGTERM, by pid: SIGKILL at killAt unless they are gone */
const stoppingUnwatched = new Map<number, number>();
/** the heartbeat whose silence fenced the node (a renewed one re-arms the watchdog) */
let fencedFor: bigint | null = null;
/** what the `fenced` line will say, once the groups it stopped are gone or killed */
let report: { silentMs: number; stopped: number; killed: number } | null = null;

while (Atomics.load(cells, STOP) === 0n) {
  const now = monotonicMs();
  const beat = Atomics.load(cells, BEAT);
  const silent = now - Number(beat);
  const fenced = silent >= half;
  if (fenced) {
    if (fencedFor !== beat) {
      fencedFor = beat;
      report = { silentMs: silent, stopped: 0, killed: 0 };
      Atomics.add(cells, FENCES, 1n);
    }
    const n = stopWatched(now) + stopUnwatched(now);
    if (report) report.stopped += n;
  }
  for (const [pid, killAt] of stoppingUnwatched) {
    if (!signal(pid, 0) && !signalPid(pid, 0)) { stoppingUnwatched.delete(pid); continue; }
    if (now < killAt) continue;
    if (!signal(pid, 'SIGKILL')) signalPid(pid, 'SIGKILL');
    stoppingUnwatched.delete(pid);
    if (report) report.killed++;
  }
  for (const [slot, s] of stopping) {
    // its end was seen and the slot freed (or reused), or nothing is left of
    // the group (not even an unreaped leader): it needs no SIGKILL
    if (Atomics.load(cells, slot) !== BigInt(-s.pgid) || !signal(s.pgid, 0)) { stopping.delete(slot); continue; }
    if (now < s.killAt) continue;
    signal(s.pgid, 'SIGKILL');
    stopping.delete(slot);
    if (report) report.killed++;
  }
  if (report && stopping.size === 0 && stoppingUnwatched.size === 0) {
    log.error('fenced', {
      node: d.node, running: report.stopped, sigkilled: report.killed, silent_ms: Math.round(report.silentMs),
      lease_ms: d.leaseMs, kill_grace_ms: d.killGraceMs,
      error: `heartbeat not renewed for ${Math.round(report.silentMs)} ms (half the lease): stopped claiming and stopped this node's ${report.stopped} running job(s) (SIGTERM, SIGKILL after --kill-grace) so that other nodes can take them over`,
    });
    report = null;
  }
  const sleep = fenced || stopping.size > 0 || stoppingUnwatched.size > 0 ? FENCED_POLL_MS : half - silent;
  Atomics.wait(cells, STOP, 0n, Math.max(1, sleep));
}

/** Mark every watched group stopped and send it SIGTERM; returns how many. */
function stopWatched(now: number): number {
  let n = 0;
  const high = Number(Atomics.load(cells, HIGH));
  for (let slot = SLOTS; slot < high; slot++) {
    const v = Atomics.load(cells, slot);
    // marked before it is signalled, so that the main thread, seeing its end, knows who ended it
    if (v <= 0n || Atomics.compareExchange(cells, slot, v, -v) !== v) continue;
    const pgid = Number(v);
    signal(pgid, 'SIGTERM');
    stopping.set(slot, { pgid, killAt: now + d.killGraceMs });
    n++;
  }
  return n;
}

/**
 * SIGTERM to the job helper's children that are not watched: jobs whose
 * start the main thread has not heard of (it may be the thread that is
 * blocked). Each is noted first, so that the main thread, watching it
 * later, knows who ended it. Returns how many.
 */
function stopUnwatched(now: number): number {
  const helper = Number(Atomics.load(cells, HELPER));
  if (helper <= 0) return 0;
  let n = 0;
  for (const pid of childrenOf(helper)) {
    if (stoppingUnwatched.has(pid) || isWatched(pid)) continue;
    const at = Number(Atomics.add(cells, UNWATCHED_NEXT, 1n) % BigInt(UNWATCHED_MAX));
    Atomics.store(cells, UNWATCHED + at, BigInt(pid));
    // (a child that has not made its own session yet is signalled alone)
    if (!signal(pid, 'SIGTERM')) signalPid(pid, 'SIGTERM');
    stoppingUnwatched.set(pid, now + d.killGraceMs);
    n++;
  }
  return n;
}

function isWatched(pgid: number): boolean {
  const high = Number(Atomics.load(cells, HIGH));
  for (let slot = SLOTS; slot < high; slot++) {
    const v = Atomics.load(cells, slot);
    if (v === BigInt(pgid) || v === BigInt(-pgid)) return true;
  }
  return false;
}

/** The children of a (single-threaded) process, from /proc: no spool is touched. */
function childrenOf(pid: number): number[] {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function signalPid(pid: number, sig: NodeJS.Signals | 0): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}

/** Signal a process group; false if it has no member left. */
function signal(pgid: number, sig: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, sig);
    return true;
  } catch {
    return false;
  }
}

/** Write a line to fd 2, waiting a little if it is a full non-blocking pipe; never throws. */
function writeStderr(line: string): void {
  let buf = Buffer.from(line);
  for (let tries = 0; buf.length > 0 && tries < 100; tries++) {
    try {
      buf = buf.subarray(fs.writeSync(2, buf));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') return;
      Atomics.wait(cells, STOP, 0n, 10);
    }
  }
}
