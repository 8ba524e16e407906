// Where every state of a job lives on disk (man/pmjq.5 documents this). Each
// state change is one rename between these places, so a crash at any instant
// leaves each job in exactly one of them.
//
//   SPOOL/NAME, SPOOL/GROUP/NAME      queued
//   .pmjq/claimed/NODE/@GROUP/NAME    claimed from the spool, running on NODE,
//                                     its log .NAME=ID.log beside it (claimed.ts)
//   .pmjq/claimed/NODE/ID/            any other claimed job: the job file
//                                     under its own name, .job.json, .log
//   .pmjq/retry/DUE.ID/               waiting for another attempt (same contents)
//   .pmjq/rejected/ID/                a file that is not an acceptable job, + .reject.json
//   .pmjq/done/ID.{log,json}          log and record of finished jobs when there is no -o
//   .pmjq/history/NODE.jsonl          one record per finished job, appended by NODE only
//   .pmjq/nodes/NODE                  heartbeat of each running pmjq
//   .pmjq/control/                    pause flags and kill requests (pmjqctl)
//   .pmjq/slots/GROUP/N               cluster_max slots: a symlink naming the holder
//   .pmjq/http-submit/                private staging area of the HTTP API's submits
//
// .pmjq and these areas belong to root (or the daemon's user) and nobody
// else may write them: trust.ts checks it, and everything in them is
// trusted because of it.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const STATE_DIR = '.pmjq';
export const DEFAULT_GROUP = 'default';
export const META_FILE = '.job.json';
export const LOG_FILE = '.log';
export const REJECT_FILE = '.reject.json';

export class Layout {
  readonly spool: string;
  readonly state: string;
  readonly nodes: string;
  readonly claimedRoot: string;
  readonly retry: string;
  readonly rejected: string;
  readonly doneRoot: string;
  readonly history: string;
  readonly control: string;
  readonly slots: string;
  readonly httpSubmit: string;

  constructor(spool: string) {
    this.spool = path.resolve(spool);
    this.state = path.join(this.spool, STATE_DIR);
    this.nodes = path.join(this.state, 'nodes');
    this.claimedRoot = path.join(this.state, 'claimed');
    this.retry = path.join(this.state, 'retry');
    this.rejected = path.join(this.state, 'rejected');
    this.doneRoot = path.join(this.state, 'done');
    this.history = path.join(this.state, 'history');
    this.control = path.join(this.state, 'control');
    this.slots = path.join(this.state, 'slots');
    this.httpSubmit = path.join(this.state, 'http-submit');
  }

  /** Every area of .pmjq (not the per-node ones inside them). */
  areas(): string[] {
    return [this.nodes, this.claimedRoot, this.retry, this.rejected, this.doneRoot, this.history, this.control, this.slots, this.httpSubmit];
  }

  claimed(node: string): string { return path.join(this.claimedRoot, node); }
  historyFile(node: string): string { return path.join(this.history, `${node}.jsonl`); }
  heartbeat(node: string): string { return path.join(this.nodes, node); }

  /** The directory a group's jobs are dropped into ('' = the spool's top level). */
  groupDir(dir: string): string {
    return dir === '' ? this.spool : path.join(this.spool, dir);
  }

  /** Create the shared directories (idempotent: every node does it at start), writable by their owner only. */
  create(node: string): void {
    fs.mkdirSync(this.state, { mode: 0o755, recursive: true });
    for (const d of [this.nodes, this.claimedRoot, this.claimed(node), this.retry, this.rejected, this.doneRoot, this.history, this.control]) {
      fs.mkdirSync(d, { mode: 0o755, recursive: true });
    }
  }
}

/** Group name of a spool subdirectory ('' = top level). */
export function groupOf(dir: string): string {
  return dir === '' ? DEFAULT_GROUP : dir;
}

let host: string | undefined;

export function hostName(): string {
  // (once: it is in every record)
  return host ??= nameOfHost();
}

function nameOfHost(): string {
  // ids are file names and dotted fields, and '=' ends an id in a claimed
  // area's flat entries (claimed.ts): keep the host part free of '/' and '='
  return os.hostname().replace(/[/\s=]/g, '_') || 'localhost';
}

/** Node id HOST.PID.STARTSECONDS (pmjq(1) RUNNING A CLUSTER). */
export function makeNodeId(now = Date.now()): string {
  return `${hostName()}.${process.pid}.${Math.floor(now / 1000)}`;
}

export interface NodeIdParts { host: string; pid: number; start: number }

export function parseNodeId(id: string): NodeIdParts | null {
  const m = /^(.*)\.(\d+)\.(\d+)$/.exec(id);
  return m ? { host: m[1]!, pid: Number(m[2]), start: Number(m[3]) } : null;
}

/** Job ids HOST.PID.SECONDS.MILLIS.COUNTER of the claiming pmjq: unique in the cluster, sortable by time. */
export class IdMaker {
  private counter = 0;
  constructor(private readonly prefix = `${hostName()}.${process.pid}`) {}
  next(now = Date.now()): string {
    const s = Math.floor(now / 1000);
    const ms = String(now % 1000).padStart(3, '0');
    return `${this.prefix}.${s}.${ms}.${this.counter++}`;
  }
}

/** Sortable UTC timestamp with milliseconds, for archive name prefixes: 20261122T134501.123Z */
export function stamp(date = new Date()): string {
  return date.toISOString().replace(/[-:]/g, '');
}
