// Issue 5, a cluster draining a spool (pmjq(5) "Claim", pmjq(1) RUNNING A CLUSTER, README Performance "Cluster"):
// 4 real pmjq nodes, each on its own FUSE mount of one directory (no inotify
// event crosses mounts, as on NFS: they poll), drain 2 000 jobs with zero
// duplicates and zero losses, each node taking a fair share. Every job
// appends its id and node to a file of its own, so a job that ran twice has
// two lines and a lost job has no file.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { archived, dropJob, history, waitFor } from '../helpers/helpers.js';
import { cluster, eventLines, startNode } from '../helpers/cluster.js';

const NODES = 4;
const JOBS = 2000;

// 2 000 jobs through 4 nodes on 2 cores take 40–60 s on a quiet machine, but
// 150 s when the machine runs other test suites at a load of 20: this file's
// bound is larger than the suite's default 180 s
t.setTimeout(330_000);

t.test(`${NODES} nodes on FUSE mounts drain ${JOBS} jobs: no duplicate, no loss, fair shares`, async (t) => {
  const c = cluster(t, NODES);
  const results = path.join(c.work, 'results');
  fs.mkdirSync(results);
  // the jobs are written beforehand into a hidden directory (never scanned),
  // which becomes the group "batch" with one rename once every node is up:
  // all 2 000 appear at once, to every node alike
  const staging = path.join(c.backing, '.staging');
  fs.mkdirSync(staging);
  const body = `#!/bin/sh\necho "$PMJQ_JOB_ID $PMJQ_NODE $PMJQ_ATTEMPT" >> '${results}'/"$PMJQ_JOB_NAME"\n`;
  for (let i = 0; i < JOBS; i++) dropJob(staging, `j${String(i).padStart(4, '0')}`, body);
  const nodes = await Promise.all(c.mounts.map((m) => startNode(t, m, ['--poll', '100ms', '--settle', '0', '-o', c.archive])));
  for (const n of nodes) {
    t.match(eventLines(n.stderr(), 'start')[0], / watch=poll fs=fuse /, `${n.id} detected the FUSE mount and polls`);
  }
  t.same(eventLines(nodes.map((n) => n.stderr()).join('\n'), 'job-start'), [], 'nothing ran before the batch appeared');

  const t0 = Date.now();
  fs.renameSync(staging, path.join(c.backing, 'batch'));

  await waitFor(`${JOBS} jobs to have run`, () => fs.readdirSync(results).length >= JOBS, 270_000);
  const ranMs = Date.now() - t0;
  await waitFor(`${JOBS} jobs to be archived`, () => archived(c.archive).length >= JOBS, 30_000);
  const archivedMs = Date.now() - t0;

  // stop every node cleanly: each must exit 0 and leave nothing claimed
  for (const n of nodes) n.kill('SIGTERM');
  const codes = await Promise.all(nodes.map((n) => n.exited));
  t.same(codes, nodes.map(() => 0), 'every node exits 0 on SIGTERM');

  // duplicates and losses, from what the jobs themselves wrote
  const runs = new Map<string, string[]>();
  for (const f of fs.readdirSync(results)) runs.set(f, fs.readFileSync(path.join(results, f), 'utf8').split('\n').filter(Boolean));
  const missing = [];
  for (let i = 0; i < JOBS; i++) { const n = `j${String(i).padStart(4, '0')}`; if (!runs.has(n)) missing.push(n); }
  const dups = [...runs].filter(([, l]) => l.length !== 1);
  t.same(missing, [], 'no job lost: every job ran');
  t.same(dups.map(([n, l]) => `${n}: ${l.join(' | ')}`), [], 'no job ran twice');
  const ids = [...runs.values()].flat().map((l) => l.split(' ')[0]);
  t.equal(new Set(ids).size, JOBS, 'every run has its own job id');
  t.ok([...runs.values()].flat().every((l) => l.split(' ')[2] === '1'), 'every job ran at its first attempt');

  // the spool's own account agrees
  const arch = archived(c.archive);
  t.equal(arch.length, JOBS, `${JOBS} job files archived`);
  t.equal(new Set(arch.map((a) => a.name)).size, JOBS, 'each job archived once');
  const recs = history(c.backing);
  t.equal(recs.length, JOBS, `${JOBS} history records`);
  t.ok(recs.every((r) => r.status === 'done'), 'every record says done');
  t.same(fs.readdirSync(c.backing).filter((f) => f !== '.pmjq' && f !== 'batch'), [], 'nothing else appeared in the spool');
  t.same(fs.readdirSync(path.join(c.backing, 'batch')), [], 'nothing left queued');
  t.same(fs.readdirSync(path.join(c.backing, '.pmjq/claimed')), [], 'nothing left claimed (each node removed its area)');
  t.same(fs.readdirSync(path.join(c.backing, '.pmjq/retry')), [], 'nothing waiting for a retry');
  t.same(fs.readdirSync(path.join(c.backing, '.pmjq/nodes')), [], 'every heartbeat removed');
  for (const n of nodes) t.same(eventLines(n.stderr(), 'recovered'), [], `${n.id} recovered nobody (nobody died)`);

  // fair shares: each node ran at least 10 % (4 nodes on a 2-core machine)
  const share = new Map<string, number>(nodes.map((n) => [n.id, 0]));
  for (const l of [...runs.values()].flat()) { const node = l.split(' ')[1]!; share.set(node, (share.get(node) ?? 0) + 1); }
  t.comment(`${JOBS} jobs on ${NODES} nodes: all run after ${ranMs} ms, archived after ${archivedMs} ms: ${(JOBS / (archivedMs / 1000)).toFixed(1)} jobs/s`);
  t.comment(`shares: ${[...share].map(([n, k]) => `${n} ${k} (${(100 * k / JOBS).toFixed(1)} %)`).join(', ')}`);
  t.equal(share.size, NODES, 'only the 4 nodes ran jobs');
  for (const [n, k] of share) t.ok(k >= JOBS * 0.1, `${n} ran at least 10 % of the jobs (${k})`);
});
