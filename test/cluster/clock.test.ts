// Issue 5, clocks (pmjq(1) RUNNING A CLUSTER): staleness is judged by the shared
// filesystem's clock, never by a node's own. Two nodes whose clocks are an
// hour apart (test hook PMJQ_TEST_CLOCK_SKEW_MS on one) and a lease of 2 s
// run jobs side by side for more than four lease periods: neither takes the
// other for dead, and both keep working.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { archived, dropJob, waitFor } from '../helpers/helpers.js';
import { cluster, eventLines, field, gate, lineTime, startNode } from '../helpers/cluster.js';

const LEASE = 2000;
const SKEW = 3_600_000;

t.test('two nodes with clocks an hour apart and a 2 s lease do not declare each other stale', async (t) => {
  const c = cluster(t, 2);
  const args = ['--poll', '100ms', '--settle', '0', '--lease', `${LEASE}ms`, '-j', '2', '-o', c.archive];
  const fast = await startNode(t, c.mounts[0]!, args, { env: { PMJQ_TEST_CLOCK_SKEW_MS: String(SKEW) } });
  const plain = await startNode(t, c.mounts[1]!, args);
  // the hook works: the skewed node's id carries its (wrong) start time
  const started = (id: string): number => Number(id.split('.').pop()) * 1000;
  t.ok(Math.abs(started(fast.id) - started(plain.id) - SKEW) < 60_000, `the first node's clock is an hour ahead (${fast.id} vs ${plain.id})`);

  // 4 job slots, 32 jobs of 1 s: at least 8 s (4 leases) of work, whatever the machine's speed
  const JOBS = 32;
  const ran = path.join(c.work, 'ran');
  fs.mkdirSync(ran);
  const t0 = Date.now();
  for (let i = 0; i < JOBS; i++) {
    dropJob(c.backing, `tick${String(i).padStart(2, '0')}`, `#!/bin/sh\nsleep 1\necho "$PMJQ_NODE $PMJQ_ATTEMPT" >> '${ran}'/"$PMJQ_JOB_NAME"\n`);
  }
  await waitFor(`all ${JOBS} jobs archived`, () => archived(c.archive).length === JOBS, 90_000);
  const elapsed = Date.now() - t0;
  t.comment(`${JOBS} jobs of 1 s in ${elapsed} ms (${(elapsed / LEASE).toFixed(1)} lease periods)`);
  t.ok(elapsed >= 4 * LEASE, 'the nodes ran side by side for more than 4 lease periods');

  for (const n of [fast, plain]) {
    for (const ev of ['recovered', 'fenced', 'job-lost-to-recovery', 'heartbeat-failed', 'claim-failed']) {
      t.same(eventLines(n.stderr(), ev), [], `${n.id === fast.id ? 'skewed' : 'plain'} node: no ${ev}`);
    }
  }
  const runs = fs.readdirSync(ran).map((f) => ({ name: f, lines: fs.readFileSync(path.join(ran, f), 'utf8').trim().split('\n') }));
  t.equal(runs.length, JOBS, 'every job ran');
  t.ok(runs.every((r) => r.lines.length === 1 && r.lines[0]!.endsWith(' 1')), 'each exactly once, at attempt 1');
  const share = (id: string): number => runs.filter((r) => r.lines[0]!.startsWith(`${id} `)).length;
  t.comment(`jobs run: skewed node ${share(fast.id)}, plain node ${share(plain.id)}`);
  t.ok(share(fast.id) >= JOBS / 4 && share(plain.id) >= JOBS / 4, 'both nodes kept running jobs (at least a quarter each)');
  // and both were still starting jobs in the last lease period of the run
  const lastStart = (n: typeof fast): number => Math.max(...eventLines(n.stderr(), 'job-start').map(lineTime));
  for (const n of [fast, plain]) {
    t.ok(lastStart(n) >= t0 + elapsed - 3 * LEASE, `${n.id === fast.id ? 'skewed' : 'plain'} node started jobs until the end`);
  }
  for (const n of [fast, plain]) t.ok(fs.existsSync(path.join(c.backing, '.pmjq/nodes', n.id)), `${n.id}'s heartbeat is in place`);
  for (const n of [fast, plain]) n.kill('SIGTERM');
  t.same(await Promise.all([fast.exited, plain.exited]), [0, 0], 'both nodes exit 0');
});

t.test('a job put back by a node whose clock is an hour ahead runs at once on a node whose clock is right', async (t) => {
  const c = cluster(t, 2);
  const g = await gate(t, c.work);
  const args = ['--poll', '100ms', '--settle', '0', '--lease', `${LEASE}ms`, '--grace', '0', '-j', '1', '-o', c.archive];
  const fast = await startNode(t, c.mounts[0]!, args, { env: { PMJQ_TEST_CLOCK_SKEW_MS: String(SKEW) } });
  const ran = path.join(c.work, 'ran');
  fs.mkdirSync(ran);
  dropJob(c.backing, 'longjob', `#!/bin/sh\necho "$PMJQ_NODE $PMJQ_ATTEMPT" >> '${ran}/started'\n${g.wait}\necho "$PMJQ_NODE $PMJQ_ATTEMPT" >> '${ran}/done'\n`);
  await fast.waitLine(/ event=job-start .*name=longjob /, 15_000);
  const plain = await startNode(t, c.mounts[1]!, args);
  // the fast node stops: its running job is interrupted and put back, due "now" by its clock
  fast.kill('SIGTERM');
  t.equal(await fast.exited, 0, 'the node whose clock is ahead stops (exit 0)');
  t.match(fast.stderr(), /event=job-requeued .*name=longjob .*reason=interrupted/, 'it put its running job back');
  const start = await plain.waitLine(/ event=job-start .*name=longjob /, 20_000);
  t.equal(field(start, 'attempt'), '2', 'the node whose clock is right runs it at once, at attempt 2');
  g.open();
  await waitFor('the job to be archived', () => archived(c.archive).length === 1, 20_000);
  t.equal(fs.readFileSync(path.join(ran, 'done'), 'utf8'), `${plain.id} 2\n`, 'it completed once, on that node');
  plain.kill('SIGTERM');
  t.equal(await plain.exited, 0, 'that node exits 0');
});
