// pmjq/job — the client library for jobs written in TypeScript or
// JavaScript: the fd 3/4 protocol of pmjq(1) and chaqum(1) (see
// pmjq-protocol(7)). Dependency-free; calls are synchronous, as a job's
// requests are answered in order anyway.
//
//   import { enqueue, waitjobs, log } from 'pmjq/job';
//   const jobs = ['a', 'b'].map((f) => enqueue('convert', [f], { group: 'convert', maxJobs: 2 }));
//   for (const { job, status } of waitjobs(jobs)) log.info(job.id, 'exited', status?.exitcode);

import fs from 'node:fs';

const CMD_FD = 3;
const ANS_FD = 4;

/** The manager answered E (the reason is the message), or the channel is gone. */
export class ProtocolError extends Error {
  override name = 'ProtocolError';
}

/** Seconds (a number) or a duration string such as '1.5', '30s', '1h30m', '250ms'. */
export type Timeout = number | string;

export interface JobStatus {
  /** still running when the timeout expired */
  timeout: boolean;
  /** it ended */
  done: boolean;
  /** its exit code; null when it ended without one (killed, signal) or did not end */
  exitcode: number | null;
}

export type JobRef = Job | string;
export type MessageRef = Message | string;

export class Job {
  constructor(readonly id: string) {}
  /** Waits until it ends (or the timeout) and returns how. */
  wait(timeout?: Timeout): JobStatus | null {
    return waitjobs([this], { timeout })[0]!.status;
  }
  /** Terminates it (SIGTERM, then SIGKILL) and waits. */
  kill(timeout?: Timeout): JobStatus | null {
    return killjobs([this], { timeout })[0]!.status;
  }
  sendmsg(data: string | Uint8Array): Message {
    return sendmsg(this, data);
  }
  sendjson(value: unknown): Message {
    return sendmsg(this, JSON.stringify(value));
  }
  toString(): string { return this.id; }
}

export class Message {
  constructor(readonly id: string) {}
  /** true once the recipient received it; false on timeout or if it never will (recipient ended). */
  waitrecv(timeout?: Timeout): boolean {
    return waitrecv([this], { timeout })[0]!.received;
  }
  toString(): string { return this.id; }
}

/** This job (CHAQUM_IDENT), its parent (CHAQUM_PARENT) if it is a sub-job. */
export const self: Job | null = process.env.CHAQUM_IDENT ? new Job(process.env.CHAQUM_IDENT) : null;
export const parent: Job | null = process.env.CHAQUM_PARENT ? new Job(process.env.CHAQUM_PARENT) : null;

// ---- commands ----

export interface EnqueueOptions {
  /** -g: the group; created when first named */
  group?: string;
  /** -m: the group's maximum of processes running at once */
  maxJobs?: number;
  /** -c: the group's CPU barrier (0–1, or percent) */
  maxCpu?: number;
  /** -F: nobody will wait for it */
  forget?: boolean;
}

/** Queues SCRIPT (absolute, or relative to the job tree) with ARGS; the id is valid at once. */
export function enqueue(script: string, args: readonly unknown[] = [], opts: EnqueueOptions = {}): Job {
  const words = ['enqueue'];
  if (opts.forget) words.push('-F');
  if (opts.group !== undefined) words.push('-g', opts.group);
  if (opts.maxJobs !== undefined) words.push('-m', String(opts.maxJobs));
  if (opts.maxCpu !== undefined) words.push('-c', String(opts.maxCpu));
  words.push('--', script, ...args.map(String));
  return new Job(rest(command(words)));
}

export interface Every { seconds?: number; minutes?: number; hours?: number; days?: number; weeks?: number }

/** Runs SCRIPT every interval ('30s', '1h30m', or { minutes: 5 }), at most one instance at a time. */
export function interval(script: string, args: readonly unknown[], every: string | Every): void {
  const spec = typeof every === 'string' ? every
    : `${every.seconds ?? 0}s${every.minutes ?? 0}m${every.hours ?? 0}h${every.days ?? 0}d${every.weeks ?? 0}w`;
  command(['repeat', '-i', spec, '--', script, ...args.map(String)]);
}

export interface CronFields { second?: string; minute?: string; hour?: string; day?: string; month?: string; dayOfWeek?: string }

/** Runs SCRIPT at the times of a cron expression (5 fields, or 6 with seconds first). */
export function cron(script: string, args: readonly unknown[], when: string | CronFields): void {
  const spec = typeof when === 'string' ? when
    : [when.second ?? '*', when.minute ?? '*', when.hour ?? '*', when.day ?? '*', when.month ?? '*', when.dayOfWeek ?? '*'].join(' ');
  command(['repeat', '-c', spec, '--', script, ...args.map(String)]);
}

export interface WaitOptions {
  timeout?: Timeout;
  /** return when the first of them is done (default: when all are) */
  first?: boolean;
}

/** Waits for jobs; status null: the manager does not know the job (any more). */
export function waitjobs(jobs: readonly JobRef[], opts: WaitOptions = {}): { job: Job; status: JobStatus | null }[] {
  const words = opts.first ? ['wait', '-f'] : ['waitjobs'];
  return jobResults(words, jobs, opts.timeout);
}

/** Terminates jobs, then waits for them as waitjobs does. */
export function killjobs(jobs: readonly JobRef[], opts: { timeout?: Timeout } = {}): { job: Job; status: JobStatus | null }[] {
  return jobResults(['killjobs'], jobs, opts.timeout);
}

/** Sends bytes (a string is sent as UTF-8) to a job; it gets them with recvmsg. */
export function sendmsg(to: JobRef, data: string | Uint8Array): Message {
  const payload = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data);
  const line = Buffer.from(`${joinWords(['sendmsg', '--', String(to), String(payload.length)])}\n`);
  writeAll(Buffer.concat([line, payload, NL]));
  return new Message(rest(answer()));
}

export function sendjson(to: JobRef, value: unknown): Message {
  return sendmsg(to, JSON.stringify(value));
}

/** Waits until messages were received; `received` false on timeout or when they never will be. */
export function waitrecv(messages: readonly MessageRef[], opts: { timeout?: Timeout } = {}): { message: Message; received: boolean }[] {
  const refs = messages.map((m) => (typeof m === 'string' ? new Message(m) : m));
  const results = pairs(rest(command(withTimeout(['waitrecv'], opts.timeout, refs.map(String)))));
  return refs.map((message) => ({ message, received: results.get(message.id) === 'R' }));
}

/** The next message for this job, or null at the timeout. */
export function recvmsg(opts: { timeout?: Timeout } = {}): Buffer | null {
  const a = command(withTimeout(['recvmsg'], opts.timeout, []));
  if (a === 'T') return null;
  const n = Number(rest(a));
  if (!Number.isSafeInteger(n) || n < 0) throw new ProtocolError(`bad recvmsg answer '${a}'`);
  const data = readExact(n);
  if (readExact(1)[0] !== 10) throw new ProtocolError('recvmsg: payload not followed by a newline');
  return data;
}

/** The next message, decoded as JSON; undefined at the timeout. */
export function recvjson(opts: { timeout?: Timeout } = {}): unknown {
  const m = recvmsg(opts);
  return m === null ? undefined : JSON.parse(m.toString('utf8'));
}

// ---- logging: a level letter and the unit separator before the line ----

function logAt(level: string): (...args: unknown[]) => void {
  return (...args) => {
    const text = args.map((a) => (typeof a === 'string' ? a : a instanceof Error ? a.stack ?? String(a) : JSON.stringify(a))).join(' ');
    const lines = text.split('\n').map((l) => `${level}\x1f${l}\n`).join('');
    fs.writeSync(2, lines);
  };
}

export const log = {
  critical: logAt('C'),
  error: logAt('E'),
  warning: logAt('W'),
  info: logAt('I'),
  debug: logAt('D'),
};

// ---- quoting, as the manager splits words (POSIX shell single quotes) ----

/** One word quoted for a command line; a newline cannot be sent in an argument. */
export function quoteWord(word: string): string {
  if (word.includes('\n')) throw new ProtocolError('an argument cannot contain a newline');
  if (word !== '' && /^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

export function joinWords(words: readonly string[]): string {
  return words.map(quoteWord).join(' ');
}

/**
 * Sends one command (already split into words) and returns the answer line.
 * Throws ProtocolError on an E answer.
 */
export function command(words: readonly string[]): string {
  writeAll(Buffer.from(`${joinWords(words)}\n`));
  return answer();
}

// ---- the channel ----

const NL = Buffer.from('\n');
let inbuf: Buffer = Buffer.alloc(0);
const pause = new Int32Array(new SharedArrayBuffer(4));

function retry<T>(fn: () => T): T {
  for (;;) {
    try {
      return fn();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN' || code === 'EINTR') { Atomics.wait(pause, 0, 0, 2); continue; }
      if (code === 'EBADF') throw new ProtocolError('no command channel: fd 3/4 are not open (not running under pmjq or chaqum?)');
      if (code === 'EPIPE' || code === 'ECONNRESET') throw new ProtocolError('the command channel was closed by the manager');
      throw err;
    }
  }
}

function writeAll(buf: Buffer): void {
  for (let off = 0; off < buf.length;) off += retry(() => fs.writeSync(CMD_FD, buf, off, buf.length - off));
}

function fill(): void {
  const chunk = Buffer.allocUnsafe(64 * 1024);
  const n = retry(() => fs.readSync(ANS_FD, chunk, 0, chunk.length, null));
  if (n === 0) throw new ProtocolError('the command channel was closed by the manager');
  inbuf = inbuf.length === 0 ? chunk.subarray(0, n) : Buffer.concat([inbuf, chunk.subarray(0, n)]);
}

function readLine(): string {
  for (;;) {
    const nl = inbuf.indexOf(10);
    if (nl >= 0) {
      const line = inbuf.subarray(0, nl).toString('utf8');
      inbuf = inbuf.subarray(nl + 1);
      return line;
    }
    fill();
  }
}

function readExact(n: number): Buffer {
  const parts: Buffer[] = [];
  let left = n;
  for (;;) {
    const take = Math.min(left, inbuf.length);
    if (take > 0) {
      parts.push(Buffer.from(inbuf.subarray(0, take)));
      inbuf = inbuf.subarray(take);
      left -= take;
    }
    if (left === 0) return Buffer.concat(parts, n);
    fill();
  }
}

function answer(): string {
  const a = readLine();
  if (a === 'E' || a.startsWith('E ')) throw new ProtocolError(a.slice(2) || 'the manager refused the command');
  return a;
}

// ---- answers ----

function rest(a: string): string {
  if (a === 'S') return '';
  if (!a.startsWith('S ')) throw new ProtocolError(`unexpected answer '${a}'`);
  return a.slice(2);
}

function pairs(text: string): Map<string, string> {
  const w = text === '' ? [] : text.split(' ');
  const m = new Map<string, string>();
  for (let i = 0; i + 1 < w.length; i += 2) m.set(w[i]!, w[i + 1]!);
  return m;
}

function withTimeout(words: string[], timeout: Timeout | undefined, operands: string[]): string[] {
  if (timeout !== undefined) words.push('-t', String(timeout));
  return [...words, '--', ...operands];
}

function jobResults(words: string[], jobs: readonly JobRef[], timeout: Timeout | undefined): { job: Job; status: JobStatus | null }[] {
  const refs = jobs.map((j) => (typeof j === 'string' ? new Job(j) : j));
  const results = pairs(rest(command(withTimeout(words, timeout, refs.map(String)))));
  return refs.map((job) => {
    const r = results.get(job.id);
    let status: JobStatus | null = null;
    if (r === 'T') status = { timeout: true, done: false, exitcode: null };
    else if (r === 'N') status = { timeout: false, done: true, exitcode: null };
    else if (r !== undefined) status = { timeout: false, done: true, exitcode: Number(r) };
    return { job, status };
  });
}
