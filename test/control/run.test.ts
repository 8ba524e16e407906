// pmjqctl run (issue 6, jobd's run-manual): one queued job claimed now, on
// this machine, ignoring barriers and pause; run in the foreground with its
// own node id and heartbeat; its output and record printed; its exit status.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { BIN, IS_ROOT, ROOT_ARGS, dropJob, history, scratch, start, waitFor } from '../helpers/helpers.js';
import { ctl, ctlJson, daemon, gatedJob, jobs, nodeOf, recordsOf, until } from '../helpers/ctl.js';

const US = '\x1f';

t.test('run without any daemon: output, record, exit status; no archive = .pmjq/done', async (t) => {
  const { spool } = scratch(t);
  dropJob(spool, 'three', `#!/bin/sh\necho out\nprintf 'W${US}warned\\n' >&2\nexit 3\n`);
  const r = await ctl(t, ['run', ...ROOT_ARGS, spool, 'three']);
  t.equal(r.code, 3, 'exits with the job\'s exit status');
  t.equal(r.stdout, 'out\n[warning] warned\n', 'its output on stdout, levels rendered');
  t.match(r.stderr, /^pmjqctl: job \S+ \(three\) failed: exit 3 after \S+\n {2}node: +\S+\n {2}group: +default\n {2}archive: \(removed: no --archive\)\n {2}log: +\S+\.pmjq\/done\/\S+\.log\n$/, 'its record on stderr');
  t.notOk(fs.existsSync(path.join(spool, 'three')), 'the job left the queue');
  const recs = history(spool);
  t.equal(recs.length, 1, 'one record in the history');
  const rec = recs[0]!;
  t.match(rec, { name: 'three', status: 'failed', exit_code: 3, attempt: 1, archive: null }, 'record: failed, exit 3');
  t.equal(fs.readFileSync(rec.log as string, 'utf8'), `out\nW${US}warned\n`, 'the log kept in .pmjq/done');
  t.same(fs.readdirSync(path.join(spool, '.pmjq/claimed')), [], 'its claimed area is gone');
  t.same(fs.readdirSync(path.join(spool, '.pmjq/nodes')), [], 'and its heartbeat');
  const l = await ctl(t, ['logs', spool, rec.id as string]);
  t.equal(l.stdout, 'out\n[warning] warned\n', 'logs finds it by id');

  const missing = await ctl(t, ['run', ...ROOT_ARGS, spool, 'nope']);
  t.equal(missing.code, 1, 'no such queued job: exit 1');
  t.equal(missing.stderr, `pmjqctl: run: no queued job 'nope' in '${spool}'\n`, 'one line naming it and where');
  fs.writeFileSync(path.join(spool, 'data'), 'not a job', { mode: 0o644 });
  const data = await ctl(t, ['run', ...ROOT_ARGS, spool, 'data']);
  t.equal(data.code, 1, 'a non-executable file: exit 1');
  t.match(data.stderr, /'data' in '.*' is not executable/, 'says so');
  if (IS_ROOT) {
    dropJob(spool, 'rootjob', '#!/bin/sh\ntrue\n');
    const root = await ctl(t, ['run', spool, 'rootjob']);
    t.equal(root.code, 1, 'as root, a root-owned job needs --allow-root');
    t.match(root.stderr, /owned by root/, 'says so');
  }
});

t.test('run --json -o: the record on stdout, the output on stderr, archived', async (t) => {
  const { spool, archive } = scratch(t);
  fs.mkdirSync(path.join(spool, 'g'));
  dropJob(path.join(spool, 'g'), 'ok', '#!/bin/sh\necho "in $(pwd) as $PMJQ_GROUP"\n');
  const r = await ctl(t, ['run', ...ROOT_ARGS, spool, 'ok', '-g', 'g', '-o', archive, '--json']);
  t.equal(r.code, 0, 'exit 0');
  const rec = JSON.parse(r.stdout) as Record<string, unknown>;
  t.match(rec, { name: 'ok', group: 'g', status: 'done', exit_code: 0 }, 'the record');
  t.ok(String(rec.archive).startsWith(archive + '/'), 'archived under -o');
  t.equal(r.stderr, `in ${path.join(spool, 'g')} as g\n`, 'the output on stderr; it ran in its group\'s directory');
});

t.test('run ignores pause; it is a node others see, and a job pmjqctl kill reaches', async (t) => {
  const { dir, spool, archive } = scratch(t);
  await ctl(t, ['pause', spool]); // before the daemon starts: it reads the flag before it claims anything
  const d = daemon(t, spool, ['-o', archive]);
  const dn = await nodeOf(d);
  const started = path.join(dir, 'started');
  dropJob(spool, 'manual', gatedJob(started, path.join(dir, 'gate-never')));
  await d.waitLine(/event=barrier-hold barrier="paused default"/, 15_000);
  const r = start(t, BIN.pmjqctl, ['run', ...ROOT_ARGS, spool, 'manual', '-o', archive], { env: { NO_COLOR: '1' } });
  const id = await waitFor('the job to start', () => fs.existsSync(started) && fs.readFileSync(started, 'utf8').trim(), 15_000);
  await waitFor('its first output', () => r.stdout().includes('started\n'), 15_000);

  const s = await until('status to show the run\'s node', async () => {
    const st = await ctlJson<{ nodes: { node: string; state: string; live: boolean; jobs: string[] }[] }>(t, ['status', spool]);
    return st.nodes.length === 2 ? st : null;
  });
  const mine = s.nodes.find((n) => n.node !== dn)!;
  t.match(mine, { state: 'PROCESSING', live: true, jobs: [id] }, 'a live node of its own, PROCESSING the job');
  const [job] = await jobs(t, spool, '--state', 'running');
  t.match(job, { id, name: 'manual', node: mine.node }, 'ls: running on that node');

  const k = await ctl(t, ['kill', spool, id]);
  t.equal(k.code, 0, `kill exits 0 ${k.stderr}`);
  t.equal(await r.exited, 143, 'run exits 128+15: the job ended by SIGTERM');
  t.match(recordsOf(spool, id), [{ status: 'killed', node: mine.node }], 'recorded killed, by the run\'s node');
  t.notOk(fs.existsSync(path.join(spool, '.pmjq/nodes', mine.node)), 'its heartbeat is gone');
  t.equal(d.stderr().includes('event=recovered'), false, 'the daemon never took it for dead');

  // SIGINT to pmjqctl run kills the job too
  const started2 = path.join(dir, 'started2');
  dropJob(spool, 'manual2', gatedJob(started2, path.join(dir, 'gate-never')));
  const r2 = start(t, BIN.pmjqctl, ['run', ...ROOT_ARGS, spool, 'manual2']);
  const id2 = await waitFor('the second job to start', () => fs.existsSync(started2) && fs.readFileSync(started2, 'utf8').trim(), 15_000);
  r2.child.kill('SIGINT');
  t.equal(await r2.exited, 143, 'SIGINT: the job is killed, exit 143');
  t.match(recordsOf(spool, id2), [{ status: 'killed' }], 'recorded killed');
});
