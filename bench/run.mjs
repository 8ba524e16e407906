#!/usr/bin/env node
// npm run bench — the performance targets (README, Performance) measured on this machine, side by side with
// xargs where there is something to compare with (issue 8).
//
// A benchmark, not a test: it prints a table of figures, targets and
// verdicts and exits 0 however slow the machine is. It exits non-zero only
// when something broke (a job lost, a daemon that crashed or hung).
//
// Every comparison runs in this one invocation, A and B alternating, and each
// figure is the median of several runs, so that ratios hold on a busy box.
//
//   node bench/run.mjs [--quick] [--only 1,3] [--jobs N] [--backlog N] [--json FILE]
//
// Everything runs in scratch directories under $TMPDIR that are removed at
// the end (not between runs: see scratch()), as is every process started
// here (killed by process group, and job processes found by their
// PMJQ_SPOOL environment — never by name).

import { spawn, spawnSync, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let PMJQ = path.join(ROOT, 'dist/cli/pmjq.cjs');
const warnings = [];
const IS_ROOT = process.getuid?.() === 0;
const ROOT_ARGS = IS_ROOT ? ['--allow-root'] : [];
const TRIVIAL = '#!/bin/sh\nexit 0\n';
const ENV_BIN = ['/usr/bin/env', '/bin/env'].find((p) => fs.existsSync(p)) ?? 'env';

// ---------------------------------------------------------------- options

const { values: argv } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    jobs: { type: 'string' },
    reps: { type: 'string' },
    backlog: { type: 'string' },
    'backlog-small': { type: 'string' },
    'backlog-count': { type: 'string' },
    'latency-jobs': { type: 'string' },
    'latency-poll': { type: 'string' },
    'idle-seconds': { type: 'string' },
    'heavy-jobs': { type: 'string' },
    'heavy-mb': { type: 'string' },
    'heavy-j': { type: 'string' },
    json: { type: 'string' },
    'cpu-prof': { type: 'string' },
    pmjq: { type: 'string' },
    'pmjq-args': { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});

if (argv.help) {
  process.stdout.write(`Usage: node bench/run.mjs [options]   (npm run bench -- [options])

Measures the performance targets (README, Performance) and prints: figure, measured, target, ratio/verdict.

  --quick               small sizes, few repetitions: the whole run in under a minute
  --only 1,3            run only these figures (1 throughput, 2 latency, 3 backlog,
                        4 idle, 5 heavy output, 6 protocol, 7 cluster, 8 submitting)
  --jobs N              figure 1: trivial jobs per run (default 2000; quick 60)
  --reps N              repetitions of each side of a comparison (default 3; quick 2)
  --latency-jobs N      figure 2: jobs dropped one at a time per watch mode (300; quick 20)
  --latency-poll MS     figure 2: --poll of the poll-mode daemon (default 100)
  --backlog N           figure 3: the large backlog (100000; quick 2000)
  --backlog-small N     figure 3: the small backlog (1000; quick 60)
  --backlog-count N     figure 3: completions counted (2000; quick 60)
  --idle-seconds S      figure 4: measuring window (30; quick 3)
  --heavy-jobs N        figure 5: jobs (20; quick 4)
  --heavy-mb MB         figure 5: MB each job writes to stdout (50; quick 8)
  --heavy-j N           figure 5: pmjq -j (default: all jobs at once)
  --json FILE           raw results (default bench/results/latest.json)
  --cpu-prof DIR        run every daemon under node --cpu-prof, profiles into DIR
  --pmjq FILE           the pmjq to measure (default dist/cli/pmjq.cjs, as installed; e.g. a build of another commit)
  --pmjq-args 'A B'     extra arguments for every pmjq started (e.g. '--poll 10s' to try a setting)
`);
  process.exit(0);
}

const Q = argv.quick;
function intOpt(name, full, quick) {
  const v = argv[name];
  if (v === undefined) return Q ? quick : full;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) die(`--${name}: '${v}' is not a positive number`);
  return Math.round(n);
}
const O = {
  quick: Q,
  jobs: intOpt('jobs', 2000, 60),
  reps: intOpt('reps', 3, 2),
  latencyJobs: intOpt('latency-jobs', 300, 20),
  latencyPollMs: intOpt('latency-poll', 100, 100),
  backlog: intOpt('backlog', 100_000, 2000),
  backlogSmall: intOpt('backlog-small', 1000, 60),
  backlogCount: intOpt('backlog-count', 2000, 60),
  backlogReps: intOpt('reps', 2, 1),
  idleSeconds: intOpt('idle-seconds', 30, 3),
  heavyJobs: intOpt('heavy-jobs', 20, 4),
  heavyMb: intOpt('heavy-mb', 50, 8),
  heavyReps: intOpt('reps', 3, 1),
  json: path.resolve(argv.json ?? path.join(ROOT, 'bench/results/latest.json')),
  cpuProf: argv['cpu-prof'] ? path.resolve(argv['cpu-prof']) : null,
};
if (argv.pmjq) PMJQ = path.resolve(argv.pmjq);
const EXTRA_ARGS = argv['pmjq-args'] ? argv['pmjq-args'].split(/\s+/).filter(Boolean) : [];
O.heavyJ = argv['heavy-j'] !== undefined ? intOpt('heavy-j', 0, 0) : O.heavyJobs;
const ONLY = argv.only ? new Set(argv.only.split(',').map((s) => Number(s.trim()))) : null;

function die(msg) {
  process.stderr.write(`bench: ${msg}\n`);
  process.exit(2);
}

// ---------------------------------------------------------------- cleanup

const scratchDirs = new Set();
const liveProcs = new Set(); // { pid, spool? }

function killTree(p) {
  try { process.kill(-p.pid, 'SIGKILL'); } catch { /* gone */ }
  if (p.spool) for (const pid of jobProcesses(p.spool)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
}

function cleanupAll() {
  for (const p of liveProcs) killTree(p);
  liveProcs.clear();
  for (const d of scratchDirs) { try { fs.rmSync(d, { recursive: true, force: true }); } catch { /* best effort */ } }
  scratchDirs.clear();
}
process.on('exit', cleanupAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => { process.stderr.write(`\nbench: ${sig}, cleaning up\n`); cleanupAll(); process.exit(130); });
}

/**
 * A run's files are removed at the end (cleanupAll), not between runs: an
 * ext4 without a journal (this VM's) skips, on every inode it allocates, each
 * inode freed in the last minute (five while still dirty), so a run right
 * after another tool's clean-up of thousands of files pays for it, and pays
 * the more the more files it makes per job (measured: pmjq's daemon 1.8 ms
 * of CPU per job against 1.15 ms on a quiet disk; task-spooler and nq make
 * one file per job, pmjq two).
 */
function scratch(tag) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), `pmjq-bench-${tag}-`));
  scratchDirs.add(d);
  return d;
}

/** Live processes whose environment has PMJQ_SPOOL=spool (the jobs of that spool's pmjq). */
function jobProcesses(spool) {
  const marker = Buffer.from(`\0PMJQ_SPOOL=${spool}\0`);
  const out = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    let env;
    try { env = Buffer.concat([Buffer.from([0]), fs.readFileSync(`/proc/${e}/environ`)]); } catch { continue; }
    if (env.indexOf(marker) >= 0) out.push(Number(e));
  }
  return out;
}

// ---------------------------------------------------------------- helpers

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (msg) => process.stderr.write(`bench: ${msg}\n`);

function median(a) {
  if (a.length === 0) return NaN;
  const s = [...a].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
function percentile(a, p) {
  if (a.length === 0) return NaN;
  const s = [...a].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
const percentiles = (a) => ({ p50: percentile(a, 50), p90: percentile(a, 90), p99: percentile(a, 99), max: Math.max(...a) });
const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : String(x));
const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : String(x));

/** Write n job files name PREFIX000001… with mode 755. */
function makeJobs(dir, n, body = TRIVIAL, prefix = 'j', from = 0) {
  const names = [];
  for (let i = from; i < from + n; i++) {
    const name = `${prefix}${String(i).padStart(6, '0')}`;
    fs.writeFileSync(path.join(dir, name), body, { mode: 0o755 });
    names.push(name);
  }
  return names;
}

let CLK_TCK = 100;
try { CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100; } catch { /* default */ }

/** utime+stime of a process, in seconds. */
function cpuSeconds(pid) {
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK; // fields 14 and 15 of stat(5)
}

/** VmRSS and VmHWM in MB, or null once the process is gone. */
function memMB(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k) => Number((new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s) ?? [])[1] ?? NaN);
    return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
  } catch {
    return null;
  }
}

/** Samples a process's peak RSS (VmHWM) until stopped. */
function rssSampler(pid, everyMs = 100) {
  let peak = 0;
  const tick = () => {
    const m = memMB(pid); // a zombie has no Vm* lines: NaN, ignored
    if (m) for (const v of [m.hwm, m.rss]) if (v > peak) peak = v;
  };
  tick();
  const t = setInterval(tick, everyMs);
  return { stop: () => { clearInterval(t); tick(); return peak; }, peek: () => { tick(); return peak; } };
}

/** Spawn a command in its own process group; registered for cleanup. */
function launch(cmd, args, { stdin = 'ignore', stdout = 'ignore', stderr = 'ignore', spool, env } = {}) {
  const child = spawn(cmd, args, { stdio: [stdin, stdout, stderr], detached: true, env: env ?? process.env });
  const rec = { pid: child.pid, spool };
  liveProcs.add(rec);
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => { liveProcs.delete(rec); resolve({ code, signal }); });
    child.on('error', (err) => { liveProcs.delete(rec); resolve({ code: null, signal: null, error: err }); });
  });
  return { child, pid: child.pid, exited, rec };
}

async function withTimeout(promise, ms, what) {
  let t;
  const r = await Promise.race([promise, new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`${what}: no result within ${Math.round(ms / 1000)} s`)), ms); })]);
  clearTimeout(t);
  return r;
}

/** A pmjq daemon (or --once run) with its stderr log in a file. */
function startPmjq(args, spool, logFile) {
  const fd = fs.openSync(logFile, 'a');
  // as installed: the bundle runs itself (its shell line execs node); a .js build of another commit, or a profile, through node
  const cmd = PMJQ.endsWith('.cjs') && !O.cpuProf ? [PMJQ] : [process.execPath, ...(O.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${O.cpuProf}`] : []), PMJQ];
  const p = launch(cmd[0], [...cmd.slice(1), ...ROOT_ARGS, ...args, ...EXTRA_ARGS, spool], { stderr: fd, spool });
  fs.closeSync(fd);
  p.logFile = logFile;
  p.stop = async (timeoutMs = 20_000) => {
    try { process.kill(p.pid, 'SIGTERM'); } catch { /* gone */ }
    try {
      try {
        return await withTimeout(p.exited, timeoutMs, 'pmjq stop');
      } catch (err) {
        if (!/ event=stopping /.test(fs.readFileSync(logFile, 'utf8'))) {
          // seen with 100 000 queued: the SIGTERM is acted on only when a second one comes
          warnings.push(`pmjq pid ${p.pid} had not acted on SIGTERM ${timeoutMs / 1000} s later (no "stopping" line; it went on starting jobs): sent a second SIGTERM`);
          try { process.kill(p.pid, 'SIGTERM'); } catch { /* gone */ }
          return await withTimeout(p.exited, timeoutMs, 'pmjq stop (second SIGTERM)');
        }
        throw err;
      }
    } catch (err) {
      if (/ event=stopped /.test(logTail(logFile, 3))) {
        // it finished its work and logged so, but the process stayed: a daemon bug, not a lost job
        warnings.push(`pmjq pid ${p.pid} logged "stopped" but had not exited ${timeoutMs / 1000} s after SIGTERM: killed`);
        killTree(p.rec);
        return { code: 0, signal: null, hung: true };
      }
      let state = '';
      try { state = fs.readFileSync(`/proc/${p.pid}/status`, 'utf8').split('\n').filter((l) => /^(State|Threads)/.test(l)).join(', '); } catch { state = 'gone'; }
      err.message += ` (pid ${p.pid}: ${state})\n${logTail(logFile)}`;
      throw err;
    } finally {
      killTree(p.rec);
    }
  };
  return p;
}

/** Incremental reader of a daemon's log: counts job-end lines and keeps their times. */
class LogTail {
  constructor(file) { this.file = file; this.pos = 0; this.rest = ''; this.ends = []; this.errors = []; }
  read() {
    let fd;
    try { fd = fs.openSync(this.file, 'r'); } catch { return; }
    try {
      const size = fs.fstatSync(fd).size;
      if (size <= this.pos) return;
      const buf = Buffer.alloc(size - this.pos);
      fs.readSync(fd, buf, 0, buf.length, this.pos);
      this.pos = size;
      const lines = (this.rest + buf.toString('utf8')).split('\n');
      this.rest = lines.pop();
      for (const l of lines) {
        if (l.includes(' event=job-end ')) this.ends.push({ t: Date.parse(l.slice(0, 24)), ok: l.includes(' status=done ') });
        else if (/ level=error /.test(l)) this.errors.push(l);
      }
    } finally {
      fs.closeSync(fd);
    }
  }
}

/** Wait until cond() is true, checking every `everyMs`, bounded. */
async function until(what, cond, timeoutMs, everyMs = 50) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = cond();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Names of job files (not .log/.json) in an archive directory. */
function archivedJobs(dir) {
  return fs.readdirSync(dir).filter((f) => !f.startsWith('.') && !f.endsWith('.log') && !f.endsWith('.json'));
}

function logTail(file, n = 15) {
  try { return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-n).join('\n'); } catch { return '(no log)'; }
}

// Wall clock (CLOCK_REALTIME, what `date +%s%N` reads) with sub-ms
// resolution: Date.now() aligned once on a millisecond tick, then advanced
// by the monotonic clock.
let wallBaseMs = 0;
function calibrateWall() {
  const t = Date.now();
  let d;
  while ((d = Date.now()) === t) { /* spin to the next tick */ }
  wallBaseMs = d - performance.now();
}
const wallNs = () => BigInt(Math.round((wallBaseMs + performance.now()) * 1e6));

// ---------------------------------------------------------------- peers (issue 14)

/** Is `cmd` on the PATH? */
function have(cmd) {
  return spawnSync('sh', ['-c', `command -v '${cmd}'`], { stdio: 'ignore' }).status === 0;
}

/** The peers installed here, by the name of their row. */
const PEERS = {
  tsp: have('tsp') ? 'tsp' : have('ts') && /task.spooler|ts-/.test(spawnSync('ts', ['-h'], { encoding: 'utf8' }).stdout ?? '') ? 'ts' : null,
  nq: have('nq') ? 'nq' : null,
  parallel: have('parallel') ? 'parallel' : null,
  inotifyloop: have('inotifywait') && have('bash') ? 'inotifywait' : null,
};
const PEER_LABEL = {
  pmjq: 'pmjq --once -j 2', xargs: 'xargs -P2', tsp: 'task-spooler -S 2', nq: 'nq (2 queues)',
  parallel: 'GNU parallel -j2', inotifyloop: 'inotifywait + mv loop (2 at a time)',
};
/** issue 14's targets: pmjq's throughput at least this many times the peer's */
const PEER_TARGET = { xargs: 0.6, tsp: 1.0, nq: 1.3 };

/** A task-spooler server of its own (socket and output files in `d`); `tsp(args)` runs the client. */
function tspIn(d) {
  const env = { ...process.env, TS_SOCKET: path.join(d, 'ts.socket'), TMPDIR: d, TS_MAXFINISHED: '1000000' };
  return {
    env,
    run: (args) => spawnSync(PEERS.tsp, args, { env, encoding: 'utf8' }),
    kill: () => spawnSync(PEERS.tsp, ['-K'], { env, stdio: 'ignore' }),
  };
}

/** The inotifywait + mv loop: claim by mv into RUN, run 2 at a time, move to DONE. Resolves once its watch is set. */
async function inotifyLoop(d) {
  const spool = path.join(d, 'spool'), run = path.join(d, 'run'), done = path.join(d, 'done');
  for (const x of [spool, run, done]) fs.mkdirSync(x, { recursive: true });
  const script = path.join(d, 'loop.sh');
  fs.writeFileSync(script, `#!/bin/bash
# what a site writes when it has inotify-tools and no job runner
S=$1 R=$2 D=$3 n=0
inotifywait -m -e moved_to --format '%f' "$S" | while IFS= read -r f; do
  [[ $f == .* ]] && continue
  mv "$S/$f" "$R/$f" 2>/dev/null || continue
  { "$R/$f" > "$R/$f.log" 2>&1; mv "$R/$f" "$R/$f.log" "$D/"; } &
  if (( ++n >= 2 )); then wait -n; (( n-- )); fi
done
`, { mode: 0o755 });
  const errFile = path.join(d, 'loop.err');
  const fd = fs.openSync(errFile, 'w');
  const p = launch('bash', [script, spool, run, done], { stderr: fd, spool });
  fs.closeSync(fd);
  await until('inotifywait to set its watch', () => fs.readFileSync(errFile, 'utf8').includes('Watches established'), 10_000, 10);
  return { spool, run, done, p };
}

/** Drop a job into a watched directory the safe way: hidden name, then rename. */
function drop(dir, name, body) {
  const tmp = path.join(dir, `.${name}.partial`);
  fs.writeFileSync(tmp, body, { mode: 0o755 });
  fs.renameSync(tmp, path.join(dir, name));
}

// ---------------------------------------------------------------- figure 1: throughput

async function figThroughput() {
  const N = O.jobs;
  const xargsCmd = `xargs -0 -P2 -n1 ${ENV_BIN} FILE`;
  const tools = ['pmjq', 'xargs', ...Object.keys(PEERS).filter((k) => PEERS[k])];
  const runs = Object.fromEntries(tools.map((k) => [k, []]));
  const ratios = Object.fromEntries(tools.map((k) => [k, []]));
  const listOf = (d, names) => {
    const list = path.join(d, '.list');
    fs.writeFileSync(list, names.map((n) => path.join(d, n) + '\0').join(''));
    return list;
  };
  const runners = {
    pmjq: async () => {
      const d = scratch('f1a');
      const spool = path.join(d, 'spool'), arch = path.join(d, 'archive');
      fs.mkdirSync(spool); fs.mkdirSync(arch);
      makeJobs(spool, N);
      const t0 = performance.now();
      const p = startPmjq(['--once', '-j', '2', '-o', arch], spool, path.join(d, 'pmjq.log'));
      const r = await withTimeout(p.exited, 60_000 + N * 500, 'pmjq --once');
      const s = (performance.now() - t0) / 1000;
      const got = archivedJobs(arch).length;
      const left = fs.readdirSync(spool).filter((f) => !f.startsWith('.'));
      if (r.code !== 0 || got !== N || left.length) {
        throw new Error(`pmjq --once: exit ${r.code} ${r.signal ?? ''}, ${got}/${N} archived, ${left.length} left in the spool\n${logTail(p.logFile)}`);
      }
      return N / s;
    },
    xargs: async () => {
      const d = scratch('f1b');
      const fd = fs.openSync(listOf(d, makeJobs(d, N)), 'r');
      const t0 = performance.now();
      const p = launch('xargs', ['-0', '-P2', '-n1', ENV_BIN], { stdin: fd });
      fs.closeSync(fd);
      const r = await withTimeout(p.exited, 60_000 + N * 500, 'xargs');
      const s = (performance.now() - t0) / 1000;
      if (r.code !== 0) throw new Error(`xargs exited ${r.code} ${r.signal ?? ''}`);
      return N / s;
    },
    parallel: async () => {
      const d = scratch('f1p');
      const fd = fs.openSync(listOf(d, makeJobs(d, N)), 'r');
      const t0 = performance.now();
      const p = launch(PEERS.parallel, ['--will-cite', '-0', '-j2'], { stdin: fd, env: { ...process.env, HOME: d } });
      fs.closeSync(fd);
      const r = await withTimeout(p.exited, 60_000 + N * 500, 'parallel');
      const s = (performance.now() - t0) / 1000;
      if (r.code !== 0) throw new Error(`parallel exited ${r.code} ${r.signal ?? ''}`);
      return N / s;
    },
    // tsp and nq: their own submit command per job, in a shell loop, timed to the last job's end (jobs start while the loop goes on)
    tsp: async () => {
      const d = scratch('f1t');
      const names = makeJobs(d, N);
      const ts = tspIn(d);
      ts.run(['-S', '2']);
      const t0 = performance.now();
      const sub = spawnSync('sh', ['-c', `for f in "$@"; do "${PEERS.tsp}" "$f"; done > /dev/null`, 'sh', ...names.map((n) => path.join(d, n))], { env: ts.env });
      if (sub.status !== 0) throw new Error(`tsp: submitting failed: ${sub.stderr}`);
      await until(`tsp to finish ${N} jobs`, () => !/ (running|queued) /.test(ts.run(['-l']).stdout), 60_000 + N * 500, 5);
      const s = (performance.now() - t0) / 1000;
      const finished = (ts.run(['-l']).stdout.match(/ finished /g) ?? []).length;
      ts.kill();
      if (finished !== N) throw new Error(`tsp: ${finished}/${N} jobs finished`);
      return N / s;
    },
    nq: async () => {
      const d = scratch('f1n');
      const names = makeJobs(d, N);
      const q = [path.join(d, 'q0'), path.join(d, 'q1')];
      for (const x of q) fs.mkdirSync(x);
      const t0 = performance.now();
      // nq runs one job at a time per queue directory: two queues, alternately
      const sub = spawnSync('sh', ['-c', `i=0; for f in "$@"; do NQDIR="${d}/q$((i % 2))" "${PEERS.nq}" -q "$f"; i=$((i + 1)); done`, 'sh', ...names.map((n) => path.join(d, n))], { stdio: 'ignore' });
      if (sub.status !== 0) throw new Error('nq: submitting failed');
      for (const x of q) {
        const w = spawnSync(PEERS.nq, ['-w'], { env: { ...process.env, NQDIR: x }, stdio: 'ignore', timeout: 60_000 + N * 500 });
        if (w.status !== 0) throw new Error(`nq -w exited ${w.status}`);
      }
      const s = (performance.now() - t0) / 1000;
      const outputs = q.reduce((a, x) => a + fs.readdirSync(x).filter((f) => f.startsWith(',')).length, 0);
      if (outputs !== N) throw new Error(`nq: ${outputs}/${N} job outputs`);
      return N / s;
    },
    inotifyloop: async () => {
      const d = scratch('f1i');
      const L = await inotifyLoop(d);
      // staged as hidden files in the watched directory, then renamed in as fast as this process can
      for (let i = 0; i < N; i++) fs.writeFileSync(path.join(L.spool, `.j${i}`), TRIVIAL, { mode: 0o755 });
      const t0 = performance.now();
      for (let i = 0; i < N; i++) fs.renameSync(path.join(L.spool, `.j${i}`), path.join(L.spool, `j${i}`));
      await until(`the inotify loop to finish ${N} jobs`, () => fs.readdirSync(L.done).length >= 2 * N, 60_000 + N * 500, 5);
      const s = (performance.now() - t0) / 1000;
      killTree(L.p.rec);
      return N / s;
    },
  };
  for (let i = 0; i < O.reps; i++) {
    // every tool once per round, the order turned each round
    const order = tools.map((_, k) => tools[(k + i) % tools.length]);
    const got = {};
    for (const which of order) {
      got[which] = await runners[which]();
      log(`fig 1 rep ${i + 1}/${O.reps}: ${which} ${f1(got[which])} jobs/s`);
    }
    for (const k of tools) { runs[k].push(got[k]); ratios[k].push(got.pmjq / got[k]); }
  }
  const med = Object.fromEntries(tools.map((k) => [k, median(runs[k])]));
  const ratio = Object.fromEntries(tools.map((k) => [k, median(ratios[k])]));
  const missing = Object.keys(PEERS).filter((k) => !PEERS[k]);
  return {
    data: { jobs: N, reps: O.reps, xargs_command: xargsCmd, jobs_per_s: runs, ratio_per_pair: ratios, median: { ...med }, ratio, missing },
    rows: tools.map((k) => ({
      figure: k === 'pmjq' ? `1 throughput (${N} trivial jobs)` : '',
      measured: `${PEER_LABEL[k]}: ${f1(med[k])} jobs/s`,
      target: k === 'pmjq' ? '' : PEER_TARGET[k] ? `pmjq/${k} >= ${PEER_TARGET[k]}` : '(context)',
      verdict: k === 'pmjq' ? '' : `${f2(ratio[k])}${PEER_TARGET[k] ? (ratio[k] >= PEER_TARGET[k] ? ' met' : ' MISSED') : ''}`,
    })),
    notes: [
      `fig 1: ${N} trivial jobs, 2 at a time, every tool once per round (order turned each round); ratio = median of per-round pmjq/tool. pmjq: \`pmjq --once -j 2 -o ARCHIVE\` on a spool holding them, start-up included; xargs: \`${xargsCmd}\` (env(1): the cheapest exec trampoline); parallel: \`parallel -0 -j2\` on the same list; tsp and nq: one submit command per job in a shell loop, timed to the last job's end (jobs run while the loop goes on); nq has one job at a time per queue directory, so two queues, alternately; the inotifywait loop: a bash loop that claims each file by mv, runs 2 at a time and moves it to a done directory, the files renamed into its directory one after another${missing.length ? `; not installed here: ${missing.join(', ')}` : ''}`,
    ],
  };
}

// ---------------------------------------------------------------- figure 2: pickup latency

async function figLatency() {
  const N = O.latencyJobs;
  const d = scratch('f2');
  const stamps = path.join(d, 'stamps');
  fs.mkdirSync(stamps);
  const modes = {
    inotify: { args: ['--watch', 'inotify'], jitter: () => 2 + Math.random() * 8 },
    poll: { args: ['--watch', 'poll', '--poll', `${O.latencyPollMs}ms`], jitter: () => Math.random() * O.latencyPollMs },
  };
  // the job's first instruction records the wall clock in ns; `exec` spares the shell a fork
  const body = (name) => `#!/bin/sh\nexec date +%s%N > '${path.join(stamps, name)}'\n`;
  let seq = 0;

  // floor: the same job spawned directly by this process (spawn + sh + date),
  // sampled between the drops so that it sees the same load
  const floor = [];
  const floorJob = path.join(d, 'floorjob');
  const floorOne = () => {
    const name = `floor${floor.length}`;
    fs.writeFileSync(floorJob, body(name), { mode: 0o755 });
    const t0 = wallNs();
    spawnSync(floorJob, [], { stdio: 'ignore' });
    floor.push(Number(BigInt(fs.readFileSync(path.join(stamps, name), 'utf8').trim()) - t0) / 1e6);
  };

  for (const [mode, m] of Object.entries(modes)) {
    m.spool = path.join(d, `spool-${mode}`);
    m.arch = path.join(d, `archive-${mode}`);
    fs.mkdirSync(m.spool); fs.mkdirSync(m.arch);
    m.proc = startPmjq([...m.args, '-j', '2', '-o', m.arch], m.spool, path.join(d, `pmjq-${mode}.log`));
    m.samples = [];
    m.archived = new Set();
    m.watcher = fs.watch(m.arch, (_ev, f) => { if (f?.endsWith('.json')) m.archived.add(f); });
  }

  /** Drop one job by hidden name then rename; resolve with ms from rename to its first instruction. */
  const dropOne = async (mode, warm = false) => {
    const m = modes[mode];
    const name = `${warm ? 'warm' : 'lat'}${String(seq++).padStart(5, '0')}`;
    const tmp = path.join(m.spool, `.${name}.partial`);
    fs.writeFileSync(tmp, body(name), { mode: 0o755 });
    const stampFile = path.join(stamps, name);
    await sleep(m.jitter());
    const t0 = wallNs();
    fs.renameSync(tmp, path.join(m.spool, name));
    let stamp = '';
    await until(`job ${name} to start (${mode})`, () => {
      try { stamp = fs.readFileSync(stampFile, 'utf8').trim(); } catch { /* not yet */ }
      return stamp.length > 0;
    }, 30_000, 1);
    const ms = Number(BigInt(stamp) - t0) / 1e6;
    // let the daemon archive it before the next drop, so one job's finish is not the next one's pickup
    const suffix = `-${name}.json`;
    await until(`job ${name} to be archived (${mode})`, () => {
      for (const f of m.archived) if (f.endsWith(suffix)) { m.archived.delete(f); return true; }
      return fs.readdirSync(m.arch).some((f) => f.endsWith(suffix));
    }, 30_000, 2);
    return ms;
  };

  // the peers that have a queue to pick jobs up from, the same job, timed from the submit command's start (tsp, nq) or the rename (the inotifywait loop)
  const peers = {};
  const waitStamp = async (name, what) => {
    let stamp = '';
    await until(`job ${name} to start (${what})`, () => {
      try { stamp = fs.readFileSync(path.join(stamps, name), 'utf8').trim(); } catch { /* not yet */ }
      return stamp.length > 0;
    }, 30_000, 1);
    return stamp;
  };
  const peerJob = (name) => {
    const f = path.join(d, 'peerjobs', name);
    fs.mkdirSync(path.dirname(f), { recursive: true });
    fs.writeFileSync(f, body(name), { mode: 0o755 });
    return f;
  };
  if (PEERS.tsp) {
    const ts = tspIn(path.join(d, 'tsp'));
    fs.mkdirSync(path.join(d, 'tsp'));
    ts.run(['-S', '2']);
    peers.tsp = { ts, submit: (f) => spawnSync(PEERS.tsp, ['-n', f], { env: ts.env, stdio: 'ignore' }), stop: () => ts.kill() };
  }
  if (PEERS.nq) {
    const q = path.join(d, 'nq');
    fs.mkdirSync(q);
    peers.nq = { submit: (f) => spawnSync(PEERS.nq, ['-q', f], { env: { ...process.env, NQDIR: q }, stdio: 'ignore' }), stop: () => {} };
  }
  if (PEERS.inotifyloop) {
    const L = await inotifyLoop(path.join(d, 'loop'));
    peers.inotifyloop = { drop: (name) => drop(L.spool, name, body(name)), stop: () => killTree(L.p.rec) };
  }
  for (const k of Object.keys(peers)) peers[k].samples = [];
  const peerOne = async (k) => {
    const name = `${k}${String(seq++).padStart(5, '0')}`;
    const p = peers[k];
    const f = p.drop ? null : peerJob(name);
    await sleep(2 + Math.random() * 8);
    const t0 = wallNs();
    if (p.drop) p.drop(name); else p.submit(f);
    const stamp = await waitStamp(name, k);
    await sleep(5); // its exit, before the next one
    return Number(BigInt(stamp) - t0) / 1e6;
  };

  try {
    // warm up: the first job proves the daemon runs, the later ones that its watcher is set up
    for (const mode of Object.keys(modes)) {
      await dropOne(mode, true);
      await sleep(300);
      for (let i = 0; i < 3; i++) await dropOne(mode, true);
    }
    for (const k of Object.keys(peers)) await peerOne(k);
    let lastCal = 0;
    const all = [...Object.keys(modes), ...Object.keys(peers)];
    for (let i = 0; i < N; i++) {
      if (i - lastCal >= 25 || i === 0) { calibrateWall(); lastCal = i; }
      const order = all.map((_, k) => all[(k + i) % all.length]);
      for (const mode of order) {
        if (modes[mode]) modes[mode].samples.push(await dropOne(mode));
        else peers[mode].samples.push(await peerOne(mode));
      }
      floorOne();
      if ((i + 1) % 50 === 0) log(`fig 2: ${i + 1}/${N} jobs per mode`);
    }
  } finally {
    for (const m of Object.values(modes)) { m.watcher.close(); await m.proc.stop(); }
    for (const p of Object.values(peers)) p.stop();
  }
  const peerStats = Object.fromEntries(Object.entries(peers).map(([k, p]) => [k, percentiles(p.samples)]));
  const stat = percentiles;
  const si = stat(modes.inotify.samples), sp = stat(modes.poll.samples), sf = stat(floor);
  const fmt = (s) => `p50 ${f1(s.p50)} p90 ${f1(s.p90)} p99 ${f1(s.p99)} max ${f1(s.max)} ms`;
  const pollTarget = O.latencyPollMs + 20;
  return {
    data: { jobs_per_mode: N, poll_ms: O.latencyPollMs, inotify: si, poll: sp, floor_direct_spawn: sf, peers: peerStats, samples_ms: { inotify: modes.inotify.samples, poll: modes.poll.samples, floor, ...Object.fromEntries(Object.entries(peers).map(([k, p]) => [k, p.samples])) } },
    rows: [
      { figure: '2 pickup latency, inotify', measured: fmt(si), target: 'p50 <= 5, p99 <= 25 ms', verdict: si.p50 <= 5 && si.p99 <= 25 ? 'met' : 'MISSED' },
      { figure: `2 pickup latency, poll ${O.latencyPollMs}ms`, measured: fmt(sp), target: `max <= ${pollTarget} ms (poll + 20)`, verdict: sp.max <= pollTarget ? 'met' : `MISSED (p99 ${sp.p99 <= pollTarget ? 'met' : 'missed'})` },
      { figure: '2 floor: job spawned directly', measured: fmt(sf), target: '(context)', verdict: '' },
      ...Object.entries(peerStats).map(([k, ps]) => ({
        figure: '',
        measured: `${PEER_LABEL[k]}: ${fmt(ps)}`,
        target: k === 'tsp' ? 'pmjq inotify p50 <= tsp p50 + 1 ms' : '(context)',
        verdict: k === 'tsp' ? `${f1(si.p50 - ps.p50)} ms ${si.p50 <= ps.p50 + 1 ? 'met' : 'MISSED'}` : `p50 pmjq inotify - ${k}: ${f1(si.p50 - ps.p50)} ms`,
      })),
    ],
    notes: [`fig 2: ${N} jobs per mode, dropped one at a time (hidden name, then rename) alternating between an inotify and a poll daemon; each job is \`exec date +%s%N > FILE\`; the next drop waits until the previous job is archived, then a random pause (poll mode: uniform over the poll interval); "floor" is the same job spawned by the benchmark itself (spawn + sh + date) after each pair of drops, the part of the latency that is process start-up, not pmjq; the peers in the same rotation: tsp (\`tsp -n FILE\`, server at -S 2) and nq (\`nq -q FILE\`) timed from the start of their submit command, the inotifywait loop from the rename`],
  };
}

// ---------------------------------------------------------------- figure 3: backlog

async function figBacklog() {
  const sizes = { small: O.backlogSmall, large: O.backlog };
  const d = scratch('f3');
  const S = {};
  for (const [k, n] of Object.entries(sizes)) {
    S[k] = { n, spool: path.join(d, `spool-${k}`), next: 0, runs: [] };
    fs.mkdirSync(S[k].spool);
  }
  const topUp = (s) => {
    const have = fs.readdirSync(s.spool).filter((f) => !f.startsWith('.')).length
      + (fs.existsSync(path.join(s.spool, '.pmjq/retry')) ? fs.readdirSync(path.join(s.spool, '.pmjq/retry')).length : 0);
    if (have < s.n) { makeJobs(s.spool, s.n - have, TRIVIAL, 'j', s.next); s.next += s.n - have; }
    return s.n;
  };
  log(`fig 3: writing ${sizes.large} + ${sizes.small} job files`);
  for (const s of Object.values(S)) topUp(s);

  const runOne = async (k) => {
    const s = S[k];
    const queued = topUp(s);
    const count = Math.min(O.backlogCount, queued);
    // a new archive and log per run (see scratch(): nothing is removed before the end)
    const arch = path.join(d, `archive-${k}-${s.runs.length}`);
    fs.mkdirSync(arch);
    const logFile = path.join(d, `pmjq-${k}-${s.runs.length}.log`);
    const t0 = Date.now();
    const p = startPmjq(['-j', '2', '-o', arch], s.spool, logFile);
    const rss = rssSampler(p.pid, 200);
    const tail = new LogTail(logFile);
    let exited = null;
    void p.exited.then((r) => { exited = r; });
    let peak;
    let stopped;
    try {
      await until(`${count} completions with ${queued} queued`, () => {
        if (exited) throw new Error(`pmjq exited early (${exited.code} ${exited.signal ?? ''})\n${logTail(logFile)}`);
        tail.read();
        return tail.ends.length >= count;
      }, 120_000 + count * 500, 200);
    } finally {
      peak = rss.stop();
      stopped = await p.stop();
    }
    if (stopped.code !== 0) throw new Error(`pmjq stopped with exit ${stopped.code} ${stopped.signal ?? ''}\n${logTail(logFile)}`);
    tail.read();
    const ends = tail.ends.slice(0, count);
    const failed = ends.filter((e) => !e.ok).length;
    const span = (ends[count - 1].t - ends[0].t) / 1000;
    const rate = (count - 1) / span;
    // nothing lost, nothing run twice: every job file is queued, retrying or archived, once
    const inSpool = fs.readdirSync(s.spool).filter((f) => !f.startsWith('.')).length;
    const retry = fs.readdirSync(path.join(s.spool, '.pmjq/retry')).length;
    const claimed = fs.readdirSync(path.join(s.spool, '.pmjq/claimed')).length;
    const done = archivedJobs(arch).length;
    if (inSpool + retry + done !== queued || failed || claimed) {
      throw new Error(`backlog ${queued}: ${inSpool} queued + ${retry} retrying + ${done} archived != ${queued} (${claimed} claimed areas left, ${failed} failed)`);
    }
    s.queuedLeft = inSpool + retry;
    const run = { queued, counted: count, jobs_per_s: rate, first_completion_s: (ends[0].t - t0) / 1000, peak_rss_mb: peak };
    s.runs.push(run);
    log(`fig 3: ${queued} queued: ${f1(rate)} jobs/s over ${count} completions, first after ${f1(run.first_completion_s)} s, peak RSS ${f1(peak)} MB`);
    return run;
  };
  const ratios = [];
  for (let i = 0; i < O.backlogReps; i++) {
    const order = i % 2 === 0 ? ['small', 'large'] : ['large', 'small'];
    const got = {};
    for (const k of order) got[k] = await runOne(k);
    ratios.push(got.large.jobs_per_s / got.small.jobs_per_s);
  }
  const med = (k, f) => median(S[k].runs.map((r) => r[f]));
  const ratio = median(ratios);
  const rssLarge = Math.max(...S.large.runs.map((r) => r.peak_rss_mb));
  return {
    data: { small: S.small.runs, large: S.large.runs, ratio_per_pair: ratios, ratio },
    rows: [
      {
        figure: `3 backlog ${sizes.large} vs ${sizes.small} queued`,
        measured: `${f1(med('large', 'jobs_per_s'))} vs ${f1(med('small', 'jobs_per_s'))} jobs/s (first job after ${f1(med('large', 'first_completion_s'))} vs ${f1(med('small', 'first_completion_s'))} s)`,
        target: 'ratio >= 0.8',
        verdict: `${f2(ratio)} ${ratio >= 0.8 ? 'met' : 'MISSED'}`,
      },
      { figure: `3 backlog ${sizes.large}: daemon peak RSS`, measured: `${f1(rssLarge)} MB (${sizes.small}: ${f1(Math.max(...S.small.runs.map((r) => r.peak_rss_mb)))} MB)`, target: '< 200 MB', verdict: rssLarge < 200 ? 'met' : 'MISSED' },
    ],
    notes: [`fig 3: a running daemon (\`pmjq -j 2 -o ARCHIVE\`, inotify) started on a spool already holding the backlog; rate = completions from the first to the ${Math.min(O.backlogCount, sizes.small)}th/${O.backlogCount}th job-end log line (start-up shown separately as "first job after"); RSS = VmHWM sampled every 200 ms`],
  };
}

// ---------------------------------------------------------------- figure 4: idle cost

async function figIdle() {
  const d = scratch('f4');
  const modes = { inotify: ['--watch', 'inotify'], poll: ['--watch', 'poll'] };
  const D = {};
  for (const [mode, args] of Object.entries(modes)) {
    const spool = path.join(d, `spool-${mode}`), arch = path.join(d, `archive-${mode}`);
    fs.mkdirSync(spool); fs.mkdirSync(arch);
    D[mode] = { spool, arch, proc: startPmjq([...args, '-o', arch], spool, path.join(d, `pmjq-${mode}.log`)) };
  }
  try {
    // one job each proves the daemon is up; then the spool is empty again
    for (const [mode, x] of Object.entries(D)) {
      fs.writeFileSync(path.join(x.spool, '.w'), TRIVIAL, { mode: 0o755 });
      fs.renameSync(path.join(x.spool, '.w'), path.join(x.spool, 'warm'));
      await until(`warm-up job (${mode})`, () => archivedJobs(x.arch).length === 1, 30_000);
    }
    await sleep(1000);
    const windows = 3;
    const winMs = (O.idleSeconds * 1000) / windows;
    for (const x of Object.values(D)) { x.cpu0 = cpuSeconds(x.proc.pid); x.w = []; }
    const t0 = performance.now();
    const prev = Object.fromEntries(Object.entries(D).map(([k, x]) => [k, x.cpu0]));
    let tPrev = t0;
    for (let w = 0; w < windows; w++) {
      await sleep(winMs);
      const t = performance.now();
      for (const [k, x] of Object.entries(D)) {
        const c = cpuSeconds(x.proc.pid);
        x.w.push(((c - prev[k]) / ((t - tPrev) / 1000)) * 100);
        prev[k] = c;
      }
      tPrev = t;
    }
    const secs = (performance.now() - t0) / 1000;
    for (const [k, x] of Object.entries(D)) {
      x.cpuS = prev[k] - x.cpu0;
      x.pct = (x.cpuS / secs) * 100;
      x.rss = memMB(x.proc.pid)?.rss ?? NaN;
    }
    log(`fig 4: inotify ${f2(D.inotify.pct)} %, poll ${f2(D.poll.pct)} % of a core over ${f1(secs)} s`);
  } finally {
    for (const x of Object.values(D)) await x.proc.stop();
  }
  const row = (mode) => ({
    figure: `4 idle, ${mode}${mode === 'poll' ? ' (--poll 1s)' : ''}`,
    measured: `${D[mode].cpuS.toFixed(2)} CPU s in ${O.idleSeconds} s = ${f2(D[mode].pct)} % (windows: ${D[mode].w.map(f2).join(', ')} %), RSS ${f1(D[mode].rss)} MB`,
    target: '< 1 % of a core',
    verdict: D[mode].pct < 1 ? 'met' : 'MISSED',
  });
  return {
    data: Object.fromEntries(Object.entries(D).map(([k, x]) => [k, { cpu_s: x.cpuS, percent: x.pct, windows_percent: x.w, rss_mb: x.rss }])),
    rows: [row('inotify'), row('poll')],
    notes: [`fig 4: both daemons idle at once on empty spools (default --poll 1s), utime+stime from /proc/PID/stat (resolution 1/${CLK_TCK} s)`],
  };
}

// ---------------------------------------------------------------- figure 5: heavy output

async function figHeavy() {
  const H = O.heavyJobs;
  const bytes = O.heavyMb * 1024 * 1024;
  const body = `#!/bin/sh\nyes 'pmjq bench: a line of heavy output, as a chatty job writes it' | head -c ${bytes}\n`;
  const runs = { pmjq_s: [], xargs_s: [], ratio: [], rss_mb: [] };
  const runPmjq = async () => {
    const d = scratch('f5a');
    const spool = path.join(d, 'spool'), arch = path.join(d, 'archive');
    fs.mkdirSync(spool); fs.mkdirSync(arch);
    makeJobs(spool, H, body, 'heavy');
    const t0 = performance.now();
    const p = startPmjq(['--once', '-j', String(O.heavyJ), '-o', arch], spool, path.join(d, 'pmjq.log'));
    const rss = rssSampler(p.pid, 50);
    const r = await withTimeout(p.exited, 600_000, 'pmjq --once (heavy output)');
    const s = (performance.now() - t0) / 1000;
    const peak = rss.stop();
    const logs = fs.readdirSync(arch).filter((f) => f.endsWith('.log'));
    const total = logs.reduce((a, f) => a + fs.statSync(path.join(arch, f)).size, 0);
    if (r.code !== 0 || logs.length !== H || total !== H * bytes) {
      throw new Error(`heavy output: exit ${r.code}, ${logs.length}/${H} logs, ${total}/${H * bytes} bytes\n${logTail(p.logFile)}`);
    }
    return { s, peak };
  };
  const runXargs = async () => {
    const d = scratch('f5b');
    const names = makeJobs(d, H, body, 'heavy');
    const list = path.join(d, '.list');
    fs.writeFileSync(list, names.map((n) => path.join(d, n) + '\0').join(''));
    const fd = fs.openSync(list, 'r');
    const t0 = performance.now();
    const p = launch('xargs', ['-0', `-P${O.heavyJ || H}`, '-n1', 'sh', '-c', 'exec "$0" > "$0.log" 2>&1'], { stdin: fd });
    fs.closeSync(fd);
    const r = await withTimeout(p.exited, 600_000, 'xargs (heavy output)');
    const s = (performance.now() - t0) / 1000;
    if (r.code !== 0) throw new Error(`xargs exited ${r.code}`);
    return s;
  };
  for (let i = 0; i < O.heavyReps; i++) {
    const order = i % 2 === 0 ? ['pmjq', 'xargs'] : ['xargs', 'pmjq'];
    let a, b;
    for (const w of order) {
      if (w === 'pmjq') a = await runPmjq(); else b = await runXargs();
    }
    runs.pmjq_s.push(a.s); runs.rss_mb.push(a.peak); runs.xargs_s.push(b); runs.ratio.push(b / a.s);
    log(`fig 5 rep ${i + 1}/${O.heavyReps}: pmjq ${f2(a.s)} s (peak RSS ${f1(a.peak)} MB), xargs ${f2(b)} s`);
  }
  const rss = Math.max(...runs.rss_mb);
  return {
    data: { jobs: H, mb_each: O.heavyMb, j: O.heavyJ, runs },
    rows: [
      { figure: `5 heavy output (${H} x ${O.heavyMb} MB)`, measured: `pmjq ${f2(median(runs.pmjq_s))} s, xargs ${f2(median(runs.xargs_s))} s`, target: '(wall time, context)', verdict: `speed ratio ${f2(median(runs.ratio))}` },
      { figure: '5 heavy output: manager peak RSS', measured: `${f1(rss)} MB`, target: '< 150 MB', verdict: rss < 150 ? 'met' : 'MISSED' },
    ],
    notes: [`fig 5: \`pmjq --once -j ${O.heavyJ} -o ARCHIVE\` vs \`xargs -P${O.heavyJ || H} sh -c 'exec "$0" > "$0.log" 2>&1'\`, each job \`yes LINE | head -c ${bytes}\`; RSS = VmHWM sampled every 50 ms`],
  };
}

// ---------------------------------------------------------------- figure 6: protocol round trip

async function figProtocol() {
  const n = O.quick ? 100 : 1000;
  const p = spawnSync(process.execPath, [path.join(ROOT, 'bench/protocol-roundtrip.mjs'), String(n)], { encoding: 'utf8', timeout: 600_000 });
  if (p.status !== 0) throw new Error(`protocol-roundtrip.mjs exited ${p.status}: ${p.stderr}`);
  const r = JSON.parse(p.stdout);
  return {
    data: r,
    rows: [{
      figure: '6 protocol round trip',
      measured: `enqueue+waitjobs median ${f1(r.median_ms)} p99 ${f1(r.p99_ms)} ms (the same job spawned directly: ${f1(r.bare_spawn_median_ms)} ms)`,
      target: '(context)',
      verdict: `overhead ${f1(r.overhead_median_ms)} ms`,
    }],
    notes: [`fig 6: \`node bench/protocol-roundtrip.mjs ${n}\`: a Node job calls enqueue('trivial').wait() ${n} times through the real Protocol and JobProcess, and spawns the same script directly after each, for scale`],
  };
}

// ---------------------------------------------------------------- figure 7: cluster

async function figCluster() {
  const N = O.quick ? 200 : 2000;
  const NODES = 4;
  const bindfs = ['/usr/bin/bindfs', '/bin/bindfs'].find((p) => fs.existsSync(p));
  if (!IS_ROOT || !bindfs || !fs.existsSync('/dev/fuse')) {
    return { data: { available: false }, rows: [{ figure: `7 cluster, ${NODES} nodes`, measured: 'not measured here: needs root, bindfs and /dev/fuse (FUSE mounts of one spool)', target: '0 duplicates/losses, fair shares', verdict: 'n/a' }], notes: [] };
  }
  const d = scratch('f7');
  const backing = path.join(d, 'backing'), arch = path.join(d, 'archive');
  fs.mkdirSync(backing); fs.mkdirSync(arch);
  const mounts = [];
  const unmount = () => {
    for (const m of mounts.splice(0)) {
      if (spawnSync('fusermount3', ['-u', m], { stdio: 'ignore' }).status !== 0 && spawnSync('fusermount', ['-u', m], { stdio: 'ignore' }).status !== 0) spawnSync('umount', ['-l', m], { stdio: 'ignore' });
    }
  };
  try {
    for (let i = 0; i < NODES; i++) {
      const m = path.join(d, `node${i}`);
      fs.mkdirSync(m);
      const r = spawnSync(bindfs, ['--no-allow-other', backing, m], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`bindfs failed: ${r.stderr}`);
      mounts.push(m);
    }
    makeJobs(backing, N);
    const t0 = performance.now();
    const procs = mounts.map((m, i) => startPmjq(['--once', '-j', '2', '-o', arch], m, path.join(d, `pmjq-${i}.log`)));
    const codes = await Promise.all(procs.map((p) => withTimeout(p.exited, 120_000 + N * 500, 'cluster node')));
    const s = (performance.now() - t0) / 1000;
    if (codes.some((c) => c.code !== 0)) throw new Error(`a node exited ${codes.map((c) => c.code).join(', ')}`);
    const ends = procs.map((p) => (fs.readFileSync(p.logFile, 'utf8').match(/ event=job-end /g) ?? []).length);
    const archived = archivedJobs(arch).length;
    const started = ends.reduce((a, b) => a + b, 0);
    const dup = started - archived, lost = N - archived;
    const shares = ends.map((e) => (e / Math.max(1, started)) * 100);
    const ok = dup === 0 && lost === 0;
    return {
      data: { jobs: N, nodes: NODES, seconds: s, per_node: ends, duplicates: dup, lost },
      rows: [{
        figure: `7 cluster, ${NODES} nodes on FUSE`,
        measured: `${N} jobs in ${f1(s)} s = ${f1(N / s)} jobs/s; ${dup} duplicates, ${lost} lost; shares ${shares.map((x) => x.toFixed(0)).join('/')} %`,
        target: '0 duplicates/losses, fair shares',
        verdict: ok ? 'met' : 'MISSED',
      }],
      notes: [`fig 7: ${NODES} \`pmjq --once -j 2\` on ${NODES} bindfs mounts of one spool holding ${N} trivial jobs (poll mode, default settle), one shared archive; duplicates = job-end lines - archived jobs`],
    };
  } finally {
    for (const p of liveProcs) killTree(p);
    unmount();
  }
}

// ---------------------------------------------------------------- figure 8: submitting

async function figSubmit() {
  const K = O.quick ? 10 : 40;
  const N = O.quick ? 500 : 2000;
  const d = scratch('f8');
  const spool = path.join(d, 'spool');
  fs.mkdirSync(spool);
  // pmjqctl as installed (package.json "bin": the bundle, run through its own first line); a build without one: node on its modules
  const bundle = path.join(path.dirname(PMJQ), 'pmjqctl.cjs');
  const ctlCmd = fs.existsSync(bundle) ? [bundle] : [process.execPath, path.join(path.dirname(PMJQ), 'pmjqctl.js')];
  const ctl = (args, opts) => spawnSync(ctlCmd[0], [...ctlCmd.slice(1), ...args], opts);
  const extraCa = process.env.NODE_EXTRA_CA_CERTS;
  const tools = {
    node: () => spawnSync(process.execPath, ['-e', '0'], { stdio: 'ignore' }),
    // Node parses NODE_EXTRA_CA_CERTS at every start: where it is set, the floor without it too
    ...(extraCa ? { nodeNoCa: () => spawnSync(process.execPath, ['-e', '0'], { stdio: 'ignore', env: { ...process.env, NODE_EXTRA_CA_CERTS: undefined } }) } : {}),
    pmjqctl: () => ctl(['submit', spool, '--', 'true'], { stdio: 'ignore' }),
  };
  if (PEERS.tsp) {
    const ts = tspIn(path.join(d, 'tsp'));
    fs.mkdirSync(path.join(d, 'tsp'));
    ts.run(['-S', '1']);
    tools.tsp = () => spawnSync(PEERS.tsp, ['-n', 'true'], { env: ts.env, stdio: 'ignore' });
    tools.tsp.stop = () => ts.kill();
  }
  if (PEERS.nq) {
    const q = path.join(d, 'nq');
    fs.mkdirSync(q);
    tools.nq = () => spawnSync(PEERS.nq, ['-q', 'true'], { env: { ...process.env, NQDIR: q }, stdio: 'ignore' });
  }
  const times = Object.fromEntries(Object.keys(tools).map((k) => [k, []]));
  const names = Object.keys(tools);
  try {
    for (let i = 0; i < K; i++) {
      for (const k of names.map((_, j) => names[(j + i) % names.length])) {
        const t0 = performance.now();
        const r = tools[k]();
        times[k].push(performance.now() - t0);
        if (r.status !== 0) throw new Error(`${k}: exit ${r.status}`);
      }
    }
  } finally {
    for (const t of Object.values(tools)) t.stop?.();
  }
  // the batch form: N command lines in one call
  const lines = Array.from({ length: N }, (_, i) => `true ${i}`).join('\n') + '\n';
  const batchSpool = path.join(d, 'batch');
  fs.mkdirSync(batchSpool);
  const t0 = performance.now();
  const b = ctl(['submit', batchSpool, '-l'], { input: lines, stdio: ['pipe', 'ignore', 'pipe'], encoding: 'utf8' });
  const batchS = (performance.now() - t0) / 1000;
  if (b.status !== 0) throw new Error(`pmjqctl submit -l: exit ${b.status}: ${b.stderr}`);
  const made = fs.readdirSync(batchSpool).filter((f) => !f.startsWith('.')).length;
  if (made !== N) throw new Error(`pmjqctl submit -l: ${made}/${N} jobs`);
  const med = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)]));
  const label = {
    node: `\`node -e 0\` (the floor of any Node CLI${extraCa ? ', NODE_EXTRA_CA_CERTS set' : ''})`,
    nodeNoCa: '`node -e 0` without NODE_EXTRA_CA_CERTS',
    pmjqctl: 'pmjqctl submit SPOOL -- true', tsp: 'tsp -n true', nq: 'nq -q true',
  };
  return {
    data: { calls: K, ms: times, median_ms: med, batch: { jobs: N, seconds: batchS, jobs_per_s: N / batchS } },
    rows: [
      ...names.map((k) => ({
        figure: k === names[0] ? '8 submit one job (wall time per call)' : '',
        measured: `${label[k]}: median ${f1(med[k])} ms`,
        target: k === 'pmjqctl' ? '<= 40 ms' : '(context)',
        verdict: k === 'pmjqctl' ? (med[k] <= 40 ? 'met' : 'MISSED') : '',
      })),
      { figure: '8 submit a batch', measured: `pmjqctl submit -l: ${N} jobs in ${f2(batchS)} s = ${f1(N / batchS)} jobs/s (start-up included)`, target: '>= 2000 jobs/s', verdict: N / batchS >= 2000 ? 'met' : 'MISSED' },
    ],
    notes: [`fig 8: ${K} calls of each, interleaved, wall time of the whole command (process start-up included); pmjqctl run as installed (${ctlCmd.map((x) => path.relative(ROOT, x) || x).join(' ')}), a shell line that execs node without NODE_EXTRA_CA_CERTS, then one CommonJS bundle${extraCa ? `; NODE_EXTRA_CA_CERTS is set here (${extraCa}): every other Node start parses it` : ''}; the batch: ${N} lines \`true I\` on pmjqctl submit -l's standard input, into a spool on ${os.tmpdir()}`],
  };
}

// ---------------------------------------------------------------- the table to paste

/** The README's performance table, from this run's results: pmjq and each peer, side by side. */
function markdownTable(results, env) {
  const f1r = results[1], f2r = results[2], f8r = results[8];
  const tools = ['pmjq', 'tsp', 'nq', 'parallel', 'inotifyloop', 'xargs'];
  const lat = (k) => {
    if (!f2r || f2r.error) return '';
    const s = k === 'pmjq' ? f2r.inotify : f2r.peers?.[k];
    return s ? `${f1(s.p50)} / ${f1(s.p99)}` : '—';
  };
  const sub = (k) => {
    if (!f8r || f8r.error) return '';
    const m = { pmjq: 'pmjqctl', tsp: 'tsp', nq: 'nq' }[k];
    if (!m || f8r.median_ms?.[m] === undefined) return '—';
    return `${f1(f8r.median_ms[m])} ms${k === 'pmjq' ? ` (batch: ${Math.round(f8r.batch.jobs_per_s)} jobs/s)` : ''}`;
  };
  const lines = [
    `| tool | jobs/s (${f1r?.jobs ?? '?'} trivial jobs, 2 at a time) | pmjq ÷ tool | pickup p50 / p99 (ms) | submit one job |`,
    '|---|---|---|---|---|',
  ];
  for (const k of tools) {
    const js = f1r?.median?.[k];
    if (js === undefined && k !== 'pmjq') continue;
    lines.push(`| ${k === 'pmjq' ? 'pmjq (`--once -j 2`; pickup: an inotify daemon)' : PEER_LABEL[k]} | ${js === undefined ? '' : f1(js)} | ${k === 'pmjq' || js === undefined ? '' : f2(f1r.ratio[k])} | ${lat(k)} | ${sub(k)} |`);
  }
  lines.push('', `Measured ${env.date.slice(0, 16).replace('T', ' ')} UTC${env.commit ? ` at ${env.commit}` : ''}: ${env.cpus} CPUs (${env.cpu_model ?? 'cpu?'}), node ${env.node}, ${O.quick ? '`npm run bench -- --quick`' : '`npm run bench`'}; load average ${env.loadavg_before.join(' ')} before, ${env.loadavg_after.join(' ')} after (1/5/15 min).`);
  return lines.join('\n');
}

const FIGURES = [
  { id: 1, name: 'throughput', run: figThroughput },
  { id: 2, name: 'pickup latency', run: figLatency },
  { id: 3, name: 'backlog', run: figBacklog },
  { id: 4, name: 'idle cost', run: figIdle },
  { id: 5, name: 'heavy output', run: figHeavy },
  { id: 6, name: 'protocol round trip', run: figProtocol },
  { id: 7, name: 'cluster, 4 nodes', run: figCluster },
  { id: 8, name: 'submitting', run: figSubmit },
];

// ---------------------------------------------------------------- main

function table(rows) {
  const cols = ['figure', 'measured', 'target', 'verdict'];
  const head = { figure: 'figure', measured: 'measured', target: 'target', verdict: 'ratio / verdict' };
  const w = Object.fromEntries(cols.map((c) => [c, Math.max(head[c].length, ...rows.map((r) => String(r[c]).length))]));
  const line = (r) => cols.map((c) => String(r[c]).padEnd(w[c])).join(' | ').trimEnd();
  return [line(head), cols.map((c) => '-'.repeat(w[c])).join('-|-'), ...rows.map(line)].join('\n');
}

async function main() {
  if (!fs.existsSync(PMJQ)) die(`${PMJQ} is missing: build first (npm run bench builds)`);
  for (const tool of ['xargs', 'date', 'yes', 'head']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) die(`${tool} not found`);
  }
  const started = new Date();
  let commit = null;
  try { commit = execFileSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim(); } catch { /* not a clone */ }
  const env = {
    date: started.toISOString(), commit, node: process.version, cpus: os.availableParallelism(),
    kernel: os.release(), cpu_model: os.cpus()[0]?.model ?? null, mem_gb: +(os.totalmem() / 2 ** 30).toFixed(1),
    tmpdir: os.tmpdir(), root: IS_ROOT, loadavg_before: os.loadavg().map((x) => +x.toFixed(2)),
  };
  log(`${O.quick ? 'quick run' : 'full run'} on ${env.cpus} CPUs, load ${env.loadavg_before.join(' ')}, scratch in ${os.tmpdir()}`);
  if (O.cpuProf) fs.mkdirSync(O.cpuProf, { recursive: true });
  const rows = [], notes = [], results = {};
  let broken = 0;
  for (const f of FIGURES) {
    if (ONLY && !ONLY.has(f.id)) continue;
    if (!f.run) {
      rows.push({ figure: `${f.id} ${f.name}`, measured: `not available yet: needs ${f.pending}`, target: f.target, verdict: 'n/a' });
      results[f.id] = { available: false, needs: f.pending };
      continue;
    }
    log(`figure ${f.id}: ${f.name}`);
    const t0 = performance.now();
    try {
      const r = await f.run();
      for (const row of r.rows) log(`${row.figure}: ${row.measured} | ${row.target} | ${row.verdict}`);
      rows.push(...r.rows);
      notes.push(...(r.notes ?? []));
      results[f.id] = { name: f.name, seconds: +((performance.now() - t0) / 1000).toFixed(1), ...r.data };
    } catch (err) {
      broken++;
      log(`figure ${f.id} BROKE: ${err.stack ?? err}`);
      rows.push({ figure: `${f.id} ${f.name}`, measured: `BROKEN: ${String(err.message).split('\n')[0]}`, target: '', verdict: 'ERROR' });
      results[f.id] = { name: f.name, error: String(err.message) };
    }
  }
  env.loadavg_after = os.loadavg().map((x) => +x.toFixed(2));
  env.seconds = +((Date.now() - started.getTime()) / 1000).toFixed(1);
  process.stdout.write(`\npmjq benchmark — ${env.date.slice(0, 10)}, ${env.cpus} CPUs, node ${env.node}${commit ? `, commit ${commit}` : ''}${O.quick ? ', --quick' : ''}\n\n`);
  process.stdout.write(table(rows) + '\n\n');
  for (const n of notes) process.stdout.write(`- ${n}\n`);
  for (const w of warnings) process.stdout.write(`- WARNING: ${w}\n`);
  process.stdout.write(`- load average ${env.loadavg_before.join(' ')} before, ${env.loadavg_after.join(' ')} after; ${env.seconds} s in all\n`);
  fs.mkdirSync(path.dirname(O.json), { recursive: true });
  fs.writeFileSync(O.json, JSON.stringify({ env, options: O, pmjq: PMJQ, pmjq_args: EXTRA_ARGS, rows, notes, warnings, figures: results }, null, 2) + '\n');
  process.stdout.write(`- raw results: ${path.relative(process.cwd(), O.json) || O.json}\n`);
  process.stdout.write(`\nFor the README (pmjq beside its peers):\n\n${markdownTable(results, env)}\n`);
  cleanupAll();
  process.exit(broken ? 1 : 0);
}

main().catch((err) => {
  process.stderr.write(`bench: ${err.stack ?? err}\n`);
  cleanupAll();
  process.exit(1);
});
