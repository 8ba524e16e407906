// Repeats with real processes (pmjq-protocol(7), issue 4): registered from sh and
// from Python; a 1-second interval fires repeatedly at a fixed rate, at most
// one instance at a time (a firing while the previous instance runs is
// skipped), a 6-field cron fires on the second, chaqum's 0s5m0h0d0w means
// what it says.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { readStamps, setup, shq, until, writeScript } from '../helpers/protocol-host.js';
import { BIN, ROOT_ARGS, linesMatching, scratch, start } from '../helpers/helpers.js';

// ---- repeats ----

t.test('repeats: a 1-second interval fires repeatedly, at most one instance at a time; a 6-field cron fires', async (t) => {
  const { dir, tree, host } = setup(t);
  const ticks = path.join(dir, 'ticks');
  fs.mkdirSync(ticks);
  const out = path.join(dir, 'out');
  const reg = writeScript(tree, 'register', `#!/bin/sh
. "$PMJQ_LIB/pmjq.sh"
pmjq_repeat_interval 1s tick ${shq(ticks)} fast || exit 1
pmjq_repeat_interval 0s1m0h0d0w tick ${shq(ticks)} never || exit 1
pmjq_repeat_cron '0 0 * * 1' tick ${shq(ticks)} weekly || exit 1
echo registered > ${shq(out)}
`);
  const regPy = writeScript(tree, 'register-py', `#!/usr/bin/env python3
from pmjq import *
interval("tick", ${JSON.stringify(ticks)}, "slow", "1.5", seconds=1)
cron("tick", ${JSON.stringify(ticks)}, "cron")
`);
  const started = Date.now();
  const a = host.startTop(reg);
  const b = host.startTop(regPy);
  t.equal((await host.ended(a.id)).end?.exitCode, 0, 'sh registers an interval and a 5-field cron');
  t.equal((await host.ended(b.id)).end?.exitCode, 0, 'Python registers an interval and a 6-field cron (every second)');
  t.equal(host.protocol.listRepeats().length, 5, 'five repeats registered');
  t.notOk(host.protocol.idle, 'not idle while repeats are registered');

  await until('3 fast ticks, 2 slow ones, 2 cron ones', () => {
    const fast = readStamps(path.join(ticks, 'fast')).filter((s) => s.end !== null);
    const slow = readStamps(path.join(ticks, 'slow')).filter((s) => s.end !== null);
    const cron = readStamps(path.join(ticks, 'cron')).filter((s) => s.end !== null);
    return fast.length >= 3 && slow.length >= 2 && cron.length >= 2;
  }, 15_000);
  t.comment(`repeats fired as expected within ${Date.now() - started} ms`);

  // when the repeats fired: the host's enqueue times (the sub-jobs' own stamps add spawn jitter)
  const firings = (arg: string): number[] => [...host.jobs.values()].filter((j) => j.repeat && j.args[1] === arg).map((j) => j.enqueuedAt);
  const fast = firings('fast');
  const gaps = fast.slice(1).map((x, i) => x - fast[i]!);
  t.ok(gaps.every((g) => g > 600 && g < 1600), `fast firings about 1 s apart (${gaps.join(', ')} ms)`);
  const mean = (fast[fast.length - 1]! - fast[0]!) / (fast.length - 1);
  t.ok(mean > 950 && mean < 1150, `at a fixed rate: ${mean.toFixed(0)} ms on average`);
  const slow = readStamps(path.join(ticks, 'slow'));
  for (let i = 1; i < slow.length; i++) {
    t.ok(slow[i - 1]!.end !== null && slow[i]!.start >= slow[i - 1]!.end!, 'a slow instance starts only after the previous one ended');
  }
  await host.waitLine(/event=repeat-skipped .*running=/);
  t.pass('a firing while the previous instance still ran was skipped (and logged)');
  const cron = firings('cron');
  t.ok(cron.every((x) => x % 1000 < 300), `the every-second cron fires on the second (${cron.map((x) => x % 1000).join(', ')} ms past)`);
  const cgaps = cron.slice(1).map((x, i) => x - cron[i]!);
  t.ok(cgaps.every((g) => g > 700 && g < 1300), `… once a second (${cgaps.join(', ')} ms apart)`);
  t.notOk(fs.existsSync(path.join(ticks, 'never')) || fs.existsSync(path.join(ticks, 'weekly')), 'the minutely and weekly ones did not fire yet');
  const info = host.protocol.listRepeats().find((r) => r.schedule === 'every 0s1m0h0d0w')!;
  t.ok(Math.abs(info.next.getTime() - (started + 60_000)) < 5000, 'chaqum interval 0s1m0h0d0w means one minute');

  host.protocol.close();
  t.ok(host.protocol.listRepeats().length === 0, 'close() clears the repeats');
});

// pmjq(1), --once: a repeat has no end, so `pmjq --once` with one registered
// goes on like a daemon until a signal (documented there).
t.test('pmjq --once with a repeat registered by --init: keeps firing it, exits 0 on SIGTERM', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const tree = path.join(dir, 'tree');
  fs.mkdirSync(tree);
  const ticks = path.join(dir, 'ticks');
  writeScript(tree, 'tick', `#!/bin/sh\necho tick >> ${shq(ticks)}\n`);
  const init = writeScript(tree, 'init', `#!/bin/sh\n. "$PMJQ_LIB/pmjq.sh"\npmjq_repeat_interval 1s tick || exit 1\n`);
  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '--once', '--init', init, '-o', archive, spool]);
  let exited: number | null = null;
  void p.exited.then((c) => { exited = c; });
  const count = (): number => { try { return fs.readFileSync(ticks, 'utf8').split('\n').length - 1; } catch { return 0; } };
  // three firings: three runs of its job, or three lines saying why one could not run
  await until('the repeat to fire three times', () => count() >= 3 || linesMatching(p.stderr(), /event=repeat-failed /).length >= 3, 20_000);
  t.equal(exited, null, 'pmjq --once is still running: the spool is drained, but a repeat is registered');
  t.ok(count() >= 3, `and the repeat's job ran each time (${linesMatching(p.stderr(), /event=repeat-failed /)[0] ?? 'no repeat-failed line'})`);
  p.kill('SIGTERM');
  t.equal(await p.exited, 0, 'SIGTERM stops it, exit 0');
});
