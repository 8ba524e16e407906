// The dashboard's last hour (pmjqctl(1), Dashboard; src/control/charts.ts):
// jobs finished per minute, failed apart, and the most jobs queued at once in
// each minute, per group. First the arithmetic on given times (buildCharts is
// pure), then a real daemon and a real server: GET /api/charts and the
// `charts` of the /events snapshot after real jobs ran and waited.

import fs from 'node:fs';
import t from 'tap';
import { buildCharts, type Finished, type QueueSpan } from '../../src/control/charts.js';
import { openToAll, scratch } from '../helpers/helpers.js';
import { Events, TOKEN, postJson, request, startDaemon, startServer } from '../helpers/http.js';

const at = (hhmmss: string): number => Date.parse(`2026-11-30T${hhmmss}.000Z`);

t.test('buildCharts: minutes, groups, done and failed apart, queue peaks', async (t) => {
  const now = at('10:30:30');
  const finished: Finished[] = [
    { group: 'web', finished: at('10:30:10'), failed: false },
    { group: 'web', finished: at('10:30:20'), failed: false },
    { group: 'web', finished: at('10:29:59'), failed: true },
    { group: 'etl', finished: at('09:30:59'), failed: false }, // before the window
    { group: 'etl', finished: at('10:31:00'), failed: false }, // after now
  ];
  const spans: QueueSpan[] = [
    { group: 'q', created: at('09:00:00'), claimed: at('09:45:30') }, // queued since before the window
    { group: 'q', created: at('10:00:10'), claimed: at('10:00:20') },
    { group: 'q', created: at('10:00:15'), claimed: at('10:00:50') }, // overlaps the one above: 2 at once
    { group: 'q', created: at('10:10:00'), claimed: at('10:10:30') },
    { group: 'q', created: at('10:10:30'), claimed: at('10:10:40') }, // arrives as the other is claimed: never 2
    { group: 'q', created: at('10:30:00'), claimed: null }, // still queued
    { group: 'old', created: at('08:00:00'), claimed: at('09:00:00') }, // all before the window: no group
  ];
  const c = buildCharts(now, finished, spans);
  t.equal(c.start, '2026-11-30T09:31:00.000Z', 'the window starts 59 whole minutes before the current one');
  t.equal(c.minutes, 60);
  t.equal(c.bucket_ms, 60_000);
  t.same(c.groups.map((g) => g.group), ['q', 'web'], 'groups with something in the window, by name');
  const web = c.groups.find((g) => g.group === 'web')!;
  t.equal(web.done[59], 2, 'two done in the current minute');
  t.equal(web.failed[58], 1, 'one failed in the minute before');
  t.equal(web.done.reduce((a, b) => a + b) + web.failed.reduce((a, b) => a + b), 3, 'nothing else counted');
  const q = c.groups.find((g) => g.group === 'q')!;
  t.same(q.queued.slice(0, 15), new Array(15).fill(1), 'the job queued before the window counts from its first minute until its claim (09:45)');
  t.equal(q.queued[15], 0, 'not after');
  t.equal(q.queued[29], 2, '10:00: two were queued at once');
  t.equal(q.queued[39], 1, '10:10: one left as the other arrived: never two');
  t.equal(q.queued[59], 1, 'the current minute: the job still queued');
  t.equal(q.queued.filter((v) => v > 0).length, 15 + 1 + 1 + 1, 'and nothing else');
});

t.test('GET /api/charts and the /events snapshot, after real jobs ran and waited', async (t) => {
  const { dir, spool, archive } = scratch(t);
  openToAll(dir, spool, archive);
  const { url } = await startServer(t, spool, { tokenDir: dir });
  await startDaemon(t, spool, archive, ['-j', '4', '--group', 'one:max=1']);
  const events = await Events.open(t, url);
  const gate = `${dir}/gate`;
  const submit = async (name: string, group: string, body: string): Promise<void> => {
    t.equal((await postJson(`${url}/api/jobs`, { script: `#!/bin/sh\n${body}\n`, group, name }, TOKEN)).status, 201, `submitted ${group}/${name}`);
  };
  await submit('hold', 'one', `while [ ! -e '${gate}' ]; do sleep 0.05; done`);
  await events.wait('hold to run', (s) => s.running.some((j: { name: string }) => j.name === 'hold'));
  await submit('waits', 'one', 'true');
  await submit('a', 'web', 'true');
  await submit('b', 'web', 'true');
  await submit('c', 'web', 'exit 5');

  const series = (s: { charts: { groups: { group: string; done: number[]; failed: number[]; queued: number[] }[] } }, g: string) => s.charts.groups.find((x) => x.group === g);
  const sum = (a: number[] | undefined): number => (a ?? []).reduce((x, y) => x + y, 0);
  await events.wait('web: 2 done, 1 failed; one: 1 queued now', (s) => {
    const web = series(s, 'web');
    const one = series(s, 'one');
    return sum(web?.done) === 2 && sum(web?.failed) === 1 && one?.queued[59] === 1;
  });
  t.pass('the snapshot shows web\'s jobs, and the one waiting behind max=1, queued now');

  fs.writeFileSync(gate, '');
  const final = await events.wait('one: both done', (s) => sum(series(s, 'one')?.done) === 2 && s);
  t.ok(Math.max(...series(final, 'one')!.queued) >= 1, 'one: the job that waited is in the queue line');

  const r = await request(`${url}/api/charts`);
  t.equal(r.status, 200, 'GET /api/charts');
  t.equal(r.json.minutes, 60);
  t.equal(r.json.bucket_ms, 60_000);
  t.match(r.json.start, /^\d{4}-\d\d-\d\dT\d\d:\d\d:00\.000Z$/, 'starts on a whole minute');
  const web = r.json.groups.find((g: { group: string }) => g.group === 'web');
  t.equal(sum(web.done), 2, 'web: 2 done');
  t.equal(sum(web.failed), 1, 'web: 1 failed');
  t.same([web.done.length, web.failed.length, web.queued.length], [60, 60, 60], 'sixty minutes each');
});
