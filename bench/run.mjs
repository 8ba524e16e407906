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
// the end, as is every process started here (killed by process group, and
// job processes found by their PMJQ_SPOOL environment — never by name).

import { spawn, spawnSync, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let PMJQ = path.join(ROOT, 'dist/cli/pmjq.js');
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
                        4 idle, 5 heavy output, 6 protocol, 7 cluster)
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
  --pmjq FILE           the pmjq.js to measure (default dist/cli/pmjq.js; e.g. a build of another commit)
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

function scratch(tag) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), `pmjq-bench-${tag}-`));
  scratchDirs.add(d);
  return d;
}
function rmScratch(d) {
  fs.rmSync(d, { recursive: true, force: true });
  scratchDirs.delete(d);
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
  const nodeArgs = O.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${O.cpuProf}`] : [];
  const p = launch(process.execPath, [...nodeArgs, PMJQ, ...ROOT_ARGS, ...args, ...EXTRA_ARGS, spool], { stderr: fd, spool });
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

// ---------------------------------------------------------------- figure 1: throughput

async function figThroughput() {
  const N = O.jobs;
  const xargsCmd = `xargs -0 -P2 -n1 ${ENV_BIN} FILE`;
  const runs = { pmjq: [], xargs: [], ratio: [] };
  const runPmjq = async () => {
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
    rmScratch(d);
    return N / s;
  };
  const runXargs = async () => {
    const d = scratch('f1b');
    const names = makeJobs(d, N);
    const list = path.join(d, '.list');
    fs.writeFileSync(list, names.map((n) => path.join(d, n) + '\0').join(''));
    const fd = fs.openSync(list, 'r');
    const t0 = performance.now();
    const p = launch('xargs', ['-0', '-P2', '-n1', ENV_BIN], { stdin: fd });
    fs.closeSync(fd);
    const r = await withTimeout(p.exited, 60_000 + N * 500, 'xargs');
    const s = (performance.now() - t0) / 1000;
    if (r.code !== 0) throw new Error(`xargs exited ${r.code} ${r.signal ?? ''}`);
    rmScratch(d);
    return N / s;
  };
  for (let i = 0; i < O.reps; i++) {
    const order = i % 2 === 0 ? ['pmjq', 'xargs'] : ['xargs', 'pmjq'];
    const got = {};
    for (const which of order) {
      got[which] = which === 'pmjq' ? await runPmjq() : await runXargs();
      log(`fig 1 rep ${i + 1}/${O.reps}: ${which} ${f1(got[which])} jobs/s`);
    }
    runs.pmjq.push(got.pmjq); runs.xargs.push(got.xargs); runs.ratio.push(got.pmjq / got.xargs);
  }
  const ratio = median(runs.ratio);
  return {
    data: { jobs: N, reps: O.reps, xargs_command: xargsCmd, jobs_per_s: runs, median: { pmjq: median(runs.pmjq), xargs: median(runs.xargs), ratio } },
    rows: [{
      figure: `1 throughput (${N} trivial jobs)`,
      measured: `pmjq ${f1(median(runs.pmjq))} jobs/s, xargs ${f1(median(runs.xargs))} jobs/s`,
      target: 'ratio >= 0.6',
      verdict: `${f2(ratio)} ${ratio >= 0.6 ? 'met' : 'MISSED'}`,
    }],
    notes: [`fig 1: xargs runs \`${xargsCmd}\`: xargs must name a command, and env(1) is the cheapest exec trampoline (no shell); pmjq runs \`pmjq --once -j 2 -o ARCHIVE\` including its own start-up; ratio = median of per-pair ratios`],
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
    m.watcher = fs.watch(m.arch, (ev, f) => { if (f && f.endsWith('.json')) m.archived.add(f); });
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

  try {
    // warm up: the first job proves the daemon runs, the later ones that its watcher is set up
    for (const mode of Object.keys(modes)) {
      await dropOne(mode, true);
      await sleep(300);
      for (let i = 0; i < 3; i++) await dropOne(mode, true);
    }
    let lastCal = 0;
    for (let i = 0; i < N; i++) {
      if (i - lastCal >= 25 || i === 0) { calibrateWall(); lastCal = i; }
      const order = i % 2 === 0 ? ['inotify', 'poll'] : ['poll', 'inotify'];
      for (const mode of order) modes[mode].samples.push(await dropOne(mode));
      floorOne();
      if ((i + 1) % 50 === 0) log(`fig 2: ${i + 1}/${N} jobs per mode`);
    }
  } finally {
    for (const m of Object.values(modes)) { m.watcher.close(); await m.proc.stop(); }
  }
  const stat = (a) => ({ p50: percentile(a, 50), p90: percentile(a, 90), p99: percentile(a, 99), max: Math.max(...a) });
  const si = stat(modes.inotify.samples), sp = stat(modes.poll.samples), sf = stat(floor);
  const fmt = (s) => `p50 ${f1(s.p50)} p90 ${f1(s.p90)} p99 ${f1(s.p99)} max ${f1(s.max)} ms`;
  const pollTarget = O.latencyPollMs + 20;
  rmScratch(d);
  return {
    data: { jobs_per_mode: N, poll_ms: O.latencyPollMs, inotify: si, poll: sp, floor_direct_spawn: sf, samples_ms: { inotify: modes.inotify.samples, poll: modes.poll.samples, floor } },
    rows: [
      { figure: '2 pickup latency, inotify', measured: fmt(si), target: 'p50 <= 5, p99 <= 25 ms', verdict: si.p50 <= 5 && si.p99 <= 25 ? 'met' : 'MISSED' },
      { figure: `2 pickup latency, poll ${O.latencyPollMs}ms`, measured: fmt(sp), target: `max <= ${pollTarget} ms (poll + 20)`, verdict: sp.max <= pollTarget ? 'met' : `MISSED (p99 ${sp.p99 <= pollTarget ? 'met' : 'missed'})` },
      { figure: '2 floor: job spawned directly', measured: fmt(sf), target: '(context)', verdict: '' },
    ],
    notes: [`fig 2: ${N} jobs per mode, dropped one at a time (hidden name, then rename) alternating between an inotify and a poll daemon; each job is \`exec date +%s%N > FILE\`; the next drop waits until the previous job is archived, then a random pause (poll mode: uniform over the poll interval); "floor" is the same job spawned by the benchmark itself (spawn + sh + date) after each pair of drops, the part of the latency that is process start-up, not pmjq`],
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
    const arch = path.join(d, `archive-${k}`);
    fs.rmSync(arch, { recursive: true, force: true });
    fs.mkdirSync(arch);
    const logFile = path.join(d, `pmjq-${k}.log`);
    fs.rmSync(logFile, { force: true });
    const t0 = Date.now();
    const p = startPmjq(['-j', '2', '-o', arch], s.spool, logFile);
    const rss = rssSampler(p.pid, 200);
    const tail = new LogTail(logFile);
    let exited = null;
    void p.exited.then((r) => { exited = r; });
    try {
      await until(`${count} completions with ${queued} queued`, () => {
        if (exited) throw new Error(`pmjq exited early (${exited.code} ${exited.signal ?? ''})\n${logTail(logFile)}`);
        tail.read();
        return tail.ends.length >= count;
      }, 120_000 + count * 500, 200);
    } finally {
      var peak = rss.stop();
      const r = await p.stop();
      if (r.code !== 0) throw new Error(`pmjq stopped with exit ${r.code} ${r.signal ?? ''}\n${logTail(logFile)}`);
    }
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
  rmScratch(d);
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
    let prev = Object.fromEntries(Object.entries(D).map(([k, x]) => [k, x.cpu0]));
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
  rmScratch(d);
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
    rmScratch(d);
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
    rmScratch(d);
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

// ---------------------------------------------------------------- figures 6 and 7 (hooks)

// To add a figure: write `async function figX()` returning { data, rows, notes }
// and set `run: figX` in its entry below. Rows are { figure, measured, target,
// verdict }; throw to report something broken (the run then exits 1).
//   6: time `enqueue` + `waitjobs` of a trivial sub-job from a job (lib/pmjq.sh),
//      median over a few hundred round trips, once issue 4 (the protocol) lands.
//   7: 4 daemons on bindfs (FUSE) mounts of one spool draining 10 000 jobs:
//      aggregate jobs/s vs one node, share per node, duplicates and losses
//      from the history files, once issue 5 (cluster) lands.
const FIGURES = [
  { id: 1, name: 'throughput', run: figThroughput },
  { id: 2, name: 'pickup latency', run: figLatency },
  { id: 3, name: 'backlog', run: figBacklog },
  { id: 4, name: 'idle cost', run: figIdle },
  { id: 5, name: 'heavy output', run: figHeavy },
  { id: 6, name: 'protocol round trip', run: null, pending: 'the fd 3/4 protocol (issue 4)', target: 'median enqueue+waitjobs' },
  { id: 7, name: 'cluster, 4 nodes', run: null, pending: 'the cluster (issue 5)', target: '0 duplicates/losses, fair shares' },
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
  cleanupAll();
  process.exit(broken ? 1 : 0);
}

main().catch((err) => {
  process.stderr.write(`bench: ${err.stack ?? err}\n`);
  cleanupAll();
  process.exit(1);
});
