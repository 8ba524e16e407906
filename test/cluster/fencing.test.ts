// Issue 5, self-fencing (pmjq(1) RUNNING A CLUSTER): a node that cannot renew its
// heartbeat for half the lease stops claiming and stops its running jobs, so
// that nothing it ran is still running when another node takes its work
// over. Fault injection: the node's heartbeat file is replaced by a
// directory, so renaming the new heartbeat onto it fails (EISDIR) while the
// rest of the spool stays writable. Once the directory is gone, the node
// renews its heartbeat and claims again.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { dropJob, history, waitFor } from '../helpers/helpers.js';
import { alive, cluster, eventLines, field, gate, lineTime, reportLines, startNode, type Node } from '../helpers/cluster.js';

const LEASE = 2000;

interface Run { name: string; pid: number; node: string; attempt: number }

function readRuns(runs: string): Run[] {
  return reportLines(runs).map(({ file, fields }) => ({
    name: file.slice(0, file.lastIndexOf('.')), pid: Number(fields[0]), node: fields[1]!, attempt: Number(fields[2]),
  }));
}

t.test('a node that cannot write its heartbeat fences itself: its jobs stop and run elsewhere; it comes back when it can', async (t) => {
  const c = cluster(t, 2);
  const runs = path.join(c.work, 'runs');
  const done = path.join(c.work, 'done');
  fs.mkdirSync(runs);
  fs.mkdirSync(done);
  const g = await gate(t, c.work);
  const job = (gated: boolean): string => [
    '#!/bin/sh',
    `echo "$$ $PMJQ_NODE $PMJQ_ATTEMPT" > '${runs}'/"$PMJQ_JOB_NAME.$$"`,
    gated ? g.wait : '',
    `echo "$PMJQ_NODE $PMJQ_ATTEMPT" >> '${done}'/"$PMJQ_JOB_NAME"`,
    '',
  ].join('\n');
  const args = ['--poll', '100ms', '--settle', '0', '--lease', `${LEASE}ms`, '-o', c.archive];
  const a = await startNode(t, c.mounts[0]!, [...args, '-j', '2']);
  dropJob(c.backing, 'gated0', job(true));
  dropJob(c.backing, 'gated1', job(true));
  const on = (n: Node): Run[] => readRuns(runs).filter((r) => r.node === n.id);
  await waitFor('both gated jobs running on the first node', () => on(a).length === 2, 20_000);
  const b = await startNode(t, c.mounts[1]!, [...args, '-j', '4']);
  const aRuns = on(a);

  // the fault: the heartbeat's path becomes a directory (the node writes it by temp-then-rename)
  const hb = path.join(c.backing, '.pmjq/nodes', a.id);
  // when the node last wrote its heartbeat (it may write once more before the fault: then later)
  let lastBeat = 0;
  await waitFor('the heartbeat replaced by a directory', () => {
    try {
      lastBeat = Date.parse((JSON.parse(fs.readFileSync(hb, 'utf8')) as { updated: string }).updated);
      fs.rmSync(hb, { force: true });
      fs.mkdirSync(hb);
      return true;
    } catch { return false; }
  }, 5_000);
  const brokenAt = Date.now();
  const fenced = await a.waitLine(/ event=fenced /, 15_000);
  const fencedMs = lineTime(fenced) - brokenAt;
  const silentMs = lineTime(fenced) - lastBeat;
  t.comment(`fenced ${fencedMs} ms after its heartbeat became unwritable, ${silentMs} ms after its last heartbeat (lease ${LEASE} ms)`);
  t.match(a.stderr(), /event=heartbeat-failed .*EISDIR/, 'the failed heartbeat is logged with its cause');
  t.ok(silentMs >= LEASE / 2, `it fenced itself once its heartbeat was half a lease old (${silentMs} ms), not before`);
  t.ok(fencedMs < LEASE, `and before the lease ran out, when others would take it for dead (${fencedMs} ms after the fault)`);
  t.equal(field(fenced, 'running'), '2', 'it was running its 2 jobs when it fenced itself');

  await waitFor('the fenced node\'s jobs to stop', () => aRuns.every((r) => !alive(r.pid)), 10_000);
  t.pass('the fenced node\'s job processes are gone (by the pids they recorded)');
  // the other node runs them again, at attempt 2
  const bStarts = await waitFor('the other node to run both jobs again', () => {
    const l = eventLines(b.stderr(), 'job-start').filter((x) => /name=gated[01] /.test(x));
    return l.length === 2 ? l : null;
  }, 20_000);
  t.same(bStarts.map((l) => field(l, 'attempt')), ['2', '2'], 'the other node runs them at attempt 2');
  t.same(history(c.backing).filter((r) => r.status === 'interrupted').map((r) => `${r.name}/${r.attempt}`).sort(), ['gated0/1', 'gated1/1'],
    'each was recorded as interrupted at attempt 1');

  // while fenced it claims nothing: new jobs go to the other node
  dropJob(c.backing, 'quick0', job(false));
  dropJob(c.backing, 'quick1', job(false));
  await waitFor('the quick jobs to run', () => fs.existsSync(path.join(done, 'quick0')) && fs.existsSync(path.join(done, 'quick1')), 20_000);
  const afterFence = a.stderr().slice(a.stderr().indexOf(fenced));
  t.same(eventLines(afterFence, 'job-start'), [], 'the fenced node started nothing');
  t.same(eventLines(a.stderr(), 'unfenced'), [], 'it is still fenced');
  t.equal(a.child.exitCode, null, 'it keeps running, waiting for its heartbeat to work again');

  fs.rmdirSync(hb);
  const unfenced = await a.waitLine(/ event=unfenced /, 15_000);
  t.ok(lineTime(unfenced) > lineTime(fenced), 'unfenced once its heartbeat could be written again');
  // a node that took it for dead a moment ago may be taking its claimed area:
  // it claims nothing for a while. The other node's slots filled (-j 4: two
  // gated jobs and two more), a job dropped now waits for the first node.
  const quiet = Number(field(unfenced, 'quiet_ms'));
  t.ok(quiet >= 2000, `it claims again only after a quiet period (${quiet} ms)`);
  for (const n of ['fill0', 'fill1']) dropJob(c.backing, n, `#!/bin/sh\n${g.wait}\n`);
  await waitFor('the other node full', () => eventLines(b.stderr(), 'job-start').filter((l) => / name=fill[01] /.test(l)).length === 2, 20_000);
  dropJob(c.backing, 'after-unfence', '#!/bin/sh\n');
  const late = await a.waitLine(/ event=job-start .*name=after-unfence /, 20_000);
  t.ok(lineTime(late) >= lineTime(unfenced) + quiet, `the node just unfenced claimed it after its quiet period (${lineTime(late) - lineTime(unfenced)} ms after unfencing)`);
  await waitFor('a heartbeat file again', () => fs.statSync(hb).isFile(), 10_000);

  g.open();
  await waitFor('the gated jobs to finish', () => fs.existsSync(path.join(done, 'gated0')) && fs.existsSync(path.join(done, 'gated1')), 20_000);
  const finished = reportLines(done);
  t.same(finished.map((f) => f.file).sort(), ['gated0', 'gated1', 'quick0', 'quick1'], 'every job completed exactly once');
  for (const f of finished) t.equal(f.fields[0], b.id, `${f.file} completed on the other node`);
  const bRecovered = eventLines(b.stderr(), 'recovered');
  t.comment(`the other node ${bRecovered.length ? `also took the fenced node's (emptied) claimed area over: ${bRecovered.join(' | ')}` : 'did not need to recover anything'}`);
  t.ok(bRecovered.every((l) => field(l, 'requeued') === '0'), 'nothing was left for a recoverer to requeue: the fenced node had put its jobs back');

  for (const n of [a, b]) n.kill('SIGTERM');
  t.same(await Promise.all([a.exited, b.exited]), [0, 0], 'both nodes exit 0');
});
