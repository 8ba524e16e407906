// One job process (pmjq(1) THE JOB PROCESS): stdin /dev/null; stdout and stderr straight
// into the job's log file (the kernel writes them: a job printing gigabytes
// costs the manager neither memory nor time); fd 3/4 the command channel;
// its own session and process group, so that killing the job kills its tree.
//
// The process is made by the spawner (spawner.ts): a small helper forks and
// execs it, so that the daemon neither forks itself nor waits for the exec.
// Starting is therefore asynchronous: start() resolves once the job runs,
// or with why it could not.

import fs from 'node:fs';
import os from 'node:os';
import { Readable, Writable } from 'node:stream';
import { CommandChannel, MAX_UNREAD, type CommandHandler } from './channel.js';
import type { JobOwner } from './owner.js';
import { spawner, type JobPipes } from './spawner.js';
import type { Logger } from '../util/log.js';

export type EndReason = 'exit' | 'timeout' | 'killed' | 'interrupted';

export interface JobSpec {
  id: string;
  file: string;
  args: string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
  logPath: string;
  /** run as this user, its groups included (only when pmjq is root): the helper switches before the exec */
  runAs?: { owner: JobOwner };
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
  /** the file is still open for writing (ETXTBSY), or the helper could not start it (`reason`): not ready yet, not a failure */
  | { ok: false; busy: true; reason?: string }
  | { ok: false; busy: false; error: string; withdrawn?: undefined }
  /** a standby that never started: its deadline passed first, or it was cancelled (kill) */
  | { ok: false; busy: false; error: string; withdrawn: 'expired' | 'cancelled' };

export interface JobEnd {
  exitCode: number | null;
  signal: string | null;
  reason: EndReason;
  started: Date;
  finished: Date;
  /** its process group still had members when it ended (what it left running, sent SIGTERM) */
  groupLeft: boolean;
}

export class JobProcess {
  private pidValue: number | undefined;
  private running = false;
  /** its name with the helper, and how to withdraw it while it is a standby */
  private pipes: JobPipes | null = null;
  private channel: CommandChannel | null = null;
  /** chaqum mode: its stdout and stderr connections not yet at their end */
  private outputsOpen = 0;
  private outputsClosed: (() => void) | null = null;
  /** takes fd 3's bytes for the channel (null: their end); made with the first command: most jobs send none */
  private feed: ((chunk: Buffer | null) => void) | null = null;
  private reason: EndReason = 'exit';
  /** a kill asked for before the process was there */
  private pendingKill: Exclude<EndReason, 'exit'> | null = null;
  private timeout: NodeJS.Timeout | null = null;
  private killTimer: NodeJS.Timeout | null = null;
  started = new Date(0);
  /** resolves once the process has exited (with how it ended); only for a job that started */
  readonly exited: Promise<JobEnd>;
  private resolveExited!: (end: JobEnd) => void;
  /** resolves once the process is over, or could not start */
  readonly settled: Promise<void>;
  private resolveSettled!: () => void;

  constructor(private readonly spec: JobSpec) {
    this.exited = new Promise((resolve) => { this.resolveExited = resolve; });
    this.settled = new Promise((resolve) => { this.resolveSettled = resolve; });
  }

  /** its pid, which is also its process group's id; undefined until it has started */
  get pid(): number | undefined { return this.pidValue; }

  /** why it was stopped before it could start (a kill asked for meanwhile), or null */
  get killedBeforeStart(): Exclude<EndReason, 'exit'> | null { return this.pidValue === undefined ? this.pendingKill : null; }

  /**
   * Start it now, or, as a standby, the moment the job `after` ends
   * (spawner.ts SpawnRequest.after) if that is before `deadlineMs`.
   */
  start(standby?: { after: JobProcess; deadlineMs: number }): Promise<StartResult> {
    const s = this.spec;
    return new Promise((resolve) => {
      try {
        const ids = s.runAs ? { uid: s.runAs.owner.uid, gid: s.runAs.owner.gid, groups: s.runAs.owner.groups } : undefined;
        this.started = new Date();
        if (s.onLine) this.outputsOpen = 2;
        const pipes: JobPipes = spawner.spawn({
          file: s.file, args: s.args, cwd: s.cwd, env: s.env, logPath: s.onLine ? null : s.logPath, ids,
          after: standby?.after.pipes?.token, deadlineMs: standby?.deadlineMs,
        }, {
          started: (pid) => {
            // (a standby waited for its slot: it starts now)
            if (standby) this.started = new Date();
            this.pidValue = pid;
            this.running = true;
            // Node fires a timer of more than 2^31−1 ms (24.8 days) after 1 ms: longer timeouts wait that long
            if (s.timeoutMs) this.timeout = setTimeout(() => this.kill('timeout'), Math.min(s.timeoutMs, MAX_TIMER_MS));
            if (this.pendingKill) this.kill(this.pendingKill);
            resolve({ ok: true });
          },
          failed: (errno, step) => {
            this.channel?.close();
            if (this.running) {
              // the helper died: this job's end would not be heard of; it is stopped, and runs again
              this.reason = 'interrupted';
              this.onExit(null, 'SIGKILL', true);
              return;
            }
            this.resolveSettled();
            if (errno === 0 && (step === 'expired' || step === 'cancelled')) {
              resolve({ ok: false, busy: false, withdrawn: step, error: step === 'expired' ? 'its slot was not free in time' : 'withdrawn before it started' });
              return;
            }
            const code = errnoName(errno);
            // not the job's fault: tried again later (a helper that went away is started anew, a lost socket made anew)
            if (code === 'ETXTBSY' && step === 'exec') resolve({ ok: false, busy: true });
            else if (TRY_AGAIN_STEPS.has(step)) resolve({ ok: false, busy: true, reason: `could not be started by the job helper (${step}: ${code})` });
            else resolve({ ok: false, busy: false, error: explainStartError(code, step, s) });
          },
          exited: (status, groupLeft) => {
            const signal = status & 0x7f;
            this.onExit(signal ? null : (status >> 8) & 0xff, signal ? signalName(signal) : null, false, groupLeft);
          },
          commands: (chunk) => {
            this.feed ??= this.openChannel(pipes);
            this.feed(chunk);
          },
          // (a job that closes fd 3 has said all it will: the channel ends, and fd 4 with it)
          commandsEnd: () => { this.feed?.(null); },
          unread: () => {
            s.log.warn('protocol-error', { id: s.id, error: `job does not read its answers on fd 4 (${MAX_UNREAD} bytes unread); channel closed` });
            this.channel?.close();
          },
          connected: (_fd, socket) => {
            if (!s.onLine) { socket.destroy(); return; }
            splitLines(socket, s.onLine, () => {
              if (--this.outputsOpen === 0) this.outputsClosed?.();
            });
          },
        });
        this.pipes = pipes;
      } catch (err) {
        this.resolveSettled();
        resolve({ ok: false, busy: false, error: (err as Error).message });
      }
    });
  }

  /**
   * The command channel over the job's fd 3 and 4: fd 3's bytes are read
   * from the helper a chunk at a time, as the channel takes them; answers go
   * to the helper at once (it holds what the job has not read, up to
   * MAX_UNREAD).
   */
  private openChannel(pipes: JobPipes): (chunk: Buffer | null) => void {
    // one chunk asked for at a time; the first came unasked
    let asked = true;
    const commands = new Readable({ read: () => { if (!asked) { asked = true; pipes.more(); } } });
    const answers = new Writable({
      write: (chunk: Buffer, _enc, done) => { pipes.answer(chunk); done(); },
      destroy: (_err, done) => { pipes.close(); done(null); },
    });
    this.channel = new CommandChannel(commands, answers, this.spec.handler, this.spec.log, this.spec.id);
    return (chunk) => {
      asked = false;
      commands.push(chunk);
    };
  }

  /** SIGTERM to the whole process group, SIGKILL after the grace period. */
  kill(reason: Exclude<EndReason, 'exit'>): void {
    const pid = this.pidValue;
    if (pid === undefined) {
      this.pendingKill ??= reason;
      // a standby still held by the helper does not start at all (any other start goes on, and is killed then)
      this.pipes?.cancel();
      return;
    }
    if (!this.running) return;
    if (this.reason === 'exit') this.reason = reason;
    signalGroup(pid, 'SIGTERM');
    this.killTimer ??= setTimeout(() => signalGroup(pid, 'SIGKILL'), this.spec.killGraceMs);
  }

  private onExit(code: number | null, signal: string | null, unheard = false, groupLeft = true): void {
    if (!this.running) return;
    this.running = false;
    const finished = new Date();
    if (this.timeout) clearTimeout(this.timeout);
    if (this.killTimer) clearTimeout(this.killTimer);
    this.channel?.close();
    // whatever the job left running in its process group goes with it: SIGTERM,
    // and SIGKILL after the grace period for what ignores SIGTERM (a daemon
    // child would otherwise outlive its job). The group's id is the job's pid,
    // which stays reserved while any member lives; a group found empty (by
    // the helper, as it reaped the job) is gone for good and not signalled:
    // its id may be a new process's by now.
    const pid = this.pidValue;
    if (pid !== undefined && groupLeft && signalGroup(pid, unheard ? 'SIGKILL' : 'SIGTERM')) {
      setTimeout(() => { if (signalGroup(pid, 0)) signalGroup(pid, 'SIGKILL'); }, this.spec.killGraceMs).unref();
    }
    const end = (): void => {
      this.outputsClosed = null;
      this.resolveExited({ exitCode: code, signal, reason: this.reason, started: this.started, finished, groupLeft });
      this.resolveSettled();
    };
    if (this.outputsOpen === 0 || unheard) { end(); return; }
    // chaqum mode: the job's last lines may still be on their way (its exit can
    // be heard first); its end waits for them, not for long (a process it
    // left running may hold its stdout for ever)
    const wait = setTimeout(end, OUTPUT_DRAIN_MS);
    this.outputsClosed = () => { clearTimeout(wait); end(); };
  }
}

/** where the helper failed for reasons of its own, not the job's (no process, no descriptor, no socket) */
const TRY_AGAIN_STEPS = new Set(['helper', 'connect', 'pipe', 'fork']);

const MAX_OUTPUT_LINE = 64 * 1024;
/** how long a job's end waits for the rest of its line-by-line output */
const OUTPUT_DRAIN_MS = 1000;
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Lines of a stream, never holding more than one (bounded) line in memory; `closed` once, at its end. */
function splitLines(stream: Readable, onLine: (line: string) => void, closed: () => void): void {
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
  stream.once('close', closed);
  // (the spawner paused it once it had read the connection's first line: a 'data' listener alone does not resume it)
  stream.resume();
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

/** A name for an errno number (ENOENT), or the number. */
function errnoName(errno: number): string {
  for (const [name, n] of Object.entries(os.constants.errno)) if (n === errno) return name;
  return `errno ${errno}`;
}

function signalName(n: number): string {
  for (const [name, v] of Object.entries(os.constants.signals)) if (v === n) return name;
  return String(n);
}

/** Why a job could not start, from the errno and the step the helper gives. */
function explainStartError(code: string, step: string, s: JobSpec): string {
  switch (`${step} ${code}`) {
    case 'chdir ENOENT':
      return `working directory ${s.cwd} does not exist (ENOENT)`;
    case 'exec ENOENT':
      return fs.existsSync(s.file) ? 'the interpreter its #! line names was not found (ENOENT)' : 'job file vanished before it could start (ENOENT)';
    case 'exec EACCES':
      return 'permission denied executing the job (EACCES: noexec mount or no search permission?)';
    case 'exec ENOEXEC':
      return 'not an executable format (ENOEXEC)';
    default:
      return `${step}: ${code}`;
  }
}
