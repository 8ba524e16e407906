// Issue 7: `pmjqctl serve` over real HTTP on loopback, against a real server
// process (port 0) and a real pmjq daemon: authentication (401/403), body
// limits (413), bad JSON and schema violations (400), a job submitted through
// the API then run by the daemon, kill and retry through the API,
// pause/resume with a second node, server-sent events, and /metrics as
// Prometheus text.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { BIN, IS_ROOT, openToAll, readJson, run, scratch } from '../helpers/helpers.js';
import { Events, SUBMIT_USER, TOKEN, jobIn, postJson, request, startDaemon, startServer } from '../helpers/http.js';

t.test('a read-only server (no --token-file) answers 403 to every change, and reads', async (t) => {
  const { spool } = scratch(t);
  const server = await startServer(t, spool);
  const { url } = server;

  const st = await request(`${url}/api/status`);
  t.equal(st.status, 200, 'GET /api/status');
  t.equal(st.json.spool, fs.realpathSync(spool), 'status names the spool');
  t.ok(Array.isArray(st.json.nodes) && Array.isArray(st.json.groups), 'status has nodes and groups');
  t.notMatch(url, /\/$/, `the URL printed has no trailing slash (${url}): URL/api/… is a route`);
  t.equal((await request(`${url}//api/status`)).status, 200, 'a doubled slash (URL printed with a trailing slash, plus /api/…) finds the route too');

  for (const [route, body] of [['api/jobs', { script: '#!/bin/sh\n' }], ['api/jobs/x.1.2.3.4/kill', undefined], ['api/jobs/x.1.2.3.4/retry', undefined], ['api/pause', {}], ['api/resume', {}]] as const) {
    const withToken = await postJson(`${url}/${route}`, body, TOKEN);
    t.equal(withToken.status, 403, `POST /${route} with a token: 403`);
    t.equal(withToken.json.error, 'read-only');
    const without = await postJson(`${url}/${route}`, body, null);
    t.equal(without.status, 403, `POST /${route} without a token: 403`);
  }
  t.same(fs.readdirSync(spool).filter((f) => !f.startsWith('.')), [], 'nothing was written into the spool');

  // the dashboard: three local files, nothing from elsewhere
  const page = await request(url);
  t.equal(page.status, 200, 'GET /');
  t.match(page.headers['content-type'], /^text\/html/);
  t.match(page.headers['content-security-policy'], /default-src 'self'/, 'a content security policy that allows only this server');
  for (const [file, type] of [['app.js', /^text\/javascript/], ['style.css', /^text\/css/]] as const) {
    const r = await request(`${url}/${file}`);
    t.equal(r.status, 200, `GET /${file}`);
    t.match(r.headers['content-type'], type);
    t.notMatch(r.text, /https?:\/\//, `${file} loads nothing from another site`);
  }
  t.notMatch(page.text, /(src|href)="https?:/, 'index.html loads nothing from another site');
  t.equal((await request(`${url}/nowhere`)).status, 404, 'an unknown route: 404');

  // SIGTERM with a page listening: the server stops at once, exit 0
  const { proc } = server;
  const events = await Events.open(t, url);
  await events.wait('a first snapshot', (s) => s.status);
  proc.kill('SIGTERM');
  const code = await Promise.race([proc.exited, new Promise<string>((r) => setTimeout(() => r('still running after 30 s'), 30_000).unref())]);
  t.equal(code, 0, 'SIGTERM with an open event stream: exit 0');
});

t.test('a server that refuses to start', async (t) => {
  const { dir, spool } = scratch(t);
  const tok = path.join(dir, 'token');
  fs.writeFileSync(tok, `${TOKEN}\n`, { mode: 0o600 });
  const short = path.join(dir, 'short');
  fs.writeFileSync(short, 'abc\n');
  const serve = (...args: string[]) => run(t, BIN.pmjqctl, ['serve', ...args], { timeoutMs: 120_000 });
  // all at once: each is a process start
  const [asRoot, bad, weak, none] = await Promise.all([
    IS_ROOT ? serve(spool, '--listen', '127.0.0.1:0', '--token-file', tok) : null,
    serve(spool, '--listen', 'nowhere'),
    serve(spool, '--listen', '127.0.0.1:0', '--token-file', short, ...(IS_ROOT ? ['--submit-user', SUBMIT_USER] : [])),
    serve(path.join(dir, 'missing')),
  ]);
  if (asRoot) {
    t.equal(asRoot.code, 2, 'as root with --token-file and no --submit-user: exit 2');
    t.match(asRoot.stderr, /--submit-user/, 'and says why');
    t.equal(asRoot.stdout, '', 'no URL printed');
  }
  t.equal(bad.code, 2, 'a bad --listen: exit 2');
  t.match(bad.stderr, /--listen 'nowhere'/);
  t.equal(weak.code, 2, 'a token shorter than 8 characters: exit 2');
  t.match(weak.stderr, /at least 8 characters/);
  t.equal(none.code, 2, 'a missing spool: exit 2');
  t.match(none.stderr, /does not exist/);
});

t.test('with a token and a daemon', async (t) => {
  const { dir, spool, archive } = scratch(t);
  // jobs submitted as root run as the --submit-user: let them reach the scratch tree
  openToAll(dir, spool, archive);
  const { url } = await startServer(t, spool, { tokenDir: dir });
  // this node serves api and pages; group held is served by a second node (pause test)
  await startDaemon(t, spool, archive, ['--groups', 'api,pages']);
  const events = await Events.open(t, url);
  t.match(events.contentType, /^text\/event-stream/, '/events is an event stream');
  await events.wait('a first snapshot with the daemon live', (s) => s.status.nodes.some((n: { live: boolean }) => n.live));
  const fixture = t; // what lives until the last subtest

  t.test('401 without the right token', async (t) => {
    for (const [token, what] of [[null, 'no token'], ['wrong-token-123', 'a wrong token']] as const) {
      const r = await postJson(`${url}/api/jobs`, { script: '#!/bin/sh\necho never\n', name: 'never' }, token);
      t.equal(r.status, 401, `${what}: 401`);
      t.equal(r.json.error, 'unauthorized');
      t.match(r.headers['www-authenticate'], /^Bearer/, 'WWW-Authenticate: Bearer');
    }
    const lower = await request(`${url}/api/pause`, { method: 'POST', headers: { authorization: `Basic ${TOKEN}` } });
    t.equal(lower.status, 401, 'another scheme: 401');
    t.notOk(fs.existsSync(path.join(spool, 'never')), 'nothing was submitted');
  });

  t.test('413, 400 on bad JSON, 400 naming the field', async (t) => {
    const big = JSON.stringify({ script: `#!/bin/sh\n#${'x'.repeat(2 << 20)}\n` });
    const r413 = await request(`${url}/api/jobs`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` }, body: big });
    t.equal(r413.status, 413, 'a 2 MiB body: 413');
    t.match(r413.json, { error: 'too-large', message: /1 MiB/ });

    const bad = await request(`${url}/api/jobs`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` }, body: '{"script": "#!/bin/sh\\n",' });
    t.equal(bad.status, 400, 'invalid JSON: 400');
    t.match(bad.json, { error: 'bad-json', message: /not valid JSON/ });

    const cases: [unknown, string, RegExp][] = [
      [{ script: 5 }, 'script', /'script' must be string/],
      [{ command: 'echo hi' }, 'command', /'command' must be array/],
      [{ command: ['echo', 5] }, 'command.1', /'command\.1' must be string/],
      [{ script: '#!/bin/sh\n', group: 'a/b' }, 'group', /'group' must not be empty nor contain "\/"/],
      [{ script: '#!/bin/sh\n', colour: 'red' }, 'colour', /unknown field 'colour'/],
      [{ script: '#!/bin/sh\n', command: ['true'] }, 'command', /either "script".*or "command"/],
      [{}, 'script', /either "script"/],
    ];
    for (const [body, field, msg] of cases) {
      const r = await postJson(`${url}/api/jobs`, body);
      t.equal(r.status, 400, `${JSON.stringify(body)}: 400`);
      t.equal(r.json.field, field, `names the field ${field}`);
      t.match(r.json.message, msg, r.json.message);
    }
    const q = await request(`${url}/api/jobs?limit=0`);
    t.equal(q.status, 400, 'GET /api/jobs?limit=0: 400');
    t.equal(q.json.field, 'limit');
    const st = await request(`${url}/api/jobs?state=sleeping`);
    t.equal(st.status, 400, 'an unknown state: 400');
    t.equal(st.json.field, 'state');
    const pause = await postJson(`${url}/api/pause`, { groups: 'all' });
    t.equal(pause.status, 400, 'pause with groups not an array: 400');
    t.equal(pause.json.field, 'groups');
  });

  t.test('a job submitted through the API is run by the daemon', async (t) => {
    const sub = await postJson(`${url}/api/jobs`, { command: ['sh', '-c', 'echo "hello from $0 as $(id -u)"', 'the api'], group: 'api', name: 'hello' });
    t.equal(sub.status, 201, 'POST /api/jobs: 201');
    t.match(sub.json, { name: 'hello', group: 'api', path: path.join(fs.realpathSync(spool), 'api', 'hello') });
    const done = await events.wait('hello to finish', (s) => {
      const j = jobIn(s.recent, 'hello');
      return j && j.state === 'done' ? j : null;
    });
    t.equal(done.status, 'done', 'the event stream shows it done');

    const list = await request(`${url}/api/jobs?state=done&group=api`);
    t.equal(list.status, 200);
    t.equal(list.json.total, 1, 'one done job in group api');
    const row = list.json.jobs[0];
    t.match(row, { state: 'done', name: 'hello', group: 'api', status: 'done', exit_code: 0 });

    const one = await request(`${url}/api/jobs/${encodeURIComponent(row.id)}`);
    t.equal(one.status, 200, 'GET /api/jobs/:id');
    t.equal(one.json.state, 'done');
    const uid = IS_ROOT ? Number(execFileSync('id', ['-u', SUBMIT_USER], { encoding: 'utf8' }).trim()) : process.getuid!();
    t.equal(one.json.log.text, `hello from the api as ${uid}\n`, 'the log tail is its output');
    t.equal(one.json.record.owner, uid, IS_ROOT ? 'submitted to a root server, the job is owned by the --submit-user' : 'the job is owned by the server\'s user');
    t.equal(fs.statSync(one.json.record.archive).uid, uid, 'so is its archived file');
    // the record the daemon archived is the one the API shows
    const rec = readJson(`${one.json.record.archive}.json`);
    t.equal(rec.id, row.id, 'its archived record has the same id');

    const missing = await request(`${url}/api/jobs/no.such.1.2.3`);
    t.equal(missing.status, 404, 'an unknown id: 404');
  });

  t.test('kill and retry through the API', async (t) => {
    // first attempt: wait to be killed; second attempt: succeed
    const script = '#!/bin/sh\nif [ "$PMJQ_ATTEMPT" -ge 2 ]; then echo "attempt $PMJQ_ATTEMPT ok"; exit 0; fi\necho started\nexec sleep 300\n';
    const sub = await postJson(`${url}/api/jobs`, { script, group: 'api', name: 'victim' });
    t.equal(sub.status, 201);
    const running = await events.wait('victim to run', (s) => jobIn(s.running, 'victim'));
    const id = running.id;

    const kill = await postJson(`${url}/api/jobs/${encodeURIComponent(id)}/kill`, undefined);
    t.equal(kill.status, 202, 'POST /api/jobs/:id/kill on a running job: 202 (its node kills it)');
    t.match(kill.json, { id, was: 'running', pending: true });
    const killed = await events.wait('victim to be killed', (s) => {
      const j = s.recent.find((r: { id: string }) => r.id === id);
      return j && j.status === 'killed' ? j : null;
    });
    t.equal(killed.state, 'failed', 'a killed job is in the failed queue');
    const failed = await request(`${url}/api/jobs?state=failed&q=victim`);
    t.equal(failed.json.total, 1, 'found in the failed queue by search');

    const again = await postJson(`${url}/api/jobs/${encodeURIComponent(id)}/kill`, undefined);
    t.equal(again.status, 409, 'killing a job that is not running: 409');
    t.match(again.json.message, /not running/);

    const retry = await postJson(`${url}/api/jobs/${encodeURIComponent(id)}/retry`, undefined);
    t.equal(retry.status, 200, 'POST /api/jobs/:id/retry');
    t.match(retry.json, { id, attempt: 2, previous_attempt: 1, previous_status: 'killed' });
    const ok = await events.wait('victim to succeed on attempt 2', (s) => {
      const j = s.recent.find((r: { id: string }) => r.id === id);
      return j && j.status === 'done' ? j : null;
    });
    t.equal(ok.attempt, 2, 'it ran again as attempt 2');
    const one = await request(`${url}/api/jobs/${encodeURIComponent(id)}`);
    t.match(one.json.log.text, /attempt 2 ok/);

    const twice = await postJson(`${url}/api/jobs/${encodeURIComponent(id)}/retry`, undefined);
    t.equal(twice.status, 409, 'retrying a job that did not fail: 409');
    const unknown = await postJson(`${url}/api/jobs/no.such.1.2.3/retry`, undefined);
    t.equal(unknown.status, 404, 'retrying an unknown id: 404');
  });

  t.test('pause and resume hold a group\'s jobs on every node', async (t) => {
    const p = await postJson(`${url}/api/pause`, { groups: ['held'] });
    t.equal(p.status, 200, 'POST /api/pause');
    t.same(p.json, { all: false, groups: ['held'] });
    const sub = await postJson(`${url}/api/jobs`, { script: '#!/bin/sh\necho late\n', group: 'held', name: 'late' });
    t.equal(sub.status, 201);
    await events.wait('group held paused', (s) => s.status.groups.find((g: { group: string; paused: boolean }) => g.group === 'held' && g.paused));
    // a second node, for group held, starts with the pause in place: it holds the job and says so
    const second = await startDaemon(fixture, spool, archive, ['--groups', 'held']);
    await second.waitLine(/event=barrier-hold barrier="paused held"/, 60_000);
    const heldNode = await events.wait('the second node\'s heartbeat to carry the hold',
      (s) => s.status.nodes.find((n: { holds: string[] }) => n.holds.some((h) => h.startsWith('paused held:'))));
    const m = parsePrometheus((await request(`${url}/metrics`)).text);
    t.ok(m.samples.some((x) => x.name === 'pmjq_node_barrier_held' && x.labels.node === heldNode.node && x.labels.barrier === 'paused held' && x.value === 1),
      'metrics: pmjq_node_barrier_held{barrier="paused held"} is 1 for that node');
    const queued = await events.wait('late still queued', (s) => s.queued.find((j: { name: string }) => j.name === 'late'));
    t.equal(queued.group, 'held', 'held in the queue while paused');
    const r = await postJson(`${url}/api/resume`, {});
    t.equal(r.status, 200, 'POST /api/resume');
    t.same(r.json, { all: false, groups: [] }, 'resume with no group resumes all');
    const done = await events.wait('late to run once resumed', (s) => jobIn(s.recent, 'late'));
    t.equal(done.status, 'done');
    const all = await postJson(`${url}/api/pause`, undefined);
    t.same(all.json, { all: true, groups: [] }, 'pause with no body pauses all');
    t.same((await postJson(`${url}/api/resume`, { groups: [] })).json, { all: false, groups: [] }, 'resume with an empty list resumes all');
  });

  t.test('GET /api/jobs pages, sorts and searches every state', async (t) => {
    for (let i = 0; i < 5; i++) {
      const r = await postJson(`${url}/api/jobs`, { script: `#!/bin/sh\necho page ${i}\n`, group: 'pages', name: `page-${i}` });
      t.equal(r.status, 201);
    }
    await events.wait('five pages done', (s) => s.status.groups.find((g: { group: string; done: number }) => g.group === 'pages' && g.done === 5));
    const a = await request(`${url}/api/jobs?group=pages&sort=name&order=asc&offset=0&limit=2`);
    t.equal(a.json.total, 5);
    t.same(a.json.jobs.map((j: { name: string }) => j.name), ['page-0', 'page-1'], 'first page by name');
    const b = await request(`${url}/api/jobs?group=pages&sort=name&order=desc&offset=2&limit=2`);
    t.same(b.json.jobs.map((j: { name: string }) => j.name), ['page-2', 'page-1'], 'second page, descending');
    const q = await request(`${url}/api/jobs?q=PAGE-3`);
    t.same(q.json.jobs.map((j: { name: string }) => j.name), ['page-3'], 'search is a case-insensitive substring');
    const all = await request(`${url}/api/jobs?state=running,retrying,queued,failed,done,rejected&limit=1000`);
    t.equal(all.json.total, 8, 'every state at once');
  });

  t.test('/metrics is Prometheus text with the expected metrics', async (t) => {
    const r = await request(`${url}/metrics`);
    t.equal(r.status, 200);
    t.match(r.headers['content-type'], /^text\/plain; version=0\.0\.4/, 'Prometheus text format');
    const m = parsePrometheus(r.text);
    for (const [name, type] of [
      ['pmjq_jobs', 'gauge'], ['pmjq_job_duration_seconds', 'histogram'], ['pmjq_claim_latency_seconds', 'histogram'],
      ['pmjq_node_up', 'gauge'], ['pmjq_node_heartbeat_age_seconds', 'gauge'], ['pmjq_node_barrier_held', 'gauge'], ['pmjq_nodes', 'gauge'],
      ['pmjq_group_paused', 'gauge'], ['pmjq_paused_all', 'gauge'], ['pmjq_kill_requests', 'gauge'],
      ['process_cpu_user_seconds_total', 'counter'], ['process_resident_memory_bytes', 'gauge'], ['nodejs_eventloop_lag_seconds', 'gauge'],
    ] as const) {
      t.equal(m.types.get(name), type, `${name} is a ${type}`);
    }
    const v = (name: string, labels: Record<string, string> = {}): number | undefined =>
      m.samples.find((s) => s.name === name && Object.entries(labels).every(([k, x]) => s.labels[k] === x))?.value;
    t.equal(v('pmjq_jobs', { state: 'done', group: 'api' }), 2, 'done jobs of group api');
    t.equal(v('pmjq_jobs', { state: 'done', group: 'pages' }), 5, 'done jobs of group pages');
    t.equal(v('pmjq_jobs', { state: 'running', group: 'pages' }), 0, 'a zero is a zero');
    const up = m.samples.filter((x) => x.name === 'pmjq_node_up');
    t.equal(up.length, 2, 'two nodes');
    t.ok(up.every((x) => x.value === 1), 'both up');
    t.equal(v('pmjq_nodes', { state: 'STALE' }), 0, 'none stale');
    t.ok(v('pmjq_job_duration_seconds_count', { group: 'pages', status: 'done' })! === 5, 'five durations of group pages');
    t.ok(v('pmjq_job_duration_seconds_bucket', { group: 'pages', status: 'done', le: '+Inf' }) === 5, 'histogram buckets');
    t.ok(v('pmjq_claim_latency_seconds_count', { group: 'pages' })! === 5, 'claim latencies');
    t.equal(v('pmjq_paused_all'), 0);
  });
});

interface Sample { name: string; labels: Record<string, string>; value: number }

/** A strict reader of the Prometheus text exposition format (0.0.4): every line must parse. */
function parsePrometheus(text: string): { types: Map<string, string>; samples: Sample[] } {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  const name = '[a-zA-Z_:][a-zA-Z0-9_:]*';
  const sampleRe = new RegExp(`^(${name})(?:\\{(.*)\\})? (\\S+)(?: -?\\d+)?$`);
  const labelRe = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/gy;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m: RegExpExecArray | null;
    if ((m = new RegExp(`^# TYPE (${name}) (counter|gauge|histogram|summary|untyped)$`).exec(line))) { types.set(m[1]!, m[2]!); continue; }
    if (new RegExp(`^# HELP ${name} .*$`).test(line)) continue;
    m = sampleRe.exec(line);
    if (!m) throw new Error(`not a Prometheus text line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    if (m[2]) {
      labelRe.lastIndex = 0;
      let l: RegExpExecArray | null;
      let consumed = 0;
      while ((l = labelRe.exec(m[2])) !== null) { labels[l[1]!] = l[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\'); consumed = labelRe.lastIndex; }
      if (consumed !== m[2].length) throw new Error(`bad labels in ${JSON.stringify(line)}`);
    }
    const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    if (Number.isNaN(value) && m[3] !== 'NaN') throw new Error(`bad value in ${JSON.stringify(line)}`);
    samples.push({ name: m[1]!, labels, value });
  }
  return { types, samples };
}
