// `pmjqctl retry` (pmjqctl(1), the desaster "failed queue"): a job that failed
// for good goes back into the queue. Its file is taken from where its latest
// record says it is (`archive`: the errors archive, or .pmjq/done for jobs
// killed while waiting) and moved, never overwriting anything, into a new
// entry .pmjq/retry/NOW.ID with its .job.json, so that every node sees it at
// its next rescan and one of them claims it at once. The entry is built
// under a hidden name and appears in one rename.
//
// The attempt number goes on from the failed attempt (attempt + 1), so the
// record of each attempt stays distinct and a group's `retries` budget is
// not restarted; --reset starts again from attempt 1.

import fs from 'node:fs';
import path from 'node:path';
import { DEFAULT_GROUP, META_FILE, hostName, type Layout } from '../spool/layout.js';
import type { JobMeta } from '../spool/meta.js';
import * as names from '../spool/names.js';
import { recordPath, type JobRecord } from '../spool/record.js';
import { errText, isErrno, moveNoReplace, removeTree } from '../util/fsx.js';
import { CtlError, q } from './errors.js';
import { describe, locate } from './find.js';
import { isFailed } from './history.js';
import { cancelKill } from './requests.js';
import { ringDoorbell } from '../spool/doorbell.js';

export interface RetryOutcome {
  id: string;
  name: string;
  group: string;
  /** the attempt it will run as */
  attempt: number;
  /** the attempt that failed */
  previous_attempt: number;
  previous_status: string;
  /** the new entry, .pmjq/retry/DUE.ID */
  entry: string;
}

export interface RetryOptions {
  /** start again from attempt 1 */
  reset?: boolean;
}

/** The file name a job has inside its claimed directory (as claim.ts names it). */
function claimedFileName(rec: JobRecord): string {
  return rec.name_b64 !== undefined ? 'job' : rec.name;
}

export function retryJob(layout: Layout, id: string, o: RetryOptions = {}): RetryOutcome {
  const where = locate(layout, id);
  if (!where) throw new CtlError(`no job ${q(id)} in ${q(layout.spool)} (not running, not waiting for a retry, not in the history)`);
  if (where.state !== 'finished') throw new CtlError(`job ${q(id)} in ${q(layout.spool)} has not failed: it is ${describe(where)}`);
  const rec = where.record;
  if (!isFailed(rec, layout)) throw new CtlError(`job ${q(id)} in ${q(layout.spool)} has not failed: it is ${describe(where)}`);
  const from = recordPath(rec, 'archive');
  if (from === null) {
    throw new CtlError(`job ${q(id)} failed but its file was not kept (pmjq ran without -o/-e, which removes job files, or it was a sub-job): submit it again`);
  }
  if (!fs.existsSync(from)) throw new CtlError(`the file of job ${q(id)} is no longer at ${q(rec.archive!)} (moved or removed)`);

  const attempt = o.reset ? 1 : rec.attempt + 1;
  const file = claimedFileName(rec);
  const dir = rec.group === DEFAULT_GROUP ? '' : rec.group;
  if (dir !== '') fs.mkdirSync(layout.groupDir(dir), { recursive: true }); // its working directory
  const now = new Date();
  const meta: JobMeta = {
    id,
    name: rec.name,
    ...(rec.name_b64 !== undefined ? { name_b64: rec.name_b64 } : {}),
    file,
    group: rec.group,
    dir,
    owner: rec.owner ?? fs.statSync(from).uid,
    created: rec.created ?? now.toISOString(),
    claimed: rec.claimed ?? now.toISOString(),
    node: rec.node,
    attempt,
    parent: rec.parent,
    previous: `retried by pmjqctl after ${rec.status}${rec.exit_code !== null ? ` (exit ${rec.exit_code})` : rec.signal ? ` (signal ${rec.signal})` : ''}`,
  };
  fs.mkdirSync(layout.retry, { recursive: true });
  const tmp = path.join(layout.retry, `.retrying.${id}.${hostName()}.${process.pid}`);
  const entryName = `${now.getTime()}.${id}`;
  const entry = path.join(layout.retry, entryName);
  removeTree(tmp);
  fs.mkdirSync(tmp);
  try {
    fs.writeFileSync(path.join(tmp, META_FILE), JSON.stringify(meta) + '\n');
    try {
      moveNoReplace(from, names.join(tmp, file));
    } catch (err) {
      if (isErrno(err, 'ENOENT')) throw new CtlError(`the file of job ${q(id)} left ${q(rec.archive!)} just now (retried by someone else?)`);
      throw new CtlError(`cannot move ${q(rec.archive!)} into ${q(layout.retry)}: ${errText(err)}`);
    }
    // a kill request left from before must not hit the new attempt
    cancelKill(layout, id);
    fs.renameSync(tmp, entry);
    ringDoorbell(layout.spool);
  } catch (err) {
    // the file goes back where it was if it had moved; never removed with the entry
    const moved = names.join(tmp, file);
    let safe = true;
    if (fs.existsSync(moved)) {
      try { safe = moveNoReplace(moved, from); } catch { safe = false; }
    }
    if (safe) removeTree(tmp);
    const why = err instanceof CtlError ? err.message : `cannot queue job ${q(id)} again: ${errText(err)}`;
    throw new CtlError(safe ? why : `${why}; its file is kept in ${q(tmp)}`);
  }
  return {
    id, name: rec.name, group: rec.group, attempt, previous_attempt: rec.attempt, previous_status: rec.status, entry,
  };
}
