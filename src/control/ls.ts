// `pmjqctl ls`: jobs in every state, one table (pmjqctl(1)). Queued jobs are
// found with one readdir per group and no stat: only the rows that are
// printed are stat'ed (for their age), unless the sort needs every file's
// time (--sort age/created). Queued jobs get an ETA from the recent
// durations of their group and the slots that serve it (see etaModel).

import fs from 'node:fs';
import path from 'node:path';
import { classify } from '../spool/classify.js';
import { DEFAULT_GROUP, LOG_FILE } from '../spool/layout.js';
import * as names from '../spool/names.js';
import type { JobRecord, JobStatus } from '../spool/record.js';
import { CtlError } from './errors.js';
import { ago, human, table, type Colour, type CellLike, type Style } from './format.js';
import { medianDuration } from './history.js';
import { keyDisplay, serves, type GroupState, type SpoolState } from './state.js';

export const STATES = ['running', 'retrying', 'queued', 'failed', 'done', 'rejected'] as const;
export type JobState = typeof STATES[number];
export const SORT_KEYS = ['state', 'id', 'name', 'group', 'node', 'attempt', 'age', 'duration', 'eta', 'created'] as const;
export type SortKey = typeof SORT_KEYS[number];

/** The JSON shape of one job (documented in pmjqctl(1)). */
export interface JobRow {
  state: JobState;
  /** null for queued jobs: an id is given when a node claims the file */
  id: string | null;
  name: string;
  name_b64?: string;
  group: string;
  node: string | null;
  attempt: number | null;
  status: JobStatus | null;
  exit_code: number | null;
  signal: string | null;
  created: string | null;
  /** when it entered its current state */
  since: string | null;
  age_ms: number | null;
  duration_ms: number | null;
  eta_ms: number | null;
  info: string | null;
  path: string | null;
  log: string | null;
}

export interface LsOptions {
  states?: JobState[];
  groups?: string[];
  sort?: SortKey;
  reverse?: boolean;
  /** 0 = no limit */
  limit?: number;
  grep?: RegExp;
}

export interface LsResult {
  spool: string;
  time: string;
  /** rows that matched, before --limit */
  total: number;
  jobs: JobRow[];
}

/** A queued job before it is printed: a few fields, no stat, no path (100 000 of them must be cheap). */
interface Queued {
  g: GroupState;
  /** names.key() of its name (latin1) */
  key: string;
  /** place in its group's queue (listing order) */
  pos: number;
  eta: number | null;
  /** display name, made when first needed (grep, sort by name, printing) */
  name?: string;
  /** file mtime once stat'ed (null: it is gone) */
  mtime?: number | null;
  info?: string | null;
}

/**
 * A row in the making: running, retrying and rejected jobs have their row at
 * once; failed and done jobs (the whole history) only when it is needed
 * (printed, grep'ed, sorted), from their record; queued jobs only when printed.
 */
interface Pending {
  state: JobState;
  row: JobRow | null;
  rec?: JobRecord;
  q: Queued | null;
  /** default order within a state */
  order: number;
}

const STATE_RANK: Record<JobState, number> = { running: 0, retrying: 1, queued: 2, failed: 3, done: 4, rejected: 5 };

/**
 * The ETA model, kept simple: a group's parallelism P is the slots of the
 * live nodes that serve it (a node's -j when its heartbeat says, else the
 * number of jobs it runs now, at least 1), capped by the group's max per node
 * and cluster_max, and at least what runs now. With F = P − running free
 * slots, the i-th queued job (from 0, in listing order) starts at once if
 * i < F, else after ceil((i + 1 − F) / P) times the median duration of the
 * group's last 20 done jobs (of all groups' when it has none).
 */
export interface EtaModel { parallelism: number | null; free: number; median: number | null; reason: string | null }

export function etaModel(s: SpoolState, g: GroupState): EtaModel {
  const median = medianDuration(s.history.done, g.name) ?? medianDuration(s.history.done, null);
  if (g.paused) return { parallelism: null, free: 0, median, reason: 'paused' };
  const live = s.nodes.filter((n) => n.live && (n.state === 'IDLE' || n.state === 'PROCESSING' || n.state === 'STARTING') && serves(n, g.name));
  if (live.length === 0) return { parallelism: null, free: 0, median, reason: 'no live node serves this group' };
  let cap = 0;
  for (const n of live) cap += n.slots === null ? Math.max(1, n.jobs.length) : n.slots === 0 ? Infinity : n.slots;
  if (g.settings.max) cap = Math.min(cap, g.settings.max * live.length);
  if (g.settings.cluster_max) cap = Math.min(cap, g.settings.cluster_max);
  cap = Math.max(cap, g.running, 1);
  return { parallelism: cap, free: Math.max(0, cap - g.running), median, reason: null };
}

export function etaFor(m: EtaModel, i: number): number | null {
  if (m.parallelism === null) return null;
  if (i < m.free || m.parallelism === Infinity) return 0;
  if (m.median === null) return null;
  return Math.ceil((i + 1 - m.free) / m.parallelism) * m.median;
}

function recordInfo(r: JobRecord): string | null {
  const how = r.signal ? `signal ${r.signal}` : r.exit_code !== null && r.exit_code !== undefined ? `exit ${r.exit_code}` : null;
  const parts = [r.status === 'failed' || r.status === 'done' ? null : r.status, how, r.error ?? null].filter((p) => p);
  return parts.length ? parts.join(': ') : null;
}

function nameOf(meta: { name: string; name_b64?: string } | null, fallback: string): Pick<JobRow, 'name' | 'name_b64'> {
  if (!meta) return { name: fallback };
  return meta.name_b64 !== undefined ? { name: meta.name, name_b64: meta.name_b64 } : { name: meta.name };
}

function blank(state: JobState): Omit<JobRow, 'name' | 'group'> {
  return {
    state, id: null, node: null, attempt: null, status: null, exit_code: null, signal: null, created: null,
    since: null, age_ms: null, duration_ms: null, eta_ms: null, info: null, path: null, log: null,
  };
}

function ms(iso: string | null | undefined): number | null {
  if (!iso) return null;
  const t = Date.parse(iso);
  return Number.isFinite(t) ? t : null;
}

function fromRecord(state: JobState, r: JobRecord, now: number): JobRow {
  return {
    ...blank(state), id: r.id, ...nameOf(r, r.id), group: r.group, node: r.node, attempt: r.attempt,
    status: r.status, exit_code: r.exit_code, signal: r.signal, created: r.created,
    since: r.finished, age_ms: diff(now, ms(r.finished)), duration_ms: r.duration_ms,
    info: recordInfo(r), path: r.archive, log: r.log,
  };
}

function diff(now: number, t: number | null): number | null {
  return t === null ? null : Math.max(0, Math.round(now - t));
}

/** Every job of the spool as (cheap) rows, filtered by state and group. */
/**
 * A group's queued jobs, sorted, not yet made into rows: 100 000 queued jobs
 * cost a sort, and rows only for what is printed (unless --grep or --sort
 * needs them all). `at` is where they go among the other rows.
 */
interface QueuedBlock {
  at: number;
  g: GroupState;
  keys: string[];
  /** each key's place in its group's queue, when keys is a filtered subset (--grep) */
  pos?: number[];
  model: EtaModel;
}

function queuedPending(b: QueuedBlock, i: number): Pending {
  const pos = b.pos ? b.pos[i]! : i;
  return { state: 'queued', row: null, q: { g: b.g, key: b.keys[i]!, pos, eta: etaFor(b.model, pos), info: b.model.reason }, order: pos };
}

/** --grep on a block without making a row per queued job: the group or the reason matches all, else name by name. */
function grepBlock(b: QueuedBlock, re: RegExp): QueuedBlock {
  if (re.test(b.g.name) || (b.model.reason !== null && re.test(b.model.reason))) return b;
  const keys: string[] = [];
  const pos: number[] = [];
  for (let i = 0; i < b.keys.length; i++) {
    const k = b.keys[i]!;
    if (re.test(keyDisplay(k).name)) { keys.push(k); pos.push(b.pos ? b.pos[i]! : i); }
  }
  return { ...b, keys, pos };
}

/** The rows and the queued blocks, in the default order once the blocks are put at their places. */
function collect(s: SpoolState, want: Set<JobState>, groups: Set<string> | null): { rows: Pending[]; blocks: QueuedBlock[] } {
  const now = s.now;
  const out: Pending[] = [];
  const blocks: QueuedBlock[] = [];
  const inGroup = (g: string): boolean => groups === null || groups.has(g);
  const nodeState = new Map(s.nodes.map((n) => [n.node, n]));
  const kills = new Set(s.control.kills);
  // each state's rows in their natural order (by `order`), the states in theirs
  let mark = 0;
  const section = (): void => {
    const part = out.splice(mark).sort((a, b) => a.order - b.order);
    for (const p of part) out.push(p);
    mark = out.length;
  };
  const medians = new Map<string, number | null>();
  const median = (g: string): number | null => {
    if (!medians.has(g)) medians.set(g, medianDuration(s.history.done, g));
    return medians.get(g)!;
  };

  if (want.has('running')) {
    for (const r of s.running) {
      const m = r.meta;
      const group = m?.group ?? DEFAULT_GROUP;
      if (!inGroup(group)) continue;
      const claimed = ms(m?.claimed);
      const elapsed = diff(now, claimed);
      const med = median(group);
      const n = nodeState.get(r.node);
      const info = [kills.has(r.id) ? 'kill requested' : null, n && !n.live ? `node stale: ${n.stale_reason}` : null].filter((x) => x).join('; ');
      out.push({
        row: {
          ...blank('running'), id: r.id, ...nameOf(m, r.id), group, node: r.node, attempt: m?.attempt ?? null,
          created: m?.created ?? null, since: m?.claimed ?? null, age_ms: elapsed, duration_ms: elapsed,
          eta_ms: med !== null && elapsed !== null && med > elapsed ? Math.round(med - elapsed) : null,
          info: info || null,
          path: r.file, log: r.log,
        },
        state: 'running', q: null, order: claimed ?? 0,
      });
    }
    section();
  }
  if (want.has('retrying')) {
    for (const r of s.retrying) {
      const m = r.meta;
      const group = m?.group ?? DEFAULT_GROUP;
      if (!inGroup(group)) continue;
      const prev = s.history.latest.get(r.id);
      out.push({
        row: {
          ...blank('retrying'), id: r.id, ...nameOf(m, r.id), group, node: m?.node ?? null, attempt: m?.attempt ?? null,
          status: prev?.status ?? null, exit_code: prev?.exit_code ?? null, signal: prev?.signal ?? null,
          created: m?.created ?? null, since: prev?.finished ?? null, age_ms: diff(now, ms(prev?.finished)),
          eta_ms: Math.max(0, Math.round(r.due - now)),
          info: [kills.has(r.id) ? 'kill requested' : null, m?.previous ?? null].filter((x) => x).join('; ') || null,
          path: m ? path.join(r.dir, m.file) : null, log: path.join(r.dir, LOG_FILE),
        },
        state: 'retrying', q: null, order: r.due,
      });
    }
    section();
  }
  if (want.has('queued')) {
    const groupList = [...s.groups.values()].sort((x, y) => (x.name === DEFAULT_GROUP ? -1 : y.name === DEFAULT_GROUP ? 1 : x.name < y.name ? -1 : 1));
    for (const g of groupList) {
      if (!inGroup(g.name) || g.dir === null || g.queued.length === 0) continue;
      // listing order: by name (bytes); the daemons take the oldest first,
      // which would need a stat per file: the ETA is an estimate anyway
      blocks.push({ at: out.length, g, keys: g.queued.slice().sort(), model: etaModel(s, g) });
    }
  }
  for (const [state, list] of [['failed', s.failed], ['done', s.done]] as const) {
    if (!want.has(state)) continue;
    for (const r of list) {
      if (!inGroup(r.group)) continue;
      out.push({ state, row: null, rec: r, q: null, order: -(ms(r.finished) ?? 0) });
    }
    section();
  }
  if (want.has('rejected')) {
    for (const r of s.rejected) {
      const rec = r.record;
      const group = rec?.group ?? DEFAULT_GROUP;
      if (!inGroup(group)) continue;
      const row = rec ? fromRecord('rejected', rec, now) : { ...blank('rejected'), id: r.id, name: r.id, group };
      row.path = rec?.archive ?? r.dir;
      row.log = null;
      out.push({ state: 'rejected', row, q: null, order: -(ms(rec?.finished) ?? 0) });
    }
    section();
  }
  return { rows: out, blocks };
}

/** Everything as rows, in the default order. */
function expand(c: { rows: Pending[]; blocks: QueuedBlock[] }): Pending[] {
  if (c.blocks.length === 0) return c.rows;
  const out: Pending[] = [];
  let next = 0;
  for (const b of c.blocks) {
    while (next < b.at) out.push(c.rows[next++]!);
    for (let i = 0; i < b.keys.length; i++) out.push(queuedPending(b, i));
  }
  while (next < c.rows.length) out.push(c.rows[next++]!);
  return out;
}

/** The first `limit` rows in the default order, and how many there are, without making the others. */
function head(c: { rows: Pending[]; blocks: QueuedBlock[] }, limit: number): { total: number; shown: Pending[] } {
  const total = c.rows.length + c.blocks.reduce((n, b) => n + b.keys.length, 0);
  const shown: Pending[] = [];
  let next = 0;
  const take = (p: () => Pending): boolean => {
    if (shown.length >= limit) return false;
    shown.push(p());
    return true;
  };
  for (const b of c.blocks) {
    while (next < b.at) { const r = c.rows[next++]!; if (!take(() => r)) return { total, shown }; }
    for (let i = 0; i < b.keys.length; i++) if (!take(() => queuedPending(b, i))) return { total, shown };
  }
  while (next < c.rows.length) { const r = c.rows[next++]!; if (!take(() => r)) break; }
  return { total, shown };
}

function matches(r: JobRow, re: RegExp): boolean {
  return re.test(r.name) || (r.id !== null && re.test(r.id)) || re.test(r.group) || (r.info !== null && re.test(r.info));
}

/** The display name of a row in the making. */
function nameOfPending(p: Pending): string {
  if (p.row) return p.row.name;
  if (p.rec) return p.rec.name;
  const q = p.q!;
  return (q.name ??= keyDisplay(q.key).name);
}

function queuedFile(s: SpoolState, q: Queued): Buffer {
  return names.join(s.layout.groupDir(q.g.dir!), names.fromKey(q.key));
}

/** A queued file's mtime (stat'ed once); null when it is gone. */
function queuedMtime(s: SpoolState, q: Queued): number | null {
  statQueued(s, q);
  return q.mtime ?? null;
}

/** Stat a queued file: its age, and whether it is a job yet (without opening it). */
function statQueued(s: SpoolState, q: Queued): void {
  if (q.mtime !== undefined) return;
  let st: fs.Stats;
  try {
    st = fs.lstatSync(queuedFile(s, q));
  } catch {
    q.mtime = null;
    q.info = 'gone from the queue (claimed or removed meanwhile)';
    return;
  }
  q.mtime = st.mtimeMs;
  const v = classify(st, { topLevel: q.g.dir === '', asRoot: false, allowRoot: true });
  if (v.kind === 'ignore') q.info = 'not executable: not a job yet (chmod +x to queue it)';
  else if (v.kind === 'reject') q.info = `will be rejected: ${v.reason}`;
}

/** The row of a queued job, for printing. */
function queuedRow(s: SpoolState, q: Queued): JobRow {
  statQueued(s, q);
  const created = q.mtime ? new Date(q.mtime).toISOString() : null;
  return {
    ...blank('queued'), ...keyDisplay(q.key), group: q.g.name, created, since: created,
    age_ms: q.mtime ? diff(s.now, q.mtime) : null, eta_ms: q.eta, info: q.info ?? null, path: names.display(queuedFile(s, q)),
  };
}

/** The row of a failed or done job, made from its record when first needed. */
function recRow(s: SpoolState, p: Pending): JobRow | null {
  if (p.row === null && p.rec) p.row = fromRecord(p.state, p.rec, s.now);
  return p.row;
}

function sortValue(s: SpoolState, key: SortKey, p: Pending): string | number | null {
  const r = recRow(s, p);
  const q = p.q;
  switch (key) {
    case 'state': return STATE_RANK[p.state];
    case 'id': return r ? r.id : null;
    case 'name': return nameOfPending(p);
    case 'group': return r ? r.group : q!.g.name;
    case 'node': return r ? r.node : null;
    case 'attempt': return r ? r.attempt : null;
    case 'age': {
      if (r) return r.age_ms;
      const mtime = queuedMtime(s, q!);
      return mtime ? diff(s.now, mtime) : null;
    }
    case 'duration': return r ? r.duration_ms : null;
    case 'eta': return r ? r.eta_ms : q!.eta;
    case 'created': {
      if (r) return r.created;
      const mtime = queuedMtime(s, q!);
      return mtime ? new Date(mtime).toISOString() : null;
    }
  }
}

export function listJobs(s: SpoolState, o: LsOptions = {}): LsResult {
  const want = new Set<JobState>(o.states?.length ? o.states : STATES);
  const groups = o.groups?.length ? new Set(o.groups) : null;
  const c = collect(s, want, groups);
  const limit = o.limit ?? 0;
  const done = (total: number, shown: Pending[]): LsResult =>
    ({ spool: s.layout.spool, time: new Date(s.now).toISOString(), total, jobs: shown.map((p) => recRow(s, p) ?? queuedRow(s, p.q!)) });
  // the common case, fast: default order, a limit, no filter
  if (!o.grep && o.sort === undefined && !o.reverse && limit > 0) {
    const h = head(c, limit);
    return done(h.total, h.shown);
  }
  if (o.grep) {
    const re = o.grep;
    const kept: Pending[] = [];
    const at = new Map<QueuedBlock, number>();
    let next = 0;
    for (const b of c.blocks) {
      for (; next < b.at; next++) if (matches(recRow(s, c.rows[next]!)!, re)) kept.push(c.rows[next]!);
      at.set(b, kept.length);
    }
    for (; next < c.rows.length; next++) if (matches(recRow(s, c.rows[next]!)!, re)) kept.push(c.rows[next]!);
    c.blocks = c.blocks.map((b) => ({ ...grepBlock(b, re), at: at.get(b)! }));
    c.rows = kept;
    if (o.sort === undefined && !o.reverse && limit > 0) {
      const h = head(c, limit);
      return done(h.total, h.shown);
    }
  }
  let rows = expand(c);
  const key = o.sort;
  if (key !== undefined) {
    const dir = o.reverse ? -1 : 1;
    const decorated = rows.map((p, i) => ({ p, i, v: sortValue(s, key, p) }));
    decorated.sort((a, b) => {
      const x = a.v;
      const y = b.v;
      // missing values last, whatever the direction; ties keep the default order
      if (x === null || y === null) return x === y ? a.i - b.i : x === null ? 1 : -1;
      return (x < y ? -1 : x > y ? 1 : 0) * dir || a.i - b.i;
    });
    rows = decorated.map((d) => d.p);
  } else if (o.reverse) {
    rows.reverse();
  }
  return done(rows.length, limit > 0 ? rows.slice(0, limit) : rows);
}

const STATE_COLOUR: Record<JobState, Colour | undefined> = {
  running: 'green', retrying: 'yellow', queued: 'cyan', failed: 'red', done: undefined, rejected: 'magenta',
};

export function renderJobs(r: LsResult, style: Style): string {
  if (r.total === 0) return 'no jobs\n';
  const rows: CellLike[][] = r.jobs.map((j) => [
    { text: j.state, colour: STATE_COLOUR[j.state] },
    j.id,
    j.group,
    j.name,
    j.node,
    j.attempt,
    j.state === 'queued' || j.state === 'running' ? human(j.age_ms) : ago(j.age_ms),
    human(j.duration_ms),
    j.eta_ms === null ? null : j.state === 'retrying' ? `in ${human(j.eta_ms)}` : j.eta_ms === 0 ? 'now' : `~${human(j.eta_ms)}`,
    j.state === 'failed' ? { text: j.info ?? '', colour: 'red' } : j.info,
  ]);
  let out = table(style, ['STATE', 'ID', 'GROUP', 'NAME', 'NODE', 'ATT', 'AGE', 'DURATION', 'ETA', 'INFO'], rows, ['ATT', 'AGE', 'DURATION']);
  if (r.total > r.jobs.length) out += `… ${r.total - r.jobs.length} more (of ${r.total}; --limit 0 shows all)\n`;
  return out;
}

/** --state a,b and --group a,b: comma lists or repeated flags. */
export function parseStates(v: string[] | undefined): JobState[] | undefined {
  if (!v) return undefined;
  const out: JobState[] = [];
  for (const s of v.flatMap((x) => x.split(','))) {
    if (s === '') continue;
    if (!(STATES as readonly string[]).includes(s)) throw new CtlError(`--state: '${s}' is not a state (${STATES.join(', ')})`, 2);
    out.push(s as JobState);
  }
  return out;
}
