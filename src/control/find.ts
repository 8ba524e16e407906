// Where a job is, by its id, on any node: running (claimed by some node),
// waiting for another attempt, rejected, or finished (its latest record).

import fs from 'node:fs';
import path from 'node:path';
import { isHidden } from '../spool/classify.js';
import { findInArea } from '../spool/claimed.js';
import { REJECT_FILE, type Layout } from '../spool/layout.js';
import { readMeta, type JobMeta } from '../spool/meta.js';
import type { JobRecord } from '../spool/record.js';
import { readHistory, recordsOf } from './history.js';
import { parseRetryEntry } from './state.js';

export type Located =
  | { state: 'running'; id: string; node: string; dir: string; log: string; meta: JobMeta | null }
  | { state: 'retrying'; id: string; entry: string; dir: string; due: number; meta: JobMeta | null }
  | { state: 'rejected'; id: string; dir: string; record: JobRecord | null }
  | { state: 'finished'; id: string; record: JobRecord };

function list(dir: string): string[] {
  try { return fs.readdirSync(dir).filter((n) => !isHidden(n)); } catch { return []; }
}

function tryMeta(dir: string): JobMeta | null {
  try { return readMeta(dir); } catch { return null; }
}

/** A running job, on whichever node (dir: its claimed directory, or its flat entry). */
export function findRunning(layout: Layout, id: string): { node: string; dir: string; log: string; meta: JobMeta | null } | null {
  for (const node of list(layout.claimedRoot)) {
    const found = findInArea(layout.claimed(node), node, id);
    if (found) return { node, dir: found.path, log: found.log, meta: found.entry?.meta ?? null };
  }
  return null;
}

export function findRetrying(layout: Layout, id: string): { entry: string; dir: string; due: number } | null {
  for (const entry of list(layout.retry)) {
    const p = parseRetryEntry(entry);
    if (p && p.id === id) return { entry, dir: path.join(layout.retry, entry), due: p.due };
  }
  return null;
}

/** The latest history record of `id`, or null. */
export function latestRecord(layout: Layout, id: string): JobRecord | null {
  return readHistory(layout, id).latest.get(id) ?? null;
}

/** Where job `id` is now; null when the spool has never heard of it. */
export function locate(layout: Layout, id: string, withHistory = true): Located | null {
  const run = findRunning(layout, id);
  if (run) {
    // A job that just ended has its log moved into the archive and its record
    // written before its claimed entry goes: with the log gone, that record
    // (once written) says where it is.
    if (!withHistory || fs.existsSync(run.log)) return { state: 'running', id, ...run };
    const ended = recordsOf(layout, id).filter((r) => r.attempt === run.meta?.attempt).pop();
    return ended ? { state: 'finished', id, record: ended } : { state: 'running', id, ...run };
  }
  const retry = findRetrying(layout, id);
  if (retry) return { state: 'retrying', id, ...retry, meta: tryMeta(retry.dir) };
  const rej = path.join(layout.rejected, id);
  if (fs.existsSync(rej)) {
    let record: JobRecord | null = null;
    try { record = JSON.parse(fs.readFileSync(path.join(rej, REJECT_FILE), 'utf8')) as JobRecord; } catch { /* damaged */ }
    return { state: 'rejected', id, dir: rej, record };
  }
  if (!withHistory) return null;
  // a job between two places (retry → claimed) is looked for once more
  const record = latestRecord(layout, id);
  if (record) {
    if (record.retry_at !== undefined || record.status === 'interrupted') {
      const again = locate(layout, id, false);
      if (again) return again;
    }
    return { state: 'finished', id, record };
  }
  return null;
}

/** "running on NODE", "waiting for attempt 3", "failed (exit 2)"… for error lines. */
export function describe(l: Located): string {
  switch (l.state) {
    case 'running': return `running on node ${l.node}`;
    case 'retrying': return `waiting in ${l.dir} for attempt ${l.meta?.attempt ?? '?'}`;
    case 'rejected': return `rejected (${l.record?.error ?? 'see its .reject.json'})`;
    case 'finished': {
      const r = l.record;
      const how = r.signal ? `signal ${r.signal}` : r.exit_code !== null ? `exit ${r.exit_code}` : r.error ?? 'no exit status';
      return `${r.status} (${how}) at ${r.finished} on node ${r.node}`;
    }
  }
}
