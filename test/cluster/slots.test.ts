// Issue 5, cluster-wide group limits (pmjq(1) Cluster-wide limits): `cluster_max: 2` in a
// group's .group.json caps its running jobs across all nodes, however many
// each node may run (-j 4 on 3 nodes). The overlap is computed from the
// jobs' own start/end stamps — what the jobs saw, not what pmjq says.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { archived, dropJob, waitFor } from '../helpers/helpers.js';
import { intervals, peakOverlap, stampJob } from '../helpers/sched.js';
import { cluster, eventLines, startNode } from '../helpers/cluster.js';

t.test('cluster_max: 2 holds across 3 nodes with -j 4 each; a group without it overlaps freely beside it', async (t) => {
  const c = cluster(t, 3);
  const lic = path.join(c.backing, 'lic');
  const free = path.join(c.backing, 'free');
  fs.mkdirSync(lic);
  fs.mkdirSync(free);
  fs.writeFileSync(path.join(lic, '.group.json'), '{"cluster_max": 2}\n');
  const nodes = await Promise.all(c.mounts.map((m) => startNode(t, m, ['--poll', '100ms', '--settle', '0', '-j', '4', '-o', c.archive])));
  // every node knows the limit before the first job arrives
  for (const n of nodes) await n.waitLine(/ event=settings group=lic .*cluster_max=2/, 15_000);

  const licStamps = path.join(c.work, 'lic.stamps');
  const freeStamps = path.join(c.work, 'free.stamps');
  const LIC = 12;
  const FREE = 6;
  for (let i = 0; i < LIC; i++) dropJob(lic, `l${String(i).padStart(2, '0')}`, stampJob(licStamps, 'sleep 0.4'));
  for (let i = 0; i < FREE; i++) dropJob(free, `f${i}`, stampJob(freeStamps, 'sleep 1.5'));
  await waitFor('every job archived', () => archived(c.archive).length === LIC + FREE, 60_000);

  const l = intervals(licStamps);
  const f = intervals(freeStamps);
  t.equal(l.length, LIC, 'every lic job stamped its start and end once');
  t.equal(f.length, FREE, 'every free job stamped its start and end once');
  const pl = peakOverlap(l);
  const pf = peakOverlap(f);
  const byNode = new Map<string, number>();
  for (const i of l) { const node = i.id.split('.').slice(0, 2).join('.'); byNode.set(node, (byNode.get(node) ?? 0) + 1); }
  t.comment(`peak overlap: lic (cluster_max 2) ${pl}, free ${pf}; lic jobs per node: ${[...byNode].map(([n, k]) => `${n} ${k}`).join(', ')}`);
  t.ok(pl <= 2, `lic never had more than 2 jobs running in the cluster (peak ${pl})`);
  t.equal(pl, 2, 'lic did use both slots');
  t.ok(byNode.size >= 2, `lic jobs ran on more than one node (${byNode.size})`);
  t.ok(pf > 2, `free, without cluster_max, overlapped beyond 2 (peak ${pf})`);

  // every slot was given back
  await waitFor('the slots to be freed', () => {
    try { return fs.readdirSync(path.join(c.backing, '.pmjq/slots/lic')).length === 0; } catch { return true; }
  }, 10_000);
  t.pass('no slot of lic is left taken, and no waiting marker');
  for (const n of nodes) t.same(eventLines(n.stderr(), 'slot-failed'), [], `${n.id}: no slot errors`);
  for (const n of nodes) n.kill('SIGTERM');
  t.same(await Promise.all(nodes.map((n) => n.exited)), [0, 0, 0], 'every node exits 0');
});
