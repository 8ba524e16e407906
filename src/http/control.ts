// What the HTTP API does, as calls into the pmjqctl library (src/control/):
// readState + statusReport (`status`), listJobs (`ls`), locate (`logs`),
// submit, requestJobKill, retryJob, pause and resume. This module only adapts: HTTP
// status codes for the library's errors, pagination on top of `ls`, a log
// tail, and the ownership of submitted files when the server runs as root.

import fs from 'node:fs';
import path from 'node:path';
import { ChartSource, type Charts } from '../control/charts.js';
import { CtlError } from '../control/errors.js';
import { locate, type Located } from '../control/find.js';
import { isFailed } from '../control/history.js';
import { listJobs, type JobRow, type JobState, type SortKey } from '../control/ls.js';
import { requestJobKill, type KillOutcome } from '../control/kill.js';
import { pause, resume, type PauseState } from '../control/pause.js';
import { retryJob, type RetryOutcome } from '../control/retry.js';
import { readState } from '../control/state.js';
import { statusReport, type StatusReport } from '../control/status.js';
import { checkStillThere, openGroupDir, submit, type Submitted } from '../control/submit.js';
import { DEFAULT_GROUP, LOG_FILE, Layout } from '../spool/layout.js';
import type { JobMeta } from '../spool/meta.js';
import * as names from '../spool/names.js';
import { recordPath, type JobRecord } from '../spool/record.js';
import { moveNoReplace } from '../util/fsx.js';
import type { SubmitUser } from './auth.js';
import { ringDoorbell } from '../spool/doorbell.js';

/** An error with its HTTP status: {"error": code, "message": …, "field"?: …}. */
export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly field?: string) {
    super(message);
  }
}

export interface JobsParams {
  states?: string[];
  groups?: string[];
  /** case-insensitive substring of the name, id, group or info */
  q?: string;
  sort?: string;
  order: 'asc' | 'desc';
  offset: number;
  limit: number;
}

export interface JobsPage {
  spool: string;
  time: string;
  /** jobs that matched, all pages */
  total: number;
  offset: number;
  limit: number;
  jobs: JobRow[];
}

export interface LogTail {
  path: string;
  /** the whole log's size in bytes */
  size: number;
  /** the tail starts at this byte (0 = the whole log) */
  offset: number;
  truncated: boolean;
  text: string;
}

export interface JobDetail {
  id: string;
  /** running, retrying, rejected, or the latest record's fate: done, failed (failed/killed/timeout/interrupted) */
  state: 'running' | 'retrying' | 'rejected' | 'done' | 'failed';
  node: string | null;
  /** .job.json of a running or retrying job */
  meta: JobMeta | null;
  /** its latest record (finished, rejected, or the attempt before a retry) */
  record: JobRecord | null;
  log: LogTail | null;
}

export interface SubmitBody {
  script?: string;
  command?: string[];
  group?: string;
  name?: string;
  cwd?: string;
}

export interface Poke { poke?: () => void }

export interface Control {
  status(): StatusReport;
  charts(): Charts;
  jobs(p: JobsParams): JobsPage;
  job(id: string, tailBytes: number): JobDetail;
  submit(b: SubmitBody): Submitted;
  kill(id: string): KillOutcome;
  retry(id: string): RetryOutcome;
  pause(groups: string[]): PauseState;
  resume(groups: string[]): PauseState;
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The library's errors as HTTP: usage errors (exit 2) are 400, failed operations 409 (the job is not in a state that allows it). */
function http<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof CtlError) throw new ApiError(err.exitCode === 2 ? 400 : 409, err.exitCode === 2 ? 'invalid' : 'conflict', err.message);
    throw err;
  }
}

/** The last `bytes` of a log, starting at a line when cut. */
export function tail(file: string | Buffer, bytes: number): LogTail | null {
  let fd: number;
  try { fd = fs.openSync(file, 'r'); } catch { return null; }
  try {
    const size = fs.fstatSync(fd).size;
    let offset = Math.max(0, size - bytes);
    const buf = Buffer.alloc(size - offset);
    const n = fs.readSync(fd, buf, 0, buf.length, offset);
    let data = buf.subarray(0, n);
    if (offset > 0) {
      const nl = data.indexOf(0x0a);
      if (nl >= 0 && nl < data.length - 1) { data = data.subarray(nl + 1); offset += nl + 1; }
    }
    return { path: file.toString(), size, offset, truncated: offset > 0, text: data.toString('utf8') };
  } finally {
    fs.closeSync(fd);
  }
}

export class SpoolControl implements Control {
  private readonly chartSource = new ChartSource();

  constructor(private readonly layout: Layout, private readonly o: { submitUser: SubmitUser | null; hub?: Poke }) {}

  status(): StatusReport {
    return statusReport(readState(this.layout));
  }

  charts(): Charts {
    return this.chartSource.read(readState(this.layout));
  }

  jobs(p: JobsParams): JobsPage {
    const s = readState(this.layout);
    // `ls` stats only the rows it returns: ask it for the rows up to the end of this page
    const r = listJobs(s, {
      states: p.states as JobState[] | undefined,
      groups: p.groups,
      sort: p.sort as SortKey | undefined,
      reverse: p.order === 'desc',
      limit: p.offset + p.limit,
      grep: p.q !== undefined ? new RegExp(escapeRe(p.q), 'i') : undefined,
    });
    return { spool: r.spool, time: r.time, total: r.total, offset: p.offset, limit: p.limit, jobs: r.jobs.slice(p.offset) };
  }

  job(id: string, tailBytes: number): JobDetail {
    const l: Located | null = locate(this.layout, id);
    if (!l) throw new ApiError(404, 'not-found', `no job '${id}' in ${this.layout.spool} (not running, not waiting for a retry, not rejected, not in the history)`);
    const read = (file: string | Buffer | null | undefined): LogTail | null => (file ? tail(file, tailBytes) : null);
    switch (l.state) {
      case 'running':
        return { id, state: 'running', node: l.node, meta: l.meta, record: null, log: read(l.log) };
      case 'retrying':
        return { id, state: 'retrying', node: l.meta?.node ?? null, meta: l.meta, record: null, log: read(path.join(l.dir, LOG_FILE)) };
      case 'rejected':
        return { id, state: 'rejected', node: l.record?.node ?? null, meta: null, record: l.record, log: null };
      case 'finished':
        return {
          id, state: isFailed(l.record, this.layout) ? 'failed' : 'done', node: l.record.node, meta: null,
          record: l.record, log: read(recordPath(l.record, 'log')),
        };
    }
  }

  submit(b: SubmitBody): Submitted {
    const source = b.script !== undefined
      ? { kind: 'stdin' as const, data: Buffer.from(b.script) }
      : { kind: 'command' as const, argv: b.command!, cwd: b.cwd ?? '/' };
    const opts = { group: b.group, name: b.name, source };
    const out = http(() => (this.o.submitUser ? submitOwned(this.layout, opts, this.o.submitUser) : submit(this.layout, opts)));
    this.o.hub?.poke?.();
    return out;
  }

  kill(id: string): KillOutcome {
    this.known(id);
    const out = http(() => requestJobKill(this.layout, id));
    this.o.hub?.poke?.();
    return out;
  }

  retry(id: string): RetryOutcome {
    this.known(id);
    const out = http(() => retryJob(this.layout, id));
    this.o.hub?.poke?.();
    return out;
  }

  pause(groups: string[]): PauseState {
    const out = http(() => pause(this.layout, groups));
    this.o.hub?.poke?.();
    return out;
  }

  resume(groups: string[]): PauseState {
    const out = http(() => resume(this.layout, groups));
    this.o.hub?.poke?.();
    return out;
  }

  /** 404 for an id the spool has never heard of (the library's own error would be a 409). */
  private known(id: string): void {
    if (!locate(this.layout, id)) throw new ApiError(404, 'not-found', `no job '${id}' in ${this.layout.spool} (not running, not waiting for a retry, not rejected, not in the history)`);
  }
}

/**
 * submit() for a server that runs as root (adapter: the library's submit has
 * no owner option). The library writes the job, under its final unique name,
 * into a private staging spool inside .pmjq (hidden from every daemon, on the
 * same filesystem); here it is chowned to the submit user and then linked
 * into the real group directory — held open, never through a symbolic link,
 * checked to be still in place afterwards (openGroupDir, checkStillThere) —
 * without ever replacing a file. So no daemon can ever see it owned by root,
 * and root never writes outside the spool.
 */
export function submitOwned(layout: Layout, opts: Parameters<typeof submit>[1], user: SubmitUser): Submitted {
  const stagingRoot = layout.httpSubmit;
  fs.mkdirSync(stagingRoot, { recursive: true, mode: 0o700 });
  const real = openGroupDir(layout, opts.group);
  try {
    for (let attempt = 0; ; attempt++) {
      const staging = fs.mkdtempSync(path.join(stagingRoot, 's-'));
      try {
        const staged = submit(new Layout(staging), opts);
        fs.chownSync(staged.path, user.uid, user.gid);
        fs.chmodSync(staged.path, 0o755);
        if (moveNoReplace(staged.path, real.dir.at(staged.name))) {
          checkStillThere(real, staged.name);
          if (real.group !== DEFAULT_GROUP) ringDoorbell(layout.spool); // idle daemons: a job in a group (doorbell.ts)
          return { name: staged.name, group: real.group, path: names.display(names.join(real.path, staged.name)) };
        }
        if (opts.name !== undefined) throw new CtlError(`a job named '${opts.name}' is already queued in '${real.path}'`);
        if (attempt >= 10) throw new CtlError(`no free job name in '${real.path}' after ${attempt} tries`);
      } finally {
        fs.rmSync(staging, { recursive: true, force: true });
      }
    }
  } finally {
    real.dir.close();
  }
}
