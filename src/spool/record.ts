// The record of a finished job (pmjq(5) RECORDS): written beside the archived file
// as NAME.json and appended to this node's history.

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
  /** why it failed to start, was rejected or interrupted */
  error?: string;
  /** set when this attempt failed and the job waits in retry/ for attempt + 1 at this time */
  retry_at?: string;
}
