#!/usr/bin/env node
// Round trip of `enqueue` + `waitjobs` of a trivial sub-job (`#!/bin/sh`,
// `exit 0`), as a job sees it: a Node job using dist/lib/job.js times each
// pair of calls; the manager is the real Protocol and CommandChannel, and
// sub-jobs are spawned with JobProcess, as the engine does (no spool, no
// scheduler: this measures the protocol and the spawn, not claiming).
// For scale the job also runs the same script directly (spawnSync), right
// after each round trip, so that both see the same machine load.
//
//   npm run build && node bench/protocol-roundtrip.mjs [ITERATIONS]   (default 1000)

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { JobProcess } from '../dist/run/job-process.js';
import { Protocol } from '../dist/run/protocol/index.js';
import { Logger } from '../dist/util/log.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const N = Number(process.argv[2] ?? 1000);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pmjq-roundtrip-'));
const tree = path.join(dir, 'tree');
fs.mkdirSync(tree);
fs.mkdirSync(path.join(dir, 'logs'));
const trivial = path.join(tree, 'trivial');
fs.writeFileSync(trivial, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
const result = path.join(dir, 'result.json');
const entry = path.join(tree, 'entry.mjs');
fs.writeFileSync(entry, `#!${process.execPath}
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
const { enqueue } = await import(${JSON.stringify(pathToFileURL(path.join(ROOT, 'dist/lib/job.js')).href)});
const times = [];
const bare = [];
for (let i = 0; i < ${N}; i++) {
  const t0 = process.hrtime.bigint();
  const st = enqueue('trivial').wait();
  times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  if (st.exitcode !== 0) { console.error('bad status', st); process.exit(1); }
  // the same script run directly, at the same moment, for scale
  const t1 = process.hrtime.bigint();
  spawnSync(${JSON.stringify(trivial)}, [], { stdio: 'ignore' });
  bare.push(Number(process.hrtime.bigint() - t1) / 1e6);
}
fs.writeFileSync(${JSON.stringify(result)}, JSON.stringify({ times, bare }));
`, { mode: 0o755 });

const log = new Logger({ verbosity: -1 });
let counter = 0;
const host = {
  log,
  enqueue(req) {
    const id = `sub.${++counter}`;
    setImmediate(() => run(id, req.script, req.args, req.tree, req.parent));
    return id;
  },
  kill: () => false,
  isSpoolGroup: () => false,
};
const protocol = new Protocol(host);
/** every job runs as this process does */
const ME = { uid: process.getuid(), gid: process.getgid(), groups: process.getgroups() };

function run(id, file, args, cwd, parent) {
  const env = { ...process.env, CHAQUM_IDENT: id, PMJQ_JOB_ID: id };
  if (parent) env.CHAQUM_PARENT = parent;
  const proc = new JobProcess({
    id, file, args, cwd, env, logPath: path.join(dir, 'logs', 'all.log'), killGraceMs: 1000,
    handler: protocol.handlerFor({ id, tree, owner: ME }), log,
  });
  protocol.jobStarted(id);
  return proc.start().then((r) => {
    if (!r.ok) { protocol.jobEnded(id, null); return null; }
    return proc.exited.then((end) => { protocol.jobEnded(id, end.exitCode, end.reason !== 'exit'); return end; });
  });
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(s.length * p))]; };

try {
  const t0 = Date.now();
  const end = await run('entry', entry, [], tree, null);
  if (end?.exitCode !== 0) throw new Error(`entry job failed: ${fs.readFileSync(path.join(dir, 'logs', 'all.log'), 'utf8').slice(-2000)}`);
  const wall = Date.now() - t0;
  const { times, bare } = JSON.parse(fs.readFileSync(result, 'utf8'));

  const out = {
    iterations: times.length,
    median_ms: +median(times).toFixed(3),
    p90_ms: +pct(times, 0.9).toFixed(3),
    p99_ms: +pct(times, 0.99).toFixed(3),
    min_ms: +Math.min(...times).toFixed(3),
    bare_spawn_median_ms: +median(bare).toFixed(3),
    overhead_median_ms: +(median(times) - median(bare)).toFixed(3),
    wall_ms: wall,
    cpus: os.cpus().length,
    loadavg: os.loadavg().map((x) => +x.toFixed(2)),
  };
  process.stdout.write(JSON.stringify(out, null, 2) + '\n');
} finally {
  protocol.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
