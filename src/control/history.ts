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

/**
 * Records of one history file, parsed once per process: the file is only
 * ever appended to (and renamed to .jsonl.1 when it rotates, keeping its
 * inode), so a process that reads the history again (status --watch, the
 * HTTP server) reads only what was appended since, keyed by device and
 * inode. Lines are decoded one by one from the bytes (cheaper than one huge
 * string); a last line without its newline (being written right now) is
 * left for the next read.
 */
interface FileRecords {
  /** bytes consumed: up to the last complete line */
  size: number;
  records: JobRecord[];
  unreadable: number;
}

const fileCache = new Map<string, FileRecords>();

function parseLine(buf: Buffer, start: number, end: number, into: FileRecords): void {
  if (end <= start) return;
  let rec: JobRecord;
  try {
    rec = JSON.parse(buf.toString('utf8', start, end)) as JobRecord;
  } catch {
    into.unreadable++;
    return;
  }
  if (typeof rec !== 'object' || rec === null || typeof rec.id !== 'string' || typeof rec.finished !== 'string') { into.unreadable++; return; }
  into.records.push(rec);
}

function fileRecords(file: string, seen: Set<string>): FileRecords | null {
  let fd: number;
  try { fd = fs.openSync(file, 'r'); } catch { return null; }
  try {
    const st = fs.fstatSync(fd);
    const key = `${st.dev}:${st.ino}`;
    seen.add(key);
    let c = fileCache.get(key);
    if (c === undefined || st.size < c.size) c = { size: 0, records: [], unreadable: 0 };
    fileCache.set(key, c);
    if (st.size > c.size) {
      // what was appended since the last read, in one piece (a history file rotates at 64 MiB)
      const buf = Buffer.allocUnsafe(st.size - c.size);
      let got = 0;
      while (got < buf.length) {
        const n = fs.readSync(fd, buf, got, buf.length - got, c.size + got);
        if (n <= 0) break;
        got += n;
      }
      let start = 0;
      for (let nl = buf.indexOf(0x0a); nl >= 0 && nl < got; nl = buf.indexOf(0x0a, start)) {
        parseLine(buf, start, nl, c);
        start = nl + 1;
      }
      c.size += start;
    }
    return c;
  } finally {
    fs.closeSync(fd);
  }
}

/** Read every history record, keeping the latest per id. */
export function readHistory(layout: Layout, onlyId?: string): History {
  if (onlyId !== undefined) {
    const recs = recordsOf(layout, onlyId);
    return { latest: new Map(recs.length ? [[onlyId, recs[recs.length - 1]!]] : []), done: recs.filter((r) => r.status === 'done'), unreadable: 0 };
  }
  const latest = new Map<string, JobRecord>();
  const done: JobRecord[] = [];
  let unreadable = 0;
  const seen = new Set<string>();
  for (const file of historyFiles(layout)) {
    const c = fileRecords(file, seen);
    if (!c) continue;
    unreadable += c.unreadable;
    for (const rec of c.records) {
      const prev = latest.get(rec.id);
      if (prev === undefined || later(rec, prev)) latest.set(rec.id, rec);
      if (rec.status === 'done') done.push(rec);
    }
  }
  // files gone (rotated away twice, removed) are forgotten
  for (const key of fileCache.keys()) if (!seen.has(key)) fileCache.delete(key);
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

/** Every record of one job, oldest first (one per attempt that ended): only lines holding the id are parsed. */
export function recordsOf(layout: Layout, id: string): JobRecord[] {
  const needle = Buffer.from(JSON.stringify(id));
  const out: JobRecord[] = [];
  for (const file of historyFiles(layout)) {
    let buf: Buffer;
    try { buf = fs.readFileSync(file); } catch { continue; }
    let from = 0;
    for (let at = buf.indexOf(needle, from); at >= 0; at = buf.indexOf(needle, from)) {
      const start = buf.lastIndexOf(0x0a, at) + 1;
      let end = buf.indexOf(0x0a, at);
      if (end < 0) end = buf.length;
      from = end + 1;
      try {
        const rec = JSON.parse(buf.toString('utf8', start, end)) as JobRecord;
        if (rec.id === id) out.push(rec);
      } catch { /* a line being written */ }
    }
  }
  return out.sort((a, b) => (a.finished < b.finished ? -1 : a.finished > b.finished ? 1 : 0));
}

/** Records of nodes whose clocks run behind still count: a file is read back this far past the window. */
const CLOCK_SLACK_MS = 10 * 60_000;

/**
 * Every record (any attempt) that finished at or after `sinceMs`, read from
 * the same per-process cache as readHistory. A history file is appended in
 * the order its node finishes jobs, so each is read from its end back to the
 * first record older than the window (less a slack for that node's clock).
 */
export function recordsSince(layout: Layout, sinceMs: number): JobRecord[] {
  const out: JobRecord[] = [];
  const since = new Date(sinceMs).toISOString();
  const stop = new Date(sinceMs - CLOCK_SLACK_MS).toISOString();
  const seen = new Set<string>();
  for (const file of historyFiles(layout)) {
    const c = fileRecords(file, seen);
    if (!c) continue;
    for (let i = c.records.length - 1; i >= 0; i--) {
      const r = c.records[i]!;
      if (r.finished >= since) out.push(r);
      else if (r.finished < stop) break;
    }
  }
  return out;
}
