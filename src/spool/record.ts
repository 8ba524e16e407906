// The record of a finished job (pmjq(5) RECORDS): written beside the archived file
// as NAME.json and appended to this node's history.

import { display, isUtf8 } from './names.js';

export type JobStatus = 'done' | 'failed' | 'killed' | 'timeout' | 'rejected' | 'interrupted';

export interface JobRecord {
  id: string;
  name: string;
  name_b64?: string;
  group: string;
  node: string;
  host: string;
  owner: number | null;
  parent: string | null;
  created: string | null;
  claimed: string | null;
  started: string | null;
  finished: string;
  duration_ms: number | null;
  status: JobStatus;
  exit_code: number | null;
  signal: string | null;
  attempt: number;
  /** where the job file is now (archive, errors, rejected, retry), or null when it was removed */
  archive: string | null;
  /** where its output is */
  log: string | null;
  /** the exact bytes of `archive` and `log`, base64, present only when they are not UTF-8 (a job's name that is not) */
  archive_b64?: string;
  log_b64?: string;
  /** why it failed to start, was rejected or interrupted */
  error?: string;
  /** set when this attempt failed and the job waits in retry/ for attempt + 1 at this time */
  retry_at?: string;
}

/** Set a record's `archive` or `log` to a path: for people as UTF-8, and its exact bytes beside it when they are not. */
export function setRecordPath(rec: JobRecord, field: 'archive' | 'log', p: Buffer | string | null): void {
  const bytes = typeof p === 'string' ? Buffer.from(p) : p;
  rec[field] = bytes === null ? null : display(bytes);
  if (bytes !== null && !isUtf8(bytes)) rec[`${field}_b64`] = bytes.toString('base64');
  else delete rec[`${field}_b64`];
}

/** A record's `archive` or `log` as the filesystem knows it: its exact bytes when they are not UTF-8. */
export function recordPath(rec: JobRecord, field: 'archive' | 'log'): string | Buffer | null {
  const b64 = rec[`${field}_b64`];
  return typeof b64 === 'string' ? Buffer.from(b64, 'base64') : rec[field] ?? null;
}
