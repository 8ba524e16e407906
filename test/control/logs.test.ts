// pmjqctl logs (issue 6): a job's output wherever it is — while it runs (any
// node's claimed area), after it finished (archive, or .pmjq/done without
// -o); -f follows a running job until it ends; level prefixes rendered.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { BIN, IS_ROOT, dropJob, scratch, signalAtSyscall, start, waitFor } from '../helpers/helpers.js';
import { ctl, daemon, gatedJob, jobs, recordsOf, until } from '../helpers/ctl.js';

const US = '\x1f';

t.test('logs -f follows a running job until it ends, then exits 0; levels are rendered', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const gate = path.join(dir, 'gate');
  const started = path.join(dir, 'started');
  const d = daemon(t, spool, ['-o', archive]);
  await d.waitLine(/event=start /, 20_000);
  dropJob(spool, 'talker', [
    '#!/bin/sh',
    `printf 'plain line\\nW${US}careful now\\nE${US}it broke\\nI${US}fyi\\nD${US}details\\nC${US}on fire\\n'`,
    `echo "$PMJQ_JOB_ID" > '${started}'`,
    `while [ ! -e '${gate}' ]; do sleep 0.05; done`,
    'echo "after the gate"',
    'printf "no newline at the end"',
    '',
  ].join('\n'));
  const id = await waitFor('the job to start', () => fs.existsSync(started) && fs.readFileSync(started, 'utf8').trim(), 15_000);

  const now = await ctl(t, ['logs', spool, id]);
  t.equal(now.code, 0, 'logs of a running job exits 0 at once');
  t.match(now.stdout, /^plain line\n\[warning\] careful now\n\[error\] it broke\n\[info\] fyi\n\[debug\] details\n\[critical\] on fire\n$/, 'its output so far, levels rendered');

  const f = start(t, BIN.pmjqctl, ['logs', spool, id, '-f', '--poll', '50ms'], { env: { NO_COLOR: '1' } });
  await waitFor('the output so far', () => f.stdout().includes('[critical] on fire\n'), 15_000);
  t.notOk(f.stdout().includes('after the gate'), 'nothing from after the gate yet');
  fs.writeFileSync(gate, '');
  t.equal(await f.exited, 0, 'logs -f exits 0 when the job ends');
  t.match(f.stdout(), /\[critical\] on fire\nafter the gate\nno newline at the end$/, 'and printed everything, to the last byte');

  await until('the job to be archived', async () => (await jobs(t, spool, '--state', 'done')).length === 1);
  const after = await ctl(t, ['logs', spool, id]);
  t.equal(after.code, 0, 'logs of a finished job exits 0');
  t.equal(after.stdout, f.stdout(), 'the same output, now read from the archive');
  const raw = await ctl(t, ['logs', spool, id, '--raw']);
  t.ok(raw.stdout.includes(`W${US}careful now\n`), '--raw: the bytes as they are');
  const archivedLog = fs.readdirSync(archive).find((x) => x.endsWith('.log'))!;
  t.equal(raw.stdout, fs.readFileSync(path.join(archive, archivedLog), 'utf8'), '--raw is the archived .log');
});

t.test('logs without an archive (.pmjq/done), of a job waiting for a retry, and of unknown ids', async (t) => {
  const { spool } = scratch(t);
  const d = daemon(t, spool, ['--retries', '1', '--backoff', '1h']);
  await d.waitLine(/event=start /, 20_000);
  dropJob(spool, 'ok', '#!/bin/sh\necho fine\n');
  dropJob(spool, 'flaky', '#!/bin/sh\necho attempt $PMJQ_ATTEMPT\nexit 1\n');
  const [done] = await until('one done job', async () => { const j = await jobs(t, spool, '--state', 'done'); return j.length ? j : null; });
  t.ok(done!.log!.startsWith(path.join(spool, '.pmjq/done')), 'without -o the log is in .pmjq/done');
  const a = await ctl(t, ['logs', spool, done!.id!]);
  t.equal(a.stdout, 'fine\n', 'its output');
  const [retrying] = await until('a job waiting for its retry', async () => { const j = await jobs(t, spool, '--state', 'retrying'); return j.length ? j : null; });
  t.match(retrying, { name: 'flaky', attempt: 2, status: 'failed', exit_code: 1 }, 'ls: retrying, attempt 2 next, after exit 1');
  t.ok(retrying!.eta_ms! > 2_800_000, 'ETA: its due time, about an hour away (less the ±20 % jitter)');
  const b = await ctl(t, ['logs', spool, retrying!.id!, '-f']);
  t.equal(b.code, 0, 'logs -f of a job waiting for a retry exits at once');
  t.equal(b.stdout, 'attempt 1\n', 'the output of its first attempt');

  const unknown = await ctl(t, ['logs', spool, 'no.such.job']);
  t.equal(unknown.code, 1, 'an unknown id: exit 1');
  t.equal(unknown.stderr, `pmjqctl: logs: no job 'no.such.job' in '${spool}' (not running, not waiting for a retry, not in the history)\n`, 'one line naming the id and the spool');
  const bad = await ctl(t, ['logs', spool, '../etc']);
  t.equal(bad.code, 2, 'an id with a slash: usage error');
});

// The archive step of a job in the directory form moves its log into the
// archive and writes its record and history line before it removes the
// claimed directory. A daemon frozen (SIGSTOP at the exact unlink, strace)
// in between: the job still has a claimed directory, without its log.
// pmjqctl logs (and the API's job view, by the same lookup) go by its record.
t.test('a job caught between its history line and the removal of its claimed directory: logs reads it from the archive', async (t) => {
  if (!IS_ROOT) throw new Error('this test attaches strace to a daemon running as root: run it as root');
  const { dir, spool, archive } = scratch(t);
  const gate = path.join(dir, 'gate');
  const started = path.join(dir, 'started');
  const d = daemon(t, spool, ['-o', archive]);
  await d.waitLine(/event=start /, 20_000);
  // a name that is not UTF-8 takes the directory form: its log is moved, not linked
  dropJob(spool, Buffer.from('caught\xff', 'latin1'), gatedJob(started, gate));
  const id = await waitFor('the job to start', () => fs.existsSync(started) && fs.readFileSync(started, 'utf8').trim(), 15_000);
  const pid = d.child.pid!;
  // from here the daemon's unlinks are the claimed log's (1), the record's staging name's (2), the claimed job file's (3)
  const detach = await signalAtSyscall(t, pid, 'unlink', 3, 'STOP');
  t.teardown(() => { try { process.kill(pid, 'SIGCONT'); } catch { /* gone */ } });
  fs.writeFileSync(gate, '');
  // the history line is the last write before that unlink: once it is there, the daemon is (or is about to be) frozen
  await waitFor('its history line', () => recordsOf(spool, id).length === 1, 20_000);
  const claimed = path.join(spool, '.pmjq/claimed', fs.readdirSync(path.join(spool, '.pmjq/claimed'))[0]!, id);
  t.ok(fs.existsSync(claimed), 'its claimed directory is still there');
  t.notOk(fs.existsSync(path.join(claimed, '.log')), 'without its log');
  t.match(recordsOf(spool, id), [{ status: 'done' }], 'and its history line is written');

  const l = await ctl(t, ['logs', spool, id]);
  t.equal(l.code, 0, `logs exits 0 ${l.stderr}`);
  t.equal(l.stdout, 'started\nafter the gate\n', 'and prints its whole output, from the archive');

  detach();
  process.kill(pid, 'SIGCONT');
  await waitFor('the claimed directory removed', () => !fs.existsSync(claimed), 20_000);
  d.kill();
  t.equal(await d.exited, 0, 'the daemon, let go, finishes the step and exits 0');
});
