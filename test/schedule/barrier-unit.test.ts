// Fast in-process tests of the load barrier's prediction, which the
// end-to-end tests can only sample: a load source the test sets, explicit
// times.

import t from 'tap';
import { LoadModel } from '../../src/schedule/barrier.js';

const T0 = 1_700_000_000_000;
const s = (n: number): number => n * 1000;

t.test('load model: a job started just now counts fully; the kernel\'s average catches up over a minute', async (t) => {
  let kernel = 0;
  const m = new LoadModel(() => kernel);
  t.equal(m.predictedLoad(T0), 0, 'idle');
  m.jobStarted('a', T0);
  t.equal(m.predictedLoad(T0), 1, 'one job just started: 1');
  // a minute on, the kernel shows 1 − e^(−1) of it; the model adds the rest
  kernel = 1 - Math.exp(-1);
  t.ok(Math.abs(m.predictedLoad(T0 + s(60)) - 1) < 1e-9, 'a minute on: still 1 in all');
  m.jobEnded('a', T0 + s(60));
  // just ended: the kernel still shows it; the model takes it away
  t.ok(Math.abs(m.predictedLoad(T0 + s(60))) < 1e-9, 'just ended: 0');
});

t.test('load model: -C 2 on an idle machine with 50 jobs queued starts 2, not 50', async (t) => {
  const m = new LoadModel(() => 0);
  let started = 0;
  for (let i = 0; i < 50; i++) {
    if (m.holds({ load: 2 }, T0) !== null) break;
    m.jobStarted(`j${i}`, T0);
    started++;
  }
  t.equal(started, 2, 'two start');
  t.match(m.holds({ load: 2 }, T0), /^load 2\.00 >= 2$/, 'the hold says why');
});

t.test('load model: the CPU barrier counts jobs started since the last sample as busy CPUs', async (t) => {
  const m = new LoadModel(() => 0);
  const cpus = (await import('node:os')).availableParallelism();
  const now = Date.now();
  const before = m.cpuUtilisation(now);
  for (let i = 0; i < cpus; i++) m.jobStarted(`j${i}`, now);
  t.equal(m.cpuUtilisation(now), 1, `${cpus} jobs just started on ${cpus} CPUs: fully busy (was ${before.toFixed(2)})`);
  t.match(m.holds({ cpu: 0.9 }, now), /^cpu 100% >= 90%$/, 'the hold says why');
});
