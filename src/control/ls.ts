// `pmjqctl ls`: jobs in every state, one table (DESIGN §9). Queued jobs are
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
import { serves, type GroupState, type SpoolState } from './state.js';

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

/** A queued row before it is stat'ed: built for every queued file, cheap. */
interface Pending {
  row: JobRow;
  /** for queued rows: where the file is, and its place in its group's queue */
  file?: Buffer;
  pos: number;
  /** default order within a state */
  order: string | number;
  statted: boolean;
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
function collect(s: SpoolState, want: Set<JobState>, groups: Set<string> | null): Pending[] {
  const now = s.now;
  const out: Pending[] = [];
  const inGroup = (g: string): boolean => groups === null || groups.has(g);
  const nodeState = new Map(s.nodes.map((n) => [n.node, n]));
  const kills = new Set(s.control.kills);
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
          path: m ? (m.script ?? path.join(r.dir, m.file)) : null, log: path.join(r.dir, LOG_FILE),
        },
        pos: 0, order: claimed ?? 0, statted: true,
      });
    }
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
        pos: 0, order: r.due, statted: true,
      });
    }
  }
  if (want.has('queued')) {
    for (const g of s.groups.values()) {
      if (!inGroup(g.name) || g.dir === null || g.queued.length === 0) continue;
      // listing order: by name (bytes); the daemons take the oldest first,
      // which would need a stat per file: the ETA is an estimate anyway
      const keyed = g.queued.map((e) => ({ e, k: names.key(e.name) }));
      keyed.sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : 0));
      const model = etaModel(s, g);
      const dir = s.layout.groupDir(g.dir);
      keyed.forEach(({ e }, i) => {
        const name = names.display(e.name);
        out.push({
          row: {
            ...blank('queued'), name, ...(names.isUtf8(e.name) ? {} : { name_b64: e.name.toString('base64') }),
            group: g.name, eta_ms: etaFor(model, i), info: model.reason, path: names.display(names.join(dir, e.name)),
          },
          file: names.join(dir, e.name), pos: i, order: i, statted: false,
        });
      });
    }
  }
  for (const [state, list] of [['failed', s.failed], ['done', s.done]] as const) {
    if (!want.has(state)) continue;
    for (const r of list) {
      if (!inGroup(r.group)) continue;
      out.push({ row: fromRecord(state, r, now), pos: 0, order: -(ms(r.finished) ?? 0), statted: true });
    }
  }
  if (want.has('rejected')) {
    for (const r of s.rejected) {
      const rec = r.record;
      const group = rec?.group ?? DEFAULT_GROUP;
      if (!inGroup(group)) continue;
      const row = rec ? fromRecord('rejected', rec, now) : { ...blank('rejected'), id: r.id, name: r.id, group };
      row.path = rec?.archive ?? r.dir;
      row.log = null;
      out.push({ row, pos: 0, order: -(ms(rec?.finished) ?? 0), statted: true });
    }
  }
  return out;
}

/** Stat a queued file: its age, and whether it is a job yet (without opening it). */
function statQueued(p: Pending, now: number): void {
  if (p.statted || !p.file) return;
  p.statted = true;
  let st: fs.Stats;
  try {
    st = fs.lstatSync(p.file);
  } catch {
    p.row.info = 'gone from the queue (claimed or removed meanwhile)';
    return;
  }
  p.row.created = new Date(st.mtimeMs).toISOString();
  p.row.since = p.row.created;
  p.row.age_ms = diff(now, st.mtimeMs);
  const v = classify(st, { topLevel: p.row.group === DEFAULT_GROUP, asRoot: false, allowRoot: true });
  if (v.kind === 'ignore') p.row.info = 'not executable: not a job yet (chmod +x to queue it)';
  else if (v.kind === 'reject') p.row.info = `will be rejected: ${v.reason}`;
}

function sortValue(key: SortKey, p: Pending): string | number | null {
  const r = p.row;
  switch (key) {
    case 'state': return STATE_RANK[r.state];
    case 'id': return r.id;
    case 'name': return r.name;
    case 'group': return r.group;
    case 'node': return r.node;
    case 'attempt': return r.attempt;
    case 'age': return r.age_ms;
    case 'duration': return r.duration_ms;
    case 'eta': return r.eta_ms;
    case 'created': return r.created;
  }
}

function defaultOrder(a: Pending, b: Pending): number {
  const s = STATE_RANK[a.row.state] - STATE_RANK[b.row.state];
  if (s) return s;
  if (a.row.state === 'queued') {
    const ga = a.row.group;
    const gb = b.row.group;
    if (ga !== gb) return ga === DEFAULT_GROUP ? -1 : gb === DEFAULT_GROUP ? 1 : ga < gb ? -1 : 1;
  }
  return a.order < b.order ? -1 : a.order > b.order ? 1 : 0;
}

export function listJobs(s: SpoolState, o: LsOptions = {}): LsResult {
  const want = new Set<JobState>(o.states && o.states.length ? o.states : STATES);
  const groups = o.groups && o.groups.length ? new Set(o.groups) : null;
  let rows = collect(s, want, groups);
  if (o.grep) {
    const re = o.grep;
    rows = rows.filter((p) => re.test(p.row.name) || (p.row.id !== null && re.test(p.row.id)) || re.test(p.row.group) || (p.row.info !== null && re.test(p.row.info)));
  }
  const key = o.sort;
  if (key === 'age' || key === 'created') for (const p of rows) statQueued(p, s.now);
  if (key === undefined) {
    rows.sort(defaultOrder);
    if (o.reverse) rows.reverse();
  } else {
    const dir = o.reverse ? -1 : 1;
    rows.sort((a, b) => {
      const x = sortValue(key, a);
      const y = sortValue(key, b);
      // missing values last, whatever the direction
      if (x === null || y === null) return x === y ? defaultOrder(a, b) : x === null ? 1 : -1;
      return (x < y ? -1 : x > y ? 1 : 0) * dir || defaultOrder(a, b);
    });
  }
  const total = rows.length;
  const limit = o.limit ?? 0;
  const shown = limit > 0 ? rows.slice(0, limit) : rows;
  for (const p of shown) statQueued(p, s.now);
  return { spool: s.layout.spool, time: new Date(s.now).toISOString(), total, jobs: shown.map((p) => p.row) };
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
