// The job protocol (DESIGN §6): what each command on fd 3 means and what is
// answered on fd 4, wire-compatible with the chaqum job manager. The framing
// (lines, bounds, payload bytes) is CommandChannel's; the engine's side —
// queueing and starting sub-jobs, killing — is behind ProtocolHost, so this
// file knows nothing of spools, groups' queues or processes.
//
// Wiring (what the engine does):
//
//   const protocol = new Protocol(host);
//   // for every job process it spawns, spool job or sub-job:
//   new JobProcess({ …, handler: protocol.handlerFor({ id, tree }) });
//   protocol.jobStarted(id);                      // once it runs
//   protocol.jobEnded(id, exitCode, killed);      // once it ended — or will never run
//   // host.enqueue(req) queues a sub-job and returns its id at once;
//   // host.kill(id) terminates a queued or running job.
//   protocol.idle      // chaqum: nothing queued/running here, no repeat registered
//   protocol.close()   // at shutdown
//
// Commands and answers (one line each; S = success, E = error):
//
//   enqueue [-F] [-g GROUP] [-m MAXPROC] [-c MAXCPU] -- SCRIPT [ARG…]   S JOBID
//   repeat (-c CRON | -i INTERVAL) -- SCRIPT [ARG…]                     S
//   waitjobs [-t TIMEOUT] -- JOBID…                S JOBID T|N|CODE …
//   wait [-a|-f] [-t TIMEOUT] -- JOBID…             as waitjobs; -f: when the first is done
//   killjobs [-t TIMEOUT] -- JOBID…                 terminate, then as waitjobs
//   sendmsg -- JOBID LENGTH  + LENGTH bytes + \n    S MSGID
//   waitrecv [-t TIMEOUT] -- MSGID…                 S MSGID R|T|N …
//   recvmsg [-t TIMEOUT]                            S LENGTH \n bytes (\n) | T
//
// In answers, ids come in the order asked, each once; ids this manager does
// not know (never existed, or their result was dropped: -F jobs, results of
// a parent's children after the parent ended, the oldest results beyond the
// bound) are left out, as chaqum does. `N` for a message means it will never
// be received: its recipient ended first.
//
// Bounds: a job has at most one command in progress (the channel answers in
// order); messages, results and repeats are capped (LIMITS) and E is
// answered beyond.

import fs from 'node:fs/promises';
import { constants as FS } from 'node:fs';
import path from 'node:path';
import type { ChannelIO, CommandHandler } from './channel.js';
import { RepeatTimer, cronSchedule, intervalSchedule, type NextFiring } from './repeat.js';
import { Retained } from './retained.js';
import { getopt, splitWords, WordsError } from './words.js';
import { parseDuration } from '../util/duration.js';
import type { Logger } from '../util/log.js';

/** What `enqueue` (or a repeat firing) asks the engine to queue. */
export interface EnqueueRequest {
  /** id of the enqueuing job; for a repeat's instance, of the job that registered the repeat */
  parent: string;
  /** absolute path; it existed and was executable (for the manager) when asked */
  script: string;
  args: string[];
  /** the enqueuing job's tree: where relative scripts resolve; the sub-job's tree and working directory */
  tree: string;
  /** `-g`: the group (a valid name: not empty, no '/', no leading '.'); undefined = the parent's engine default */
  group?: string;
  /** `-m`: the group's `max` (processes on this node), 0 = unlimited; only with `group` */
  maxproc?: number;
  /** `-c`: the group's CPU barrier as a fraction 0–1 (percent values are converted); only with `group` */
  maxcpu?: number;
  /** `-F`: nobody waits for it; its state is dropped when it ends (repeat instances too) */
  forget: boolean;
  /** set for an instance of a repeat: the repeat's id (`repeat:N`) */
  repeat?: string;
}

export interface ProtocolHost {
  /**
   * Queues a sub-job and returns its id at once (valid before it starts).
   * Throws Error(message) to answer `E message`. The engine must later call
   * Protocol.jobEnded(id, …) for every id it returned — with null if the job
   * never ran (could not start, killed while queued, shutdown).
   */
  enqueue(req: EnqueueRequest): string;
  /** Terminates a queued or running job (SIGTERM, then SIGKILL); false if unknown or already ended. */
  kill(id: string): boolean;
  log: Logger;
}

export interface Limits {
  /** largest message payload */
  maxMessageBytes: number;
  /** messages queued for one job, not yet received */
  maxInboxMessages: number;
  /** bytes queued for one job */
  maxInboxBytes: number;
  /** bytes queued for all jobs together */
  maxQueuedBytes: number;
  /** repeats registered */
  maxRepeats: number;
  /** sub-jobs of one job that are queued or running */
  maxLiveChildren: number;
  /** exit codes of ended jobs kept for waitjobs */
  maxResults: number;
  /** outcomes of received/dropped messages kept for waitrecv */
  maxMessageResults: number;
}

export const LIMITS: Limits = {
  maxMessageBytes: 16 * 1024 * 1024,
  maxInboxMessages: 1000,
  maxInboxBytes: 16 * 1024 * 1024,
  maxQueuedBytes: 256 * 1024 * 1024,
  maxRepeats: 1000,
  maxLiveChildren: 100_000,
  maxResults: 100_000,
  maxMessageResults: 100_000,
};

/** Payloads are read and discarded in pieces of this size. */
const CHUNK = 64 * 1024;

/** A pending `waitjobs`/`killjobs`/`waitrecv`: settles when the items end, or at its timeout. */
class Wait {
  readonly outcomes = new Map<string, string>();
  readonly sets: Set<Wait>[] = [];
  timer: NodeJS.Timeout | null = null;
  remaining = 0;
  settled = false;

  constructor(
    readonly ids: string[],
    readonly first: boolean,
    private readonly pending: (id: string) => boolean,
    private readonly resolve: (answer: string) => void,
  ) {}

  /** An item it waits for ended with `outcome`. */
  done(id: string, outcome: string): void {
    if (this.settled || this.outcomes.has(id)) return;
    this.outcomes.set(id, outcome);
    this.remaining--;
    if (this.first || this.remaining <= 0) this.settle();
  }

  settle(): void {
    if (this.settled) return;
    let answer = 'S';
    for (const id of this.ids) {
      const o = this.outcomes.get(id) ?? (this.pending(id) ? 'T' : undefined);
      if (o !== undefined) answer += ` ${id} ${o}`;
    }
    this.finish(answer);
  }

  cancel(answer: string): void {
    if (!this.settled) this.finish(answer);
  }

  private finish(answer: string): void {
    this.settled = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const s of this.sets) s.delete(this);
    this.sets.length = 0;
    this.resolve(answer);
  }
}

interface Message {
  id: string;
  from: string;
  to: string;
  data: Buffer;
  waiters: Set<Wait>;
}

/** A job the protocol knows that is queued or running. */
interface Live {
  id: string;
  parent: string | null;
  /** the top-level job it descends from: jobs of one family share privileges */
  root: string;
  forget: boolean;
  started: boolean;
  /** waits of other jobs on this one */
  waiters: Set<Wait>;
  /** the command this job is waiting in, if any (at most one: the channel answers in order) */
  busy: Wait | null;
  recv: { resolve: (m: Message | null) => void; timer: NodeJS.Timeout | null } | null;
  inbox: Message[];
  inboxBytes: number;
  /** its sub-jobs that are queued or running */
  children: Set<string>;
}

interface Repeat {
  id: string;
  script: string;
  args: string[];
  tree: string;
  by: string;
  /** the family of the job that registered it: its instances run with its privileges */
  root: string;
  schedule: string;
  timer: RepeatTimer;
  /** the instance queued or running, if any */
  current: string | null;
  fired: number;
  skipped: number;
}

export interface RepeatInfo {
  id: string;
  script: string;
  args: string[];
  by: string;
  schedule: string;
  next: Date;
  running: string | null;
  fired: number;
  skipped: number;
}

export class Protocol {
  private readonly limits: Limits;
  private readonly live = new Map<string, Live>();
  /** exit code (null = none) of ended jobs, owned by their parent */
  private readonly results: Retained<number | null>;
  /** messages queued, not yet received */
  private readonly queued = new Map<string, Message>();
  private queuedBytes = 0;
  /** 'R' or 'N' of messages no longer queued, owned by their sender */
  private readonly msgResults: Retained<'R' | 'N'>;
  private readonly repeats = new Map<string, Repeat>();
  private readonly repeatOf = new Map<string, Repeat>();
  private msgCounter = 0;
  private repeatCounter = 0;
  private closed = false;
  /** jobs waiting in a command */
  private waiting = 0;
  /** jobs that ended while host.enqueue ran (see callEnqueue) */
  private endedDuringEnqueue: Map<string, number | null> | null = null;

  constructor(private readonly host: ProtocolHost, limits: Partial<Limits> = {}) {
    this.limits = { ...LIMITS, ...limits };
    this.results = new Retained(this.limits.maxResults);
    this.msgResults = new Retained(this.limits.maxMessageResults);
  }

  /** The CommandHandler of one job process. `tree`: where its relative SCRIPT paths resolve. */
  handlerFor(job: { id: string; tree: string }): CommandHandler {
    this.know(job.id);
    const { id, tree } = job;
    return (line, io) => this.handle(id, tree, line, io);
  }

  /** The job runs now (spool jobs become known here, or in handlerFor). */
  jobStarted(id: string): void {
    this.know(id).started = true;
  }

  /**
   * The job ended — or will never run. `exitCode` null: no exit code (signal,
   * killed, never started). `killed`: it was terminated (killjobs, timeout,
   * pmjqctl kill): its queued and running sub-jobs are terminated too; a job
   * that merely exits leaves its sub-jobs running.
   */
  jobEnded(id: string, exitCode: number | null, killed = false): void {
    this.endedDuringEnqueue?.set(id, exitCode);
    const l = this.live.get(id);
    if (!l) return;
    this.live.delete(id);
    const descendants = killed ? this.descendants(l) : [];

    l.busy?.cancel('E job ended');
    this.takeRecv(l)?.(null);
    for (const m of l.inbox) this.unqueue(m, 'N');
    l.inbox = [];
    l.inboxBytes = 0;
    // its children's exit codes and its messages' outcomes were for it to ask
    this.results.dropOwner(id);
    this.msgResults.dropOwner(id);

    const parent = l.parent === null ? undefined : this.live.get(l.parent);
    parent?.children.delete(id);
    if (!l.forget) this.results.set(id, exitCode, parent ? parent.id : null);
    const outcome = exitCode === null ? 'N' : String(exitCode);
    for (const w of [...l.waiters]) w.done(id, outcome);
    l.waiters.clear();

    const r = this.repeatOf.get(id);
    if (r) {
      this.repeatOf.delete(id);
      if (r.current === id) r.current = null;
    }
    for (const d of descendants) this.host.kill(d);
  }

  /** Live sub-jobs of `id`, its children's, and so on (not `id` itself). */
  descendants(id: string | Live): string[] {
    const start = typeof id === 'string' ? this.live.get(id) : id;
    if (!start) return [];
    const out: string[] = [];
    const todo = [...start.children];
    while (todo.length > 0) {
      const c = todo.pop()!;
      const l = this.live.get(c);
      if (!l) continue;
      out.push(c);
      for (const g of l.children) todo.push(g);
    }
    return out;
  }

  /**
   * No repeat registered and no job waiting in a command (waitjobs,
   * killjobs, waitrecv, recvmsg): with nothing queued or running in the
   * engine, chaqum's "done".
   */
  get idle(): boolean {
    return this.repeats.size === 0 && this.waiting === 0;
  }

  /** The registered repeats, for status displays. */
  listRepeats(): RepeatInfo[] {
    return [...this.repeats.values()].map((r) => ({
      id: r.id, script: r.script, args: r.args, by: r.by, schedule: r.schedule,
      next: new Date(r.timer.nextAt), running: r.current, fired: r.fired, skipped: r.skipped,
    }));
  }

  /** Sizes of everything held, to check that memory stays bounded. */
  stats(): { live: number; results: number; queuedMessages: number; queuedBytes: number; messageResults: number; repeats: number } {
    return {
      live: this.live.size, results: this.results.size, queuedMessages: this.queued.size,
      queuedBytes: this.queuedBytes, messageResults: this.msgResults.size, repeats: this.repeats.size,
    };
  }

  /** Stops the repeats and answers every pending wait with E. */
  close(): void {
    this.closed = true;
    for (const r of this.repeats.values()) r.timer.stop();
    this.repeats.clear();
    for (const l of this.live.values()) {
      l.busy?.cancel('E manager shutting down');
      this.takeRecv(l)?.(null);
    }
  }

  // ---- commands ----

  private async handle(id: string, tree: string, line: string, io: ChannelIO): Promise<string | Buffer> {
    const self = this.live.get(id);
    if (!self || this.closed) throw new Error(this.closed ? 'manager shutting down' : 'job has ended');
    let words: string[];
    try {
      words = splitWords(line);
    } catch (err) {
      throw new Error(`malformed command: ${(err as Error).message}`);
    }
    if (words.length === 0) throw new Error('empty command');
    const [cmd, ...args] = words as [string, ...string[]];
    try {
      switch (cmd) {
        case 'enqueue': return await this.enqueue(self, tree, args);
        case 'repeat': return await this.repeat(self, tree, args);
        case 'waitjobs': return await this.waitjobs(self, args, 't:', 'waitjobs');
        case 'wait': return await this.waitjobs(self, args, 'aft:', 'wait');
        case 'killjobs': return await this.killjobs(self, args);
        case 'sendmsg': return await this.sendmsg(self, args, io);
        case 'waitrecv': return await this.waitrecv(self, args);
        case 'recvmsg': return await this.recvmsg(self, args);
        default: throw new Error(`unknown command '${cmd.length > 40 ? cmd.slice(0, 40) + '…' : cmd}'`);
      }
    } catch (err) {
      if (err instanceof WordsError) throw new Error(`${cmd}: ${err.message}`);
      throw err;
    }
  }

  private async enqueue(self: Live, tree: string, args: string[]): Promise<string> {
    const { opts, operands } = getopt(args, 'Fg:m:c:');
    if (operands.length === 0) throw new Error('enqueue: SCRIPT missing (enqueue [-F] [-g GROUP] [-m MAXPROC] [-c MAXCPU] -- SCRIPT [ARG…])');
    if (self.children.size >= this.limits.maxLiveChildren) {
      throw new Error(`enqueue: job has ${self.children.size} sub-jobs queued or running already (limit)`);
    }
    const group = opts.get('g');
    if (group !== undefined) checkGroupName(group);
    let maxproc: number | undefined;
    let maxcpu: number | undefined;
    const m = opts.get('m');
    if (m !== undefined) {
      if (!/^\d{1,9}$/.test(m)) throw new Error(`enqueue: -m '${m}' is not a number of processes`);
      maxproc = Number(m);
    }
    const c = opts.get('c');
    if (c !== undefined) maxcpu = parseCpu(c);
    if (group === undefined && (maxproc !== undefined || maxcpu !== undefined)) {
      // chaqum ignores them without -g; so do we, but say so
      this.host.log.warn('protocol-warning', { id: self.id, warning: 'enqueue: -m/-c without -g ignored' });
      maxproc = maxcpu = undefined;
    }
    const script = await resolveScript(tree, operands[0]!);
    if (!this.live.has(self.id)) throw new Error('job has ended');
    const forget = opts.has('F');
    const req: EnqueueRequest = { parent: self.id, script, args: operands.slice(1), tree, forget };
    if (group !== undefined) req.group = group;
    if (maxproc !== undefined) req.maxproc = maxproc;
    if (maxcpu !== undefined) req.maxcpu = maxcpu;
    return `S ${this.callEnqueue(req, self)}`;
  }

  private async repeat(self: Live, tree: string, args: string[]): Promise<string> {
    const { opts, operands } = getopt(args, 'c:i:');
    const cron = opts.get('c');
    const every = opts.get('i');
    if ((cron === undefined) === (every === undefined)) throw new Error('repeat: give one of -c CRON or -i INTERVAL');
    if (operands.length === 0) throw new Error('repeat: SCRIPT missing (repeat (-c CRON | -i INTERVAL) -- SCRIPT [ARG…])');
    let next: NextFiring;
    let schedule: string;
    if (every !== undefined) {
      next = intervalSchedule(every).next;
      schedule = `every ${every}`;
    } else {
      next = cronSchedule(cron!);
      schedule = `cron ${cron!}`;
    }
    if (this.repeats.size >= this.limits.maxRepeats) throw new Error(`repeat: ${this.repeats.size} repeats registered already (limit)`);
    const script = await resolveScript(tree, operands[0]!);
    if (this.closed) throw new Error('manager shutting down');
    const r: Repeat = {
      id: `repeat:${++this.repeatCounter}`, script, args: operands.slice(1), tree, by: self.id, root: self.root, schedule,
      timer: new RepeatTimer(next, () => this.fire(r)), current: null, fired: 0, skipped: 0,
    };
    this.repeats.set(r.id, r);
    r.timer.start();
    this.host.log.info('repeat-registered', {
      repeat: r.id, by: self.id, script, schedule, next: new Date(r.timer.nextAt).toISOString(),
    });
    return 'S';
  }

  private fire(r: Repeat): void {
    if (r.current !== null) {
      r.skipped++;
      this.host.log.info('repeat-skipped', { repeat: r.id, script: r.script, running: r.current });
      return;
    }
    let id: string;
    try {
      // an instance belongs to the repeat, not to the job that registered it (which may be gone)
      id = this.callEnqueue({ parent: r.by, script: r.script, args: r.args, tree: r.tree, forget: true, repeat: r.id }, null, r.root);
    } catch (err) {
      this.host.log.warn('repeat-failed', { repeat: r.id, script: r.script, error: (err as Error).message });
      return;
    }
    r.fired++;
    if (this.live.has(id)) {
      r.current = id;
      this.repeatOf.set(id, r);
    }
    this.host.log.debug('repeat-fired', { repeat: r.id, id });
  }

  private async waitjobs(self: Live, args: string[], spec: string, cmd: string): Promise<string> {
    const { opts, operands } = getopt(args, spec);
    if (opts.has('a') && opts.has('f')) throw new Error(`${cmd}: -a and -f exclude each other`);
    const timeout = parseTimeout(cmd, opts.get('t'));
    return this.waitJobs(self, operands, opts.has('f'), timeout);
  }

  private async killjobs(self: Live, args: string[]): Promise<string> {
    const { opts, operands } = getopt(args, 't:');
    const timeout = parseTimeout('killjobs', opts.get('t'));
    const ids = unique(operands);
    for (const id of ids) {
      const l = this.live.get(id);
      if (l && l.root !== self.root) throw new Error(`killjobs: ${id} is not of this job's family (only jobs descending from the same spool job may be killed)`);
    }
    const answer = this.waitJobs(self, ids, false, timeout);
    for (const id of ids) {
      if (!this.live.has(id)) continue;
      if (!this.host.kill(id)) this.host.log.warn('protocol-warning', { id: self.id, warning: `killjobs: ${id} could not be killed (not running here)` });
    }
    return answer;
  }

  private waitJobs(self: Live, operands: string[], first: boolean, timeoutMs: number | undefined): Promise<string> {
    const ids = unique(operands);
    if (ids.includes(self.id)) return Promise.reject(new Error('a job cannot wait for itself'));
    return new Promise((resolve) => {
      const w = new Wait(ids, first, (id) => this.live.has(id), (answer) => {
        this.unbusy(self, w);
        resolve(answer);
      });
      for (const id of ids) {
        const l = this.live.get(id);
        if (l) {
          l.waiters.add(w);
          w.sets.push(l.waiters);
          w.remaining++;
        } else if (this.results.has(id)) {
          const code = this.results.get(id)!;
          w.outcomes.set(id, code === null ? 'N' : String(code));
        }
      }
      this.arm(self, w, timeoutMs);
    });
  }

  private async sendmsg(self: Live, args: string[], io: ChannelIO): Promise<string> {
    const { operands } = getopt(args, '');
    if (operands.length !== 2) throw new Error('sendmsg: expected sendmsg -- JOBID LENGTH');
    const [to, len] = operands as [string, string];
    if (!/^\d{1,15}$/.test(len)) throw new Error(`sendmsg: LENGTH '${len}' is not a number of bytes`);
    const length = Number(len);
    const tooLong = length > this.limits.maxMessageBytes;
    // the payload is read (or skipped) in any case, to stay in step with the job
    const parts: Buffer[] = [];
    for (let left = length; left > 0;) {
      const piece = await io.readBytes(Math.min(CHUNK, left));
      if (piece === null) return endedInPayload(io);
      if (!tooLong) parts.push(Buffer.from(piece));
      left -= piece.length;
    }
    const nl = await io.readBytes(1);
    if (nl === null) return endedInPayload(io);
    if (nl[0] !== 10) {
      await io.discardLine();
      throw new Error(`sendmsg: the ${length} bytes of payload are not followed by a newline (wrong LENGTH?); skipped to the next line`);
    }
    if (tooLong) throw new Error(`sendmsg: message of ${length} bytes is longer than ${this.limits.maxMessageBytes}`);
    const dest = this.live.get(to);
    if (!dest) {
      throw new Error(this.results.has(to) ? `sendmsg: job ${to} has ended` : `sendmsg: unknown job '${to}'`);
    }
    if (dest.inbox.length >= this.limits.maxInboxMessages || dest.inboxBytes + length > this.limits.maxInboxBytes) {
      throw new Error(`sendmsg: job ${to} has ${dest.inbox.length} messages (${dest.inboxBytes} bytes) not received yet (limit)`);
    }
    if (this.queuedBytes + length > this.limits.maxQueuedBytes) throw new Error('sendmsg: too many bytes queued for all jobs (limit)');
    const m: Message = { id: `msg:${++this.msgCounter}`, from: self.id, to, data: Buffer.concat(parts, length), waiters: new Set() };
    const waiting = this.takeRecv(dest);
    if (waiting) {
      this.recordDelivery(m, 'R');
      waiting(m);
    } else {
      dest.inbox.push(m);
      dest.inboxBytes += length;
      this.queued.set(m.id, m);
      this.queuedBytes += length;
    }
    return `S ${m.id}`;
  }

  private async waitrecv(self: Live, args: string[]): Promise<string> {
    const { opts, operands } = getopt(args, 't:');
    const timeout = parseTimeout('waitrecv', opts.get('t'));
    const ids = unique(operands);
    return new Promise((resolve) => {
      const w = new Wait(ids, false, (id) => this.queued.has(id), (answer) => {
        this.unbusy(self, w);
        resolve(answer);
      });
      for (const id of ids) {
        const m = this.queued.get(id);
        if (m) {
          m.waiters.add(w);
          w.sets.push(m.waiters);
          w.remaining++;
        } else {
          const r = this.msgResults.get(id);
          if (r !== undefined) w.outcomes.set(id, r);
        }
      }
      this.arm(self, w, timeout);
    });
  }

  private async recvmsg(self: Live, args: string[]): Promise<string | Buffer> {
    const { opts, operands } = getopt(args, 't:');
    if (operands.length > 0) throw new Error('recvmsg: takes no arguments (recvmsg [-t TIMEOUT])');
    const timeout = parseTimeout('recvmsg', opts.get('t'));
    let m: Message | null | undefined = self.inbox.shift();
    if (m) {
      self.inboxBytes -= m.data.length;
      this.unqueue(m, 'R');
    } else {
      if (timeout === 0) return 'T';
      m = await new Promise<Message | null>((resolve) => {
        const timer = timeout === undefined ? null : setTimeout(() => this.takeRecv(self)?.(null), timeout);
        self.recv = { resolve, timer };
        this.waiting++;
      });
      if (!m) return 'T';
    }
    return Buffer.concat([Buffer.from(`S ${m.data.length}\n`), m.data]);
  }

  // ---- helpers ----

  /** The live entry of `id`, made (as a top-level job) if unknown. */
  private know(id: string): Live {
    let l = this.live.get(id);
    if (!l) {
      l = {
        id, parent: null, root: id, forget: false, started: false, waiters: new Set(), busy: null,
        recv: null, inbox: [], inboxBytes: 0, children: new Set(),
      };
      this.live.set(id, l);
    }
    return l;
  }

  /**
   * host.enqueue, then the new job's entry. The engine may start the job —
   * or fail to and end it — before enqueue returns: handlerFor/jobStarted
   * then made a top-level entry, fixed up here, and an end is not undone.
   */
  private callEnqueue(req: EnqueueRequest, parent: Live | null, root = parent?.root): string {
    const outer = this.endedDuringEnqueue;
    const ended = new Map<string, number | null>();
    this.endedDuringEnqueue = ended;
    let id: string;
    try {
      id = this.host.enqueue(req);
    } finally {
      this.endedDuringEnqueue = outer;
      for (const [k, v] of ended) outer?.set(k, v);
    }
    if (ended.has(id)) {
      this.results.delete(id);
      if (!req.forget) this.results.set(id, ended.get(id)!, parent?.id ?? null);
      return id;
    }
    const l = this.know(id);
    l.parent = req.parent;
    l.root = root ?? id;
    l.forget = req.forget;
    parent?.children.add(id);
    return id;
  }

  /** The job's wait settled. */
  private unbusy(self: Live, w: Wait): void {
    if (self.busy !== w) return;
    self.busy = null;
    this.waiting--;
  }

  /** Ends the job's pending recvmsg, if any: returns the function that answers it. */
  private takeRecv(l: Live): ((m: Message | null) => void) | null {
    const r = l.recv;
    if (!r) return null;
    l.recv = null;
    this.waiting--;
    if (r.timer) clearTimeout(r.timer);
    return r.resolve;
  }

  /** Starts the timeout of a wait, or settles it at once when nothing is left to wait for. */
  private arm(self: Live, w: Wait, timeoutMs: number | undefined): void {
    if (w.remaining === 0 || (w.first && w.outcomes.size > 0) || timeoutMs === 0) {
      w.settle();
      return;
    }
    self.busy = w;
    this.waiting++;
    if (timeoutMs !== undefined) w.timer = setTimeout(() => w.settle(), timeoutMs);
  }

  /** A queued message leaves its queue: received (R) or never to be (N). */
  private unqueue(m: Message, outcome: 'R' | 'N'): void {
    if (this.queued.delete(m.id)) this.queuedBytes -= m.data.length;
    this.recordDelivery(m, outcome);
  }

  private recordDelivery(m: Message, outcome: 'R' | 'N'): void {
    if (this.live.has(m.from)) this.msgResults.set(m.id, outcome, m.from);
    for (const w of [...m.waiters]) w.done(m.id, outcome);
    m.waiters.clear();
  }
}

/** The job's input ended inside a payload: what is left is no command; drop it. */
async function endedInPayload(io: ChannelIO): Promise<never> {
  while (await io.discardLine()) { /* the rest of the buffer, up to the end of input */ }
  throw new Error('sendmsg: input ended inside the payload');
}

function unique(ids: string[]): string[] {
  return [...new Set(ids)];
}

function parseTimeout(cmd: string, t: string | undefined): number | undefined {
  if (t === undefined) return undefined;
  try {
    return parseDuration(t);
  } catch (err) {
    throw new Error(`${cmd}: -t ${(err as Error).message}`);
  }
}

/** `-c`: a fraction 0–1, or a percentage above 1 (as chaqum and pmjq -c accept). */
function parseCpu(c: string): number {
  const v = Number(c);
  if (c.trim() === '' || !Number.isFinite(v) || v < 0 || v > 100) throw new Error(`enqueue: -c '${c}' is not a CPU limit (0–1, or a percentage)`);
  return v > 1 ? v / 100 : v;
}

function checkGroupName(g: string): void {
  if (g === '' || g.startsWith('.') || g.includes('/') || g.includes('\0') || Buffer.byteLength(g) > 255) {
    throw new Error(`enqueue: '${g}' is not a group name (not empty, no '/', not starting with '.')`);
  }
}

/** SCRIPT: absolute, or relative to the tree; it must be an executable regular file. */
async function resolveScript(tree: string, script: string): Promise<string> {
  if (script === '') throw new Error('SCRIPT is empty');
  const file = path.isAbsolute(script) ? path.normalize(script) : path.resolve(tree, script);
  let st;
  try {
    st = await fs.stat(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' || code === 'ENOTDIR' ? `script ${file} does not exist` : `script ${file}: ${code ?? (err as Error).message}`);
  }
  if (!st.isFile()) throw new Error(`script ${file} is not a regular file`);
  try {
    await fs.access(file, FS.X_OK);
  } catch {
    throw new Error(`script ${file} is not executable`);
  }
  if ((st.mode & 0o111) === 0) throw new Error(`script ${file} is not executable`);
  return file;
}
