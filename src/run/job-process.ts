// One job process (pmjq(1) THE JOB PROCESS): stdin /dev/null; stdout and stderr straight
// into the job's log file (the kernel writes them: a job printing gigabytes
// costs the manager neither memory nor time); fd 3/4 the command channel;
// its own session and process group, so that killing the job kills its tree.
//
// node:child_process is used rather than execa here: this is the hot path
// (thousands of spawns a second) and execa's per-spawn promise, stream and
// option machinery buys nothing when output goes to a file descriptor.

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { CommandChannel, type CommandHandler } from './channel.js';
import type { JobOwner } from './owner.js';
import { setprivArgs } from './privileges.js';
import type { Logger } from '../util/log.js';

export type EndReason = 'exit' | 'timeout' | 'killed' | 'interrupted';

export interface JobSpec {
  id: string;
  file: string;
  args: string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
  logPath: string;
  /** the log already open (its claim made it): used and closed by start() instead of opening logPath */
  logFd?: number;
  /**
   * run as this user (only when pmjq is root): through setpriv, which sets
   * the supplementary groups too; without setpriv, through spawn's uid/gid
   * (which clears the supplementary groups)
   */
  runAs?: { owner: JobOwner; setpriv: string | null };
  timeoutMs?: number;
  killGraceMs: number;
  handler: CommandHandler;
  log: Logger;
  /**
   * chaqum mode: stdout and stderr come through the manager, line by line,
   * instead of going straight to the log file (lines are cut at 64 KiB).
   */
  onLine?: (line: string) => void;
}

export type StartResult =
  | { ok: true }
  /** the file is still open for writing (ETXTBSY): not ready yet, not a failure */
  | { ok: false; busy: true }
  | { ok: false; busy: false; error: string };

export interface JobEnd {
  exitCode: number | null;
  signal: string | null;
  reason: EndReason;
  started: Date;
  finished: Date;
  /** setpriv found the file busy: like a failed start with ETXTBSY */
  busy: boolean;
}

export class JobProcess {
  private child: ChildProcess | null = null;
  private channel: CommandChannel | null = null;
  private reason: EndReason = 'exit';
  private timeout: NodeJS.Timeout | null = null;
  private killTimer: NodeJS.Timeout | null = null;
  private logSizeBefore = 0;
  started = new Date(0);
  /** resolves once the process has exited (with how it ended) */
  readonly exited: Promise<JobEnd>;
  private resolveExited!: (end: JobEnd) => void;

  constructor(private readonly spec: JobSpec) {
    this.exited = new Promise((resolve) => { this.resolveExited = resolve; });
  }

  get pid(): number | undefined { return this.child?.pid; }

  start(): StartResult {
    const s = this.spec;
    const logFd = s.logFd ?? fs.openSync(s.logPath, 'a', 0o644);
    let child: ChildProcess;
    try {
      // (setpriv's "Text file busy" is told apart by what it adds to the log)
      if (s.runAs?.setpriv) this.logSizeBefore = fs.fstatSync(logFd).size;
      const viaSetpriv = s.runAs?.setpriv ? setprivArgs(s.runAs.setpriv, s.runAs.owner) : [];
      const [cmd, ...args] = [...viaSetpriv, s.file, ...s.args];
      const ids = s.runAs && !s.runAs.setpriv ? { uid: s.runAs.owner.uid, gid: s.runAs.owner.gid } : {};
      this.started = new Date();
      child = spawn(cmd!, args, {
        cwd: s.cwd,
        env: s.env,
        stdio: ['ignore', s.onLine ? 'pipe' : logFd, s.onLine ? 'pipe' : logFd, 'pipe', 'pipe'],
        detached: true, // setsid(): own session and process group
        ...ids,
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ETXTBSY') return { ok: false, busy: true };
      return { ok: false, busy: false, error: explainSpawnError(err as NodeJS.ErrnoException, s) };
    } finally {
      fs.closeSync(logFd);
    }
    if (child.pid === undefined) {
      // spawn reports some failures asynchronously; the 'error' event follows
      let error = 'could not start';
      child.once('error', (e) => { error = explainSpawnError(e as NodeJS.ErrnoException, s); });
      return { ok: false, busy: false, error };
    }
    this.child = child;
    child.on('error', () => { /* reported through 'exit' */ });
    this.channel = new CommandChannel(child.stdio[3] as Readable, child.stdio[4] as Writable, s.handler, s.log, s.id);
    if (s.onLine) for (const out of [child.stdout!, child.stderr!]) splitLines(out, s.onLine);
    // Node fires a timer of more than 2^31−1 ms (24.8 days) after 1 ms: longer timeouts wait that long
    if (s.timeoutMs) this.timeout = setTimeout(() => this.kill('timeout'), Math.min(s.timeoutMs, MAX_TIMER_MS));
    child.once('exit', (code, signal) => this.onExit(code, signal));
    return { ok: true };
  }

  /** SIGTERM to the whole process group, SIGKILL after the grace period. */
  kill(reason: Exclude<EndReason, 'exit'>): void {
    const pid = this.child?.pid;
    if (pid === undefined || this.child?.exitCode !== null || this.child.signalCode !== null) return;
    if (this.reason === 'exit') this.reason = reason;
    signalGroup(pid, 'SIGTERM');
    this.killTimer ??= setTimeout(() => signalGroup(pid, 'SIGKILL'), this.spec.killGraceMs);
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null): void {
    const finished = new Date();
    if (this.timeout) clearTimeout(this.timeout);
    if (this.killTimer) clearTimeout(this.killTimer);
    this.channel?.close();
    // whatever the job left running in its process group goes with it: SIGTERM,
    // and SIGKILL after the grace period for what ignores SIGTERM (a daemon
    // child would otherwise outlive its job). The group's id is the job's pid,
    // which stays reserved while any member lives; a group found empty is not
    // signalled again.
    const pid = this.child?.pid;
    if (pid !== undefined && signalGroup(pid, 'SIGTERM')) {
      setTimeout(() => { if (signalGroup(pid, 0)) signalGroup(pid, 'SIGKILL'); }, this.spec.killGraceMs).unref();
    }
    const busy = Boolean(this.spec.runAs?.setpriv) && code === 126 && this.setprivFoundBusy();
    this.resolveExited({ exitCode: code, signal, reason: this.reason, started: this.started, finished, busy });
  }

  /** setpriv exits 126 with "Text file busy" when the job file is still open for writing. */
  private setprivFoundBusy(): boolean {
    try {
      const fd = fs.openSync(this.spec.logPath, 'r+');
      try {
        const size = fs.fstatSync(fd).size;
        if (size - this.logSizeBefore > 512) return false;
        const buf = Buffer.alloc(size - this.logSizeBefore);
        fs.readSync(fd, buf, 0, buf.length, this.logSizeBefore);
        if (!buf.toString().includes('Text file busy')) return false;
        fs.ftruncateSync(fd, this.logSizeBefore);
        return true;
      } finally {
        fs.closeSync(fd);
      }
    } catch {
      return false;
    }
  }
}

const MAX_OUTPUT_LINE = 64 * 1024;
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Lines of a stream, never holding more than one (bounded) line in memory. */
function splitLines(stream: Readable, onLine: (line: string) => void): void {
  let pending = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    pending += chunk;
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      onLine(pending.slice(0, nl));
      pending = pending.slice(nl + 1);
    }
    while (pending.length > MAX_OUTPUT_LINE) {
      onLine(pending.slice(0, MAX_OUTPUT_LINE));
      pending = pending.slice(MAX_OUTPUT_LINE);
    }
  });
  stream.on('end', () => { if (pending) onLine(pending); });
  stream.on('error', () => { /* the job went away */ });
}

/** Signal a process group; false if it no longer exists. */
function signalGroup(pid: number, sig: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pid, sig);
    return true;
  } catch {
    return false; // the group is already gone
  }
}

function explainSpawnError(err: NodeJS.ErrnoException, s: JobSpec): string {
  switch (err.code) {
    case 'ENOENT':
      return fs.existsSync(s.cwd) ? 'job file vanished before it could start (ENOENT)' : `working directory ${s.cwd} does not exist (ENOENT)`;
    case 'EACCES':
      return 'permission denied executing the job (EACCES: noexec mount or no search permission?)';
    case 'ENOEXEC':
      return 'not an executable format (ENOEXEC)';
    default:
      return `${err.code ?? 'error'}: ${err.message}`;
  }
}
