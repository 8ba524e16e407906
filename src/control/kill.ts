// `pmjqctl kill` (pmjqctl(1)): a running job is killed by the node that runs
// it, wherever that is: pmjqctl writes .pmjq/control/kill/ID, every daemon
// reads the requests at each --poll, the one running ID kills its process
// group (SIGTERM, then SIGKILL after its --kill-grace), archives it with
// status `killed` and removes the request. pmjqctl then waits (bounded) until
// the job's claimed directory is gone and reports its record.
//
// A job waiting in .pmjq/retry for its next attempt is killed here and now:
// its entry is taken with one rename (so no daemon can claim it meanwhile)
// and finished as `killed` by pmjqctl itself, under its own node id: the job
// file, its log and record go to --errors DIR, or by default to
// SPOOL/.pmjq/done under archive names (TIMESTAMP-NAME), where `retry` finds
// it again; the record is appended to .pmjq/history/NODE.jsonl of that id.

import fs from 'node:fs';
import path from 'node:path';
import { Finisher } from '../spool/finish.js';
import { hostName, makeNodeId, type Layout } from '../spool/layout.js';
import { dirEntry } from '../spool/claimed.js';
import { readMeta } from '../spool/meta.js';
import type { JobRecord, JobStatus } from '../spool/record.js';
import { formatDuration } from '../util/duration.js';
import { errText, isErrno } from '../util/fsx.js';
import { CtlError, q } from './errors.js';
import { describe, findRunning, findRetrying, locate } from './find.js';
import { recordsOf } from './history.js';
import { cancelKill, requestKill } from './requests.js';

export interface KillOutcome {
  id: string;
  /** where the job was when the kill was asked for */
  was: 'running' | 'retrying';
  /** the node that ran it (running) or that finished it (retrying: pmjqctl's own id) */
  node: string | null;
  /** the job's status once it ended: killed, or done/failed/… if it ended by itself first; null while pending */
  status: JobStatus | null;
  record: JobRecord | null;
  /** the job still runs: the request stays until its node acts on it */
  pending: boolean;
  message: string;
}

export interface KillOptions {
  /** where a killed retrying job goes (default SPOOL/.pmjq/done) */
  errors?: string;
}

/**
 * Ask for the kill (running job) or do it (retrying job); returns at once.
 * Throws CtlError when `id` is neither running nor waiting for a retry.
 */
export function requestJobKill(layout: Layout, id: string, o: KillOptions = {}): KillOutcome {
  for (let tries = 0; tries < 3; tries++) {
    const run = findRunning(layout, id);
    if (run) {
      requestKill(layout, id);
      return { id, was: 'running', node: run.node, status: null, record: null, pending: true, message: `kill requested: job ${id} runs on node ${run.node}` };
    }
    const retry = findRetrying(layout, id);
    if (retry) {
      const out = killRetrying(layout, id, retry.dir, o);
      if (out) return out;
      continue; // claimed by a node this very moment: it is running now
    }
    break;
  }
  const where = locate(layout, id);
  if (!where) throw new CtlError(`no job ${q(id)} in ${q(layout.spool)} (not running, not waiting for a retry, not in the history)`);
  throw new CtlError(`job ${q(id)} in ${q(layout.spool)} is not running: it is ${describe(where)}`);
}

/** Take a retry entry with one rename and finish it as killed; null if a node claimed it first. */
function killRetrying(layout: Layout, id: string, entryDir: string, o: KillOptions): KillOutcome | null {
  const taken = path.join(layout.retry, `.killing.${id}.${hostName()}.${process.pid}`);
  try {
    fs.renameSync(entryDir, taken);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return null;
    throw new CtlError(`cannot take ${q(entryDir)}: ${errText(err)}`);
  }
  const meta = readMeta(taken);
  const node = makeNodeId();
  const dest = o.errors ?? layout.doneRoot;
  fs.mkdirSync(dest, { recursive: true });
  fs.mkdirSync(layout.history, { recursive: true });
  const finisher = new Finisher(layout, node, { archive: dest, keep: Infinity, keepAgeMs: Infinity });
  let record: JobRecord;
  try {
    record = finisher.archive(dirEntry(taken, meta), {
      status: 'killed', exitCode: null, signal: null, started: null, finished: new Date(),
      error: `killed by pmjqctl while waiting for attempt ${meta.attempt}`,
    });
  } catch (err) {
    // put it back where it was: nothing is lost
    try { fs.renameSync(taken, entryDir); } catch { /* stays under its hidden name; reported below */ }
    throw new CtlError(`cannot archive job ${q(id)} into ${q(dest)}: ${errText(err)} (the job is back in ${q(entryDir)})`);
  } finally {
    finisher.close();
  }
  cancelKill(layout, id);
  return {
    id, was: 'retrying', node, status: 'killed', record, pending: false,
    message: `killed job ${id} while it waited for attempt ${meta.attempt}; its file is ${record.archive ?? '(removed)'}`,
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Wait (at most `waitMs`) until a requested kill has happened; the job's record tells how it ended. */
export async function waitKilled(layout: Layout, k: KillOutcome, waitMs: number, o: KillOptions = {}): Promise<KillOutcome> {
  if (!k.pending) return k;
  const end = Date.now() + waitMs;
  for (;;) {
    const run = findRunning(layout, k.id);
    if (!run) {
      const retry = findRetrying(layout, k.id);
      if (retry) {
        // put back for another attempt before the request was seen (its node stopped): kill it there
        const out = killRetrying(layout, k.id, retry.dir, o);
        if (out) return { ...out, was: 'running' };
        continue;
      }
      const recs = recordsOf(layout, k.id);
      const rec = recs[recs.length - 1] ?? null;
      cancelKill(layout, k.id); // the node removes it when it acts; a job that ended by itself leaves it
      const status = rec?.status ?? null;
      return {
        ...k, node: rec?.node ?? k.node, status, record: rec, pending: false,
        message: status === 'killed'
          ? `killed job ${k.id} on node ${rec!.node}`
          : `job ${k.id} ended before its node saw the request: ${status ?? 'no record'}`,
      };
    }
    if (Date.now() >= end) {
      return {
        ...k, node: run.node, pending: true,
        message: `job ${k.id} still runs on node ${run.node} ${formatDuration(waitMs)} after the kill request (is that node alive? see pmjqctl status); the request stays in ${path.join(layout.control, 'kill', k.id)}`,
      };
    }
    await sleep(100);
  }
}
