// Server-sent events (pmjqctl(1) SERVE): the server, not the page, watches the
// spool. While at least one page listens, it re-reads the spool's state
// (the pmjqctl library's readState, the same as `pmjqctl status`) on
// filesystem events of the directories where states change, and at least
// every second; when what a person would see has changed, it pushes one
// `state` event with the whole snapshot to every listener. The page never
// polls: it renders what arrives.

import fs from 'node:fs';
import path from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ChartSource, type Charts } from '../control/charts.js';
import { readState, type SpoolState } from '../control/state.js';
import { listJobs, type JobRow } from '../control/ls.js';
import { statusReport, type StatusReport } from '../control/status.js';
import type { Layout } from '../spool/layout.js';

/** What the dashboard shows live: `pmjqctl status` plus the jobs of the moment, as `pmjqctl ls` rows. */
export interface LiveSnapshot {
  server: ServerInfo;
  status: StatusReport;
  /** every running job, oldest claim first */
  running: JobRow[];
  /** jobs waiting for another attempt, the next due first (at most LIST_MAX) */
  retrying: JobRow[];
  /** the head of the queue in `ls` order (at most QUEUED_MAX), and how many are queued */
  queued: JobRow[];
  queued_total: number;
  /** the last RECENT jobs that finished (done or failed for good), newest first */
  recent: JobRow[];
  /** changes whenever the failed queue changes: the page then re-fetches the part of it it shows */
  failed_version: string;
  /** the last hour, minute by minute, per group: jobs finished (done, failed) and queued */
  charts: Charts;
}

export interface ServerInfo {
  version: string;
  /** false: no --token-file, every change is refused */
  writable: boolean;
}

export const RECENT = 20;
export const QUEUED_MAX = 20;
export const LIST_MAX = 200;

export function snapshot(s: SpoolState, server: ServerInfo, charts: Charts): LiveSnapshot {
  const running = listJobs(s, { states: ['running'], sort: 'age', reverse: true, limit: LIST_MAX });
  const retrying = listJobs(s, { states: ['retrying'], sort: 'eta', limit: LIST_MAX });
  const queued = listJobs(s, { states: ['queued'], limit: QUEUED_MAX });
  const recent = listJobs(s, { states: ['done', 'failed'], sort: 'age', limit: RECENT });
  let failedKey = '';
  for (const r of s.failed) failedKey += `${r.id}@${r.finished};`;
  return {
    server,
    status: statusReport(s),
    running: running.jobs,
    retrying: retrying.jobs,
    queued: queued.jobs,
    queued_total: queued.total,
    recent: recent.jobs,
    failed_version: `${s.failed.length}:${hash(failedKey)}`,
    charts,
  };
}

/** FNV-1a, enough to notice a change. */
function hash(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(16);
}

/** Fields that change on every read without anything happening (ages, clocks). */
const VOLATILE = new Set(['time', 'heartbeat_age_ms', 'heartbeat', 'age_ms', 'duration_ms', 'eta_ms']);

/** The snapshot without what changes on every read (clocks, heartbeat ages), to decide whether to push. */
function changeKey(snap: LiveSnapshot): string {
  return JSON.stringify(snap, (k, v: unknown) => (VOLATILE.has(k) ? undefined : v));
}

export interface HubOptions {
  layout: Layout;
  server: ServerInfo;
  /** re-read at least this often while someone listens */
  intervalMs?: number;
  /** and not more often than this, however many fs events arrive */
  minGapMs?: number;
  onError?: (err: unknown) => void;
}

type Listener = (snap: LiveSnapshot) => void;

/**
 * Reads the spool while someone listens and tells listeners what changed.
 * Watches (non-recursively) the spool and its group directories, and
 * .pmjq/{claimed,claimed/NODE,retry,rejected,history,nodes,control,…}.
 */
export class StateHub {
  private readonly listeners = new Set<Listener>();
  private readonly watchers = new Map<string, fs.FSWatcher>();
  private timer: NodeJS.Timeout | null = null;
  private pending: NodeJS.Timeout | null = null;
  private lastRead = 0;
  private lastKey = '';
  private last: LiveSnapshot | null = null;
  private readonly intervalMs: number;
  private readonly minGapMs: number;
  private readonly chartSource = new ChartSource();
  private charts: { at: number; charts: Charts } | null = null;

  constructor(private readonly opts: HubOptions) {
    this.intervalMs = opts.intervalMs ?? 1000;
    this.minGapMs = opts.minGapMs ?? 100;
  }

  subscribe(fn: Listener): () => void {
    this.listeners.add(fn);
    if (this.listeners.size === 1) this.startWatching();
    else if (this.last) fn(this.last);
    return () => {
      this.listeners.delete(fn);
      if (this.listeners.size === 0) this.stopWatching();
    };
  }

  close(): void {
    this.listeners.clear();
    this.stopWatching();
  }

  private startWatching(): void {
    this.lastKey = '';
    this.read();
    this.timer = setInterval(() => this.read(), this.intervalMs);
  }

  private stopWatching(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.pending) clearTimeout(this.pending);
    this.timer = this.pending = null;
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
    this.last = null;
    this.charts = null;
  }

  /** Something changed (an fs event, a write through the API): read soon, but not more often than minGapMs. */
  poke(): void {
    if (this.pending || this.listeners.size === 0) return;
    const wait = Math.max(10, this.lastRead + this.minGapMs - Date.now());
    this.pending = setTimeout(() => { this.pending = null; this.read(); }, wait);
  }

  private read(): void {
    if (this.listeners.size === 0) return;
    this.lastRead = Date.now();
    let s: SpoolState;
    let snap: LiveSnapshot;
    try {
      s = readState(this.opts.layout);
      // by the minute: once a second is often enough, however many events arrive
      if (this.charts === null || this.lastRead - this.charts.at >= 1000) this.charts = { at: this.lastRead, charts: this.chartSource.read(s) };
      snap = snapshot(s, this.opts.server, this.charts.charts);
    } catch (err) {
      this.opts.onError?.(err);
      return;
    }
    this.watch(s);
    const key = changeKey(snap);
    this.last = snap;
    if (key === this.lastKey) return;
    this.lastKey = key;
    for (const fn of [...this.listeners]) fn(snap);
  }

  /** Keep one watch on each directory where a state change shows, adding and dropping them as they come and go. */
  private watch(s: SpoolState): void {
    const l = this.opts.layout;
    const want = new Set<string>([l.spool, l.state, l.claimedRoot, l.retry, l.rejected, l.history, l.nodes, l.control,
      path.join(l.control, 'paused'), path.join(l.control, 'kill'), l.doneRoot]);
    for (const g of s.groups.values()) if (g.dir !== null && g.dir !== '') want.add(l.groupDir(g.dir));
    for (const n of s.nodes) {
      want.add(l.claimed(n.node));
      // the flat entries of jobs from the spool are in its group directories (@GROUP)
      for (const sub of listOr(l.claimed(n.node))) if (sub.startsWith('@')) want.add(path.join(l.claimed(n.node), sub));
    }
    for (const [dir, w] of this.watchers) {
      if (!want.has(dir)) { w.close(); this.watchers.delete(dir); }
    }
    for (const dir of want) {
      if (this.watchers.has(dir)) continue;
      try {
        const w = fs.watch(dir, { persistent: false }, (_event, name) => {
          // our own clock probes (readState's fsNow) are not changes
          if (dir === l.state && typeof name === 'string' && name.startsWith('.pmjqctl-clock.')) return;
          this.poke();
        });
        w.on('error', () => { w.close(); this.watchers.delete(dir); });
        this.watchers.set(dir, w);
      } catch { /* not there (yet): the interval covers it */ }
    }
  }
}

/** GET /events: a text/event-stream of `state` events, one at once and one on every change. */
export function registerEvents(app: FastifyInstance, hub: StateHub): void {
  app.get('/events', async (req: FastifyRequest, reply: FastifyReply) => {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    // a page that loses the connection reconnects after this long
    res.write('retry: 2000\n\n');
    let seq = 0;
    const send = (snap: LiveSnapshot): void => {
      res.write(`id: ${++seq}\nevent: state\ndata: ${JSON.stringify(snap)}\n\n`);
    };
    const unsubscribe = hub.subscribe(send);
    // a comment now and then keeps proxies and idle timeouts from closing the stream
    const keepalive = setInterval(() => res.write(': keepalive\n\n'), 15_000);
    const end = (): void => {
      clearInterval(keepalive);
      unsubscribe();
    };
    req.raw.once('close', end);
    res.once('close', end);
  });
}

function listOr(dir: string): string[] {
  try { return fs.readdirSync(dir); } catch { return []; }
}
