// pmjqctl pause/resume and kill across nodes (issue 6): two daemons on one
// spool; the flags and kill requests in .pmjq/control reach both within a
// poll; a job is killed by whichever daemon runs it; a job waiting for a
// retry is killed by pmjqctl itself.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { dropJob, linesMatching, scratch, waitLines, type Proc } from '../helpers/helpers.js';
import { ctl, ctlJson, daemon, gatedJob, jobs, nodeOf, recordsOf, until, type Job } from '../helpers/ctl.js';

t.test('kill: each of two daemons kills the job it runs, on request from pmjqctl', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const gate = path.join(dir, 'gate'); // never opened: the jobs only end by being killed
  const a = daemon(t, spool, ['-j', '1', '-o', archive]);
  const b = daemon(t, spool, ['-j', '1', '-o', archive]);
  const [na, nb] = await Promise.all([nodeOf(a), nodeOf(b)]);
  for (const n of ['one', 'two']) dropJob(spool, n, gatedJob(path.join(dir, `started-${n}`), gate));
  const running = await until('both jobs running, one on each node', async () => {
    const r = await jobs(t, spool, '--state', 'running');
    return r.length === 2 && new Set(r.map((j) => j.node)).size === 2 ? r : null;
  });
  t.same(new Set(running.map((j) => j.node)), new Set([na, nb]), 'one job on each daemon');
  const onB = running.find((j) => j.node === nb)!;
  const onA = running.find((j) => j.node === na)!;

  const k = await ctl(t, ['kill', spool, onB.id!]);
  t.equal(k.code, 0, `kill exits 0 ${k.stderr}`);
  t.equal(k.stdout, `killed job ${onB.id} on node ${nb}\n`, 'reports the kill and the node');
  t.equal(linesMatching(b.stderr(), /event=job-kill /).length, 1, 'daemon B (which ran it) killed it');
  t.equal(linesMatching(a.stderr(), /event=job-kill /).length, 0, 'daemon A did nothing');
  const recs = recordsOf(spool, onB.id!);
  t.match(recs[recs.length - 1], { status: 'killed', node: nb }, 'its record: killed, by node B');
  t.notOk(fs.existsSync(path.join(spool, '.pmjq/control/kill', onB.id!)), 'the request was removed');
  t.same((await jobs(t, spool, '--state', 'running')).map((j) => j.id), [onA.id], 'the job on A runs on');

  const j = await ctlJson<{ jobs: { id: string; was: string; node: string; status: string; pending: boolean; record: { status: string } }[]; errors: unknown[] }>(t, ['kill', spool, onA.id!]);
  t.match(j, { jobs: [{ id: onA.id, was: 'running', node: na, status: 'killed', pending: false, record: { status: 'killed' } }], errors: [] }, 'kill --json: the job on A, killed by A');
  await waitLines(a, /event=job-kill /, 1);

  const again = await ctl(t, ['kill', spool, onA.id!, 'no.such.id']);
  t.equal(again.code, 1, 'ids that are not running: exit 1');
  const lines = again.stderr.trim().split('\n');
  t.equal(lines.length, 2, 'one line per id');
  t.match(lines[0], new RegExp(`^pmjqctl: kill: job '${onA.id!.replace(/\./g, '\\.')}' in '${spool}' is not running: it is killed \\(signal SIGTERM\\)`), 'a finished job: says so, with its status');
  t.equal(lines[1], `pmjqctl: kill: no job 'no.such.id' in '${spool}' (not running, not waiting for a retry, not in the history)`, 'an unknown id: named, with the spool');
});

/**
 * Wait until every daemon has read the pause flags as they are now: each
 * logs `paused` when it sees a flag appear. (A probe group's settings line
 * is not such an event: a new group's settings are read when inotify shows
 * the group, before the rescan that reads the flags — the race behind a
 * timeout in a loaded full run.)
 */
async function seenPaused(daemons: Proc[], groups: string): Promise<void> {
  await Promise.all(daemons.map((d) => d.waitLine(new RegExp(`event=paused groups=${groups} `), 15_000)));
}

t.test('pause/resume: both daemons stop and start claiming; a paused group is held, the others run', async (t) => {
  const { dir, spool, archive } = scratch(t);
  fs.mkdirSync(path.join(spool, 'g1'));
  fs.mkdirSync(path.join(spool, 'g2'));
  const a = daemon(t, spool, ['-o', archive]);
  const b = daemon(t, spool, ['-o', archive]);
  await Promise.all([nodeOf(a), nodeOf(b)]);

  const p = await ctl(t, ['pause', spool]);
  t.equal(p.code, 0, 'pause exits 0');
  t.equal(p.stdout, 'paused: all groups\n', 'says what is paused');
  await seenPaused([a, b], 'all');
  dropJob(spool, 'held', '#!/bin/sh\necho ran\n');
  // each daemon logs the hold once it has seen the job and the flag
  await Promise.all([a, b].map((d) => d.waitLine(/event=barrier-hold barrier="paused default" reason="paused by pmjqctl"/, 15_000)));
  t.same((await jobs(t, spool)).map((j) => `${j.state} ${j.name}`), ['queued held'], 'both daemons hold it: still queued');

  const r = await ctlJson<{ all: boolean; groups: string[] }>(t, ['resume', spool]);
  t.same(r, { all: false, groups: [] }, 'resume --json: nothing paused');
  await until('the held job to be done', async () => (await jobs(t, spool, '--state', 'done')).length === 1);

  const g = await ctl(t, ['pause', spool, 'g1']);
  t.equal(g.stdout, 'paused: g1\n', 'pause g1');
  t.ok(fs.existsSync(path.join(spool, '.pmjq/control/paused/g1')), 'as a flag file in .pmjq/control/paused');
  await seenPaused([a, b], 'g1');
  dropJob(path.join(spool, 'g1'), 'in-g1', '#!/bin/sh\ntrue\n');
  dropJob(path.join(spool, 'g2'), 'in-g2', '#!/bin/sh\ntrue\n');
  await until('g2\'s job done', async () => (await jobs(t, spool, '--state', 'done', '--group', 'g2')).length === 1);
  await Promise.all([a, b].map((d) => d.waitLine(/event=barrier-hold barrier="paused g1"/, 15_000)));
  t.same((await jobs(t, spool, '--state', 'queued')).map((j) => j.name), ['in-g1'], 'g1\'s job is held by both daemons');
  const st = await ctlJson<{ groups: { group: string; paused: boolean }[] }>(t, ['status', spool]);
  t.same(st.groups.filter((x) => x.paused).map((x) => x.group), ['g1'], 'status: g1 paused');

  const r1 = await ctl(t, ['resume', spool, 'g1']);
  t.equal(r1.stdout, 'nothing is paused\n', 'resume g1');
  await until('g1\'s job done', async () => (await jobs(t, spool, '--state', 'done', '--group', 'g1')).length === 1);
  t.pass('g1 runs again');
  const bad = await ctl(t, ['pause', spool, '.hidden']);
  t.equal(bad.code, 2, 'a hidden group name: usage error');
  void dir;
});

t.test('paused before it starts, a daemon claims nothing of a backlog', async (t) => {
  const { spool, archive } = scratch(t);
  t.equal((await ctl(t, ['pause', spool])).code, 0, 'paused');
  // enough for the first scan to give the event loop turns (it does every millisecond): nothing is claimed before it is over
  const N = 3000;
  for (let i = 0; i < N; i++) fs.writeFileSync(path.join(spool, `j${i}`), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  const d = daemon(t, spool, ['-o', archive]);
  const node = await nodeOf(d);
  await d.waitLine(/event=barrier-hold barrier="paused default"/, 30_000);
  // its first scan is over once its heartbeat counts them all
  const beat = path.join(spool, '.pmjq/nodes', node);
  await until('the heartbeat to count every job queued (or a job to start)', () => {
    if (linesMatching(d.stderr(), /event=job-start /).length > 0) return true;
    try { return (JSON.parse(fs.readFileSync(beat, 'utf8')) as { queued?: number }).queued === N; } catch { return false; }
  }, 30_000);
  t.same(linesMatching(d.stderr(), /event=job-start /), [], 'no job started');
  t.equal(fs.readdirSync(spool).filter((f) => !f.startsWith('.')).length, N, 'every job is still queued');
  const r = await ctl(t, ['resume', spool]);
  t.equal(r.code, 0, 'resumed');
  await d.waitLine(/event=job-start /, 15_000);
  t.pass('then they run');
});

t.test('kill a job waiting for its retry: taken at once, recorded killed, its file kept for retry', async (t) => {
  const { spool } = scratch(t);
  const d = daemon(t, spool, ['--retries', '3', '--backoff', '1h']);
  await nodeOf(d);
  dropJob(spool, 'flaky', '#!/bin/sh\necho try $PMJQ_ATTEMPT\nexit 1\n');
  const [w] = await until('the job waiting for its retry', async () => { const j = await jobs(t, spool, '--state', 'retrying'); return j.length ? j : null; });
  const k = await ctl(t, ['kill', spool, w!.id!]);
  t.equal(k.code, 0, `kill exits 0 ${k.stderr}`);
  t.match(k.stdout, new RegExp(`^killed job ${w!.id!.replace(/\./g, '\\.')} while it waited for attempt 2; its file is .*/\\.pmjq/done/\\d{8}T\\d{6}\\.\\d{3}Z-flaky\\n$`), 'says so and where the file is');
  t.same(fs.readdirSync(path.join(spool, '.pmjq/retry')), [], 'the retry entry is gone');
  const f = (await jobs(t, spool, '--state', 'failed')) as Job[];
  t.match(f, [{ id: w!.id, name: 'flaky', status: 'killed', info: /^killed: killed by pmjqctl while waiting for attempt 2/ }], 'ls: failed, status killed');
  t.ok(fs.existsSync(f[0]!.path!), 'its file is kept');
  const logs = await ctl(t, ['logs', spool, w!.id!]);
  t.equal(logs.stdout, 'try 1\n', 'its log too');
});

t.test('kill: a node that does not act in time leaves the request in place (exit 1); --no-wait only asks', async (t) => {
  const { spool } = scratch(t);
  // a node on another host, alive by its heartbeat, that never reads requests
  const node = `otherhost.1.${Math.floor(Date.now() / 1000)}`;
  const id = `otherhost.1.${Math.floor(Date.now() / 1000)}.123.0`;
  const jobDir = path.join(spool, '.pmjq/claimed', node, id);
  fs.mkdirSync(jobDir, { recursive: true });
  fs.mkdirSync(path.join(spool, '.pmjq/nodes'), { recursive: true });
  fs.writeFileSync(path.join(spool, '.pmjq/nodes', node), JSON.stringify({ node, host: 'otherhost', pid: 1, version: '0.1.0', state: 'processing', groups: null, running: 1, queued: 0, load: 0 }));
  fs.writeFileSync(path.join(jobDir, '.job.json'), JSON.stringify({ id, name: 'far', file: 'far', group: 'default', dir: '', owner: 0, created: new Date().toISOString(), claimed: new Date().toISOString(), node, attempt: 1, parent: null }));
  fs.writeFileSync(path.join(jobDir, 'far'), '#!/bin/sh\n', { mode: 0o755 });

  const k = await ctl(t, ['kill', spool, id, '--wait', '300ms']);
  t.equal(k.code, 1, 'still running after --wait: exit 1');
  t.equal(k.stderr, `pmjqctl: kill: job ${id} still runs on node ${node} 300ms after the kill request (is that node alive? see pmjqctl status); the request stays in ${path.join(spool, '.pmjq/control/kill', id)}\n`, 'one line saying so');
  t.ok(fs.existsSync(path.join(spool, '.pmjq/control/kill', id)), 'the request stays');
  const st = await ctlJson<{ kill_requests: string[] }>(t, ['status', spool]);
  t.same(st.kill_requests, [id], 'status lists the pending request');
  const [row] = await jobs(t, spool, '--state', 'running');
  t.match(row, { id, node, info: 'kill requested' }, 'ls: running, kill requested');

  const n = await ctl(t, ['kill', spool, id, '--no-wait']);
  t.equal(n.code, 0, '--no-wait: exit 0');
  t.equal(n.stdout, `kill requested: job ${id} runs on node ${node}\n`, 'says it asked');
});
