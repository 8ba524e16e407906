// GET /metrics (pmjqctl(1) SERVE): the spool in Prometheus text format, read at
// each scrape with the pmjqctl library's readState (so every node of the
// cluster is seen, whoever runs the server), and the server's own process
// metrics (prom-client's defaults).
//
//   pmjq_jobs{state,group}                 queued, running, retrying, failed, done, rejected
//   pmjq_job_duration_seconds{group,status} histogram of the latest record of each job in the history
//   pmjq_claim_latency_seconds{group}      histogram of claimed − created, same records (first attempts)
//   pmjq_node_up{node,host}                1 live, 0 stale
//   pmjq_node_heartbeat_age_seconds{node}  age of its heartbeat by the filesystem's clock
//   pmjq_node_running_jobs{node}           jobs in its claimed area
//   pmjq_node_load1{node}                  1-minute load average from its heartbeat
//   pmjq_node_barrier_held{node,barrier}   1 while a barrier holds the node's queued jobs back (node, group G, cluster G, paused G)
//   pmjq_nodes{state}                      IDLE, PROCESSING, STOPPING, FENCED, STARTING, STALE
//   pmjq_group_paused{group}, pmjq_paused_all
//   pmjq_group_limit{group,limit}          max, cluster_max, load, cpu, retries, timeout_seconds, backoff_seconds
//   pmjq_kill_requests                     kill requests no node has acted on yet
//   pmjq_history_unreadable_lines          history lines that could not be parsed
//   pmjq_state_read_seconds                how long reading the spool took for this scrape
//
// The histograms are rebuilt from the history at every scrape: they count
// what the history holds now, so when old records are rotated away the
// counts go down (Prometheus treats that as a counter reset).
//
// Barrier holds come from the live nodes' heartbeats, so they are as fresh
// as the last heartbeat (every few seconds); the daemons log each hold and
// release as it happens (barrier-hold / barrier-release).

import client from 'prom-client';
import { readState, type SpoolState } from '../control/state.js';
import type { Layout } from '../spool/layout.js';
import type { JobRecord } from '../spool/record.js';

const DURATION_BUCKETS = [0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400];
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];
const STATES = ['queued', 'running', 'retrying', 'failed', 'done', 'rejected'] as const;
const NODE_STATES = ['IDLE', 'PROCESSING', 'STOPPING', 'FENCED', 'STARTING', 'STALE'] as const;

export class Metrics {
  readonly registry = new client.Registry();
  private readonly jobs: client.Gauge;
  private readonly duration: client.Histogram;
  private readonly latency: client.Histogram;
  private readonly nodeUp: client.Gauge;
  private readonly nodeAge: client.Gauge;
  private readonly nodeRunning: client.Gauge;
  private readonly nodeLoad: client.Gauge;
  private readonly nodeHeld: client.Gauge;
  private readonly nodes: client.Gauge;
  private readonly groupPaused: client.Gauge;
  private readonly pausedAll: client.Gauge;
  private readonly groupLimit: client.Gauge;
  private readonly kills: client.Gauge;
  private readonly unreadable: client.Gauge;
  private readonly readSeconds: client.Gauge;

  constructor(private readonly layout: Layout) {
    const r = [this.registry];
    this.jobs = new client.Gauge({ name: 'pmjq_jobs', help: 'Jobs by state and group', labelNames: ['state', 'group'], registers: r });
    this.duration = new client.Histogram({
      name: 'pmjq_job_duration_seconds', help: 'Run time of finished jobs (latest record of each job in the history)',
      labelNames: ['group', 'status'], buckets: DURATION_BUCKETS, registers: r,
    });
    this.latency = new client.Histogram({
      name: 'pmjq_claim_latency_seconds', help: 'Time from a job file\'s creation to its claim by a node (claimed - created)',
      labelNames: ['group'], buckets: LATENCY_BUCKETS, registers: r,
    });
    this.nodeUp = new client.Gauge({ name: 'pmjq_node_up', help: 'Node liveness: 1 live, 0 stale', labelNames: ['node', 'host'], registers: r });
    this.nodeAge = new client.Gauge({ name: 'pmjq_node_heartbeat_age_seconds', help: 'Age of the node\'s heartbeat by the shared filesystem\'s clock', labelNames: ['node'], registers: r });
    this.nodeRunning = new client.Gauge({ name: 'pmjq_node_running_jobs', help: 'Jobs in the node\'s claimed area', labelNames: ['node'], registers: r });
    this.nodeLoad = new client.Gauge({ name: 'pmjq_node_load1', help: '1-minute load average from the node\'s heartbeat', labelNames: ['node'], registers: r });
    this.nodeHeld = new client.Gauge({ name: 'pmjq_node_barrier_held', help: '1 while a barrier (node, group G, cluster G, paused G) holds the node\'s queued jobs back', labelNames: ['node', 'barrier'], registers: r });
    this.nodes = new client.Gauge({ name: 'pmjq_nodes', help: 'Nodes by state', labelNames: ['state'], registers: r });
    this.groupPaused = new client.Gauge({ name: 'pmjq_group_paused', help: '1 when no node claims jobs of the group (pmjqctl pause)', labelNames: ['group'], registers: r });
    this.pausedAll = new client.Gauge({ name: 'pmjq_paused_all', help: '1 when every group is paused', registers: r });
    this.groupLimit = new client.Gauge({ name: 'pmjq_group_limit', help: 'Limits from the group\'s .group.json', labelNames: ['group', 'limit'], registers: r });
    this.kills = new client.Gauge({ name: 'pmjq_kill_requests', help: 'Kill requests no node has acted on yet', registers: r });
    this.unreadable = new client.Gauge({ name: 'pmjq_history_unreadable_lines', help: 'History lines that could not be parsed', registers: r });
    this.readSeconds = new client.Gauge({ name: 'pmjq_state_read_seconds', help: 'Time taken to read the spool for this scrape', registers: r });
    client.collectDefaultMetrics({ register: this.registry });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** Read the spool and render every metric. */
  async render(): Promise<string> {
    const t0 = process.hrtime.bigint();
    const s = readState(this.layout);
    this.readSeconds.set(Number(process.hrtime.bigint() - t0) / 1e9);
    this.update(s);
    return this.registry.metrics();
  }

  update(s: SpoolState): void {
    for (const m of [this.jobs, this.nodeUp, this.nodeAge, this.nodeRunning, this.nodeLoad, this.nodeHeld, this.nodes, this.groupPaused, this.groupLimit]) m.reset();
    this.duration.reset();
    this.latency.reset();

    const count = new Map<string, number>();
    const add = (state: string, group: string, n = 1): void => {
      const k = `${state}\0${group}`;
      count.set(k, (count.get(k) ?? 0) + n);
    };
    for (const g of s.groups.values()) {
      // every group shows every state, so that a 0 is a 0 and not a missing series
      for (const st of STATES) add(st, g.name, 0);
      add('queued', g.name, g.queued.length);
      this.groupPaused.set({ group: g.name }, g.paused ? 1 : 0);
      for (const [k, v] of Object.entries(g.settings)) {
        if (typeof v !== 'number') continue;
        if (k === 'timeout' || k === 'backoff') this.groupLimit.set({ group: g.name, limit: `${k}_seconds` }, v / 1000);
        else this.groupLimit.set({ group: g.name, limit: k }, v);
      }
    }
    for (const r of s.running) add('running', r.meta?.group ?? 'default');
    for (const r of s.retrying) add('retrying', r.meta?.group ?? 'default');
    for (const r of s.failed) add('failed', r.group);
    for (const r of s.done) add('done', r.group);
    for (const r of s.rejected) add('rejected', r.record?.group ?? 'default');
    for (const [k, n] of count) {
      const [state, group] = k.split('\0') as [string, string];
      this.jobs.set({ state, group }, n);
    }

    for (const st of NODE_STATES) this.nodes.set({ state: st }, 0);
    for (const n of s.nodes) {
      this.nodes.inc({ state: n.state });
      this.nodeUp.set({ node: n.node, host: n.host ?? '' }, n.live ? 1 : 0);
      if (n.heartbeat_age_ms !== null) this.nodeAge.set({ node: n.node }, n.heartbeat_age_ms / 1000);
      this.nodeRunning.set({ node: n.node }, n.jobs.length);
      if (n.load !== null) this.nodeLoad.set({ node: n.node }, n.load);
      for (const h of n.holds) this.nodeHeld.set({ node: n.node, barrier: h.slice(0, Math.max(0, h.indexOf(':'))) || h }, 1);
    }
    this.pausedAll.set(s.control.pauseAll ? 1 : 0);
    this.kills.set(s.control.kills.length);
    this.unreadable.set(s.history.unreadable);

    for (const r of s.history.latest.values()) observe(this.duration, this.latency, r);
  }
}

function observe(duration: client.Histogram, latency: client.Histogram, r: JobRecord): void {
  if (typeof r.duration_ms === 'number' && r.duration_ms >= 0) {
    duration.observe({ group: r.group, status: r.status }, r.duration_ms / 1000);
  }
  // a later attempt's claim comes after a backoff, not a wait for a free node
  if ((r.attempt ?? 1) <= 1 && r.created && r.claimed) {
    const d = Date.parse(r.claimed) - Date.parse(r.created);
    if (Number.isFinite(d)) latency.observe({ group: r.group }, Math.max(0, d) / 1000);
  }
}
