// `npm run bench` is not a test, but it must keep running: it imports the
// engine's modules (dist/) directly, and a rename there once left figure 6
// "BROKEN" unnoticed. Its quick form (small sizes, about 20 s) runs here;
// figures are not judged, only that every one of them was measured.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { ROOT } from '../helpers/helpers.js';

t.test('npm run bench -- --quick measures every figure', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pmjq-bench-test-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const json = path.join(dir, 'results.json');
  const child = spawn(process.execPath, [path.join(ROOT, 'bench/run.mjs'), '--quick', '--json', json], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TMPDIR: dir } });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  t.equal(code, 0, `bench exits 0\n${out.slice(-3000)}`);
  t.notMatch(out, /BROKEN|BROKE:/, 'no figure broke');
  const results = JSON.parse(fs.readFileSync(json, 'utf8')) as unknown;
  t.ok(results, 'raw results written');
  for (const fig of ['1 throughput', '2 pickup latency', '3 backlog', '4 idle', '5 heavy output', '6 protocol round trip', '7 cluster', '8 submit']) {
    t.match(out, new RegExp(`^${fig}`, 'm'), `figure ${fig} measured`);
  }
});
