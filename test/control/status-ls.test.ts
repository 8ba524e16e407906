// pmjqctl status and ls (issue 6): nodes with their state (IDLE,
// PROCESSING, STALE), groups with counts, limits and pause flags, totals;
// one table for jobs in every state, with ETAs for queued jobs.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { BIN, dropJob, scratch, start, waitFor } from '../helpers/helpers.js';
import { ctl, ctlJson, daemon, gatedJob, jobs, nodeOf, until, type Job } from '../helpers/ctl.js';

const HOST = os.hostname().replace(/[/\s]/g, '_') || 'localhost';
const VERSION = (JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

interface Status {
  spool: string; paused_all: boolean; paused_groups: string[];
  nodes: { node: string; state: string; live: boolean; jobs: string[]; load: number | null; version: string | null; heartbeat_age_ms: number | null; stale_reason: string | null }[];
  groups: { group: string; queued: number; running: number; retrying: number; failed: number; done: number; paused: boolean; settings: Record<string, number> }[];
  totals: Record<string, number>;
}

t.test('status and ls show every state of a spool served by a daemon', async (t) => {
  const { dir, spool, archive } = scratch(t);
  for (const g of ['quick', 'slow']) fs.mkdirSync(path.join(spool, g));
  fs.writeFileSync(path.join(spool, 'slow', '.group.json'), '{"max": 1, "retries": 0}\n');
  const d = daemon(t, spool, ['-j', '4', '-o', archive]);
  const node = await nodeOf(d);

  // history first: three done (for the ETA), one failed, one rejected
  for (let i = 0; i < 3; i++) dropJob(path.join(spool, 'quick'), `q${i}`, '#!/bin/sh\nsleep 0.2\n');
  dropJob(spool, 'fails', '#!/bin/sh\necho oops\nexit 3\n');
  dropJob(spool, 'writable', '#!/bin/sh\ntrue\n', 0o775);
  await d.waitLine(/event=rejected .*writable/);
  await waitFor('4 finished jobs', () => (d.stderr().match(/event=job-end/g) ?? []).length >= 4 && true, 20_000);

  // one slow job running at its gate, three more held by max 1
  const gate = path.join(dir, 'gate');
  const started = path.join(dir, 'started');
  dropJob(path.join(spool, 'slow'), 's0', gatedJob(started, gate));
  const runningId = (await waitFor('the slow job to start', () => fs.existsSync(started) && fs.readFileSync(started, 'utf8').trim(), 15_000));
  for (let i = 1; i <= 3; i++) dropJob(path.join(spool, 'slow'), `s${i}`, '#!/bin/sh\ntrue\n');
  await d.waitLine(/event=barrier-hold|event=job-start .*name=s0/);

  const s = await until('status to show the running job', async () => {
    const st = await ctlJson<Status>(t, ['status', spool]);
    return st.nodes[0]?.state === 'PROCESSING' && st.groups.find((g) => g.group === 'slow')?.queued === 3 ? st : null;
  });
  t.equal(s.spool, spool, 'spool');
  t.equal(s.nodes.length, 1, 'one node');
  const n = s.nodes[0]!;
  t.equal(n.node, node, 'the daemon\'s node id');
  t.equal(n.live, true, 'live');
  t.same(n.jobs, [runningId], 'its running job');
  t.equal(n.version, VERSION, 'version from its heartbeat');
  t.type(n.load, 'number', 'load');
  t.ok(n.heartbeat_age_ms !== null && n.heartbeat_age_ms < 30_000, 'a recent heartbeat');
  const g = Object.fromEntries(s.groups.map((x) => [x.group, x]));
  t.match(g.slow, { queued: 3, running: 1, retrying: 0, failed: 0, paused: false, settings: { max: 1, retries: 0 } }, 'group slow: 3 queued, 1 running, its limits');
  t.match(g.quick, { queued: 0, running: 0, done: 3 }, 'group quick: 3 done');
  t.match(g.default, { failed: 1 }, 'default: 1 failed');
  t.match(s.totals, { queued: 3, running: 1, retrying: 0, failed: 1, done: 3, rejected: 1, nodes: 1, live_nodes: 1 }, 'totals');

  const table = await ctl(t, ['status', spool]);
  t.equal(table.code, 0, 'status (table) exits 0');
  t.match(table.stdout, new RegExp(`${node.replace(/\./g, '\\.')}\\s+PROCESSING\\s+1`), 'node line: id, PROCESSING, 1 running');
  t.match(table.stdout, /slow\s+3\s+1\s+0\s+0\s+0\s+1/, 'group line: slow 3 queued, 1 running, max 1');
  t.notMatch(table.stdout, /\x1b\[/, 'no colours when stdout is not a terminal');

  const all = await jobs(t, spool);
  const by = (st: string): Job[] => all.filter((j) => j.state === st);
  t.same(all.map((j) => j.state), ['running', 'queued', 'queued', 'queued', 'failed', 'done', 'done', 'done', 'rejected'], 'default order: running, queued, failed, done, rejected');
  t.match(by('running')[0], { id: runningId, name: 's0', group: 'slow', node, attempt: 1 }, 'the running job');
  const q = by('queued');
  t.same(q.map((j) => j.name), ['s1', 's2', 's3'], 'queued jobs, in listing order');
  t.ok(q.every((j) => j.id === null && j.age_ms !== null && j.path === path.join(spool, 'slow', j.name)), 'queued: no id yet, an age, the file');
  t.ok(q.every((j, i) => j.eta_ms !== null && (i === 0 || j.eta_ms >= q[i - 1]!.eta_ms!)), `queued: ETAs, not decreasing (${q.map((j) => j.eta_ms).join(', ')})`);
  t.match(by('failed')[0], { name: 'fails', status: 'failed', exit_code: 3, info: 'exit 3', node }, 'the failed job, from its record');
  t.ok(String(by('failed')[0]!.path).startsWith(archive), 'its file is in the archive');
  t.equal(by('done').length, 3, 'three done');
  t.match(by('rejected')[0], { name: 'writable', info: /writable by users other than its owner/ }, 'the rejected file, with the reason');

  const limited = await ctlJson<{ total: number; jobs: Job[] }>(t, ['ls', spool, '--state', 'queued', '--group', 'slow', '--limit', '2']);
  t.equal(limited.total, 3, '--limit: total counts all matches');
  t.same(limited.jobs.map((j) => j.name), ['s1', 's2'], '--limit 2: the first two');
  const grep = await jobs(t, spool, '--grep', '^q[0-9]$');
  t.same(grep.map((j) => j.name).sort(), ['q0', 'q1', 'q2'], '--grep matches names');
  const sorted = await jobs(t, spool, '--state', 'queued,done', '--sort', 'name', '--reverse');
  t.same(sorted.map((j) => j.name), ['s3', 's2', 's1', 'q2', 'q1', 'q0'], '--state a,b --sort name --reverse');
  const lsTable = await ctl(t, ['ls', spool, '-n', '3']);
  t.match(lsTable.stdout, /^STATE\s+ID\s+GROUP\s+NAME\s+NODE\s+ATT\s+AGE\s+DURATION\s+ETA\s+INFO\n/, 'one table header for every state');
  t.match(lsTable.stdout, /… 6 more \(of 9; --limit 0 shows all\)\n$/, 'says how many more there are');

  const paused = await ctl(t, ['pause', spool, 'slow']);
  t.equal(paused.code, 0, 'pause slow');
  const s2 = await ctlJson<Status>(t, ['status', spool]);
  t.same(s2.paused_groups, ['slow'], 'status: paused_groups');
  t.equal(s2.groups.find((x) => x.group === 'slow')!.paused, true, 'the group is paused');
  const q2 = await jobs(t, spool, '--state', 'queued');
  t.ok(q2.every((j) => j.eta_ms === null && j.info === 'paused'), 'paused: no ETA, info says paused');
  const bad = await ctl(t, ['ls', spool, '--state', 'sleeping']);
  t.equal(bad.code, 2, 'an unknown state: exit 2');
  t.match(bad.stderr, /--state: 'sleeping' is not a state/, 'naming it');
  fs.writeFileSync(gate, '');
  // once s0 ends, the pause (not max) holds slow's queued jobs back: the
  // node logs it, its next heartbeat carries it, status shows it
  await d.waitLine(/event=barrier-hold barrier="paused slow"/, 10_000);
  const hb = path.join(spool, '.pmjq/nodes', node);
  await waitFor('a heartbeat that carries the hold', () => { try { return fs.readFileSync(hb, 'utf8').includes('paused slow'); } catch { return false; } }, 20_000);
  const s3 = await ctlJson<Status & { nodes: { holds: string[] }[] }>(t, ['status', spool]);
  t.same(s3.nodes[0]!.holds, ['paused slow: paused by pmjqctl'], 'status --json: the node\'s holds');
  const text = await ctl(t, ['status', spool]);
  t.match(text.stdout, `held back on ${node}: paused slow: paused by pmjqctl`, 'status: a line says what holds the node\'s jobs back');
});

t.test('nodes: live, STALE by heartbeat age (the filesystem\'s clock), STALE when the pid is gone on this host', async (t) => {
  const { spool } = scratch(t);
  const nodes = path.join(spool, '.pmjq/nodes');
  fs.mkdirSync(nodes, { recursive: true });
  const beat = (id: string, host: string, pid: number): string => {
    const f = path.join(nodes, id);
    fs.writeFileSync(f, JSON.stringify({ node: id, host, pid, version: '9.9.9', started: new Date().toISOString(), updated: new Date().toISOString(), groups: null, running: 0, queued: 0, load: 0.5, state: 'idle' }));
    return f;
  };
  const gone = spawn('true');
  const deadPid = await new Promise<number>((r) => gone.on('exit', () => r(gone.pid!)));
  const now = Math.floor(Date.now() / 1000);
  beat(`otherhost.1.${now}`, 'otherhost', 1);
  const old = beat(`farhost.2.${now - 3600}`, 'farhost', 2);
  const tenMinAgo = new Date(Date.now() - 600_000);
  fs.utimesSync(old, tenMinAgo, tenMinAgo);
  beat(`${HOST}.${deadPid}.${now}`, HOST, deadPid);

  const s = await ctlJson<Status>(t, ['status', spool]);
  const by = Object.fromEntries(s.nodes.map((n) => [n.node, n]));
  t.match(by[`otherhost.1.${now}`], { state: 'IDLE', live: true, version: '9.9.9', load: 0.5 }, 'a fresh heartbeat of another host: IDLE');
  t.match(by[`farhost.2.${now - 3600}`], { state: 'STALE', live: false, stale_reason: /no heartbeat for \d+s \(lease 60s\)/ }, '10 minutes old: STALE');
  t.match(by[`${HOST}.${deadPid}.${now}`], { state: 'STALE', live: false, stale_reason: `process ${deadPid} is gone` }, 'this host, pid gone: STALE at once');
  const lease = await ctlJson<Status>(t, ['status', spool, '--lease', '1h']);
  t.equal(lease.nodes.find((n) => n.node.startsWith('farhost'))!.state, 'IDLE', '--lease 1h: 10 minutes old is live');
  const table = await ctl(t, ['status', spool]);
  t.match(table.stdout, /nodes 1 live, 2 stale/, 'the header counts them');
});

t.test('status --watch redraws until interrupted; plain repeated output when not a terminal', async (t) => {
  const { spool } = scratch(t);
  const w = start(t, BIN.pmjqctl, ['status', spool, '--watch', '--interval', '200ms'], { env: { NO_COLOR: '1' } });
  await waitFor('three reports', () => (w.stdout().match(/^GROUP /gm) ?? []).length >= 3, 15_000);
  w.kill('SIGINT');
  t.equal(await w.exited, 0, 'exits 0 on SIGINT');
  t.notMatch(w.stdout(), /\x1b/, 'no escape sequences when stdout is not a terminal');
  const j = start(t, BIN.pmjqctl, ['status', spool, '--watch', '--interval', '200ms', '--json']);
  await waitFor('two JSON lines', () => j.stdout().split('\n').filter(Boolean).length >= 2, 15_000);
  j.kill('SIGINT');
  t.equal(await j.exited, 0, '--watch --json exits 0 on SIGINT');
  for (const line of j.stdout().split('\n').filter(Boolean)) t.ok(JSON.parse(line).totals, 'one JSON report per line');
});

t.test('an empty or unused spool', async (t) => {
  const { dir, spool } = scratch(t);
  const l = await ctl(t, ['ls', spool]);
  t.equal(l.code, 0, 'ls exits 0');
  t.equal(l.stdout, 'no jobs\n', 'says so');
  const s = await ctl(t, ['status', spool]);
  t.match(s.stdout, /no node: no pmjq serves this spool/, 'status: no node');
  t.match(s.stdout, /warning: no pmjq has used .* yet/, 'and no .pmjq yet');
  t.same(fs.readdirSync(spool), [], 'reading wrote nothing');
  const missing = await ctl(t, ['status', path.join(dir, 'nope')]);
  t.equal(missing.code, 2, 'a missing spool: exit 2');
  t.match(missing.stderr, /spool '.*nope' does not exist/, 'naming it');
});
