// `pmjqctl status`: nodes, groups and totals of a spool (pmjqctl(1)).

import { ago, human, paint, table, type CellLike, type Style } from './format.js';
import { printable } from './errors.js';
import { sortedGroups, type NodeInfo, type SpoolState } from './state.js';

export interface GroupStatus {
  group: string;
  /** spool-relative directory ('' = top level), null when the group has none */
  dir: string | null;
  queued: number;
  running: number;
  retrying: number;
  failed: number;
  done: number;
  paused: boolean;
  /** limits from .group.json (max, cluster_max, load, cpu, timeout/backoff in ms, retries) */
  settings: Record<string, number | undefined>;
  settings_error: string | null;
}

export interface StatusReport {
  spool: string;
  time: string;
  lease_ms: number;
  paused_all: boolean;
  paused_groups: string[];
  nodes: NodeInfo[];
  groups: GroupStatus[];
  totals: {
    queued: number; running: number; retrying: number; failed: number; done: number; rejected: number;
    nodes: number; live_nodes: number;
  };
  kill_requests: string[];
  warnings: string[];
}

export function statusReport(s: SpoolState): StatusReport {
  const groups: GroupStatus[] = sortedGroups(s).map((g) => ({
    group: g.name, dir: g.dir, queued: g.queued.length, running: g.running, retrying: g.retrying,
    failed: g.failed, done: g.done, paused: g.paused, settings: { ...g.settings }, settings_error: g.settings_error,
  }));
  const sum = (f: (g: GroupStatus) => number): number => groups.reduce((n, g) => n + f(g), 0);
  const warnings: string[] = [];
  if (!s.initialised) warnings.push(`no pmjq has used ${s.layout.spool} yet (it has no .pmjq directory)`);
  if (s.history.unreadable) warnings.push(`${s.history.unreadable} history line(s) in ${s.layout.history} could not be read`);
  for (const g of groups) if (g.settings_error) warnings.push(`group ${g.group}: .group.json: ${g.settings_error}`);
  for (const n of s.nodes) if (!n.live && n.jobs.length) warnings.push(`node ${n.node} is stale (${n.stale_reason}) with ${n.jobs.length} job(s): a live node recovers them`);
  return {
    spool: s.layout.spool,
    time: new Date(s.now).toISOString(),
    lease_ms: s.leaseMs,
    paused_all: s.control.pauseAll,
    paused_groups: [...s.control.paused].sort(),
    nodes: s.nodes,
    groups,
    totals: {
      queued: sum((g) => g.queued), running: s.running.length, retrying: s.retrying.length,
      failed: s.failed.length, done: s.done.length, rejected: s.rejected.length,
      nodes: s.nodes.length, live_nodes: s.nodes.filter((n) => n.live).length,
    },
    kill_requests: [...s.control.kills].sort(),
    warnings,
  };
}

const STATE_COLOUR = { IDLE: undefined, PROCESSING: 'green', STOPPING: 'yellow', FENCED: 'red', STARTING: 'cyan', STALE: 'red' } as const;

export function renderStatus(r: StatusReport, style: Style): string {
  const out: string[] = [];
  const paused = r.paused_all ? 'all groups' : r.paused_groups.length ? r.paused_groups.join(', ') : null;
  out.push(`${paint(style, 'bold', 'spool')} ${printable(r.spool)}   nodes ${r.totals.live_nodes} live` +
    (r.totals.nodes > r.totals.live_nodes ? `, ${r.totals.nodes - r.totals.live_nodes} stale` : '') +
    (paused ? `   ${paint(style, 'yellow', `paused: ${printable(paused)}`)}` : ''));
  out.push('');
  if (r.nodes.length === 0) {
    out.push('no node: no pmjq serves this spool (start one with: pmjq SPOOL)');
  } else {
    out.push(table(style, ['NODE', 'STATE', 'RUNNING', 'LOAD', 'VERSION', 'HEARTBEAT', 'GROUPS'], r.nodes.map((n) => [
      n.node,
      { text: n.state, colour: STATE_COLOUR[n.state] },
      n.jobs.length,
      n.load === null ? null : n.load.toFixed(2),
      n.version,
      n.heartbeat_age_ms === null ? null : ago(n.heartbeat_age_ms),
      n.groups === null ? 'all' : n.groups.length === 0 ? 'none (pmjqctl run)' : n.groups.join(','),
    ]), ['RUNNING', 'LOAD']).trimEnd());
    for (const n of r.nodes) {
      if (n.holds.length) out.push(paint(style, 'yellow', `held back on ${printable(n.node)}: ${n.holds.map(printable).join('; ')}`));
    }
  }
  out.push('');
  const limit = (v: number | undefined): string | null => (v === undefined || v === 0 ? null : String(v));
  const rows: CellLike[][] = r.groups.map((g) => [
    g.group,
    g.queued,
    { text: String(g.running), colour: g.running ? 'green' as const : undefined },
    { text: String(g.retrying), colour: g.retrying ? 'yellow' as const : undefined },
    { text: String(g.failed), colour: g.failed ? 'red' as const : undefined },
    g.done,
    limit(g.settings.max),
    limit(g.settings.cluster_max),
    g.settings.timeout === undefined ? null : human(g.settings.timeout),
    g.settings.retries === undefined ? null : g.settings.retries,
    g.paused ? { text: 'paused', colour: 'yellow' as const } : null,
  ]);
  const t = r.totals;
  rows.push([{ text: 'TOTAL', colour: 'bold' }, t.queued, t.running, t.retrying, t.failed, t.done, '', '', '', '', '']);
  out.push(table(style, ['GROUP', 'QUEUED', 'RUNNING', 'RETRYING', 'FAILED', 'DONE', 'MAX', 'CLUSTER_MAX', 'TIMEOUT', 'RETRIES', 'PAUSED'], rows,
    ['QUEUED', 'RUNNING', 'RETRYING', 'FAILED', 'DONE', 'MAX', 'CLUSTER_MAX', 'RETRIES']).trimEnd());
  if (t.rejected) out.push(`\n${t.rejected} rejected file(s): pmjqctl ls ${shellWord(r.spool)} --state rejected`);
  if (r.kill_requests.length) out.push(`\nkill requested, not yet acted on: ${r.kill_requests.map(printable).join(', ')}`);
  for (const w of r.warnings) out.push(paint(style, 'yellow', `warning: ${printable(w)}`));
  return out.join('\n') + '\n';
}

/** A path as a shell word, for the hints we print. */
export function shellWord(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
