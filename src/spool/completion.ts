// Completion: what becomes of a job once its process exited (or it could
// not run at all). Its outcome is decided from how it ended; a failure with
// retries left goes to the retry area; an interrupted job is put back; any
// other is archived. A job that cannot be archived yet (full disk,
// permissions) stays claimed, noted as over, and its archive step is tried
// again every poll interval. A job whose claimed directory another node
// took over while this one was taken for dead is that node's: left alone.

import fs from 'node:fs';
import type { Ticket } from '../schedule/admission.js';
import type { Group } from '../schedule/groups.js';
import type { JobEnd } from '../run/job-process.js';
import type { Protocol } from '../run/protocol/index.js';
import { errText } from '../util/fsx.js';
import type { Logger } from '../util/log.js';
import type { ClaimedEntry, ClaimedJob } from './claim.js';
import type { Finisher, Outcome } from './finish.js';
import type { Layout } from './layout.js';
import type { JobMeta } from './meta.js';
import type { JobRecord, JobStatus } from './record.js';

/** Retry delays double per attempt up to this. */
const BACKOFF_CAP_MS = 3_600_000;

/** What fencing wants to know about the jobs its watchdog stopped. */
export interface FencedJobs {
  /** one was put back to run again */
  requeued(): void;
  /** one was taken over by the node that recovered ours */
  lost(job: ClaimedJob): void;
  /** one was dealt with (after the two above) */
  handled(): void;
}

export interface CompletionDeps {
  layout: Layout;
  node: string;
  finisher: Finisher;
  protocol: Protocol;
  log: Logger;
  opts: { retries: number; backoffMs: number; pollMs: number };
  fenced: FencedJobs;
  /** a retry entry was written: the scanner waits for it to be due */
  retryWritten: (entry: string, dueMs: number, meta: JobMeta) => void;
  /** the unarchived jobs were tried again (--once may be drained now) */
  retried: () => void;
}

export class Completion {
  /** jobs over that are not archived (and counted as failures) */
  failures = 0;
  /** jobs archived */
  archivedCount = 0;
  /** jobs that ended but could not be archived yet (full disk, permissions) */
  private readonly unarchived: { job: ClaimedEntry; outcome: Outcome }[] = [];
  private unarchivedTimer: NodeJS.Timeout | null = null;

  constructor(private readonly d: CompletionDeps) {}

  get unarchivedCount(): number { return this.unarchived.length; }

  /** A job's process exited (`stoppedByWatchdog`: the node was fenced and the watchdog stopped it). */
  exited(job: ClaimedJob, ticket: Ticket, end: JobEnd, stoppedByWatchdog: boolean): void {
    const { d } = this;
    const id = job.id;
    ticket.releaseAfterRun();
    const status: JobStatus = stoppedByWatchdog ? 'interrupted'
      : end.reason === 'exit' ? (end.exitCode === 0 ? 'done' : 'failed') : end.reason;
    const outcome: Outcome = { status, exitCode: end.exitCode, signal: end.signal, started: end.started, finished: end.finished };
    if (stoppedByWatchdog && this.lostToRecovery(job)) {
      // another node took it over while we were cut off: no record, no archive, it is that node's now
      d.protocol.jobEnded(id, null, true);
      d.fenced.lost(job);
    } else if (status === 'interrupted' && job.meta.script === undefined) {
      d.protocol.jobEnded(id, null, true);
      try {
        d.finisher.requeue(job, Date.now(), stoppedByWatchdog ? `interrupted: node ${d.node} was fenced` : 'interrupted: pmjq stopped', outcome);
        d.log.info('job-requeued', { id, name: job.meta.name, group: job.meta.group, reason: stoppedByWatchdog ? 'fenced' : 'interrupted' });
        if (stoppedByWatchdog) d.fenced.requeued();
      } catch (err) {
        if (stoppedByWatchdog && this.lostToRecovery(job)) d.fenced.lost(job);
        else d.log.error('requeue-failed', { id, error: errText(err) });
      }
    } else {
      this.conclude(job, outcome, ticket.group);
    }
    if (stoppedByWatchdog) d.fenced.handled();
  }

  /** The job is over: retry it later, or archive it. */
  conclude(job: ClaimedJob, outcome: Outcome, group: Group): void {
    const { d } = this;
    if (this.retryLater(job, group, outcome)) return;
    const s = outcome.status;
    d.protocol.jobEnded(job.id, outcome.exitCode, s === 'killed' || s === 'timeout' || s === 'interrupted', outcome.signal);
    if (outcome.status !== 'done') this.failures++;
    let record: JobRecord;
    try {
      record = d.finisher.archive(job, outcome);
    } catch (err) {
      if (this.lostToRecovery(job)) {
        // we were taken for dead (fenced too late?) and another node requeued it
        d.log.error('job-lost-to-recovery', { id: job.id, name: job.meta.name, error: 'its claimed directory was taken over by another node; that node requeued it' });
        return;
      }
      // should we stop (or die) before it is archived, the next pmjq archives it: it never runs again
      // (a flat entry becomes a directory to hold the note)
      try { d.finisher.noteOutcome(job, outcome); } catch { /* without the note it would be requeued */ }
      d.log.error('archive-failed', {
        id: job.id, name: job.meta.name, error: errText(err),
        kept_in: job.dir ?? job.file, retry: 'the archive step is tried again every poll interval',
      });
      this.keepUnarchived(job, outcome);
      return;
    }
    this.archivedCount++;
    d.log.log(outcome.status === 'done' ? 'info' : 'warn', 'job-end', {
      id: job.id, name: job.meta.name, group: job.meta.group, status: record.status,
      exit: record.exit_code, signal: record.signal, duration_ms: record.duration_ms,
      archive: record.archive, error: record.error,
    });
  }

  /** A not-started job goes back to the queue (stopping, or a standby not started in time): for any node to run. */
  requeueUnstarted(job: ClaimedJob, why: string): void {
    try {
      const r = this.d.finisher.requeue(job, Date.now(), why, null);
      this.d.retryWritten(r.entry, 0, r.meta);
    } catch (err) {
      this.d.log.error('requeue-failed', { id: job.id, error: errText(err) });
    }
  }

  /** A job over whose archive step failed: tried again every poll interval. */
  keepUnarchived(job: ClaimedEntry, outcome: Outcome): void {
    this.unarchived.push({ job, outcome });
    this.unarchivedTimer ??= setInterval(() => this.retryUnarchived(), this.d.opts.pollMs);
  }

  /** Stopping: one last try, then no more. */
  stop(): void {
    if (this.unarchivedTimer) { clearInterval(this.unarchivedTimer); this.retryUnarchived(); }
    if (this.unarchivedTimer) clearInterval(this.unarchivedTimer);
  }

  private retryUnarchived(): void {
    const { d } = this;
    const pending = this.unarchived.splice(0);
    for (const p of pending) {
      if (this.lostToRecovery(p.job)) {
        d.log.error('job-lost-to-recovery', { id: p.job.id, name: p.job.meta.name, error: 'its claimed directory was taken over by another node' });
        continue;
      }
      try {
        const rec = d.finisher.archive(p.job, p.outcome);
        d.log.info('archive-recovered', { id: p.job.id, archive: rec.archive });
      } catch {
        this.unarchived.push(p);
      }
    }
    if (this.unarchived.length === 0 && this.unarchivedTimer) {
      clearInterval(this.unarchivedTimer);
      this.unarchivedTimer = null;
    }
    d.retried();
  }

  /**
   * A failed attempt with retries left goes to retry/ and runs again after
   * BACKOFF·2^(attempt−1) (±20 % jitter, so that a burst of failures does
   * not come back as a burst), capped at an hour.
   */
  private retryLater(job: ClaimedJob, group: Group, outcome: Outcome): boolean {
    const { d } = this;
    if (outcome.status !== 'failed' && outcome.status !== 'timeout') return false;
    if (job.meta.script !== undefined) return false; // a sub-job's parent decides what to do about it
    const retries = group.settings.retries ?? d.opts.retries;
    // interrupted attempts (a node stopped or died) do not count as failures
    if (job.meta.attempt - (job.meta.interrupted ?? 0) > retries) return false;
    const base = group.settings.backoff ?? d.opts.backoffMs;
    const delay = Math.min(BACKOFF_CAP_MS, base * 2 ** (job.meta.attempt - 1) * (0.8 + 0.4 * Math.random()));
    const due = Date.now() + delay;
    const why = outcome.error ?? (outcome.signal ? `signal ${outcome.signal}` : `exit ${outcome.exitCode}`);
    try {
      const r = d.finisher.requeue(job, due, `${outcome.status}: ${why}`, outcome);
      d.log.warn('job-retry', {
        id: job.id, name: job.meta.name, group: job.meta.group, status: outcome.status, exit: outcome.exitCode,
        attempt: job.meta.attempt, next_attempt: r.meta.attempt, retries, delay_ms: Math.round(delay),
      });
      d.retryWritten(r.entry, due, r.meta);
      d.protocol.jobEnded(job.id, outcome.exitCode, false, outcome.signal);
      return true;
    } catch (err) {
      d.log.error('requeue-failed', { id: job.id, error: errText(err) });
      return false;
    }
  }

  /**
   * Its claimed directory (a flat entry: its file and its log) is gone while
   * the claimed areas are in reach: another node took it over (out of reach
   * is not gone).
   */
  private lostToRecovery(job: ClaimedEntry): boolean {
    const gone = job.dir !== null ? !fs.existsSync(job.dir) : !fs.existsSync(job.file) && !fs.existsSync(job.log);
    return gone && fs.existsSync(this.d.layout.claimedRoot);
  }
}
