// The history of a spool: every node's .pmjq/history/NODE.jsonl (and the
// rotated NODE.jsonl.1), one record per line. A job that was retried has one
// record per attempt; its current fate is its latest record.

import fs from 'node:fs';
import path from 'node:path';
import type { Layout } from '../spool/layout.js';
import type { JobRecord } from '../spool/record.js';

export interface History {
  /** the latest record of each job id */
  latest: Map<string, JobRecord>;
  /** records of jobs that ended `done`, oldest first (for ETAs) */
  done: JobRecord[];
  /** lines that could not be parsed (a line being appended right now, a damaged file) */
  unreadable: number;
}

/** Is `a` a later record than `b`? Later `finished` wins; on a tie, the one read last (`a`). */
function later(a: JobRecord, b: JobRecord): boolean {
  return a.finished >= b.finished;
}

/** History files, rotated generations first so that the current ones are read last. */
export function historyFiles(layout: Layout): string[] {
  let list: string[];
  try { list = fs.readdirSync(layout.history); } catch { return []; }
  const old = list.filter((f) => !f.startsWith('.') && f.endsWith('.jsonl.1')).sort();
  const cur = list.filter((f) => !f.startsWith('.') && f.endsWith('.jsonl')).sort();
  return [...old, ...cur].map((f) => path.join(layout.history, f));
}

/** Read every history record, keeping the latest per id; `filter` (by id) avoids parsing lines that cannot match. */
export function readHistory(layout: Layout, onlyId?: string): History {
  const latest = new Map<string, JobRecord>();
  const done: JobRecord[] = [];
  let unreadable = 0;
  const needle = onlyId !== undefined ? JSON.stringify(onlyId) : null;
  for (const file of historyFiles(layout)) {
    let text: string;
    try { text = fs.readFileSync(file, 'utf8'); } catch { continue; }
    let start = 0;
    while (start < text.length) {
      let end = text.indexOf('\n', start);
      if (end < 0) end = text.length;
      const line = text.slice(start, end);
      start = end + 1;
      if (line === '' || (needle !== null && !line.includes(needle))) continue;
      let rec: JobRecord;
      try {
        rec = JSON.parse(line) as JobRecord;
      } catch {
        unreadable++;
        continue;
      }
      if (typeof rec !== 'object' || rec === null || typeof rec.id !== 'string' || typeof rec.finished !== 'string') { unreadable++; continue; }
      if (onlyId !== undefined && rec.id !== onlyId) continue;
      const prev = latest.get(rec.id);
      if (prev === undefined || later(rec, prev)) latest.set(rec.id, rec);
      if (rec.status === 'done') done.push(rec);
    }
  }
  done.sort((a, b) => (a.finished < b.finished ? -1 : a.finished > b.finished ? 1 : 0));
  return { latest, done, unreadable };
}

/**
 * A record that ends a job for good, not one that put it back for another
 * attempt: those carry `retry_at` (a failure with retries left) or, for an
 * interrupted job, an `archive` inside .pmjq/retry/.
 */
export function isFinal(rec: JobRecord, layout: Layout): boolean {
  if (rec.retry_at !== undefined) return false;
  if (rec.status === 'interrupted' && typeof rec.archive === 'string' && rec.archive.startsWith(layout.retry + path.sep)) return false;
  return true;
}

/** Failed for good (failed, killed, timeout, interrupted): the failed queue, where `retry` takes jobs from. */
export function isFailed(rec: JobRecord, layout: Layout): boolean {
  return rec.status !== 'done' && rec.status !== 'rejected' && isFinal(rec, layout);
}

/** Median duration of the last `n` done records (of `group`, or of all groups); null when there is none. */
export function medianDuration(done: JobRecord[], group: string | null, n = 20): number | null {
  const out: number[] = [];
  for (let i = done.length - 1; i >= 0 && out.length < n; i--) {
    const r = done[i]!;
    if (r.duration_ms === null || r.duration_ms === undefined) continue;
    if (group !== null && r.group !== group) continue;
    out.push(r.duration_ms);
  }
  if (out.length === 0) return null;
  out.sort((a, b) => a - b);
  const mid = out.length >> 1;
  return out.length % 2 ? out[mid]! : (out[mid - 1]! + out[mid]!) / 2;
}

/** Every record of one job, oldest first (one per attempt that ended). */
export function recordsOf(layout: Layout, id: string): JobRecord[] {
  const needle = JSON.stringify(id);
  const out: JobRecord[] = [];
  for (const file of historyFiles(layout)) {
    let text: string;
    try { text = fs.readFileSync(file, 'utf8'); } catch { continue; }
    for (const line of text.split('\n')) {
      if (!line.includes(needle)) continue;
      try {
        const rec = JSON.parse(line) as JobRecord;
        if (rec.id === id) out.push(rec);
      } catch { /* a line being written */ }
    }
  }
  return out.sort((a, b) => (a.finished < b.finished ? -1 : a.finished > b.finished ? 1 : 0));
}
