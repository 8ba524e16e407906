// The whole state of a spool, read once from the filesystem (pmjq(5), pmjq(1) RUNNING A CLUSTER,
// pmjqctl(1)): nodes and their liveness, queued jobs per group, running, retrying,
// failed, done and rejected jobs, pause flags and kill requests. Every
// pmjqctl verb starts from here, on any node that mounts the spool, with or
// without a local daemon.
//
// Cost: one readdir per group for the queued jobs (no stat per file, so
// 100 000 queued jobs cost a readdir, also on NFS), one stat per group for
// its .group.json, a read of each heartbeat, of each claimed or retrying
// job's .job.json and of the history files.

import fs from 'node:fs';
import path from 'node:path';
import { pidAlive } from '../cluster/recovery.js';
import type { NodeState } from '../cluster/heartbeat.js';
import type { GroupSettings } from '../schedule/groups.js';
import { SETTINGS_FILE, readSettingsFile } from '../schedule/settings.js';
import { isHidden } from '../spool/classify.js';
import { DEFAULT_GROUP, REJECT_FILE, groupOf, hostName, parseNodeId, type Layout } from '../spool/layout.js';
import { listArea } from '../spool/claimed.js';
import { readMeta, type JobMeta } from '../spool/meta.js';
import * as names from '../spool/names.js';
import type { JobRecord } from '../spool/record.js';
import { readControl, type ControlState } from './requests.js';
import { isFailed, readHistory, type History } from './history.js';

/** The daemon's default --lease (pmjq(1) RUNNING A CLUSTER): a heartbeat older than this is stale. */
export const DEFAULT_LEASE_MS = 60_000;

export type NodeStateName = 'IDLE' | 'PROCESSING' | 'STOPPING' | 'FENCED' | 'STARTING' | 'STALE';

export interface NodeInfo {
  node: string;
  host: string | null;
  pid: number | null;
  /** IDLE/PROCESSING/STOPPING/FENCED from a live heartbeat, STARTING (claimed area, no heartbeat yet), STALE */
  state: NodeStateName;
  live: boolean;
  /** why it is stale */
  stale_reason: string | null;
  /** ids of the jobs in its claimed area */
  jobs: string[];
  load: number | null;
  version: string | null;
  started: string | null;
  /** groups it serves (null = all) */
  groups: string[] | null;
  /** its -j, when its heartbeat says (0 = unlimited) */
  slots: number | null;
  /** what holds its queued jobs back now, from a live heartbeat: "BARRIER: reason" (e.g. "node: load 2.10 >= 2", "group render: cpu 0.95 >= 0.9") */
  holds: string[];
  /** time of its last heartbeat (the file's mtime) and its age by the filesystem's clock */
  heartbeat: string | null;
  heartbeat_age_ms: number | null;
}

export interface RunningJob {
  id: string;
  node: string;
  /** where it is claimed: its file .pmjq/claimed/NODE/@GROUP/NAME, or the directory .pmjq/claimed/NODE/ID */
  dir: string;
  /** the job file (a sub-job's script); null when its metadata cannot be read */
  file: string | null;
  log: string;
  meta: JobMeta | null;
}

export interface RetryingJob {
  id: string;
  /** DUE.ID */
  entry: string;
  dir: string;
  /** when it may run again (ms since the epoch) */
  due: number;
  meta: JobMeta | null;
}

export interface RejectedJob {
  id: string;
  dir: string;
  record: JobRecord | null;
}

export interface GroupState {
  name: string;
  /** spool-relative directory ('' = top level), null when it has none (a group of sub-jobs, or removed) */
  dir: string | null;
  /** names of the queued files, as names.key() strings (latin1: one char per byte), unsorted; no stat (see `ls`) */
  queued: string[];
  running: number;
  retrying: number;
  failed: number;
  done: number;
  paused: boolean;
  settings: GroupSettings;
  settings_error: string | null;
}

export interface SpoolState {
  layout: Layout;
  /** "now" by the shared filesystem's clock (ms), as the daemons judge staleness */
  now: number;
  leaseMs: number;
  nodes: NodeInfo[];
  groups: Map<string, GroupState>;
  running: RunningJob[];
  retrying: RetryingJob[];
  rejected: RejectedJob[];
  history: History;
  /** latest record of each job that failed for good and is not running or waiting again */
  failed: JobRecord[];
  /** latest record of each job that ended done and is not running or waiting again */
  done: JobRecord[];
  control: ControlState;
  /** the spool has a .pmjq directory (some pmjq or pmjqctl used it) */
  initialised: boolean;
}

export interface ReadOptions {
  /** lease for nodes whose heartbeat does not carry theirs */
  leaseMs?: number;
  /** read the history (failed and done jobs); default true */
  history?: boolean;
}

let clockFiles = 0;

/**
 * The shared filesystem's time: the mtime of a file just created in .pmjq.
 * Falls back to the local clock when the spool is not writable here.
 */
export function fsNow(layout: Layout): number {
  const f = path.join(layout.state, `.pmjqctl-clock.${hostName()}.${process.pid}.${clockFiles++}`);
  try {
    fs.writeFileSync(f, '', { flag: 'wx' });
    try { return fs.statSync(f).mtimeMs; } finally { fs.unlinkSync(f); }
  } catch {
    return Date.now();
  }
}

export function readState(layout: Layout, opts: ReadOptions = {}): SpoolState {
  const initialised = fs.existsSync(layout.state);
  const now = initialised ? fsNow(layout) : Date.now();
  const leaseMs = opts.leaseMs ?? DEFAULT_LEASE_MS;
  const control = readControl(layout);
  const running = readRunning(layout);
  const retrying = readRetrying(layout);
  const rejected = readRejected(layout);
  const nodes = readNodes(layout, running, now, leaseMs);
  const history = opts.history === false ? { latest: new Map(), done: [], unreadable: 0 } : readHistory(layout);

  const active = new Set<string>([...running.map((r) => r.id), ...retrying.map((r) => r.id)]);
  const failed: JobRecord[] = [];
  const done: JobRecord[] = [];
  for (const rec of history.latest.values()) {
    if (active.has(rec.id)) continue;
    if (rec.status === 'done') done.push(rec);
    else if (isFailed(rec, layout)) failed.push(rec);
  }

  const groups = new Map<string, GroupState>();
  const group = (name: string): GroupState => {
    let g = groups.get(name);
    if (!g) {
      g = { name, dir: null, queued: [], running: 0, retrying: 0, failed: 0, done: 0, paused: false, settings: {}, settings_error: null };
      groups.set(name, g);
    }
    return g;
  };
  for (const { dir, keys } of readQueued(layout)) {
    const g = group(groupOf(dir));
    g.dir ??= dir;
    if (g.queued.length === 0) g.queued = keys;
    else for (const k of keys) g.queued.push(k);
  }
  for (const r of running) group(r.meta?.group ?? DEFAULT_GROUP).running++;
  for (const r of retrying) group(r.meta?.group ?? DEFAULT_GROUP).retrying++;
  for (const r of failed) group(r.group).failed++;
  for (const r of done) {
    const g = groups.get(r.group);
    if (g) g.done++; // finished groups without a directory are not listed for their done jobs alone
  }
  for (const p of control.paused) group(p).paused = true;
  for (const g of groups.values()) {
    if (control.pauseAll) g.paused = true;
    if (g.dir === null) continue;
    try {
      const r = readSettingsFile(path.join(layout.groupDir(g.dir), SETTINGS_FILE), undefined);
      g.settings = r?.settings ?? {};
    } catch (err) {
      g.settings_error = (err as Error).message;
    }
  }
  return { layout, now, leaseMs, nodes, groups, running, retrying, rejected, history, failed, done, control, initialised };
}

/** Groups in display order: default first, then by name. */
export function sortedGroups(s: SpoolState): GroupState[] {
  return [...s.groups.values()].sort((a, b) =>
    a.name === DEFAULT_GROUP ? -1 : b.name === DEFAULT_GROUP ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

function list(dir: string): string[] {
  try { return fs.readdirSync(dir).filter((n) => !isHidden(n)); } catch { return []; }
}

/**
 * One readdir of the top level and one per group directory; no stat. Names
 * are read as 'latin1' strings (one char per byte: lossless for any bytes,
 * and far cheaper than a Buffer or a Dirent per entry). Inside a group every
 * non-hidden name counts as queued (a stray directory there is rejected by
 * the daemons within a poll); at the top level, directories are the groups.
 */
export function readQueued(layout: Layout): { dir: string; keys: string[] }[] {
  let top: fs.Dirent[];
  try { top = fs.readdirSync(layout.spool, { withFileTypes: true, encoding: 'latin1' as BufferEncoding }); } catch { return []; }
  const out: { dir: string; keys: string[] }[] = [{ dir: '', keys: [] }];
  const groupDirs: string[] = [];
  for (const d of top) {
    const k = d.name;
    if (k.startsWith('.')) continue;
    if (d.isDirectory()) {
      // as the daemon's scanner: a group's name is UTF-8 without newlines
      const b = names.fromKey(k);
      const dir = names.display(b);
      if (names.isUtf8(b) && !dir.includes('\n')) groupDirs.push(dir);
      continue;
    }
    out[0]!.keys.push(k);
  }
  for (const dir of groupDirs) {
    let keys: string[];
    try { keys = fs.readdirSync(layout.groupDir(dir), { encoding: 'latin1' as BufferEncoding }); } catch { continue; }
    out.push({ dir, keys: keys.filter((k) => !k.startsWith('.')) });
  }
  return out;
}

/** A queued name (latin1 key) for people and JSON: exact when its bytes are UTF-8. */
export function keyDisplay(k: string): { name: string; name_b64?: string } {
  // pure ASCII (the common case) is the same string in every encoding
  if (!/[^\x00-\x7f]/.test(k)) return { name: k };
  const b = names.fromKey(k);
  return names.isUtf8(b) ? { name: names.display(b) } : { name: names.display(b), name_b64: b.toString('base64') };
}

function readJsonFile<T>(file: string): T | null {
  try { return JSON.parse(fs.readFileSync(file, 'utf8')) as T; } catch { return null; }
}

function tryMeta(dir: string): JobMeta | null {
  try { return readMeta(dir); } catch { return null; }
}

export function readRunning(layout: Layout): RunningJob[] {
  const out: RunningJob[] = [];
  for (const node of list(layout.claimedRoot)) {
    for (const item of listArea(layout.claimed(node), node)) {
      if (item.kind !== 'job') continue;
      out.push({ id: item.id, node, dir: item.path, file: item.entry?.file ?? null, log: item.log, meta: item.entry?.meta ?? null });
    }
  }
  return out;
}

/** Entries DUE.ID of .pmjq/retry (the id itself holds dots: split at the first). */
export function parseRetryEntry(entry: string): { due: number; id: string } | null {
  const dot = entry.indexOf('.');
  if (dot <= 0) return null;
  const due = Number(entry.slice(0, dot));
  if (!Number.isFinite(due)) return null;
  return { due, id: entry.slice(dot + 1) };
}

export function readRetrying(layout: Layout): RetryingJob[] {
  const out: RetryingJob[] = [];
  for (const entry of list(layout.retry)) {
    const p = parseRetryEntry(entry);
    if (!p) continue;
    const dir = path.join(layout.retry, entry);
    out.push({ id: p.id, entry, dir, due: p.due, meta: tryMeta(dir) });
  }
  return out;
}

export function readRejected(layout: Layout): RejectedJob[] {
  return list(layout.rejected).map((id) => {
    const dir = path.join(layout.rejected, id);
    return { id, dir, record: readJsonFile<JobRecord>(path.join(dir, REJECT_FILE)) };
  });
}

/**
 * Nodes from their heartbeats and their claimed areas, judged as the daemons'
 * Membership does: stale when the heartbeat is older than the lease by the
 * filesystem's clock, or at once when it is on this host and its pid is gone.
 */
export function readNodes(layout: Layout, running: RunningJob[], now: number, defaultLeaseMs: number): NodeInfo[] {
  const host = hostName();
  const jobsOf = new Map<string, string[]>();
  for (const r of running) {
    const l = jobsOf.get(r.node) ?? [];
    l.push(r.id);
    jobsOf.set(r.node, l);
  }
  const ids = new Set<string>([...list(layout.nodes), ...list(layout.claimedRoot)]);
  const out: NodeInfo[] = [];
  for (const node of [...ids].sort()) {
    const file = layout.heartbeat(node);
    let mtime: number | null = null;
    try { mtime = fs.statSync(file).mtimeMs; } catch { /* no heartbeat */ }
    const hb = mtime !== null ? readJsonFile<NodeState & { lease_ms?: number; jobs?: number }>(file) : null;
    const parsed = parseNodeId(node);
    const leaseMs = typeof hb?.lease_ms === 'number' ? hb.lease_ms : defaultLeaseMs;
    let seen = mtime;
    if (seen === null) {
      try { seen = fs.statSync(layout.claimed(node)).mtimeMs; } catch { /* gone meanwhile */ }
    }
    const age = seen === null ? null : Math.max(0, now - seen);
    let stale: string | null = null;
    if (parsed && parsed.host === host && !pidAlive(parsed.pid)) stale = `process ${parsed.pid} is gone`;
    else if (age !== null && age > leaseMs) stale = `no heartbeat for ${Math.round(age / 1000)}s (lease ${Math.round(leaseMs / 1000)}s)`;
    else if (seen === null) stale = 'no heartbeat';
    const state: NodeStateName = stale !== null ? 'STALE'
      : hb === null ? 'STARTING'
        : hb.state === 'processing' ? 'PROCESSING' : hb.state === 'stopping' ? 'STOPPING' : hb.state === 'fenced' ? 'FENCED' : 'IDLE';
    out.push({
      node,
      host: hb?.host ?? parsed?.host ?? null,
      pid: hb?.pid ?? parsed?.pid ?? null,
      state,
      live: stale === null,
      stale_reason: stale,
      jobs: jobsOf.get(node) ?? [],
      load: typeof hb?.load === 'number' ? hb.load : null,
      version: hb?.version ?? null,
      started: hb?.started ?? (parsed ? new Date(parsed.start * 1000).toISOString() : null),
      groups: Array.isArray(hb?.groups) ? hb.groups : null,
      slots: typeof hb?.jobs === 'number' ? hb.jobs : null,
      holds: stale === null && Array.isArray(hb?.holds) ? hb.holds.filter((h): h is string => typeof h === 'string') : [],
      heartbeat: mtime !== null ? new Date(mtime).toISOString() : null,
      heartbeat_age_ms: mtime !== null && age !== null ? Math.round(age) : null,
    });
  }
  return out;
}

/** Does this node serve `group`? */
export function serves(n: NodeInfo, group: string): boolean {
  return n.groups === null || n.groups.includes(group);
}
