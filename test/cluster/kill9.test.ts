// Issue 9, kill -9 at random moments (pmjq(5), pmjq(1) Recovery): 3 pmjq nodes, each
// on its own FUSE (bindfs) mount of one spool as on NFS, drain a few hundred
// short jobs while a node chosen at random is killed with SIGKILL after a
// random number of its own log events (claims, starts, ends: a random point
// of its work) and started again. Afterwards every job is archived exactly
// once as done — those that a kill interrupted are recorded `interrupted`
// and then done again (at-least-once for crashes, exactly-once otherwise) —
// nothing is left in any claimed area, and no job process survives.
//
// Each round prints its seed; PMJQ_SEED=N replays a run. CI size: 4 rounds ×
// 120 jobs (about 30 s a round on a loaded 2-core machine: tap gives a file 180 s); PMJQ_SOAK=1 (or PMJQ_TEST_ARGS=--soak): 20 rounds × 500 jobs.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { waitFor } from '../helpers/helpers.js';
import { cluster, eventLines, startNode, type Node } from '../helpers/cluster.js';
import { Ledger, SOAK, prng, seedFor } from '../helpers/invariants.js';

const ROUNDS = SOAK ? 20 : 4;
const JOBS = SOAK ? 500 : 120;
const NODES = 3;
/** a job interrupted this often by dead nodes is archived as failed (daemon.ts MAX_INTERRUPTIONS) */
const MAX_INTERRUPTIONS = 3;

type Rec = Record<string, unknown>;

const totals = { jobs: 0, kills: 0, interrupted: 0, reran: 0, ms: 0 };

for (let round = 1; round <= ROUNDS; round++) {
  t.test(`round ${round}/${ROUNDS}: ${JOBS} jobs on ${NODES} nodes, kill -9 at random moments`, async (t) => {
    const seed = seedFor(t, `kill -9 round ${round}`, round);
    const rnd = prng(seed);
    const t0 = Date.now();
    const c = cluster(t, NODES, 'pmjq-kill9-');
    const results = path.join(c.work, 'results');
    fs.mkdirSync(results);
    const l = new Ledger(t, { spool: c.backing, archive: c.archive, work: c.work, seenAs: c.mounts });
    const args = ['--poll', '100ms', '--settle', '0', '-j', '2', '-o', c.archive];
    const nodes: Node[] = await Promise.all(c.mounts.map((m) => startNode(t, m, args)));

    const sleeps = ['', '', 'sleep 0.05', 'sleep 0.1', 'sleep 0.2'];
    const names: string[] = [];
    for (let i = 0; i < JOBS; i++) {
      const name = `j${String(i).padStart(4, '0')}`;
      names.push(name);
      l.drop('', name, [
        '#!/bin/sh', l.recordPid, rnd.pick(sleeps),
        `echo "$PMJQ_JOB_ID $PMJQ_NODE $PMJQ_ATTEMPT" >> '${results}'/"$PMJQ_JOB_NAME"`, '',
      ].join('\n'), ['archive']);
    }
    const archivedCount = (): number => fs.readdirSync(c.archive).filter((f) => f.endsWith('.json')).length;

    // the kills: a random node, after a random number of its own events
    const plan = rnd.int(3, 6);
    let kills = 0;
    for (let k = 0; k < plan && archivedCount() < JOBS; k++) {
      const i = rnd.int(0, NODES - 1);
      const n = nodes[i]!;
      const events = (): number => eventLines(n.stderr(), 'job-start').length + eventLines(n.stderr(), 'job-end').length + eventLines(n.stderr(), 'recovered').length;
      const after = events() + rnd.int(1, 8);
      const busy = await waitFor(`node ${i} to log ${after} events`, () => events() >= after || archivedCount() >= JOBS, 60_000);
      if (!busy || archivedCount() >= JOBS) break;
      n.kill('SIGKILL');
      t.equal(await n.exited, 137, `kill ${k + 1}: node ${i} (${n.id}) died of SIGKILL after ${events()} events`);
      kills++;
      nodes[i] = await startNode(t, c.mounts[i]!, args);
    }

    const drained = await waitFor(`all ${JOBS} jobs archived`, () => archivedCount() >= JOBS
      && fs.readdirSync(c.backing).filter((f) => f !== '.pmjq').length === 0
      && fs.readdirSync(path.join(c.backing, '.pmjq/retry')).length === 0, 90_000).catch(() => false);
    if (!drained) {
      // (well within tap's limit for the file): say where the jobs are that did not finish
      const places = l.places();
      const stuck = [...places.at].filter(([, p]) => p.join() !== 'archive').map(([k, p]) => `${k.replace('\0', '/')}: ${p.join(',') || 'nowhere'}`);
      t.fail(`not drained in 90 s (seed ${seed}): ${JSON.stringify(stuck)}; .pmjq: ${JSON.stringify(tree(path.join(c.backing, '.pmjq')))}; problems: ${JSON.stringify(places.problems)}`);
      return;
    }
    const ms = await l.canary(20_000);
    await waitFor('the canary archived', () => archivedCount() >= JOBS + 1, 20_000);
    for (const n of nodes) n.kill('SIGTERM');
    t.same(await Promise.all(nodes.map((n) => n.exited)), nodes.map(() => 0), 'every live node exits 0 on SIGTERM');

    const hist = l.check(t, true);
    // every job: archived once, as done; before that only `interrupted` records
    const byName = new Map<string, Rec[]>();
    for (const h of hist) byName.set(String(h.name), [...(byName.get(String(h.name)) ?? []), h]);
    const archivedRecs = new Map<string, Rec>();
    for (const f of fs.readdirSync(c.archive).filter((x) => x.endsWith('.json'))) {
      const r = JSON.parse(fs.readFileSync(path.join(c.archive, f), 'utf8')) as Rec;
      archivedRecs.set(String(r.name), r);
    }
    const wrong: string[] = [];
    let interrupted = 0;
    let reran = 0;
    for (const name of names) {
      const recs = (byName.get(name) ?? []).sort((a, b) => Number(a.attempt) - Number(b.attempt));
      const ints = recs.filter((r) => r.status === 'interrupted');
      const finals = recs.filter((r) => r.status !== 'interrupted');
      const a = archivedRecs.get(name);
      interrupted += ints.length;
      const runs = fs.readFileSync(path.join(results, name), 'utf8').split('\n').filter(Boolean).length;
      if (runs > 1) reran++;
      if (finals.length !== 1) { wrong.push(`${name}: ${finals.length} final records (${recs.map((r) => `${String(r.status)}/${String(r.attempt)}`).join(' ')})`); continue; }
      const f = finals[0]!;
      // the engine's poison-job bound: interrupted by dead nodes MAX_INTERRUPTIONS times, archived as failed
      const poisoned = f.status === 'failed' && ints.length >= MAX_INTERRUPTIONS;
      if (f.status !== 'done' && !poisoned) wrong.push(`${name}: final status ${String(f.status)} after ${ints.length} interruptions`);
      if (Number(f.attempt) !== 1 + ints.length) wrong.push(`${name}: done at attempt ${String(f.attempt)} after ${ints.length} interruptions`);
      if (a?.id !== f.id || a?.status !== f.status) wrong.push(`${name}: the archived record is not its final history record`);
      // each run that was not interrupted before the job's end completed exactly once
      if (runs < 1 || runs > 1 + ints.length) wrong.push(`${name}: ran to its end ${runs} times with ${ints.length} interruptions`);
    }
    t.same(wrong, [], `every job archived once as done, after 0 or more interrupted attempts (${interrupted} interruptions)`);
    totals.jobs += JOBS;
    totals.kills += kills;
    totals.interrupted += interrupted;
    totals.reran += reran;
    totals.ms += Date.now() - t0;
    t.comment(`round ${round}: seed ${seed}, ${JOBS} jobs, ${kills} kills, ${interrupted} interrupted attempts, ${reran} jobs ran to their end twice, canary ${ms} ms, ${Date.now() - t0} ms`);
  });
}

t.teardown(() => {
  console.log(`# kill -9 totals: ${ROUNDS} rounds, ${totals.jobs} jobs, ${totals.kills} kills, ${totals.interrupted} interrupted attempts, ${totals.reran} reruns of completed work, ${(totals.ms / 1000).toFixed(1)} s${SOAK ? ' (soak)' : ''}`);
});

/** Every path under `dir` but the history, for a failure message. */
function tree(dir: string, rel = ''): string[] {
  let list: fs.Dirent[];
  try { list = fs.readdirSync(path.join(dir, rel), { withFileTypes: true }); } catch { return []; }
  return list.flatMap((e) => {
    const p = path.join(rel, e.name);
    if (p === 'history') return [];
    return e.isDirectory() ? [`${p}/`, ...tree(dir, p)] : [p];
  });
}
