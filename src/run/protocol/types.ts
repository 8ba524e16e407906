// What the protocol and its engine say to each other (EnqueueRequest,
// ProtocolHost), its bounds (LIMITS), and the state it keeps per job, per
// message and per repeat. See man/pmjq-protocol.7 for the commands.

import type { JobOwner } from '../owner.js';
import type { RepeatTimer } from '../repeat.js';
import type { Logger } from '../../util/log.js';
import type { Wait } from './wait.js';

/** What `enqueue` (or a repeat firing) asks the engine to queue. */
export interface EnqueueRequest {
  /** id of the enqueuing job; '' for a repeat's instance (it has no parent: no CHAQUM_PARENT) */
  parent: string;
  /**
   * who the sub-job runs as: the enqueuing job's owner, or the owner of the
   * job that registered the repeat. Never the engine's own identity.
   */
  owner: JobOwner;
  /** absolute path; it existed and was executable for `owner` when asked */
  script: string;
  args: string[];
  /** the enqueuing job's tree: where relative scripts resolve; the sub-job's tree and working directory */
  tree: string;
  /** `-g`: the group (a valid name: not empty, no '/', no leading '.'); undefined = the parent's engine default */
  group?: string;
  /** `-m`: the group's `max` (processes on this node), 0 = unlimited; only with `group`, never for a spool group */
  maxproc?: number;
  /** `-c`: the group's CPU barrier as a fraction (0, 1] (percent values are converted); only with `group`, never for a spool group */
  maxcpu?: number;
  /** `-F`: nobody waits for it; its state is dropped when it ends (repeat instances too) */
  forget: boolean;
  /** set for an instance of a repeat: the repeat's id (`repeat:N`) */
  repeat?: string;
}

export interface ProtocolHost {
  /**
   * Queues a sub-job and returns its id at once (valid before it starts).
   * Throws Error(message) to answer `E message`. The engine must later call
   * Protocol.jobEnded(id, …) for every id it returned — with null if the job
   * never ran (could not start, killed while queued, shutdown).
   */
  enqueue(req: EnqueueRequest): string;
  /** Terminates a queued or running job (SIGTERM, then SIGKILL); false if unknown or already ended. */
  kill(id: string): boolean;
  /**
   * A group of the spool itself (`default`, or a directory SPOOL/GROUP): its
   * settings are the operator's, never changed by `enqueue -m/-c`.
   */
  isSpoolGroup(name: string): boolean;
  log: Logger;
}

export interface Limits {
  /** largest message payload */
  maxMessageBytes: number;
  /** messages queued for one job, not yet received */
  maxInboxMessages: number;
  /** bytes queued for one job */
  maxInboxBytes: number;
  /** bytes queued for all jobs together */
  maxQueuedBytes: number;
  /** bytes queued within one family: one user's jobs cannot fill the pool the others share */
  maxQueuedBytesPerFamily: number;
  /** repeats registered */
  maxRepeats: number;
  /** repeats registered by the jobs of one user (uid) */
  maxRepeatsPerOwner: number;
  /** sub-jobs of one job that are queued or running */
  maxLiveChildren: number;
  /** sub-jobs of one user (uid) queued and not started yet */
  maxQueuedPerOwner: number;
  /** bytes (script and arguments) of one user's sub-jobs queued and not started yet */
  maxQueuedBytesPerOwner: number;
  /** groups one family may make through `enqueue -g` (names no spool group has) */
  maxGroupsPerFamily: number;
  /** exit codes of ended jobs kept for waitjobs */
  maxResults: number;
  /** outcomes of received/dropped messages kept for waitrecv */
  maxMessageResults: number;
}

export const LIMITS: Limits = {
  maxMessageBytes: 16 * 1024 * 1024,
  maxInboxMessages: 1000,
  maxInboxBytes: 16 * 1024 * 1024,
  maxQueuedBytes: 256 * 1024 * 1024,
  maxQueuedBytesPerFamily: 64 * 1024 * 1024,
  maxRepeats: 1000,
  maxRepeatsPerOwner: 100,
  maxLiveChildren: 100_000,
  maxQueuedPerOwner: 10_000,
  maxQueuedBytesPerOwner: 16 * 1024 * 1024,
  maxGroupsPerFamily: 100,
  maxResults: 100_000,
  maxMessageResults: 100_000,
};

export interface Message {
  id: string;
  from: string;
  /** the sender's family: only it may ask what became of the message */
  family: string;
  to: string;
  data: Buffer;
  waiters: Set<Wait>;
}

/** A job the protocol knows that is queued or running. */
export interface Live {
  id: string;
  parent: string | null;
  /**
   * its family: the top-level job (spool job, entry job, --init job) it
   * descends from. Commands reach only jobs and messages of their own family.
   */
  root: string;
  /** who it runs as (null only for a job known from jobStarted before its handler or enqueue) */
  owner: JobOwner | null;
  forget: boolean;
  started: boolean;
  /** waits of other jobs on this one */
  waiters: Set<Wait>;
  /** the command this job is waiting in, if any (at most one: the channel answers in order) */
  busy: Wait | null;
  recv: { resolve: (m: Message | null) => void; timer: NodeJS.Timeout | null } | null;
  inbox: Message[];
  inboxBytes: number;
  /** its sub-jobs that are queued or running */
  children: Set<string>;
  /** counted in its owner's queued sub-jobs (until it starts or ends) */
  queuedAs: { uid: number; bytes: number } | null;
}

/** The exit code (null: none) of an ended job, and its family. */
export interface Result {
  code: number | null;
  family: string;
}

export interface Repeat {
  id: string;
  script: string;
  args: string[];
  tree: string;
  by: string;
  /** who registered it: every instance runs as this user */
  owner: JobOwner;
  /** the family of the job that registered it: its instances belong to it */
  root: string;
  schedule: string;
  timer: RepeatTimer;
  /** the instance queued or running, if any */
  current: string | null;
  fired: number;
  skipped: number;
}

export interface RepeatInfo {
  id: string;
  script: string;
  args: string[];
  by: string;
  schedule: string;
  next: Date;
  running: string | null;
  fired: number;
  skipped: number;
}
