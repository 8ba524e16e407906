// Fast in-process tests of the scheduler's decisions: groups taking turns,
// and admission (max, pause, the load barrier with a load source the test
// sets, cluster_max slots on a real scratch directory, the ticket that owns
// a slot).

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { Slots } from '../../src/cluster/slots.js';
import { Admission, Ticket } from '../../src/schedule/admission.js';
import { Holds, LoadModel } from '../../src/schedule/barrier.js';
import { Groups, type Group } from '../../src/schedule/groups.js';
import type { Candidate } from '../../src/spool/candidate.js';
import { Logger } from '../../src/util/log.js';
import { scratch } from '../helpers/helpers.js';

let seq = 0;
function candidate(group: string, orderMs = seq): Candidate {
  const key = `job${seq++}`;
  return {
    group, dir: group, name: Buffer.from(key), key, orderMs, mtimeMs: orderMs, size: 1, seenUid: 0,
    seenAt: 0, gone: false, listed: 0,
  };
}

t.test('groups take turns: 100 queued in one group delay another group\'s first job by one turn at most', async (t) => {
  const groups = new Groups();
  for (let i = 0; i < 100; i++) groups.add(candidate('big'));
  groups.add(candidate('small'));
  groups.add(candidate('small'));
  groups.add(candidate('one'));
  const order: string[] = [];
  for (let i = 0; i < 8; i++) {
    const g = groups.next((g) => g);
    if (!g) break;
    order.push(g.name);
    g.queue.pop();
  }
  t.same(order, ['big', 'small', 'one', 'big', 'small', 'big', 'big', 'big'], 'round-robin among groups with work');
  t.equal(groups.queued(), 100 - 5, 'the rest still queued');
});

t.test('within a group: oldest first, then by name; a candidate that left is skipped', async (t) => {
  const groups = new Groups();
  const late = candidate('g', 300);
  const early = candidate('g', 100);
  const gone = candidate('g', 50);
  for (const c of [late, early, gone]) groups.add(c);
  gone.gone = true;
  const g = groups.get('g');
  t.equal(g.peek(), early, 'the oldest that is still there');
  g.queue.pop();
  t.equal(g.peek(), late);
});

interface Fixture { admission: Admission; lines: string[]; paused: Set<string>; kernel: { load: number }; slots: Slots; group: (name: string, settings?: Group['cliSettings']) => Group }

function fixture(t: Parameters<typeof scratch>[0], limits: { load?: number; cpu?: number } = {}): Fixture {
  const { spool } = scratch(t);
  const lines: string[] = [];
  const log = new Logger({ write: (l) => { lines.push(l); } });
  const kernel = { load: 0 };
  const paused = new Set<string>();
  const groups = new Groups();
  const slots = new Slots(path.join(spool, '.pmjq/slots'), 'me.1.1');
  fs.mkdirSync(path.join(spool, '.pmjq/slots'), { recursive: true });
  let ids = 0;
  const admission = new Admission({
    limits, pollMs: 1000, load: new LoadModel(() => kernel.load), holds: new Holds(log), slots,
    paused: (g) => paused.has(g.name), queued: () => groups.queued(), newId: () => `id${ids++}`, log,
  });
  const group = (name: string, settings: Group['cliSettings'] = {}): Group => {
    const g = groups.get(name);
    g.cliSettings = settings;
    g.queue.push(candidate(name));
    return g;
  };
  return { admission, lines, paused, kernel, slots, group };
}

const holdLines = (lines: string[]): string[] => lines.filter((l) => / event=barrier-(hold|release) /.test(l));

t.test('admission: max, pause and the load barrier each hold, and say so once', async (t) => {
  const f = fixture(t, { load: 2 });
  const g = f.group('g', { max: 1 });
  t.type(f.admission.admit(g), Ticket, 'nothing in the way: a ticket');
  g.running = 1;
  t.same(f.admission.admit(g), { held: 'max' }, 'max 1 with one running: held (not logged: a plain limit)');
  g.running = 0;
  f.paused.add('g');
  t.same(f.admission.admit(g), { held: 'paused' }, 'paused');
  t.same(f.admission.admit(g), { held: 'paused' }, 'still paused');
  f.paused.delete('g');
  f.kernel.load = 5;
  t.same(f.admission.admit(g), { held: 'load 5.00 >= 2' }, 'the node\'s load barrier');
  f.kernel.load = 0;
  t.type(f.admission.admit(g), Ticket, 'the load fell: a ticket');
  const holds = holdLines(f.lines);
  t.equal(holds.length, 4, `each hold logged once, and its release once:\n${holds.join('')}`);
  t.match(holds[0], /barrier="paused g" reason="paused by pmjqctl"/);
  t.match(holds[2], /barrier=node reason="load 5\.00 >= 2"/);
});

t.test('admission: cluster_max slots are tickets; releasing one twice frees one slot', async (t) => {
  const f = fixture(t);
  const g = f.group('lic', { cluster_max: 2 });
  const a = f.admission.admit(g);
  const b = f.admission.admit(g);
  t.ok(a instanceof Ticket && b instanceof Ticket, 'two slots, two tickets');
  t.same(f.admission.admit(g), { held: 'cluster_max 2 reached' }, 'the third is held');
  (a as Ticket).release();
  (a as Ticket).release();
  const c = f.admission.admit(g);
  t.type(c, Ticket, 'one slot came back');
  t.same(f.admission.admit(g), { held: 'cluster_max 2 reached' }, 'and only one: a second release freed nothing');
  (b as Ticket).release();
  (c as Ticket).release();
  t.same(fs.readdirSync(f.slots.root).flatMap((d) => fs.readdirSync(path.join(f.slots.root, d)).filter((n) => !n.startsWith('.'))), [], 'no slot left taken');
});
