// Issue 13: a node whose shared filesystem hangs stops its jobs before other
// nodes run them again. A hard NFS mount whose server is gone blocks every
// call on it, and pmjq's main thread with it; the fencing watchdog, a thread
// of its own, stops the node's jobs half a lease after its last heartbeat
// (SIGTERM, SIGKILL after --kill-grace) all the same.
//
// The hung mount: two bindfs mounts of one directory, each node in its own
// PID and UTS namespace (so that neither can see or signal the other's
// processes, as on two hosts); the bindfs serving node A's mount is stopped
// with SIGSTOP. A's job execs a worker outside the mount that ticks into a
// file outside the mount and ignores SIGTERM. Also: an event loop blocked for
// longer than the lease (test hook PMJQ_TEST_BLOCK_MS), and pmjqctl on a hung
// mount (--fs-timeout).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { BIN, ROOT_ARGS, history, processesWithEnv, run, scratch, start, waitFor } from '../helpers/helpers.js';
import { alive, cluster, eventLines, field, lineTime, nodeProcesses, requireUnshare, startNode } from '../helpers/cluster.js';
import { Ledger } from '../helpers/invariants.js';

const LEASE = 4000;
const KILL_GRACE = 1000;
/** how late the watchdog's signals may come on a loaded test machine (thread wake-ups) */
const SLACK = 700;

interface Tick { ms: number; node: string; attempt: number }

/** WORK/ticker.sh: ticks "MS NODE ATTEMPT" into WORK/ticks every 200 ms until WORK/stop exists; deaf to SIGTERM. */
function writeTicker(work: string): string {
  const file = path.join(work, 'ticker.sh');
  fs.writeFileSync(file, [
    '#!/bin/sh',
    "trap '' TERM",
    'cd /',
    `while [ ! -e '${work}/stop' ]; do`,
    `  echo "$(date +%s%3N) $PMJQ_NODE $PMJQ_ATTEMPT" >> '${work}/ticks'`,
    '  sleep 0.2',
    'done',
    '',
  ].join('\n'), { mode: 0o755 });
  return file;
}

function readProc(file: string): string {
  try { return fs.readFileSync(file, 'utf8'); } catch { return ''; }
}

function ticks(work: string): Tick[] {
  let text = '';
  try { text = fs.readFileSync(path.join(work, 'ticks'), 'utf8'); } catch { return []; }
  return text.split('\n').filter(Boolean).map((l) => {
    const [ms, node, attempt] = l.split(' ');
    return { ms: Number(ms), node: node!, attempt: Number(attempt) };
  });
}

t.test('a node whose spool mount hangs has stopped its job before another node runs it again', async (t) => {
  requireUnshare();
  const c = cluster(t, 2, 'pmjq-hung-', { servers: true });
  const ledger = new Ledger(t, { spool: c.backing, archive: c.archive, work: c.work, seenAs: c.mounts });
  const ticker = writeTicker(c.work);
  const args = ['--poll', '100ms', '--settle', '0', '--lease', `${LEASE}ms`, '--kill-grace', `${KILL_GRACE}ms`, '-j', '2', '-o', c.archive];
  const a = await startNode(t, c.mounts[0]!, args, { host: 'hung-a', pidns: true });
  // the job's own file is on the mount; what runs is outside it, its output too
  ledger.drop('', 'ticker', `#!/bin/sh\nexec '${ticker}' </dev/null >/dev/null 2>&1\n`, 'archive');
  await a.waitLine(/ event=job-start .*name=ticker /, 20_000);
  const b = await startNode(t, c.mounts[1]!, args, { host: 'hung-b', pidns: true });
  await waitFor('node A\'s job to tick', () => ticks(c.work).filter((k) => k.node === a.id).length >= 2, 15_000);
  const aJob = nodeProcesses(a.id);
  t.ok(aJob.length > 0, `node A's job runs (pids here: ${aJob.join(' ')})`);

  // the fault: every call on A's mount blocks from now on
  const frozenAt = Date.now();
  process.kill(c.servers[0]!, 'SIGSTOP');
  const goneAt = await waitFor('node A\'s job to be gone', () => (aJob.every((p) => !alive(p)) && nodeProcesses(a.id).length === 0 ? Date.now() : 0), 15_000);
  const fencingMs = goneAt - frozenAt;
  t.ok(fencingMs <= LEASE / 2 + KILL_GRACE + SLACK, `A's job was gone ${fencingMs} ms after the freeze: within half the lease + the kill grace (${LEASE / 2} + ${KILL_GRACE} ms, + ${SLACK} ms of slack)`);
  // the watchdog's thread logs while the main thread is stuck
  const fenced = await a.waitLine(/ event=fenced /, 5_000);
  t.equal(field(fenced, 'running'), '1', 'A\'s watchdog stopped its one job');
  t.equal(field(fenced, 'sigkilled'), '1', 'with SIGKILL, the job being deaf to SIGTERM');
  t.same(eventLines(a.stderr(), 'unfenced'), [], 'A is still stuck');

  const bStart = await b.waitLine(/ event=job-start .*name=ticker .*attempt=2 /, 20_000);
  const bStartAt = lineTime(bStart);
  await waitFor('node B\'s attempt to tick', () => ticks(c.work).some((k) => k.node === b.id), 10_000);
  const all = ticks(c.work);
  const lastA = Math.max(...all.filter((k) => k.node === a.id).map((k) => k.ms));
  const firstB = Math.min(...all.filter((k) => k.node === b.id).map((k) => k.ms));
  const overlapMs = Math.max(0, lastA - firstB);
  t.comment(`freeze → A's job gone: ${fencingMs} ms; freeze → B's start: ${bStartAt - frozenAt} ms; A's last tick → B's first: ${firstB - lastA} ms; overlap: ${overlapMs} ms (lease ${LEASE} ms, kill grace ${KILL_GRACE} ms)`);
  t.equal(overlapMs, 0, 'the two attempts\' ticks never overlap in time');
  t.ok(goneAt <= bStartAt, `A's job was gone (${goneAt - frozenAt} ms) before B started it (${bStartAt - frozenAt} ms)`);
  t.ok(all.filter((k) => k.node === a.id).every((k) => k.attempt === 1) && all.filter((k) => k.node === b.id).every((k) => k.attempt === 2), 'A ran attempt 1, B attempt 2');

  // the mount answers again: A knows it was fenced, and that the job is B's now
  process.kill(c.servers[0]!, 'SIGCONT');
  await a.waitLine(/ event=unfenced /, 20_000);
  const left = await a.waitLine(/ event=jobs-left-to-recovery /, 20_000);
  t.same([field(left, 'jobs'), field(left, 'taken_over'), field(left, 'requeued')], ['1', '1', '0'], 'A says its job was taken over by the node that recovered it');
  t.match(a.stderr(), / event=job-lost-to-recovery .*name=ticker /, 'and which job');

  fs.writeFileSync(path.join(c.work, 'stop'), '');
  await b.waitLine(/ event=job-end .*name=ticker .*status=done /, 20_000);
  const recs = history(c.backing).filter((r) => r.name === 'ticker');
  t.same(recs.map((r) => `${String(r.attempt)} ${String(r.status)}`).sort(), ['1 interrupted', '2 done'], 'history: attempt 1 interrupted (by the recovery), attempt 2 done');
  t.notOk(recs.some((r) => r.node === a.id), 'A recorded nothing of the attempt it lost');
  t.same(eventLines(a.stderr(), 'job-end'), [], 'and archived nothing');

  // A claims again: with B gone, a fresh job runs on A
  b.kill('SIGTERM');
  t.equal(await b.exited, 0, 'B exits 0');
  await ledger.canary(20_000);
  // its log line is on its way through a pipe: wait for it, do not look once
  t.match(await a.waitLine(/ event=job-start .*name=canary-1 /, 10_000), /name=canary-1/, 'A claims and runs jobs again');
  a.kill('SIGTERM');
  t.equal(await a.exited, 0, 'A exits 0');
  ledger.check(t, true);
});

// Blocked once it heard the job started (and watches it), or once it asked the
// job helper for it: then the job runs before the main thread hears of it, and
// the watchdog finds it among the helper's children.
for (const at of ['started', 'requested'] as const) t.test(`a node whose event loop is blocked for longer than the lease (${at === 'started' ? 'a job running' : 'a job just asked of the helper'}) has its jobs stopped by the watchdog`, async (t) => {
  const { dir, spool, archive } = scratch(t, 'pmjq-stall-');
  const work = path.join(dir, 'work');
  const ledger = new Ledger(t, { spool, archive, work });
  const BLOCK = 7000;
  const KG = 500;
  ledger.drop('', 'stalled', [
    '#!/bin/sh',
    ledger.recordPid,
    '[ "$PMJQ_ATTEMPT" = 1 ] || exit 0',
    "trap '' TERM",
    'while :; do sleep 0.2; done',
    '',
  ].join('\n'), 'archive');
  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '--once', '--poll', '100ms', '--lease', `${LEASE}ms`, '--kill-grace', `${KG}ms`, '-o', archive, spool], {
    env: { PMJQ_TEST_BLOCK_MS: String(BLOCK), PMJQ_TEST_BLOCK_AT: at },
  });
  // the daemon blocks its main thread right after it logs the start, or before (then the job's own record is the sign)
  const startedAt = at === 'started'
    ? lineTime(await p.waitLine(/ event=job-start .*attempt=1 /, 15_000))
    : await waitFor('the job to run', () => (fs.readdirSync(ledger.pids).length > 0 ? Date.now() : 0), 15_000);
  const pid = Number(await waitFor('its pid', () => fs.readdirSync(ledger.pids)[0]));
  const goneAt = await waitFor('the job to be gone', () => (!alive(pid) && processesWithEnv('PMJQ_SPOOL', spool).length === 0 ? Date.now() : 0), 15_000);
  const stopMs = goneAt - startedAt;
  t.comment(`job stopped ${stopMs} ms after it started, the daemon's event loop blocked for ${BLOCK} ms from then (lease ${LEASE} ms, kill grace ${KG} ms)`);
  t.ok(stopMs <= LEASE / 2 + KG + SLACK, `within half the lease + the kill grace (+ ${SLACK} ms of slack)`);
  t.ok(stopMs < BLOCK - 1000, 'while the event loop was still blocked');
  t.same(eventLines(p.stderr(), 'unfenced'), [], 'the daemon had not come back yet');

  t.equal(await p.exited, 0, 'pmjq --once exits 0: the job ran again, and succeeded');
  const log = p.stderr();
  const fenced = eventLines(log, 'fenced');
  t.equal(fenced.length, 1, 'fenced once');
  t.same([field(fenced[0]!, 'running'), field(fenced[0]!, 'sigkilled')], ['1', '1'], 'one job stopped, with SIGKILL');
  t.equal(eventLines(log, 'unfenced').length, 1, 'unfenced once the event loop ran again');
  const left = eventLines(log, 'jobs-left-to-recovery');
  t.same(left.map((l) => [field(l, 'taken_over'), field(l, 'requeued')]), [['0', '1']], 'no other node had taken it: put back to run again');
  t.same(history(spool).map((r) => `${String(r.attempt)} ${String(r.status)}`).sort(), ['1 interrupted', '2 done'], 'history: attempt 1 interrupted, attempt 2 done');
  ledger.check(t, true);
});

t.test('a --kill-grace too long for the --lease is refused: the jobs of a fenced node could outlive its lease', async (t) => {
  const { spool } = scratch(t, 'pmjq-lease-');
  const r = await run(t, BIN.pmjq, [...ROOT_ARGS, '--once', '--lease', '4s', '--kill-grace', '2s', spool]);
  t.equal(r.code, 2, 'exit 2');
  const lines = r.stderr.split('\n').filter(Boolean);
  t.match(lines[0], /^pmjq: --kill-grace 2s is too long for --lease 4s: .*use --kill-grace 1600ms or less, or --lease 5s or more$/, 'one line saying what to use instead');
  t.equal(lines.length, 2, 'and the usual pointer to --help');
  for (const ok of [['--lease', '4s', '--kill-grace', '1600ms'], ['--lease', '2s']]) {
    t.equal((await run(t, BIN.pmjq, [...ROOT_ARGS, '--once', ...ok, spool])).code, 0, `${ok.join(' ')}: accepted (a default kill grace shrinks to fit)`);
  }
});

t.test('pmjqctl on a hung mount gives up after --fs-timeout: exit 3, one line naming the spool', async (t) => {
  const c = cluster(t, 1, 'pmjq-ctl-hung-', { servers: true });
  const spool = c.mounts[0]!;
  t.equal((await run(t, BIN.pmjqctl, ['status', spool])).code, 0, 'status works while the mount answers');
  process.kill(c.servers[0]!, 'SIGSTOP');
  const esc = spool.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  for (const [verb, extra, waitMs] of [['status', ['--fs-timeout', '2s'], 2000], ['ls', [], 10_000]] as const) {
    const t0 = Date.now();
    const r = await run(t, BIN.pmjqctl, [verb, spool, ...extra], { timeoutMs: 30_000 });
    const took = Date.now() - t0;
    t.equal(r.code, 3, `${verb}: exit status 3`);
    const lines = r.stderr.split('\n').filter(Boolean);
    t.equal(lines.length, 1, `${verb}: one line of error`);
    t.match(lines[0], new RegExp(`^pmjqctl: ${verb}: the spool ${esc} did not answer for ${waitMs / 1000}s `), `${verb}: it names the spool and the wait`);
    t.ok(took >= waitMs && took < waitMs + 4000, `${verb}: gave up after ${took} ms (--fs-timeout ${extra.length ? extra[1] : 'default 10s'})`);
  }
});

t.test('pmjqctl waiting for a person (a slow writer on its standard input, a pager) is not taken for a hung spool', async (t) => {
  const { spool, archive } = scratch(t, 'pmjq-ctl-people-');
  const FS_TIMEOUT = 500;
  /** a pmjqctl whose standard input and output are pipes the test holds; killed at teardown */
  const ctl = (args: string[]): { child: ReturnType<typeof spawn>; exited: Promise<number | null>; stderr(): string } => {
    const child = spawn(process.execPath, [BIN.pmjqctl, ...args, '--fs-timeout', `${FS_TIMEOUT}ms`], { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    t.teardown(() => { try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ } });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    return { child, exited: new Promise((resolve) => child.on('exit', (code) => resolve(code))), stderr: () => err };
  };
  // a test of something not happening: it waits 4 times the timeout, once pmjqctl waits for us
  const idle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 4 * FS_TIMEOUT));

  // submit -: blocked in read(2) on fd 0 until the writer writes
  const sub = ctl(['submit', spool, '-', '--name', 'from-stdin']);
  await waitFor('pmjqctl submit to block reading its standard input', () => /^\d+ 0x0 /.test(readProc(`/proc/${sub.child.pid}/syscall`)), 10_000);
  await idle();
  t.equal(sub.child.exitCode, null, 'submit still waits for its input');
  sub.child.stdin!.end('#!/bin/sh\nhead -c 2000000 /dev/zero | tr "\\000" x\n');
  t.equal(await sub.exited, 0, 'submit: exit 0 once its input came');
  t.equal(sub.stderr(), '', 'submit: no error');

  t.equal((await run(t, BIN.pmjq, [...ROOT_ARGS, '--once', '-o', archive, spool])).code, 0, 'the job ran (2 MB of output)');
  const id = String(history(spool)[0]!.id);
  // logs: its output unread, in a full pipe
  const logs = ctl(['logs', spool, id, '--raw']);
  logs.child.stdin!.end();
  logs.child.stdout!.pause();
  await idle();
  t.equal(logs.child.exitCode, null, 'logs still waits for its reader');
  let bytes = 0;
  logs.child.stdout!.on('data', (d: Buffer) => { bytes += d.length; });
  logs.child.stdout!.resume();
  t.equal(await logs.exited, 0, 'logs: exit 0 once read');
  t.equal(logs.stderr(), '', 'logs: no error');
  t.equal(bytes, 2_000_000, 'logs: the whole log');
});
