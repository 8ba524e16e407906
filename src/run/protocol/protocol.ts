// The job protocol (man/pmjq-protocol.7): what each command on fd 3 means and
// what is answered on fd 4, wire-compatible with the chaqum job manager. The
// framing (lines, bounds, payload bytes) is CommandChannel's; the engine's
// side — queueing and starting sub-jobs, killing — is behind ProtocolHost,
// so this folder knows nothing of spools, groups' queues or processes. Each
// command is one module (enqueue.ts, repeat.ts, waitjobs.ts, killjobs.ts,
// sendmsg.ts, waitrecv.ts, recvmsg.ts); the state they share is Core's.
//
// Wiring (what the engine does):
//
//   const protocol = new Protocol(host);
//   // for every job process it spawns, spool job or sub-job:
//   new JobProcess({ …, handler: protocol.handlerFor({ id, tree, owner }) });
//   protocol.jobStarted(id);                              // once it runs
//   protocol.jobEnded(id, exitCode, killed, signal);      // once it ended — or will never run
//   // host.enqueue(req) queues a sub-job as req.owner and returns its id at once;
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
// not know (never existed, of another family, or their result was dropped:
// -F jobs, results of a parent's children after the parent ended, the
// oldest results beyond the bound) are left out, as chaqum does. `N` for a
// message means it will never be received: its recipient ended first.
//
// Bounds: a job has at most one command in progress (the channel answers in
// order); messages, results, repeats and each user's queued sub-jobs are
// capped (LIMITS) and E is answered beyond.

import type { ChannelIO, CommandHandler } from '../channel.js';
import type { JobOwner } from '../owner.js';
import { splitWords, WordsError } from '../words.js';
import { Core, waitCode, type Call } from './core.js';
import { enqueue } from './enqueue.js';
import { killjobs } from './killjobs.js';
import { recvmsg } from './recvmsg.js';
import { repeat } from './repeat.js';
import { sendmsg } from './sendmsg.js';
import { LIMITS, type Limits, type ProtocolHost, type RepeatInfo } from './types.js';
import { waitjobs, wait } from './waitjobs.js';
import { waitrecv } from './waitrecv.js';

type Command = (call: Call, args: string[]) => Promise<string | Buffer>;

const COMMANDS: ReadonlyMap<string, Command> = new Map<string, Command>([
  ['enqueue', enqueue],
  ['repeat', repeat],
  ['waitjobs', waitjobs],
  ['wait', wait],
  ['killjobs', killjobs],
  ['sendmsg', sendmsg],
  ['waitrecv', waitrecv],
  ['recvmsg', recvmsg],
]);

export class Protocol {
  private readonly core: Core;

  constructor(host: ProtocolHost, limits: Partial<Limits> = {}) {
    this.core = new Core(host, { ...LIMITS, ...limits });
  }

  /**
   * The CommandHandler of one job process. `tree`: where its relative SCRIPT
   * paths resolve; `owner`: who it runs as (its sub-jobs and repeats run so).
   */
  handlerFor(job: { id: string; tree: string; owner: JobOwner }): CommandHandler {
    this.core.know(job.id).owner = job.owner;
    const { id, tree } = job;
    return (line, io) => this.handle(id, tree, line, io);
  }

  /** The job runs now (spool jobs become known here, or in handlerFor). */
  jobStarted(id: string): void {
    this.core.started(this.core.know(id));
  }

  /**
   * The job ended — or will never run. `exitCode` null: no exit code (a
   * signal, or never started); `signal`: the signal that ended it, answered
   * to waitjobs as its negative number. `killed`: it was terminated
   * (killjobs, timeout, pmjqctl kill): its queued and running sub-jobs are
   * terminated too; a job that merely exits leaves its sub-jobs running.
   */
  jobEnded(id: string, exitCode: number | null, killed = false, signal: string | null = null): void {
    const c = this.core;
    const code = waitCode(exitCode, signal);
    c.noteEnded(id, code);
    const l = c.live.get(id);
    if (!l) return;
    const descendants = killed ? c.descendants(l) : [];
    c.drop(l);

    l.busy?.cancel('E job ended');
    c.takeRecv(l)?.(null);
    for (const m of l.inbox) c.unqueue(m, 'N');
    l.inbox = [];
    l.inboxBytes = 0;
    // its children's exit codes and its messages' outcomes were for it to ask
    c.results.dropOwner(id);
    c.msgResults.dropOwner(id);

    const parent = l.parent === null ? undefined : c.live.get(l.parent);
    parent?.children.delete(id);
    if (!l.forget) c.results.set(id, { code, family: l.root }, parent ? parent.id : null);
    const outcome = code === null ? 'N' : String(code);
    for (const w of [...l.waiters]) w.done(id, outcome);
    l.waiters.clear();

    const r = c.repeatOf.get(id);
    if (r) {
      c.repeatOf.delete(id);
      if (r.current === id) r.current = null;
    }
    for (const d of descendants) c.host.kill(d);
  }

  /** Live sub-jobs of `id`, its children's, and so on (not `id` itself). */
  descendants(id: string): string[] {
    return this.core.descendants(this.core.live.get(id));
  }

  /**
   * No repeat registered and no job waiting in a command (waitjobs,
   * killjobs, waitrecv, recvmsg): with nothing queued or running in the
   * engine, chaqum's "done".
   */
  get idle(): boolean {
    return this.core.repeats.size === 0 && this.core.waiting === 0;
  }

  /** The registered repeats, for status displays. */
  listRepeats(): RepeatInfo[] {
    return [...this.core.repeats.values()].map((r) => ({
      id: r.id, script: r.script, args: r.args, by: r.by, schedule: r.schedule,
      next: new Date(r.timer.nextAt), running: r.current, fired: r.fired, skipped: r.skipped,
    }));
  }

  /** Sizes of everything held, to check that memory stays bounded. */
  stats(): { live: number; results: number; queuedMessages: number; queuedBytes: number; messageResults: number; repeats: number } {
    const c = this.core;
    return {
      live: c.live.size, results: c.results.size, queuedMessages: c.queued.size,
      queuedBytes: c.queuedBytes, messageResults: c.msgResults.size, repeats: c.repeats.size,
    };
  }

  /** Stops the repeats and answers every pending wait with E. */
  close(): void {
    const c = this.core;
    c.closed = true;
    for (const r of c.repeats.values()) r.timer.stop();
    c.repeats.clear();
    for (const l of c.live.values()) {
      l.busy?.cancel('E manager shutting down');
      c.takeRecv(l)?.(null);
    }
  }

  private async handle(id: string, tree: string, line: string, io: ChannelIO): Promise<string | Buffer> {
    const self = this.core.live.get(id);
    if (!self || this.core.closed) throw new Error(this.core.closed ? 'manager shutting down' : 'job has ended');
    let words: string[];
    try {
      words = splitWords(line);
    } catch (err) {
      throw new Error(`malformed command: ${(err as Error).message}`);
    }
    if (words.length === 0) throw new Error('empty command');
    const [cmd, ...args] = words as [string, ...string[]];
    const command = COMMANDS.get(cmd);
    if (!command) throw new Error(`unknown command '${cmd.length > 40 ? cmd.slice(0, 40) + '…' : cmd}'`);
    try {
      return await command({ core: this.core, self, tree, io }, args);
    } catch (err) {
      if (err instanceof WordsError) throw new Error(`${cmd}: ${err.message}`);
      throw err;
    }
  }
}
