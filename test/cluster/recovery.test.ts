// Issue 5, recovery of dead nodes (pmjq(1) RUNNING A CLUSTER, pmjq(1) Recovery). kill -9 of nodes that
// run jobs: the live nodes recover their claimed jobs (one taker per dead
// node, log line `recovered`), kill what their jobs left running on this
// host, and run the jobs again (attempt 2): nothing lost, no orphan left.
// One dead node is "on another host" (its own UTS namespace, its own host
// name): it is found stale only when its lease runs out. The other is on
// this host: its pid is gone, so it is stale at once. And a pmjq restarted
// on the same spool picks up its dead predecessor's jobs at start-up.
//
// Jobs report each run in a file of its own (pid, node, attempt) and wait at
// a gate (flock) so that they are still running when their node is killed.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { archivedRaw, dropJob, history, readJson, waitFor } from '../helpers/helpers.js';
import {
  alive, cluster, eventLines, field, gate, lineTime, nodeProcesses, reportLines, requireUnshare, startNode, type Node,
} from '../helpers/cluster.js';

const LEASE = 2000;

/** A job that records its run (pid node attempt) in runs/NAME.PID, waits at the gate, then appends node and attempt to done/NAME. */
function gatedJob(runs: string, done: string, wait: string): string {
  return [
    '#!/bin/sh',
    `echo "$$ $PMJQ_NODE $PMJQ_ATTEMPT" > '${runs}'/"$PMJQ_JOB_NAME.$$"`,
    wait,
    `echo "$PMJQ_NODE $PMJQ_ATTEMPT $$" >> '${done}'/"$PMJQ_JOB_NAME"`,
    '',
  ].join('\n');
}

interface Run { name: string; pid: number; node: string; attempt: number }

function readRuns(runs: string): Run[] {
  return reportLines(runs).map(({ file, fields }) => ({
    name: file.slice(0, file.lastIndexOf('.')), pid: Number(fields[0]), node: fields[1]!, attempt: Number(fields[2]),
  }));
}

t.test('kill -9 of two nodes running jobs (one on another host, one here): the others recover and finish everything', async (t) => {
  requireUnshare();
  const c = cluster(t, 4);
  const runs = path.join(c.work, 'runs');
  const done = path.join(c.work, 'done');
  fs.mkdirSync(runs);
  fs.mkdirSync(done);
  const g = await gate(t, c.work);
  const args = ['--poll', '100ms', '--settle', '0', '--lease', `${LEASE}ms`, '-j', '2', '-o', c.archive];
  // far: another host (lease expiry); near: this host (pid gone); c, d: survivors
  const [far, near] = await Promise.all([startNode(t, c.mounts[0]!, args, { host: 'far-host' }), startNode(t, c.mounts[1]!, args)]);
  t.match(far.id, /^far-host\.\d+\.\d+$/, 'the first node runs under another host name');
  // the two doomed nodes take their jobs first, then the survivors start
  const JOBS = 12;
  for (let i = 0; i < JOBS; i++) dropJob(c.backing, `slow${String(i).padStart(2, '0')}`, gatedJob(runs, done, g.wait));
  const runningOn = (n: Node): Run[] => readRuns(runs).filter((r) => r.node === n.id);
  await waitFor('2 jobs running on each doomed node', () => runningOn(far).length === 2 && runningOn(near).length === 2, 20_000);
  const survivors = await Promise.all([startNode(t, c.mounts[2]!, args), startNode(t, c.mounts[3]!, args)]);
  await waitFor('2 jobs running on each survivor', () => survivors.every((n) => runningOn(n).length === 2), 20_000);

  const victims = [...runningOn(far), ...runningOn(near)];
  t.ok(victims.every((r) => alive(r.pid)), 'the doomed nodes\' 4 jobs are running');
  // when the far node last wrote its heartbeat (it may write once more before the kill: then later)
  const farBeat = Date.parse((JSON.parse(fs.readFileSync(path.join(c.backing, '.pmjq/nodes', far.id), 'utf8')) as { updated: string }).updated);
  const killedAt = Date.now();
  far.kill('SIGKILL');
  near.kill('SIGKILL');
  t.same(await Promise.all([far.exited, near.exited]), [137, 137], 'both nodes died of SIGKILL');
  t.ok(victims.every((r) => alive(r.pid)), 'their jobs outlived them (until a recoverer kills them)');

  const recoveredBy = async (dead: Node): Promise<{ by: Node; line: string }> => {
    const re = new RegExp(` event=recovered node=${dead.id.replace(/\./g, '\\.')} `);
    return waitFor(`a survivor to recover ${dead.id}`, () => {
      for (const s of survivors) {
        const line = s.stderr().split('\n').find((l) => re.test(l));
        if (line) return { by: s, line };
      }
      return null;
    }, 20_000);
  };
  const [rNear, rFar] = [await recoveredBy(near), await recoveredBy(far)];
  const nearMs = lineTime(rNear.line) - killedAt;
  const farMs = lineTime(rFar.line) - killedAt;
  t.comment(`recovery after kill -9: same-host node (pid gone) ${nearMs} ms, other-host node (lease ${LEASE} ms) ${farMs} ms`);
  for (const [dead, r] of [[near, rNear], [far, rFar]] as const) {
    t.equal(field(r.line, 'requeued'), '2', `${dead.id}: its 2 jobs requeued by ${r.by.id}`);
    t.ok(Number(field(r.line, 'killed')) >= 2, `${dead.id}: its leftover job processes killed (${field(r.line, 'killed')})`);
  }
  t.ok(lineTime(rFar.line) - farBeat >= LEASE, `the other-host node was not taken for dead before its lease ran out (${lineTime(rFar.line) - farBeat} ms after its last heartbeat)`);
  t.ok(farMs < LEASE + 5000, `the other-host node was recovered soon after its lease ran out (${farMs} ms)`);
  t.ok(nearMs < LEASE + 3000, `the same-host node was recovered promptly (${nearMs} ms)`);
  // one taker per dead node
  for (const dead of [far, near]) {
    const takers = survivors.flatMap((s) => eventLines(s.stderr(), 'recovered').filter((l) => field(l, 'node') === dead.id));
    t.equal(takers.length, 1, `exactly one survivor recovered ${dead.id}`);
  }
  // no orphan: by the pids the jobs recorded, and by environment
  await waitFor('the dead nodes\' job processes to be gone', () => victims.every((r) => !alive(r.pid)), 5_000);
  t.pass('every job process of the dead nodes is gone (by recorded pid)');
  // (a job's children are killed with it, and may outlive it by a moment)
  await waitFor('every process with the dead nodes\' PMJQ_NODE to be gone', () => [...nodeProcesses(far.id), ...nodeProcesses(near.id)].length === 0, 5_000);
  t.pass('no process with the dead nodes\' PMJQ_NODE is left');

  g.open();
  await waitFor(`all ${JOBS} jobs done`, () => fs.readdirSync(done).length === JOBS && archivedRaw(c.archive).length === JOBS, 60_000);
  const finished = reportLines(done);
  t.equal(finished.length, JOBS, 'each job completed exactly once (the killed runs never completed)');
  const victimNames = new Set(victims.map((r) => r.name));
  for (const f of finished) {
    if (victimNames.has(f.file)) {
      t.ok(survivors.some((s) => s.id === f.fields[0]) && f.fields[1] === '2', `${f.file}: run again on a survivor at attempt 2 (${f.fields.join(' ')})`);
    } else {
      t.equal(f.fields[1], '1', `${f.file}: ran once, at attempt 1`);
    }
  }
  const recs = archivedRaw(c.archive).map((a) => readJson(a.json));
  t.ok(recs.every((r) => r.status === 'done'), 'every archived record says done');
  t.same(recs.filter((r) => r.attempt === 2).map((r) => r.name).sort(), [...victimNames].sort(), 'the 4 recovered jobs are archived at attempt 2');
  const interrupted = history(c.backing).filter((r) => r.status === 'interrupted');
  t.same(interrupted.map((r) => r.name).sort(), [...victimNames].sort(), 'history has an interrupted record for each recovered job');

  for (const s of survivors) s.kill('SIGTERM');
  t.same(await Promise.all(survivors.map((s) => s.exited)), [0, 0], 'the survivors exit 0');
  t.same(fs.readdirSync(path.join(c.backing, '.pmjq/claimed')), [], 'no claimed area is left (the dead ones\' were taken over)');
  t.same(fs.readdirSync(path.join(c.backing, '.pmjq/nodes')), [], 'no heartbeat is left (the dead ones\' were removed by the recoverer)');
});

t.test('a pmjq restarted on the same host picks up its dead predecessor\'s job at start-up', async (t) => {
  const c = cluster(t, 1);
  const runs = path.join(c.work, 'runs');
  const done = path.join(c.work, 'done');
  fs.mkdirSync(runs);
  fs.mkdirSync(done);
  const g = await gate(t, c.work);
  const args = ['--poll', '100ms', '--settle', '0', '-o', c.archive];
  const first = await startNode(t, c.mounts[0]!, args);
  dropJob(c.backing, 'leftover', gatedJob(runs, done, g.wait));
  const [run1] = await waitFor('the job to run', () => { const r = readRuns(runs); return r.length ? r : null; }, 15_000);
  first.kill('SIGKILL');
  t.equal(await first.exited, 137, 'the first pmjq died of SIGKILL');
  t.ok(alive(run1!.pid), 'its job is still running, an orphan');

  const second = await startNode(t, c.mounts[0]!, args);
  const rec = await second.waitLine(/ event=recovered /, 10_000);
  t.equal(field(rec, 'node'), first.id, 'the new pmjq recovers the dead one');
  t.equal(field(rec, 'requeued'), '1', 'its job is requeued');
  t.ok(Number(field(rec, 'killed')) >= 1, 'the orphan is killed');
  // (its child, flock, is killed with it, and may outlive it by a moment)
  await waitFor('the orphan and its child to be gone', () => !alive(run1!.pid) && nodeProcesses(first.id).length === 0, 5_000);
  t.pass('no process of the dead pmjq\'s job is left');

  const start = await second.waitLine(/ event=job-start .*name=leftover /, 10_000);
  t.equal(field(start, 'attempt'), '2', 'the job starts again, at attempt 2');
  const log = second.stderr();
  t.ok(log.indexOf(rec) < log.indexOf(start), 'recovered at start-up, before it starts any job');
  g.open();
  await waitFor('the job to be done', () => archivedRaw(c.archive).length === 1, 15_000);
  t.same(fs.readFileSync(path.join(done, 'leftover'), 'utf8').trim().split(' ').slice(0, 2), [second.id, '2'], 'it completed once, on the new pmjq, at attempt 2');
  const rec2 = readJson(archivedRaw(c.archive)[0]!.json);
  t.match(rec2, { status: 'done', attempt: 2, node: second.id }, 'archived as done, attempt 2');
  const hist = history(c.backing).filter((r) => r.name === 'leftover').map((r) => `${r.status}/${r.attempt}`);
  t.same(hist.sort(), ['done/2', 'interrupted/1'], 'history: interrupted at attempt 1, done at attempt 2');
  second.kill('SIGTERM');
  t.equal(await second.exited, 0, 'the new pmjq exits 0');
});
