// Helpers of the scheduling tests (issue 3): jobs that stamp their own start
// and end (`date +%s%N`) into a file, and the peak overlap computed from
// those stamps — what the jobs themselves saw, not what pmjq says it did.

import fs from 'node:fs';
import path from 'node:path';
import { BIN, ROOT_ARGS, run, type Proc } from './helpers.js';

/** A job that appends `S NS ID` when it starts and `E NS ID` when it ends, doing `work` (shell) in between. */
export function stampJob(stamps: string, work: string): string {
  return [
    '#!/bin/sh',
    `echo "S $(date +%s%N) $PMJQ_JOB_ID $PMJQ_GROUP $PMJQ_ATTEMPT" >> '${stamps}'`,
    work,
    `echo "E $(date +%s%N) $PMJQ_JOB_ID $PMJQ_GROUP $PMJQ_ATTEMPT" >> '${stamps}'`,
    '',
  ].join('\n');
}

/** CPU-bound work of about `s` seconds (whole seconds of the clock), as the issue describes. */
export function busyLoop(s: number): string {
  return `end=$(( $(date +%s) + ${s} )); while [ $(date +%s) -lt $end ]; do :; done`;
}

export interface Interval {
  id: string;
  group: string;
  attempt: number;
  /** nanoseconds since the epoch */
  start: bigint;
  end: bigint;
}

export interface Stamp { kind: 'S' | 'E'; ns: bigint; id: string; group: string; attempt: number }

export function readStampLines(file: string): Stamp[] {
  let text = '';
  try { text = fs.readFileSync(file, 'utf8'); } catch { return []; }
  return text.split('\n').filter(Boolean).map((l) => {
    const [kind, ns, id, group, attempt] = l.split(' ');
    return { kind: kind as 'S' | 'E', ns: BigInt(ns!), id: id!, group: group!, attempt: Number(attempt) };
  });
}

/** The jobs' intervals; throws if a job has a start without an end (or the reverse). */
export function intervals(file: string): Interval[] {
  const open = new Map<string, Stamp>();
  const out: Interval[] = [];
  for (const s of readStampLines(file)) {
    const key = `${s.id}/${s.attempt}`;
    if (s.kind === 'S') { open.set(key, s); continue; }
    const st = open.get(key);
    if (!st) throw new Error(`end without start for ${key} in ${file}`);
    open.delete(key);
    out.push({ id: s.id, group: s.group, attempt: s.attempt, start: st.ns, end: s.ns });
  }
  if (open.size > 0) throw new Error(`${open.size} job(s) started but never ended in ${file}: ${[...open.keys()].join(', ')}`);
  return out;
}

/** The largest number of intervals open at one instant (an end at the same ns as a start closes first). */
export function peakOverlap(list: Interval[]): number {
  const ev: [bigint, number][] = [];
  for (const i of list) { ev.push([i.start, 1]); ev.push([i.end, -1]); }
  ev.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] - b[1]));
  let cur = 0, peak = 0;
  for (const [, d] of ev) { cur += d; peak = Math.max(peak, cur); }
  return peak;
}

/** Lines of a daemon's stderr with event=NAME (exact event name). */
export function events(p: Proc | string, name: string): string[] {
  const text = typeof p === 'string' ? p : p.stderr();
  const re = new RegExp(`\\bevent=${name.replace(/[-]/g, '\\-')}(\\s|$)`);
  return text.split('\n').filter((l) => re.test(l));
}

/** Replace a file atomically (write a hidden temp name, then rename over it): readers never see it half written. */
export function replaceFile(file: string, content: string): void {
  const tmp = path.join(path.dirname(file), `.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`);
  fs.writeFileSync(tmp, content);
  fs.renameSync(tmp, file);
}

/**
 * Let about `ms` of time pass by waiting for an unrelated event: a second
 * pmjq (its own scratch spool) running one job of `sleep`, to its exit.
 * Used where a test must show that something does NOT happen again.
 */
export async function elapse(t: Parameters<typeof run>[0], dir: string, ms: number): Promise<void> {
  const spool = fs.mkdtempSync(path.join(dir, 'clock-'));
  const job = path.join(spool, 'tick');
  fs.writeFileSync(job, `#!/bin/sh\nsleep ${(ms / 1000).toFixed(3)}\n`, { mode: 0o755 });
  const r = await run(t, BIN.pmjq, [...ROOT_ARGS, '--once', spool], { timeoutMs: ms + 30_000 });
  if (r.code !== 0) throw new Error(`clock pmjq exited ${r.code}:\n${r.stderr}`);
}
