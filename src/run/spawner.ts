// The spawner: starts job processes through libexec/pmjq-spawn, a small C
// program of our own (built at install), instead of Node's spawn. Node's
// spawn forks the whole daemon and waits, blocked, until the child has
// exec'd: measured, half of the daemon's time per job. The helper forks
// cheaply and the daemon waits for nothing: it writes a request and hears
// "started", then "exit", later.
//
// A job's fd 3 and fd 4 are pipes of the helper's: what the job writes to
// fd 3 comes with the helper's reports, a chunk at a time (the next when the
// command channel asks for it, so that a job flooding fd 3 is held back by
// its pipe), and the answers go back through the helper to fd 4. Two pipes
// per job and no connection: a job that never writes a command costs no
// message. When its output is read line by line (chaqum), its stdout and
// stderr are each a connection to a Unix socket of ours, in a directory only
// our user can enter, naming its job by a first line with a token: a counter
// after a random secret, so that no other process can pass for a job even
// if it could connect.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MAX_UNREAD } from './channel.js';

const HELPER = fileURLToPath(new URL('../../libexec/pmjq-spawn', import.meta.url));
/** what the helper says after "ready": its requests and reports are these (libexec/pmjq-spawn.c PROTOCOL) */
const HELPER_PROTOCOL = '3';
/** the first line of a connection: "TOKEN FD\n", well under this */
const MAX_FIRST_LINE = 128;

export interface SpawnRequest {
  file: string;
  args: string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** stdout and stderr appended to this file; null: both come as connections (`connected`) */
  logPath: string | null;
  /** switch to these ids before the exec (the owner's, when pmjq is root) */
  ids?: { uid: number; gid: number; groups: number[] };
  /**
   * a standby: the token of the job whose slot it takes (JobPipes.token).
   * The helper holds it and starts it the moment that job is reaped; until
   * then `cancel()` withdraws it
   */
  after?: string;
  /** monotonicMs() after which it is not started at all (failed, step "expired") */
  deadlineMs?: number;
}

/** What the helper tells about one job. */
export interface SpawnEvents {
  started(pid: number): void;
  /**
   * it did not start: errno and the step that failed (connect, pipe, fork, setsid,
   * log, dup2, chdir, setgid, setuid, exec); or, step "helper", the helper
   * went away, before the start or after it (then the exit is not known);
   * or, errno 0, a standby withdrawn: step "expired" (its deadline passed
   * first) or "cancelled" (JobPipes.cancel)
   */
  failed(errno: number, step: string): void;
  /** the wait status of a started job, and whether its process group outlived it (then it is still there) */
  exited(status: number, groupLeft: boolean): void;
  /** a chunk the job wrote to fd 3; the next comes after `more()` */
  commands(chunk: Buffer): void;
  /** the job closed fd 3 (or fd 4): its commands are over */
  commandsEnd(): void;
  /** the job left more than MAX_UNREAD bytes of answers unread on fd 4: fd 3 and 4 are closed */
  unread(): void;
  /** with logPath null: its stdout and stderr connections */
  connected(fd: 1 | 2, socket: net.Socket): void;
}

/** A job's fd 3 and fd 4, from the daemon's side (and its name with the helper). */
export interface JobPipes {
  /** what the helper calls it: a standby names its predecessor by this */
  token: string;
  /** a standby not started yet is not to start (failed, step "cancelled"); one started goes on */
  cancel(): void;
  /** the next chunk of fd 3, when there is one */
  more(): void;
  /** bytes for fd 4 */
  answer(data: Buffer): void;
  /** done with fd 3 and fd 4 (the helper closes them; it does too when the job ends) */
  close(): void;
}

export class Spawner {
  private helper: ChildProcess | null = null;
  private server: net.Server | null = null;
  private dir = '';
  private readonly secret = randomBytes(12).toString('hex');
  private next = 0;
  private readonly jobs = new Map<string, SpawnEvents>();
  /**
   * Jobs whose stdout and stderr come as connections, with how many have not
   * come yet: the helper makes them before the fork, but we may hear of the
   * exit first; a job that ended stays known until they have come.
   */
  private readonly connsDue = new Map<string, number>();
  /** jobs that ended with connections still due */
  private readonly endedEarly = new Set<string>();
  private replies: Buffer = Buffer.alloc(0);
  private exitHooked = false;
  private readyWaiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  /** where the helper's going away is told (pmjq's log) */
  onTrouble: (message: string) => void = (m) => process.emitWarning(m);
  /** told each helper's pid as it starts (the fencing watchdog stops its children) */
  onHelper: (pid: number) => void = () => {};

  /**
   * Starts the helper now, resolving once it answers: a launcher calls this
   * before it claims anything, so that a helper not built is one clear error
   * at start rather than a failure per job.
   */
  ready(): Promise<void> {
    if (this.helper && this.readyWaiters.length === 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.readyWaiters.push({ resolve, reject });
      if (!this.helper) this.startHelper();
    });
  }

  /** Asks for a job process; its events follow. Throws if the helper cannot be started. */
  spawn(req: SpawnRequest, events: SpawnEvents): JobPipes {
    const helper = this.helper ?? this.startHelper();
    const token = `${this.secret}.${++this.next}`;
    const env = Object.entries(req.env).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${v}`);
    const argv = [req.file, ...req.args];
    const fields = [
      req.after ?? '-', String(req.deadlineMs ?? 0),
      req.logPath === null ? this.socketPath() : '', token, req.logPath ?? '', req.logPath === null ? 'lines' : 'log', req.cwd,
      req.ids ? String(req.ids.uid) : '-', req.ids ? String(req.ids.gid) : '-', req.ids ? req.ids.groups.join(',') : '-',
      String(argv.length), ...argv, String(env.length), ...env,
    ];
    for (const f of fields) if (f.includes('\0')) throw new Error('a NUL byte in an argument or environment variable');
    this.jobs.set(token, events);
    if (req.logPath === null) this.connsDue.set(token, 2);
    this.refWhileBusy();
    // its length first: fields may be empty, and may hold any byte but NUL
    const request = Buffer.from(fields.join('\0'));
    helper.stdin!.write(Buffer.concat([Buffer.from(`${request.length}\n`), request]));
    // (to the helper that started it: a new helper has never heard of it)
    const say = (m: Buffer | string): void => { if (this.helper === helper) helper.stdin!.write(m); };
    return {
      token,
      cancel: () => say(`x ${token}\n`),
      more: () => say(`r ${token}\n`),
      answer: (data) => say(Buffer.concat([Buffer.from(`w ${token} ${data.length}\n`), data])),
      close: () => say(`c ${token}\n`),
    };
  }

  /** Stops the helper (it exits at EOF) and removes the socket. */
  close(): void {
    const helper = this.helper;
    this.helper = null;
    helper?.stdin?.end();
    this.server?.close();
    if (this.dir) fs.rmSync(this.dir, { recursive: true, force: true });
    this.server = null;
    this.dir = '';
  }

  /**
   * Where line-by-line output goes: a socket in a directory of our own, made
   * with the first job that needs it, and made anew if it went
   * (checkSocket): the helper is told the path with every such request.
   */
  private socketPath(): string {
    if (this.server) return path.join(this.dir, 's');
    removeStaleSocketDirs();
    return this.listen();
  }

  /** A helper could not connect: if our socket is gone, the next jobs use a new one. */
  private checkSocket(): void {
    if (!this.server || socketThere(path.join(this.dir, 's'))) return;
    this.onTrouble(`the socket for jobs' fd 3 and 4, ${path.join(this.dir, 's')}, is gone (a /tmp cleaner?): listening on a new one`);
    this.server.close();
    fs.rmSync(this.dir, { recursive: true, force: true });
    this.listen();
  }

  private listen(): string {
    // mkdtemp makes it 0700: only our user can connect
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), SOCKET_DIR_PREFIX));
    this.server = net.createServer((s) => this.accept(s));
    this.server.listen(path.join(this.dir, 's'));
    this.server.unref();
    return path.join(this.dir, 's');
  }

  private startHelper(): ChildProcess {
    // (nothing of our environment: the jobs' come with each request)
    const helper = spawn(HELPER, [String(MAX_UNREAD)], { stdio: ['pipe', 'pipe', 'inherit'], env: {} });
    helper.stdout!.on('data', (chunk: Buffer) => this.onReplies(chunk));
    helper.on('error', (err) => {
      if (this.helper === helper) this.helperGone(`cannot run the job helper ${HELPER}: ${err.message}; build it with npm run build (needs a C compiler: apt-get install gcc)`);
    });
    helper.on('exit', (code, signal) => {
      if (this.helper === helper) this.helperGone(`the job helper ${HELPER} exited (${signal ?? `exit ${code}`})`);
    });
    helper.stdin!.on('error', () => { /* reported by 'exit' */ });
    // an idle helper keeps no process alive (see refWhileBusy)
    helper.unref();
    if (!this.exitHooked) process.once('exit', () => this.close());
    this.exitHooked = true;
    this.helper = helper;
    if (helper.pid !== undefined) this.onHelper(helper.pid);
    return helper;
  }

  /** The helper's replies keep this process alive while a job is starting or running, not longer. */
  private refWhileBusy(): void {
    const out = this.helper?.stdout as (NodeJS.ReadableStream & { ref?: () => void; unref?: () => void }) | undefined;
    if (this.jobs.size > 0) out?.ref?.();
    else out?.unref?.();
  }

  private onReplies(chunk: Buffer): void {
    let buf = this.replies.length === 0 ? chunk : Buffer.concat([this.replies, chunk]);
    let nl: number;
    while ((nl = buf.indexOf(10)) >= 0) {
      const [what, token, a, b] = buf.toString('latin1', 0, nl).split(' ');
      if (what === 'd') {
        // "d TOKEN LEN" and LEN bytes of the job's fd 3
        const end = nl + 1 + Number(a);
        if (buf.length < end) break;
        const data = buf.subarray(nl + 1, end);
        buf = buf.subarray(end);
        this.jobs.get(token!)?.commands(data);
        continue;
      }
      buf = buf.subarray(nl + 1);
      if (what === 'ready') {
        if (token !== HELPER_PROTOCOL) {
          this.helper?.kill();
          this.helperGone(`the job helper ${HELPER} is out of date (protocol ${token ?? 'none'}, this pmjq's is ${HELPER_PROTOCOL}): build it with npm run build`);
          return;
        }
        for (const w of this.readyWaiters.splice(0)) w.resolve();
        continue;
      }
      const ev = this.jobs.get(token!);
      if (!ev) continue;
      if (what === 'started') ev.started(Number(a));
      else if (what === 'failed') {
        this.forget(token!);
        if (b === 'connect') this.checkSocket();
        ev.failed(Number(a), b ?? '');
      }
      else if (what === 'exit') {
        if (this.connsDue.has(token!)) this.endedEarly.add(token!); else this.jobs.delete(token!);
        ev.exited(Number(a), b !== '0');
      }
      else if (what === 'e') ev.commandsEnd();
      else if (what === 'u') ev.unread();
    }
    this.replies = buf;
    this.refWhileBusy();
  }

  private forget(token: string): void {
    this.jobs.delete(token);
    this.connsDue.delete(token);
    this.endedEarly.delete(token);
  }

  /** A connection names its job and descriptor (1 or 2) on its first line; anything else is dropped. */
  private accept(s: net.Socket): void {
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      const nl = head.indexOf(10);
      if (nl < 0) {
        if (head.length > MAX_FIRST_LINE) s.destroy();
        return;
      }
      s.off('data', onData);
      s.pause();
      const [token, fd] = head.subarray(0, nl).toString('latin1').split(' ');
      const rest = head.subarray(nl + 1);
      if (rest.length > 0) s.unshift(rest);
      const ev = this.jobs.get(token ?? '');
      const due = this.connsDue.get(token ?? '');
      if (!ev || due === undefined || (fd !== '1' && fd !== '2')) { s.destroy(); return; }
      if (due > 1) this.connsDue.set(token!, due - 1);
      else {
        this.connsDue.delete(token!);
        if (this.endedEarly.has(token!)) this.forget(token!);
      }
      ev.connected(Number(fd) as 1 | 2, s);
    };
    s.on('data', onData);
    s.on('error', () => s.destroy());
  }

  /**
   * Without the helper, the exits of the jobs it started will not be heard
   * of: they are told so (failed, step "helper"), and the next job starts a
   * new helper.
   */
  private helperGone(why: string): void {
    this.helper = null;
    this.replies = Buffer.alloc(0);
    const waiters = this.readyWaiters.splice(0);
    for (const w of waiters) w.reject(new Error(why));
    if (waiters.length === 0) this.onTrouble(why);
    const jobs = [...this.jobs.entries()].filter(([t]) => !this.endedEarly.has(t)).map(([, ev]) => ev);
    this.jobs.clear();
    this.connsDue.clear();
    this.endedEarly.clear();
    for (const ev of jobs) ev.failed(0, 'helper');
  }
}

const SOCKET_DIR_PREFIX = 'pmjq-spawn-';

function socketThere(p: string): boolean {
  try { return fs.lstatSync(p).isSocket(); } catch { return false; }
}

/** a socket this old that refuses connections is nobody's (a live one listens microseconds after it is made) */
const STALE_SOCKET_MS = 60_000;

/**
 * The socket directories of our user's pmjq processes that died without
 * removing theirs (killed -9): one whose socket is a minute old and refuses
 * a connection is nobody's any more. (A younger one may be a pmjq starting
 * this very moment, between its bind and its listen.) Looked at once, in the
 * background, when a socket is first made.
 */
function removeStaleSocketDirs(): void {
  const tmp = os.tmpdir();
  const uid = process.getuid?.();
  let entries: string[];
  try { entries = fs.readdirSync(tmp).filter((e) => e.startsWith(SOCKET_DIR_PREFIX)); } catch { return; }
  for (const e of entries) {
    const dir = path.join(tmp, e);
    const socket = path.join(dir, 's');
    try {
      const st = fs.lstatSync(dir);
      const so = fs.lstatSync(socket);
      if (!st.isDirectory() || st.uid !== uid || !so.isSocket() || Date.now() - so.mtimeMs < STALE_SOCKET_MS) continue;
    } catch { continue; }
    const probe = net.connect(socket);
    probe.on('connect', () => probe.destroy());
    probe.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED') fs.rmSync(dir, { recursive: true, force: true });
    });
    probe.unref();
  }
}

/** One spawner per process, started with its first job. */
export const spawner = new Spawner();
