// A small ProtocolHost for the protocol tests and the round-trip bench: it
// really spawns jobs with JobProcess (fd 3/4 and all) and keeps a per-group
// maximum of running sub-jobs, as the engine will. Top-level jobs (what the
// spool would run) start at once; sub-jobs queue in their group.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { JobProcess, type JobEnd } from '../../dist/run/job-process.js';
import { Protocol, type EnqueueRequest, type Limits, type ProtocolHost } from '../../dist/run/protocol/index.js';
import { Logger } from '../../dist/util/log.js';
import { waitFor } from './helpers.js';

export const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
export const LIB = path.join(ROOT, 'lib');
export const JOB_JS = pathToFileURL(path.join(ROOT, 'dist/lib/job.js')).href;

export interface HostJob {
  id: string;
  file: string;
  args: string[];
  tree: string;
  parent: string | null;
  group: string;
  /** the repeat it is an instance of */
  repeat: string | null;
  /** when it was enqueued (ms since the epoch) */
  enqueuedAt: number;
  proc: JobProcess | null;
  end: JobEnd | null;
  /** never started: killed while queued, or failed to start */
  dropped: boolean;
}

interface Group { max: number; running: number; queue: HostJob[] }

/** Who every job of these tests runs as: the test's own process. */
export const ME = { uid: process.getuid!(), gid: process.getgid!(), groups: process.getgroups!() };

export class TestHost implements ProtocolHost {
  readonly protocol: Protocol;
  readonly log: Logger;
  readonly lines: string[] = [];
  readonly jobs = new Map<string, HostJob>();
  /** groups that stand for spool directories (their settings are not the protocol's) */
  readonly spoolGroups = new Set(['default']);
  private readonly groups = new Map<string, Group>();
  private readonly endWaiters = new Map<string, (() => void)[]>();
  private readonly lineWaiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  private counter = 0;
  private closed = false;

  constructor(private readonly dir: string, limits: Partial<Limits> = {}, private readonly extraEnv: NodeJS.ProcessEnv = {}) {
    fs.mkdirSync(path.join(dir, 'logs'), { recursive: true });
    this.log = new Logger({
      verbosity: 1,
      write: (line) => {
        this.lines.push(line);
        if (this.lines.length > 20_000) this.lines.splice(0, 10_000);
        for (const w of [...this.lineWaiters]) {
          if (w.re.test(line)) {
            this.lineWaiters.splice(this.lineWaiters.indexOf(w), 1);
            w.resolve(line);
          }
        }
      },
    });
    this.protocol = new Protocol(this, limits);
  }

  // ---- ProtocolHost ----

  enqueue(req: EnqueueRequest): string {
    if (this.closed) throw new Error('host closed');
    const id = `sub.${++this.counter}`;
    const groupName = req.group ?? 'default';
    const g = this.group(groupName);
    if (req.maxproc !== undefined) g.max = req.maxproc;
    const job: HostJob = {
      id, file: req.script, args: req.args, tree: req.tree, parent: req.parent || null, group: groupName,
      repeat: req.repeat ?? null, enqueuedAt: Date.now(), proc: null, end: null, dropped: false,
    };
    this.jobs.set(id, job);
    g.queue.push(job);
    setImmediate(() => this.pump());
    return id;
  }

  isSpoolGroup(name: string): boolean {
    return this.spoolGroups.has(name);
  }

  kill(id: string): boolean {
    const job = this.jobs.get(id);
    if (!job || job.end || job.dropped) return false;
    if (!job.proc) {
      const g = this.group(job.group);
      g.queue.splice(g.queue.indexOf(job), 1);
      this.drop(job, true);
      return true;
    }
    job.proc.kill('killed');
    return true;
  }

  // ---- for tests ----

  /** Starts a top-level job at once (as the spool would); `tree` defaults to the file's directory. */
  startTop(file: string, args: string[] = [], tree = path.dirname(file)): HostJob {
    const job: HostJob = {
      id: `top.${++this.counter}`, file, args, tree, parent: null, group: 'top',
      repeat: null, enqueuedAt: Date.now(), proc: null, end: null, dropped: false,
    };
    this.jobs.set(job.id, job);
    this.spawn(job, null);
    return job;
  }

  /** Resolves when the job ended (or was dropped); rejects after timeoutMs. */
  ended(id: string, timeoutMs = 30_000): Promise<HostJob> {
    const job = this.jobs.get(id);
    if (!job) return Promise.reject(new Error(`unknown job ${id}`));
    if (job.end || job.dropped) return Promise.resolve(job);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`job ${id} did not end within ${timeoutMs} ms; log:\n${this.jobLog(id)}\nhost log:\n${this.lines.slice(-30).join('')}`)), timeoutMs);
      const list = this.endWaiters.get(id) ?? [];
      list.push(() => { clearTimeout(timer); resolve(job); });
      this.endWaiters.set(id, list);
    });
  }

  /** Resolves with the first host log line (seen or coming) matching re. */
  waitLine(re: RegExp, timeoutMs = 20_000): Promise<string> {
    const seen = this.lines.find((l) => re.test(l));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${re} in the host log:\n${this.lines.slice(-30).join('')}`)), timeoutMs);
      this.lineWaiters.push({ re, resolve: (l) => { clearTimeout(timer); resolve(l); } });
    });
  }

  logPath(id: string): string { return path.join(this.dir, 'logs', `${id}.log`); }

  jobLog(id: string): string {
    try { return fs.readFileSync(this.logPath(id), 'utf8'); } catch { return ''; }
  }

  running(): HostJob[] { return [...this.jobs.values()].filter((j) => j.proc && !j.end); }

  /** Kills everything still running (whole process groups) and waits for it; stops the protocol. */
  async close(): Promise<void> {
    this.closed = true;
    this.protocol.close();
    for (const g of this.groups.values()) {
      for (const j of g.queue.splice(0)) this.drop(j, true);
    }
    const live = this.running();
    for (const j of live) {
      try { process.kill(-j.proc!.pid!, 'SIGKILL'); } catch { /* gone */ }
    }
    await Promise.all(live.map((j) => this.ended(j.id, 10_000).catch(() => undefined)));
  }

  // ---- internals ----

  private group(name: string): Group {
    let g = this.groups.get(name);
    if (!g) this.groups.set(name, (g = { max: 0, running: 0, queue: [] }));
    return g;
  }

  private pump(): void {
    if (this.closed) return;
    for (const g of this.groups.values()) {
      while (g.queue.length > 0 && (g.max === 0 || g.running < g.max)) {
        const job = g.queue.shift()!;
        this.spawn(job, g);
      }
    }
  }

  private spawn(job: HostJob, g: Group | null): void {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      ...this.extraEnv,
      PMJQ_JOB_ID: job.id,
      CHAQUM_IDENT: job.id,
      PMJQ_LIB: LIB,
      PMJQ_JOB_JS: JOB_JS,
      PYTHONPATH: LIB,
      PERL5LIB: LIB,
      PYTHONDONTWRITEBYTECODE: '1',
    };
    delete env.CHAQUM_PARENT;
    if (job.parent) env.CHAQUM_PARENT = job.parent;
    const proc = new JobProcess({
      id: job.id,
      file: job.file,
      args: job.args,
      cwd: job.tree,
      env,
      logPath: this.logPath(job.id),
      killGraceMs: 2000,
      handler: this.protocol.handlerFor({ id: job.id, tree: job.tree, owner: ME }),
      log: this.log,
    });
    job.proc = proc;
    if (g) g.running++;
    this.protocol.jobStarted(job.id);
    void proc.start().then((r) => {
      if (r.ok) {
        void proc.exited.then((end) => {
          job.end = end;
          if (g) g.running--;
          this.protocol.jobEnded(job.id, end.exitCode, end.reason === 'killed' || end.reason === 'timeout', end.signal);
          this.notify(job.id);
          this.pump();
        });
        return;
      }
      this.log.warn('job-start-failed', { id: job.id, error: r.busy ? 'busy' : r.error });
      if (g) g.running--;
      job.proc = null;
      this.drop(job, false);
      this.pump();
    });
  }

  private drop(job: HostJob, killed: boolean): void {
    job.dropped = true;
    this.protocol.jobEnded(job.id, null, killed);
    this.notify(job.id);
  }

  private notify(id: string): void {
    const list = this.endWaiters.get(id);
    this.endWaiters.delete(id);
    for (const f of list ?? []) f();
  }
}

// ---- shared by the protocol tests: sub-jobs and helpers ----

/** Sub-jobs every test tree has (see writeTree). */
export const SUBJOBS: Record<string, string> = {
  stamp: `#!/bin/sh
# stamp DIR NAME CODE [SECONDS]: start and end stamps (ns), then exit CODE
echo "start $(date +%s%N)" >> "$1/$2"
sleep "\${4:-0.2}"
echo "end $(date +%s%N)" >> "$1/$2"
exit "$3"
`,
  sleeper: `#!/bin/sh
. "$PMJQ_LIB/pmjq.sh"
pmjq_sendmsg "$pmjq_parent" up >/dev/null || exit 1
exec sleep 60
`,
  argv: `#!/bin/sh
out=$1
shift
printf '%s\\0' "$@" > "$out"
`,
  tick: `#!/bin/sh
# tick DIR NAME [SECONDS]
echo "start $(date +%s%N)" >> "$1/$2"
[ -n "$3" ] && sleep "$3"
echo "end $(date +%s%N)" >> "$1/$2"
exit 0
`,
};

/** shell single-quoting for the test's own scripts */
export function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Writes the sub-jobs (and a non-executable file) into `tree`. */
export function writeTree(tree: string): void {
  fs.mkdirSync(tree, { recursive: true });
  for (const [name, body] of Object.entries(SUBJOBS)) fs.writeFileSync(path.join(tree, name), body, { mode: 0o755 });
  fs.writeFileSync(path.join(tree, 'notexec'), '#!/bin/sh\n', { mode: 0o644 });
}

export function writeScript(dir: string, name: string, body: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, body, { mode: 0o755 });
  return file;
}

/** start/end stamps (ns) of a stamp/tick file */
export function readStamps(file: string): { start: bigint; end: bigint | null }[] {
  const out: { start: bigint; end: bigint | null }[] = [];
  let text = '';
  try { text = fs.readFileSync(file, 'utf8'); } catch { return out; }
  for (const line of text.split('\n')) {
    const [what, ns] = line.split(' ');
    if (what === 'start') out.push({ start: BigInt(ns!), end: null });
    else if (what === 'end' && out.length > 0) out[out.length - 1]!.end = BigInt(ns!);
  }
  return out;
}

/** Waits until fn() is truthy (test/helpers/helpers.ts waitFor), bounded by 20 s by default. */
export function until<T>(what: string, fn: () => T | undefined | null | false, timeoutMs = 20_000): Promise<T> {
  return waitFor(what, fn, timeoutMs);
}

export interface Ctx { dir: string; tree: string; host: TestHost }

export function setup(t: { teardown(fn: () => unknown): void }, limits: Partial<Limits> = {}, env: NodeJS.ProcessEnv = {}): Ctx {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pmjq-protocol-'));
  const tree = path.join(dir, 'tree');
  writeTree(tree);
  const host = new TestHost(dir, limits, env);
  t.teardown(async () => {
    await host.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return { dir, tree, host };
}
