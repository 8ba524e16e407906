// Issue 3, failure and retry (pmjq(1) RETRIES): a failed job waits in
// SPOOL/.pmjq/retry/DUE.ID (file, .job.json, .log) and runs again after
// BACKOFF·2^(attempt−1) ±20 % with PMJQ_ATTEMPT incremented; after N retries
// it goes to the errors directory. The wait survives a restart; per-group
// retries from .group.json override --retries.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { BIN, ROOT_ARGS, archived, dropJob, history, readJson, run, scratch, start, waitFor } from '../helpers/helpers.js';
import { events, readStampLines } from '../helpers/sched.js';

type Rec = Record<string, unknown>;

/**
 * A job that fails until its `okFrom`-th run (keeping a counter file) and
 * stamps its attempt at start and end.
 */
function flaky(dir: string, name: string, okFrom: number): { stamps: string; body: string } {
  const stamps = path.join(dir, `${name}.stamps`);
  const counter = path.join(dir, `${name}.count`);
  const body = [
    '#!/bin/sh',
    `echo "S $(date +%s%N) $PMJQ_JOB_ID $PMJQ_GROUP $PMJQ_ATTEMPT" >> '${stamps}'`,
    `n=$(cat '${counter}' 2>/dev/null || echo 0); n=$((n + 1)); echo $n > '${counter}'`,
    'echo "attempt $PMJQ_ATTEMPT (run $n)"',
    `echo "E $(date +%s%N) $PMJQ_JOB_ID $PMJQ_GROUP $PMJQ_ATTEMPT" >> '${stamps}'`,
    `[ "$n" -ge ${okFrom} ]`,
    '',
  ].join('\n');
  return { stamps, body };
}

const ms = (ns: bigint): number => Number(ns / 1000n) / 1000;

t.test('--retries 2 --backoff 300ms: fails twice, then succeeds; delays double', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const errors = path.join(dir, 'errors');
  const { stamps, body } = flaky(dir, 'flaky', 3);
  dropJob(spool, 'flaky', body);
  const r = await run(t, BIN.pmjq, [...ROOT_ARGS, '--once', '--retries', '2', '--backoff', '300ms', '-o', archive, '-e', errors, spool], { timeoutMs: 45_000 });
  t.equal(r.code, 0, 'exit 0: the job succeeded in the end');

  const st = readStampLines(stamps);
  t.same(st.filter((s) => s.kind === 'S').map((s) => s.attempt), [1, 2, 3], 'PMJQ_ATTEMPT 1, 2, 3');
  t.equal(new Set(st.map((s) => s.id)).size, 1, 'one job id across the attempts');
  const startAt = (a: number): number => ms(st.find((s) => s.kind === 'S' && s.attempt === a)!.ns);
  const endAt = (a: number): number => ms(st.find((s) => s.kind === 'E' && s.attempt === a)!.ns);
  const gap1 = startAt(2) - endAt(1);
  const gap2 = startAt(3) - endAt(2);
  t.comment(`gaps between attempts (job's own stamps): ${gap1.toFixed(0)} ms, ${gap2.toFixed(0)} ms (backoff 300 ms ±20 %, then 600 ms ±20 %)`);
  t.ok(gap1 >= 240, `first wait ${gap1.toFixed(0)} ms >= 300 ms − 20 %`);
  t.ok(gap2 >= 480, `second wait ${gap2.toFixed(0)} ms >= 600 ms − 20 %`);
  t.ok(gap2 >= gap1 * 1.2, 'the second wait is longer: the delay doubles (allowing ±20 % jitter)');
  t.ok(gap1 < 360 + 5000 && gap2 < 720 + 5000, 'and neither is far beyond its delay');

  const a = archived(archive);
  t.equal(a.length, 1, 'one archive entry');
  const rec = readJson<Rec>(`${a[0]!.file}.json`);
  t.equal(rec.status, 'done', 'final archive status done');
  t.equal(rec.attempt, 3, 'on attempt 3');
  t.match(fs.readFileSync(`${a[0]!.file}.log`, 'utf8'), /attempt 3 \(run 3\)/, 'its log has the last attempt');
  t.notOk(fs.existsSync(errors) && fs.readdirSync(errors).length > 0, 'nothing in the errors directory');

  const h = history(spool).sort((x, y) => (x.attempt as number) - (y.attempt as number));
  t.same(h.map((x) => [x.attempt, x.status, typeof x.retry_at]), [[1, 'failed', 'string'], [2, 'failed', 'string'], [3, 'done', 'undefined']],
    'history: failed with retry_at, failed with retry_at, done');
  for (const x of h.slice(0, 2)) {
    const wait = Date.parse(x.retry_at as string) - Date.parse(x.finished as string);
    const base = 300 * 2 ** ((x.attempt as number) - 1);
    t.ok(wait >= base * 0.8 - 5 && wait <= base * 1.2 + 50, `attempt ${x.attempt}: retry_at is ${wait} ms after it ended (${base} ms ±20 %)`);
    t.equal(x.exit_code, 1, `attempt ${x.attempt}: exit code 1`);
  }
  t.equal(events(r.stderr, 'job-retry').length, 2, 'two job-retry lines');
  t.same(fs.readdirSync(path.join(spool, '.pmjq/retry')), [], 'the retry area is empty afterwards');
});

t.test('retries exhausted: the job ends in the errors directory, failed, attempt 3', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const errors = path.join(dir, 'errors');
  const { stamps, body } = flaky(dir, 'hopeless', 99);
  dropJob(spool, 'hopeless', body);
  const r = await run(t, BIN.pmjq, [...ROOT_ARGS, '--once', '--retries', '2', '--backoff', '200ms', '-o', archive, '-e', errors, spool], { timeoutMs: 45_000 });
  t.equal(r.code, 1, 'exit 1: a job failed');
  t.same(readStampLines(stamps).filter((s) => s.kind === 'S').map((s) => s.attempt), [1, 2, 3], 'three attempts, no more');
  t.same(archived(archive), [], 'nothing in the archive');
  const e = archived(errors);
  t.equal(e.length, 1, 'one entry in the errors directory');
  const rec = readJson<Rec>(`${e[0]!.file}.json`);
  t.equal(rec.status, 'failed', 'status failed');
  t.equal(rec.attempt, 3, 'attempt 3');
  t.equal(rec.exit_code, 1, 'exit code 1');
  t.notOk('retry_at' in rec, 'no retry_at: this was the last attempt');
  const h = history(spool);
  t.same(h.map((x) => [x.attempt, x.status, 'retry_at' in x]).sort(), [[1, 'failed', true], [2, 'failed', true], [3, 'failed', false]], 'history: three failed records, the first two with retry_at');
});

t.test('a waiting retry is on disk in .pmjq/retry/DUE.ID and survives a restart', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const { stamps, body } = flaky(dir, 'later', 2);
  dropJob(spool, 'later', body);
  const args = [...ROOT_ARGS, '--retries', '1', '--backoff', '4s', '-o', archive, spool];
  const p1 = start(t, BIN.pmjq, args);
  const line = await p1.waitLine(/event=job-retry /, 20_000);
  t.match(line, /attempt=1 next_attempt=2 retries=1 delay_ms=\d+/, 'job-retry: ' + line);

  const retry = path.join(spool, '.pmjq/retry');
  const entries = fs.readdirSync(retry);
  t.equal(entries.length, 1, 'one entry in .pmjq/retry');
  const m = /^(\d+)\.(.+)$/.exec(entries[0]!);
  t.ok(m, `named DUE.ID: ${entries[0]}`);
  const due = Number(m![1]);
  const id = m![2]!;
  const delay = Number(/delay_ms=(\d+)/.exec(line)![1]);
  t.ok(delay >= 3200 && delay <= 4800, `delay ${delay} ms is 4 s ±20 %`);
  const entry = path.join(retry, entries[0]!);
  t.same(fs.readdirSync(entry).sort(), ['.job.json', '.log', 'later'], 'the entry holds the job file, .job.json and .log');
  const meta = readJson<Rec>(path.join(entry, '.job.json'));
  t.equal(meta.id, id, '.job.json: the same id');
  t.equal(meta.attempt, 2, '.job.json: the next attempt is 2');
  t.match(meta.previous, /failed: exit 1/, '.job.json: why the previous attempt ended');
  t.match(fs.readFileSync(path.join(entry, '.log'), 'utf8'), /attempt 1 \(run 1\)/, '.log: the first attempt\'s output');
  t.ok(fs.statSync(path.join(entry, 'later')).mode & 0o100, 'the job file, still executable');

  // stop and start again before it is due
  p1.child.kill('SIGTERM');
  t.equal(await p1.exited, 0, 'the first daemon stops (exit 0)');
  t.ok(Date.now() < due, `stopped before the retry was due (${due - Date.now()} ms to go)`);
  t.same(fs.readdirSync(retry), entries, 'the entry waits on disk while no daemon runs');
  const p2 = start(t, BIN.pmjq, args);
  await p2.waitLine(/event=job-end .*status=done/, 30_000);
  const st = readStampLines(stamps).filter((s) => s.kind === 'S');
  t.same(st.map((s) => s.attempt), [1, 2], 'attempts 1 and 2 ran');
  const started2 = ms(st[1]!.ns);
  t.ok(started2 >= due, `the restarted daemon ran attempt 2 when due, not before (${(started2 - due).toFixed(0)} ms after)`);
  t.equal(events(p2, 'job-start').length, 1, 'the restarted daemon ran it once');
  const rec = readJson<Rec>(`${archived(archive)[0]!.file}.json`);
  t.equal(rec.status, 'done', 'archived as done');
  t.equal(rec.attempt, 2, 'attempt 2');
  t.equal(rec.id, id, 'the same job id');
  t.same(fs.readdirSync(retry), [], 'the retry area is empty');
});

t.test('per-group retries and backoff in .group.json override --retries', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const errors = path.join(dir, 'errors');
  const more = path.join(spool, 'more');
  const none = path.join(spool, 'none');
  fs.mkdirSync(more);
  fs.mkdirSync(none);
  fs.writeFileSync(path.join(more, '.group.json'), '{"retries": 3, "backoff": "100ms"}\n');
  fs.writeFileSync(path.join(none, '.group.json'), '{"retries": 0}\n');
  const jm = flaky(dir, 'm', 99);
  const jn = flaky(dir, 'n', 99);
  const jd = flaky(dir, 'd', 99);
  dropJob(more, 'm', jm.body);
  dropJob(none, 'n', jn.body);
  dropJob(spool, 'd', jd.body);
  const r = await run(t, BIN.pmjq, [...ROOT_ARGS, '--once', '--retries', '1', '--backoff', '100ms', '-o', archive, '-e', errors, spool], { timeoutMs: 45_000 });
  t.equal(r.code, 1, 'exit 1: jobs failed');
  const attempts = (s: string): number[] => readStampLines(s).filter((x) => x.kind === 'S').map((x) => x.attempt);
  t.same(attempts(jm.stamps), [1, 2, 3, 4], 'group "more" (retries 3 in its file): 4 attempts');
  t.same(attempts(jn.stamps), [1], 'group "none" (retries 0 in its file): 1 attempt');
  t.same(attempts(jd.stamps), [1, 2], 'the default group follows --retries 1: 2 attempts');
  const final = new Map(archived(errors).map((e) => [e.name, readJson<Rec>(`${e.file}.json`)]));
  t.same([...final.keys()].sort(), ['d', 'm', 'n'], 'all three end in the errors directory');
  t.equal(final.get('m')!.attempt, 4, 'm: attempt 4');
  t.equal(final.get('n')!.attempt, 1, 'n: attempt 1');
  t.equal(final.get('d')!.attempt, 2, 'd: attempt 2');
});

t.test('--group NAME:retries=N wins over the group file', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const g = path.join(spool, 'g');
  fs.mkdirSync(g);
  fs.writeFileSync(path.join(g, '.group.json'), '{"retries": 3, "backoff": "100ms"}\n');
  const j = flaky(dir, 'j', 99);
  dropJob(g, 'j', j.body);
  const r = await run(t, BIN.pmjq, [...ROOT_ARGS, '--once', '-g', 'g:retries=1', '-o', archive, spool], { timeoutMs: 45_000 });
  t.equal(r.code, 1, 'exit 1');
  t.same(readStampLines(j.stamps).filter((x) => x.kind === 'S').map((x) => x.attempt), [1, 2], '2 attempts: retries=1 from the command line');
  await waitFor('archive', () => archived(archive).length === 1);
});
