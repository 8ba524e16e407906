// Starter: turns a claimed job into a running process (through launch.ts,
// as its owner, in a clean environment) and keeps the jobs running on this
// node. A file not ready yet — still open for writing (ETXTBSY), or with a
// second name (a hard link) — is not a failure: it is started again later,
// backing off, holding on to its admission ticket meanwhile.
//
// Standbys: while jobs end within STANDBY_QUICK_MS, the next job of a busy
// slot is claimed ahead and handed to the job helper, which starts it the
// moment the slot's job is reaped, without waiting for this thread to hear
// of the end (for short jobs that round trip was most of a slot's time). It
// takes no slot until then. One not started within STANDBY_WAIT_MS (the job
// before it ran longer after all), or by the node's fencing time, goes back
// to the retry area for any node to run: a job is never held long behind
// another, nor started once the watchdog no longer covers this node.

import path from 'node:path';
import type { ClaimedJob } from '../spool/claim.js';
import { ClaimRefused, linkCount } from '../spool/claim.js';
import type { Outcome } from '../spool/finish.js';
import type { Layout } from '../spool/layout.js';
import type { Ticket } from '../schedule/admission.js';
import type { LoadModel } from '../schedule/barrier.js';
import type { Logger } from '../util/log.js';
import type { JobEnd, JobProcess, StartResult } from './job-process.js';
import { launch, type Launcher } from './launch.js';
import { loggerLevel, parseLevel } from './levels.js';
import type { Protocol } from './protocol/index.js';

/** a claimed file with a second name waits this many not-ready rounds (50 ms doubling: 6 s) for it to go, then is rejected */
const LINK_WAIT_TRIES = 7;
/** jobs that ran less than this (the last one to end, and the one in the slot so far) get a standby */
export const STANDBY_QUICK_MS = 20;
/** a standby not started by then goes back */
export const STANDBY_WAIT_MS = 100;

export interface Running {
  job: ClaimedJob;
  proc: JobProcess;
  /** its admission: the group it counts in, the cluster slot it holds */
  ticket: Ticket;
  /** a standby: the job whose slot it takes when that one ends (it takes none until then) */
  after: Running | null;
  /** its standby, if it has one */
  next: Running | null;
}

/** A claimed job whose file is not ready yet: started again when `timer` fires. */
interface NotReady {
  job: ClaimedJob;
  ticket: Ticket;
  timer: NodeJS.Timeout;
}

export interface StarterDeps {
  layout: Layout;
  launcher: Launcher;
  opts: { timeoutMs?: number; killGraceMs: number; tree?: string; chaqum?: boolean };
  log: Logger;
  load: LoadModel;
  protocol: Protocol;
  /** where a job's output goes */
  logPath: (job: ClaimedJob) => string;
  /** the fencing watchdog watches the process group (false: it watches too many) */
  watch: (pgid: number) => boolean;
  /** a job has started (the fencing tests stall the thread here) */
  started: () => void;
  /** a job's start was asked of the helper (the fencing tests stall the thread here too) */
  requested: () => void;
  /** whether the fencing watchdog stopped this process group */
  stoppedByWatchdog: (pgid: number, groupLeft: boolean) => boolean;
  /** the claimed file is not an acceptable job after all */
  reject: (r: ClaimRefused) => void;
  /** the job's process exited: decide what becomes of it (completion) */
  exited: (job: ClaimedJob, ticket: Ticket, end: JobEnd, stoppedByWatchdog: boolean) => void;
  /** the job is over without having run (it could not start, or was killed first) */
  conclude: (job: ClaimedJob, outcome: Outcome, ticket: Ticket) => void;
  /** a not-ready job was put back to run later (stopping) */
  requeue: (job: ClaimedJob, why: string) => void;
  /** a job ended or went: a scheduling pass soon */
  changed: () => void;
  stopping: () => boolean;
}

export class Starter {
  readonly running = new Map<string, Running>();
  private readonly notReady = new Map<string, NotReady>();
  /** not-ready rounds so far per job: each is a new start, the count must outlive it */
  private readonly notReadyTries = new Map<string, number>();
  /** how many of `running` are standbys */
  private standbys = 0;
  /** how long the last job to end ran (ms) */
  private lastRunMs = Infinity;

  constructor(private readonly d: StarterDeps) {}

  /** claimed jobs waiting for their file to be ready */
  get notReadyCount(): number { return this.notReady.size; }

  /** the slots taken: running jobs but standbys */
  get slotsTaken(): number { return this.running.size - this.standbys; }

  /**
   * A running job that would take a standby now, or null: it has none, has
   * run under STANDBY_QUICK_MS so far, and so did the last job to end here.
   */
  standbySlot(): Running | null {
    if (this.lastRunMs >= STANDBY_QUICK_MS) return null;
    const now = Date.now();
    for (const r of this.running.values()) {
      if (r.after === null && r.next === null && now - r.proc.started.getTime() < STANDBY_QUICK_MS) return r;
    }
    return null;
  }

  /** Stopping: the standbys do not start. */
  withdrawStandbys(): void {
    for (const r of this.running.values()) if (r.after !== null) r.proc.kill('interrupted');
  }

  /** Start a claimed job now, or as the standby of `standby.after` (by `standby.deadlineMs`, monotonic). */
  start(job: ClaimedJob, ticket: Ticket, standby?: { after: Running; deadlineMs: number }): void {
    const { d } = this;
    const m = job.meta;
    if (job.links > 1 && (job.links = linkCount(job)) > 1) {
      if ((this.notReadyTries.get(job.id) ?? 0) < LINK_WAIT_TRIES) {
        this.waitReady(job, ticket, 'the file has a second name (a hard link): waiting for it to go');
        return;
      }
      ticket.release();
      this.notReadyTries.delete(job.id);
      d.reject(new ClaimRefused(job, `has ${job.links} hard links (a job file must have one name)`));
      d.changed();
      return;
    }
    const proc = launch(d.launcher, {
      id: job.id,
      file: job.file,
      args: m.args ?? [],
      cwd: m.tree ?? d.layout.groupDir(m.dir),
      owner: job.owner,
      identity: m,
      logPath: d.logPath(job),
      timeoutMs: ticket.group.settings.timeout ?? d.opts.timeoutMs,
      killGraceMs: d.opts.killGraceMs,
      handler: d.protocol.handlerFor({ id: job.id, tree: d.opts.tree ?? m.tree ?? d.layout.groupDir(m.dir), owner: job.owner }),
      log: d.log,
      onLine: d.opts.chaqum ? (line) => this.jobLine(job, line) : undefined,
    });
    // it counts as running from now: its process starts in the helper, and
    // kills or a stop meanwhile apply as soon as it is there
    const running: Running = { job, proc, ticket, after: standby?.after ?? null, next: null };
    this.running.set(job.id, running);
    if (standby) {
      standby.after.next = running;
      this.standbys++;
      d.log.debug('standby', { id: job.id, name: m.name, after: standby.after.job.id });
    }
    ticket.group.running++;
    d.load.jobStarted(job.id);
    d.protocol.jobStarted(job.id);
    void proc.start(standby && { after: standby.after.proc, deadlineMs: standby.deadlineMs }).then((r) => this.startResult(running, r));
    d.requested();
  }

  /** `r` left its slot (it ended, or never started): its standby, if any, has it now (the helper starts it). */
  private handOver(r: Running): void {
    const next = r.next;
    r.next = null;
    if (next === null) return;
    next.after = null;
    this.standbys--;
  }

  private startResult(running: Running, r: StartResult): void {
    const { d } = this;
    const { job, proc, ticket } = running;
    const m = job.meta;
    if (r.ok) {
      d.log.info('job-start', { id: job.id, name: m.name, group: m.group, attempt: m.attempt, pid: proc.pid });
      // its process group id is its pid (its own session)
      if (proc.pid !== undefined && !d.watch(proc.pid)) {
        d.log.error('job-unwatched', { id: job.id, error: 'the fencing watchdog watches this many jobs already: stopped' });
        proc.kill('interrupted');
      }
      void proc.exited.then((end) => this.exited(running, end));
      d.started();
      return;
    }
    this.running.delete(job.id);
    ticket.group.running--;
    d.load.jobEnded(job.id);
    this.handOver(running);
    if (running.after !== null) {
      // withdrawn while still a standby
      running.after.next = null;
      running.after = null;
      this.standbys--;
    }
    if (!r.busy && r.withdrawn !== undefined) {
      ticket.release();
      if (proc.killedBeforeStart === 'killed') {
        d.conclude(job, notStarted('killed', 'killed before it started'), ticket);
      } else {
        d.log.info('standby-returned', { id: job.id, name: m.name, group: m.group, reason: r.error });
        this.requeue(job, r.withdrawn === 'expired' ? `not started: ${r.error} (${STANDBY_WAIT_MS} ms)` : 'not started: pmjq stopped');
      }
      d.changed();
      return;
    }
    if (r.busy && !d.stopping()) {
      this.waitReady(job, ticket, r.reason);
      return;
    }
    ticket.release();
    if (r.busy) {
      // stopping: it goes back now (the stop waits for this start, not for a timer)
      this.requeue(job);
      d.changed();
      return;
    }
    this.notReadyTries.delete(job.id);
    d.log.warn('job-start-failed', { id: job.id, name: m.name, group: m.group, error: r.error });
    d.conclude(job, notStarted('failed', r.error), ticket);
    d.changed();
  }

  /** Kill a running job; false if it is not running here. */
  kill(id: string): boolean {
    const r = this.running.get(id);
    if (!r) return false;
    r.proc.kill('killed');
    return true;
  }

  /** The name of a job running or waiting to start here; undefined for another node's job (or one already over). */
  nameOf(id: string): string | undefined {
    return (this.running.get(id) ?? this.notReady.get(id))?.job.meta.name;
  }

  /** pmjqctl kill: a job running here is killed; one waiting to start is over at once. */
  killRequested(id: string): void {
    const r = this.running.get(id);
    const w = this.notReady.get(id);
    if (r) r.proc.kill('killed');
    if (w) {
      clearTimeout(w.timer);
      this.notReady.delete(id);
      w.ticket.release();
      this.d.conclude(w.job, notStarted('killed', 'killed before it started'), w.ticket);
    }
  }

  /** Stop every running job, marking it interrupted (it is requeued). */
  interruptAll(): void {
    for (const r of this.running.values()) r.proc.kill('interrupted');
  }

  /** Stopping: the jobs waiting for their file go back to run later. */
  requeueNotReady(): void {
    for (const w of this.notReady.values()) {
      clearTimeout(w.timer);
      w.ticket.release();
      this.requeue(w.job);
    }
    this.notReady.clear();
  }

  /** Its process exited: concluded. */
  private exited(r: Running, end: JobEnd): void {
    const id = r.job.id;
    // the watchdog stopped it: this node was fenced, and the job may be another node's by now
    const stopped = r.proc.pid !== undefined && this.d.stoppedByWatchdog(r.proc.pid, end.groupLeft);
    this.running.delete(id);
    r.ticket.group.running--;
    this.d.load.jobEnded(id);
    this.notReadyTries.delete(id);
    this.handOver(r);
    this.lastRunMs = end.finished.getTime() - end.started.getTime();
    this.d.exited(r.job, r.ticket, end, stopped);
    // not a scheduling pass now: spawning the next job from inside a child's
    // exit handling starves libuv's timers (measured: 38 s late after 10 s of
    // back-to-back jobs with fd 3/4 pipes); from the check phase it does not
    this.d.changed();
  }

  /** chaqum mode: a job's output line in the log, at the level its prefix gives. */
  private jobLine(job: ClaimedJob, line: string): void {
    const { level, text } = parseLevel(line);
    this.d.log.log(loggerLevel(level), 'output', { id: job.id, job: path.basename(job.file), level: level ?? undefined, line: text });
  }

  /** Someone still writes the file (ETXTBSY), or a second name is still there. Not a failure: try again, backing off to 5 s. */
  private waitReady(job: ClaimedJob, ticket: Ticket, reason = 'file still open for writing (ETXTBSY)'): void {
    const tries = this.notReadyTries.get(job.id) ?? 0;
    this.notReadyTries.set(job.id, tries + 1);
    if (tries === 0) this.d.log.info('job-not-ready', { id: job.id, name: job.meta.name, reason });
    const delay = Math.min(5000, 50 * 2 ** tries);
    const timer = setTimeout(() => {
      this.notReady.delete(job.id);
      if (this.d.stopping()) {
        ticket.release();
        this.requeue(job);
        return;
      }
      this.start(job, ticket);
    }, delay);
    this.notReady.set(job.id, { job, ticket, timer });
  }

  private requeue(job: ClaimedJob, why = 'not started: file still being written'): void {
    // it never ran: the attempt it used is given back
    job.meta.attempt--;
    this.notReadyTries.delete(job.id);
    this.d.requeue(job, why);
  }
}

/** How a job ended that never started. */
function notStarted(status: 'killed' | 'failed', error: string): Outcome {
  return { status, exitCode: null, signal: null, started: null, finished: new Date(), error };
}
