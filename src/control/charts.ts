// The last hour of a spool, minute by minute and group by group, for the
// dashboard's charts (pmjqctl(1), Dashboard): how many jobs finished, done
// and failed apart, and how many were queued. Both come from the history
// (.pmjq/history/*.jsonl): a record says when its job finished and, for a
// first attempt, when it was created (its file's mtime) and claimed, that is
// when it entered and left the queue. Jobs running now add their claim, and
// jobs still queued their file's mtime (stat once per name, cached).

import fs from 'node:fs';
import { recordsSince, isFinal } from './history.js';
import type { SpoolState } from './state.js';
import * as names from '../spool/names.js';

export const BUCKET_MS = 60_000;
export const MINUTES = 60;
/** new queued files stat'ed per reading (more are taken as queued from when first seen, until their turn) */
const STAT_BUDGET = 5000;

export interface GroupSeries {
  group: string;
  /** jobs that ended done in each minute */
  done: number[];
  /** jobs that ended failed for good (failed, killed, timeout, interrupted) in each minute */
  failed: number[];
  /** the most jobs queued in the spool at once in each minute (sub-jobs wait in a daemon, not here) */
  queued: number[];
}

export interface Charts {
  /** start of the first minute; minute i is [start + i min, start + (i+1) min), the last one is the current minute so far */
  start: string;
  bucket_ms: number;
  minutes: number;
  /** groups with a job finished or queued in the window, by name */
  groups: GroupSeries[];
}

/** A job's time in the queue: from its file's creation until its first claim (null: still queued). */
export interface QueueSpan {
  group: string;
  created: number;
  claimed: number | null;
}

export interface Finished {
  group: string;
  finished: number;
  failed: boolean;
}

/**
 * The series of the `minutes` minutes up to `now` (pure: the tests feed it
 * directly). `queuedBefore`: per group, jobs still queued whose file is
 * older than the window (counted, not listed: there may be 100 000).
 */
export function buildCharts(now: number, finished: Finished[], spans: QueueSpan[], minutes = MINUTES, queuedBefore: Map<string, number> = new Map()): Charts {
  const start = Math.floor(now / BUCKET_MS) * BUCKET_MS - (minutes - 1) * BUCKET_MS;
  interface Acc { s: GroupSeries; before: number; events: [number, number][] }
  const acc = new Map<string, Acc>();
  const of = (group: string): Acc => {
    let a = acc.get(group);
    if (!a) {
      const zeros = (): number[] => new Array<number>(minutes).fill(0);
      a = { s: { group, done: zeros(), failed: zeros(), queued: zeros() }, before: 0, events: [] };
      acc.set(group, a);
    }
    return a;
  };
  for (const f of finished) {
    const i = Math.floor((f.finished - start) / BUCKET_MS);
    if (i < 0 || i >= minutes || f.finished > now) continue;
    of(f.group).s[f.failed ? 'failed' : 'done'][i]!++;
  }
  // The queue: +1 when a job's file appears, -1 when it is claimed. What
  // happened before the window is the starting depth; what happens in it is
  // swept in time order (a claim before an arrival at the same instant), and
  // each minute keeps the most jobs that were queued at once.
  for (const [group, n] of queuedBefore) if (n > 0) of(group).before += n;
  for (const sp of spans) {
    const end = sp.claimed ?? Infinity;
    if (end <= sp.created || end < start || sp.created > now) continue;
    const a = of(sp.group);
    if (sp.created < start) a.before++;
    else a.events.push([sp.created, 1]);
    if (end <= now) a.events.push([end, -1]);
  }
  const groups: GroupSeries[] = [];
  for (const a of [...acc.values()].sort((x, y) => (x.s.group < y.s.group ? -1 : x.s.group > y.s.group ? 1 : 0))) {
    a.events.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
    let depth = a.before;
    let e = 0;
    for (let i = 0; i < minutes; i++) {
      const until = start + (i + 1) * BUCKET_MS;
      let peak = depth;
      for (; e < a.events.length && a.events[e]![0] < until; e++) {
        depth += a.events[e]![1];
        if (depth > peak) peak = depth;
      }
      a.s.queued[i] = peak;
    }
    groups.push(a.s);
  }
  return { start: new Date(start).toISOString(), bucket_ms: BUCKET_MS, minutes, groups };
}

/**
 * Charts of a spool from its state (already read), its history, and the
 * mtimes of its queued files, which it remembers from one reading to the
 * next (a queued file is stat'ed once).
 */
export class ChartSource {
  /** group directory → queued name (names.key) → its file's mtime */
  private mtimes = new Map<string, Map<string, number>>();

  read(state: SpoolState, minutes = MINUTES): Charts {
    const { layout, now } = state;
    const since = Math.floor(now / BUCKET_MS) * BUCKET_MS - (minutes - 1) * BUCKET_MS;
    const finished: Finished[] = [];
    const firstClaim = new Map<string, QueueSpan>();
    const addSpan = (id: string, group: string, created: string | null, claimed: string | null): void => {
      if (created === null || claimed === null) return;
      const span = { group, created: Date.parse(created), claimed: Date.parse(claimed) };
      if (Number.isNaN(span.created) || Number.isNaN(span.claimed)) return;
      const prev = firstClaim.get(id);
      if (prev === undefined || span.claimed < prev.claimed!) firstClaim.set(id, span);
    };
    for (const r of recordsSince(layout, since)) {
      if (r.status !== 'rejected' && isFinal(r, layout)) finished.push({ group: r.group, finished: Date.parse(r.finished), failed: r.status !== 'done' });
      // sub-jobs wait in a daemon's memory, not in the spool
      if (r.attempt === 1 && r.parent === null) addSpan(r.id, r.group, r.created, r.claimed);
    }
    for (const j of state.running) {
      const m = j.meta;
      if (m && m.attempt === 1 && m.parent === null) addSpan(m.id, m.group, m.created, m.claimed);
    }
    const spans: QueueSpan[] = [...firstClaim.values()];
    const queuedBefore = new Map<string, number>();
    let budget = STAT_BUDGET;
    const seen = new Map<string, Map<string, number>>();
    for (const g of state.groups.values()) {
      if (g.dir === null) continue;
      const dir = layout.groupDir(g.dir);
      const known = this.mtimes.get(g.dir) ?? new Map<string, number>();
      // names claimed since are forgotten now and then, not at every reading
      const keep = known.size > 2 * g.queued.length + 1000 ? new Map<string, number>() : known;
      let before = 0;
      for (const k of g.queued) {
        let t = known.get(k);
        if (t === undefined && budget > 0) {
          budget--;
          try { t = fs.statSync(names.join(dir, names.fromKey(k))).mtimeMs; } catch { /* gone since the readdir */ }
          if (t !== undefined) keep.set(k, t);
        } else if (t !== undefined && keep !== known) {
          keep.set(k, t);
        }
        if (t !== undefined && t < since) { before++; continue; }
        spans.push({ group: g.name, created: Math.min(t ?? now, now), claimed: null });
      }
      seen.set(g.dir, keep);
      queuedBefore.set(g.name, before);
    }
    this.mtimes = seen;
    return buildCharts(now, finished, spans, minutes, queuedBefore);
  }
}
