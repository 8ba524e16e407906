// What an idle node costs the file server (issue 14): a pmjq polling a
// spool on a FUSE mount (bindfs: as on NFS, no inotify across mounts) with
// 10 groups, and another with 60, each traced with `strace -f -y` over an
// idle window (calls on the mount only): at most 5 filesystem
// calls a second, whatever the number of groups. Then new jobs are still
// found: one submitted with pmjqctl into a long-idle group (the doorbell)
// and one dropped at the top level within --poll + settle, one moved by
// hand into a long-idle group within the idle pace (pmjq(1), PERFORMANCE).

import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { cluster, lineTime, startNode, type Node } from '../helpers/cluster.js';
import { BIN } from '../helpers/helpers.js';

const BUDGET_PER_S = 5;
/** groups found by the first scan start at the idle pace: a few polls for the first looks' re-reads (dirstamp.ts) */
const WARM_MS = 10_000;
const WINDOW_S = 30;
const POLL_S = 1;
const SETTLE_S = 2;
/** the idle cap with 10 groups (30 s), and its jitter (scan.ts) */
const IDLE_PACE_S = 30 * 1.2;

// the idle window alone is WARM_MS + WINDOW_S; then a job at the idle pace
t.setTimeout(240_000);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * `strace -f -y` attached to `pid` for `seconds`: the calls that name a
 * path under `mount` or a descriptor open on one (-y), by syscall. Calls on
 * /proc (the load average in the heartbeat), pipes and sockets never reach
 * the file server and are not counted.
 */
function straceCalls(t: { teardown(fn: () => unknown): void }, pid: number, seconds: number, out: string, mount: string): Promise<Map<string, number>> {
  const s = spawn('strace', ['-f', '-y', '-e', 'trace=%file,%desc', '-p', String(pid), '-o', out], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let err = '';
  s.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const exited = new Promise<number | null>((r) => s.on('exit', (c) => r(c)));
  t.teardown(() => { try { process.kill(-s.pid!, 'SIGKILL'); } catch { /* gone */ } });
  return (async () => {
    await sleep(seconds * 1000);
    process.kill(s.pid!, 'SIGINT'); // strace detaches
    await exited;
    const text = fs.readFileSync(out, 'utf8');
    if (!text.includes('(')) throw new Error(`strace traced nothing: ${err}`);
    const counts = new Map<string, number>();
    for (const line of text.split('\n')) {
      // "PID name(args…" or "PID <... name resumed>…": an unfinished call is counted at its start
      if (!line.includes(mount) || line.includes(' resumed>')) continue;
      const m = /^\d+\s+([a-z0-9_]+)\(/.exec(line);
      if (m) counts.set(m[1]!, (counts.get(m[1]!) ?? 0) + 1);
    }
    return counts;
  })();
}

function fsCalls(counts: Map<string, number>): { total: number; detail: string } {
  const all = [...counts].sort((a, b) => b[1] - a[1]);
  return { total: all.reduce((a, [, n]) => a + n, 0), detail: all.map(([n, c]) => `${n} ${c}`).join(', ') };
}

/** Seconds from `since` (ms) to the job-start of the job named `name` in the node's log. */
async function pickedUp(node: Node, name: string, since: number, timeoutS: number): Promise<number> {
  const line = await node.waitLine(new RegExp(` event=job-start .*name=${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} `), timeoutS * 1000);
  return (lineTime(line) - since) / 1000;
}

t.test(`an idle node costs the file server at most ${BUDGET_PER_S} calls a second, with 10 or 60 groups; new jobs are still found`, async (t) => {
  const sizes = [10, 60];
  const spools = sizes.map((n) => {
    const c = cluster(t, 2);
    for (let i = 0; i < n; i++) fs.mkdirSync(path.join(c.backing, `g${i}`));
    return { n, c };
  });
  // groups made just now are read once more when first looked at (their mtime is within a tick of now: dirstamp.ts); a spool's groups are older
  await sleep(2500);
  const nodes = await Promise.all(spools.map(({ c }) => startNode(t, c.mounts[0]!, ['--watch', 'poll', '--poll', `${POLL_S}s`, '--settle', `${SETTLE_S}s`, '-o', c.archive])));
  for (const n of nodes) t.match(n.stderr(), / watch=poll fs=fuse /, 'polling a FUSE mount');

  await sleep(WARM_MS); // idle groups back off: nothing to wait for but time
  const counts = await Promise.all(nodes.map((n, i) => straceCalls(t, n.pid, WINDOW_S, path.join(spools[i]!.c.dir, 'strace.txt'), spools[i]!.c.mounts[0]!)));
  for (const [i, { n }] of spools.entries()) {
    const { total, detail } = fsCalls(counts[i]!);
    const perS = total / WINDOW_S;
    t.comment(`${n} groups: ${total} filesystem calls in ${WINDOW_S} s = ${perS.toFixed(2)}/s (${detail}); load ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ')[0]}`);
    t.ok(perS <= BUDGET_PER_S, `${n} groups: ${perS.toFixed(2)} filesystem calls a second, at most ${BUDGET_PER_S}`);
  }

  // new work, from "another machine" (the second mount of the 10-group spool)
  const { c } = spools[0]!;
  const node = nodes[0]!;
  const other = c.mounts[1]!;
  const slack = 2; // a loaded test machine
  // first, with nothing rung lately: a job moved by hand into a long-idle group is found at the idle pace
  const t2 = Date.now();
  fs.writeFileSync(path.join(other, 'g3', '.hand.tmp'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  fs.renameSync(path.join(other, 'g3', '.hand.tmp'), path.join(other, 'g3', 'hand-job'));
  const s3 = await pickedUp(node, 'hand-job', t2, IDLE_PACE_S + POLL_S + SETTLE_S + slack + 10);
  t.comment(`a job moved by hand into a long-idle group: started after ${s3.toFixed(2)} s`);
  t.ok(s3 <= IDLE_PACE_S + POLL_S + SETTLE_S + slack, `a job moved by hand into a long-idle group: found within the idle pace (${s3.toFixed(2)} s)`);

  // pmjqctl rings the doorbell: found within --poll + settle
  const t0 = Date.now();
  const sub = JSON.parse(execFileSync(process.execPath, [BIN.pmjqctl, 'submit', other, '-g', 'g7', '--json', '--', 'true'], { encoding: 'utf8' })) as { name: string };
  const s1 = await pickedUp(node, sub.name, t0, POLL_S + SETTLE_S + slack + 10);
  t.comment(`pmjqctl submit into a long-idle group: started after ${s1.toFixed(2)} s`);
  t.ok(s1 <= POLL_S + SETTLE_S + slack, `pmjqctl submit into a long-idle group: found within --poll + settle (${s1.toFixed(2)} s)`);

  const t1 = Date.now();
  fs.writeFileSync(path.join(other, '.top.tmp'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  fs.renameSync(path.join(other, '.top.tmp'), path.join(other, 'top-job'));
  const s2 = await pickedUp(node, 'top-job', t1, POLL_S + SETTLE_S + slack + 10);
  t.ok(s2 <= POLL_S + SETTLE_S + slack, `a job dropped at the top level: found within --poll + settle (${s2.toFixed(2)} s)`);

  // a file dropped without its x bit, made executable later: a chmod changes no directory stamp,
  // so the name is looked at again by itself (g7 is busy since the submit: every poll)
  const plain = path.join(other, 'g7', 'late-x');
  fs.writeFileSync(plain, '#!/bin/sh\nexit 0\n', { mode: 0o644 });
  await sleep((2 * POLL_S + 2) * 1000); // seen, ignored, and its directory read again after its tick (dirstamp.ts)
  const t3 = Date.now();
  fs.chmodSync(plain, 0o755);
  const s4 = await pickedUp(node, 'late-x', t3, POLL_S + SETTLE_S + slack + 10);
  t.ok(s4 <= POLL_S + SETTLE_S + slack, `a file made executable after it was seen: found within --poll + settle in a busy group (${s4.toFixed(2)} s)`);

  for (const n of nodes) { n.kill('SIGTERM'); t.equal(await n.exited, 0, 'the node stops cleanly'); }
});
