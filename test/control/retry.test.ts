// pmjqctl retry (issue 6): a failed job goes back into the queue from where
// its record says its file is, as attempt + 1 (or 1 with --reset), through a
// retry entry that every node sees; anything else is refused with exit 1.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { dropJob, scratch } from '../helpers/helpers.js';
import { ctl, daemon, jobs, nodeOf, recordsOf, until } from '../helpers/ctl.js';

/** Fails the first time (no marker yet), succeeds after. */
const flaky = (marker: string): string =>
  `#!/bin/sh\necho "attempt $PMJQ_ATTEMPT"\nif [ -e '${marker}' ]; then exit 0; fi\ntouch '${marker}'\nexit 2\n`;

t.test('a failed job runs again as attempt + 1, from the errors archive', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const errors = path.join(dir, 'errors');
  const d = daemon(t, spool, ['-o', archive, '-e', errors]);
  await nodeOf(d);
  fs.mkdirSync(path.join(spool, 'grp'));
  dropJob(path.join(spool, 'grp'), 'flaky job', flaky(path.join(dir, 'marker')));
  const [f] = await until('the job to fail', async () => { const j = await jobs(t, spool, '--state', 'failed'); return j.length ? j : null; });
  t.match(f, { name: 'flaky job', group: 'grp', attempt: 1, exit_code: 2 }, 'failed, attempt 1, exit 2');
  t.ok(f!.path!.startsWith(errors), 'its file is in the errors archive');

  const r = await ctl(t, ['retry', spool, f!.id!]);
  t.equal(r.code, 0, `retry exits 0 ${r.stderr}`);
  t.equal(r.stdout, `${f!.id} flaky job: queued again as attempt 2 (attempt 1 ended failed)\n`, 'says the attempt it runs as');
  t.notOk(fs.existsSync(f!.path!), 'the file left the archive');
  const done = await until('the retried job to succeed', async () => { const j = await jobs(t, spool, '--state', 'done'); return j.length ? j : null; });
  t.match(done[0], { id: f!.id, name: 'flaky job', group: 'grp', attempt: 2, exit_code: 0 }, 'the same id, attempt 2, done');
  t.same((await jobs(t, spool, '--state', 'failed')).length, 0, 'no longer in the failed list');
  const recs = recordsOf(spool, f!.id!);
  t.same(recs.map((x) => `${x.attempt} ${x.status}`), ['1 failed', '2 done'], 'a record per attempt');
  const l = await ctl(t, ['logs', spool, f!.id!]);
  t.equal(l.stdout, 'attempt 2\n', 'logs: the new attempt\'s output');

  const notFailed = await ctl(t, ['retry', spool, f!.id!]);
  t.equal(notFailed.code, 1, 'a done job: exit 1');
  t.match(notFailed.stderr, new RegExp(`^pmjqctl: retry: job '${f!.id!.replace(/\./g, '\\.')}' in '${spool}' has not failed: it is done \\(exit 0\\)`), 'says what it is');
  const unknown = await ctl(t, ['retry', spool, 'nope.1.2']);
  t.equal(unknown.code, 1, 'an unknown id: exit 1');
  t.equal(unknown.stderr, `pmjqctl: retry: no job 'nope.1.2' in '${spool}' (not running, not waiting for a retry, not in the history)\n`, 'one line naming id and spool');
});

t.test('--reset starts again from attempt 1; --json; several ids; a job whose file was not kept', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const d = daemon(t, spool, ['-o', archive]);
  await nodeOf(d);
  dropJob(spool, 'a', '#!/bin/sh\nexit 1\n');
  dropJob(spool, 'b', '#!/bin/sh\nexit 1\n');
  const failed = await until('two failed jobs', async () => { const j = await jobs(t, spool, '--state', 'failed'); return j.length === 2 ? j : null; });
  // pause, so that the retried jobs wait in the queue where we can see them
  await ctl(t, ['pause', spool]);
  // (the spool is paused before the entries appear: a daemon reads the flags in the same rescan that finds them)
  const res = await ctl(t, ['retry', spool, '--json', '--reset', ...failed.map((j) => j.id!), 'missing.id']);
  t.equal(res.code, 1, 'one unknown id among them: exit 1, the others done');
  const r = JSON.parse(res.stdout) as { jobs: { id: string; attempt: number; previous_attempt: number; entry: string }[]; errors: { id: string; message: string }[] };
  t.equal(r.jobs.length, 2, 'both queued again');
  t.ok(r.jobs.every((j) => j.attempt === 1 && j.previous_attempt === 1), '--reset: attempt 1');
  t.ok(r.jobs.every((j) => fs.existsSync(path.join(j.entry, '.job.json'))), 'each in a retry entry with its .job.json');
  t.match(r.errors, [{ id: 'missing.id', message: /no job 'missing.id'/ }], 'the unknown id is in errors');
  const retrying = await jobs(t, spool, '--state', 'retrying');
  t.same(retrying.map((j) => j.name).sort(), ['a', 'b'], 'ls: both retrying');
  const again = await ctl(t, ['retry', spool, failed[0]!.id!]);
  t.equal(again.code, 1, 'retrying a job that already waits: exit 1');
  t.match(again.stderr, /has not failed: it is waiting in .* for attempt 1/, 'says where it waits');
  await ctl(t, ['resume', spool]);
  await until('both to run again and fail again', async () => (await jobs(t, spool, '--state', 'failed')).filter((j) => j.attempt === 1 && j.since! > failed[0]!.since!).length === 2);

  // without -o the job file is removed after it ran: nothing to retry
  const { spool: bare } = scratch(t);
  const d2 = daemon(t, bare);
  await nodeOf(d2);
  dropJob(bare, 'gone', '#!/bin/sh\nexit 1\n');
  const [g] = await until('the job to fail', async () => { const j = await jobs(t, bare, '--state', 'failed'); return j.length ? j : null; });
  const n = await ctl(t, ['retry', bare, g!.id!]);
  t.equal(n.code, 1, 'no file kept: exit 1');
  t.match(n.stderr, /failed but its file was not kept \(pmjq ran without -o\/-e/, 'says why');
  void dir;
});

t.test('a job whose name is not UTF-8: logs and retry find its archived file and log by their exact bytes', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const d = daemon(t, spool, ['-o', archive]);
  await nodeOf(d);
  const name = Buffer.from('caf\xe9 flaky', 'latin1');
  dropJob(spool, name, flaky(path.join(dir, 'marker')));
  const [f] = await until('the job to fail', async () => { const j = await jobs(t, spool, '--state', 'failed'); return j.length ? j : null; });
  t.equal(f!.name_b64, name.toString('base64'), 'ls: its exact name, base64');
  const rec = recordsOf(spool, f!.id!)[0]!;
  const entry = fs.readdirSync(archive, { encoding: 'buffer' }).find((b) => b.subarray(b.length - name.length).equals(name))!;
  t.equal(rec.archive_b64, Buffer.concat([Buffer.from(`${archive}/`), entry]).toString('base64'), 'the record carries the exact bytes of the archived file\'s path');
  t.equal(rec.log_b64, Buffer.concat([Buffer.from(`${archive}/`), entry, Buffer.from('.log')]).toString('base64'), 'and of its log');
  const l1 = await ctl(t, ['logs', spool, f!.id!]);
  t.equal(l1.code, 0, `logs exits 0 ${l1.stderr}`);
  t.equal(l1.stdout, 'attempt 1\n', 'its output');
  const r = await ctl(t, ['retry', spool, f!.id!]);
  t.equal(r.code, 0, `retry exits 0 ${r.stderr}`);
  const done = await until('the retried job to succeed', async () => { const j = await jobs(t, spool, '--state', 'done'); return j.length ? j : null; });
  t.match(done[0], { id: f!.id, attempt: 2, exit_code: 0, name_b64: name.toString('base64') }, 'the same id and name, attempt 2, done');
  const l2 = await ctl(t, ['logs', spool, f!.id!]);
  t.equal(l2.stdout, 'attempt 2\n', 'logs: the new attempt\'s output');
});
