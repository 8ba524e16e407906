// The protocol's state and the bookkeeping every command shares: the jobs it
// knows (live), the exit codes and message outcomes kept for later
// questions, the registered repeats, families, the groups families made,
// and the per-user counts that bound what one user can pile up.
//
// A family is a top-level job (a spool job, chaqum's entry job, the --init
// job) with everything that descends from it: its sub-jobs, theirs, and the
// instances of repeats they registered. Commands reach only their own
// family; an id of another family is answered exactly as an unknown id.

import os from 'node:os';
import type { ChannelIO } from '../channel.js';
import type { JobOwner } from '../owner.js';
import { Retained } from '../retained.js';
import type { EnqueueRequest, Limits, Live, Message, ProtocolHost, Repeat, Result } from './types.js';
import type { Wait } from './wait.js';

/** A group made by a family through `enqueue -g`: only that family may change its -m/-c. */
interface MadeGroup {
  family: string;
  max?: number;
  cpu?: number;
}

export class Core {
  readonly live = new Map<string, Live>();
  /** exit code (null = none) of ended jobs, owned by their parent */
  readonly results: Retained<Result>;
  /** messages queued, not yet received */
  readonly queued = new Map<string, Message>();
  queuedBytes = 0;
  /** bytes of messages queued, per family (its root's id) */
  readonly queuedBytesByFamily = new Map<string, number>();
  /** 'R' or 'N' of messages no longer queued, owned by their sender */
  readonly msgResults: Retained<{ outcome: 'R' | 'N'; family: string }>;
  readonly repeats = new Map<string, Repeat>();
  readonly repeatOf = new Map<string, Repeat>();
  msgCounter = 0;
  repeatCounter = 0;
  closed = false;
  /** jobs waiting in a command */
  waiting = 0;
  /** jobs that ended while host.enqueue ran (see callEnqueue) */
  private endedDuringEnqueue: Map<string, number | null> | null = null;
  /** live jobs and repeats of each family: a family with neither is over */
  private readonly familySize = new Map<string, number>();
  private readonly madeGroups = new Map<string, MadeGroup>();
  private readonly groupsMadeBy = new Map<string, Set<string>>();
  /** per uid: sub-jobs queued and not started, and their bytes */
  private readonly queuedByUid = new Map<number, { count: number; bytes: number }>();
  /** per uid: repeats registered */
  private readonly repeatsByUid = new Map<number, number>();

  constructor(readonly host: ProtocolHost, readonly limits: Limits) {
    this.results = new Retained(limits.maxResults);
    this.msgResults = new Retained(limits.maxMessageResults);
  }

  // ---- jobs and families ----

  /** The live entry of `id`, made (as a top-level job, its own family) if unknown. */
  know(id: string): Live {
    let l = this.live.get(id);
    if (!l) {
      l = {
        id, parent: null, root: id, owner: null, forget: false, started: false, waiters: new Set(), busy: null,
        recv: null, inbox: [], inboxBytes: 0, children: new Set(), queuedAs: null,
      };
      this.live.set(id, l);
      this.join(id);
    }
    return l;
  }

  /** `id` if it is live and of `self`'s family; otherwise undefined, as for an id never heard of. */
  relative(self: Live, id: string): Live | undefined {
    const l = this.live.get(id);
    return l && l.root === self.root ? l : undefined;
  }

  /** The kept result of `id` if it was of `self`'s family. */
  resultFor(self: Live, id: string): Result | undefined {
    const r = this.results.get(id);
    return r && r.family === self.root ? r : undefined;
  }

  /** The job starts: it no longer counts as queued. */
  started(l: Live): void {
    l.started = true;
    this.unqueueJob(l);
  }

  /** The job is over: it leaves the live jobs and its family. */
  drop(l: Live): void {
    this.live.delete(l.id);
    this.unqueueJob(l);
    this.leave(l.root);
  }

  /** Live sub-jobs of `start`, its children's, and so on (not `start` itself). */
  descendants(start: Live | undefined): string[] {
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

  join(family: string): void {
    this.familySize.set(family, (this.familySize.get(family) ?? 0) + 1);
  }

  /** One member fewer; a family that is over gives up the groups it made. */
  leave(family: string): void {
    const n = (this.familySize.get(family) ?? 1) - 1;
    if (n > 0) { this.familySize.set(family, n); return; }
    this.familySize.delete(family);
    for (const g of this.groupsMadeBy.get(family) ?? []) this.madeGroups.delete(g);
    this.groupsMadeBy.delete(family);
  }

  private setRoot(l: Live, root: string): void {
    if (l.root === root) return;
    this.join(root);
    this.leave(l.root);
    l.root = root;
  }

  // ---- groups made through enqueue -g ----

  /**
   * The group `name` (not a spool group) as `family` uses it: made by it if
   * no family that still lives made it first. Throws when the family made
   * too many groups.
   */
  madeGroup(name: string, family: string): MadeGroup {
    let g = this.madeGroups.get(name);
    if (g) return g;
    let mine = this.groupsMadeBy.get(family);
    if (mine && mine.size >= this.limits.maxGroupsPerFamily) {
      throw new Error(`enqueue: this job family made ${mine.size} groups already (limit); reuse one`);
    }
    g = { family };
    this.madeGroups.set(name, g);
    if (!mine) this.groupsMadeBy.set(family, (mine = new Set()));
    mine.add(name);
    return g;
  }

  // ---- enqueueing ----

  /** Bytes a queued sub-job holds: its script and arguments. */
  static requestBytes(req: EnqueueRequest): number {
    let n = Buffer.byteLength(req.script);
    for (const a of req.args) n += Buffer.byteLength(a) + 1;
    return n;
  }

  /**
   * host.enqueue within the owner's bounds, then the new job's entry. The
   * engine may start the job — or fail to and end it — before enqueue
   * returns: handlerFor/jobStarted then made a top-level entry, fixed up
   * here, and an end is not undone.
   */
  callEnqueue(req: EnqueueRequest, parent: Live | null, root = parent?.root): string {
    const bytes = Core.requestBytes(req);
    const q = this.queuedByUid.get(req.owner.uid) ?? { count: 0, bytes: 0 };
    if (q.count >= this.limits.maxQueuedPerOwner) {
      throw new Error(`enqueue: ${q.count} sub-jobs of this user are queued already (limit ${this.limits.maxQueuedPerOwner}); wait for some to start`);
    }
    if (q.bytes + bytes > this.limits.maxQueuedBytesPerOwner) {
      throw new Error(`enqueue: this user's queued sub-jobs hold ${q.bytes} bytes of script and arguments (limit ${this.limits.maxQueuedBytesPerOwner}); wait for some to start`);
    }
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
      if (!req.forget) this.results.set(id, { code: ended.get(id)!, family: root ?? id }, parent?.id ?? null);
      return id;
    }
    const l = this.know(id);
    this.setRoot(l, root ?? id);
    l.parent = req.parent || null;
    l.owner ??= req.owner;
    l.forget = req.forget;
    parent?.children.add(id);
    if (!l.started) {
      l.queuedAs = { uid: req.owner.uid, bytes };
      q.count++;
      q.bytes += bytes;
      this.queuedByUid.set(req.owner.uid, q);
    }
    return id;
  }

  /** An end noticed while host.enqueue runs. */
  noteEnded(id: string, code: number | null): void {
    this.endedDuringEnqueue?.set(id, code);
  }

  private unqueueJob(l: Live): void {
    const a = l.queuedAs;
    if (!a) return;
    l.queuedAs = null;
    const q = this.queuedByUid.get(a.uid);
    if (!q) return;
    q.count--;
    q.bytes -= a.bytes;
    if (q.count <= 0) this.queuedByUid.delete(a.uid);
  }

  // ---- repeats ----

  /** Room for one more repeat of `owner`? Throws E's message when not. */
  checkRepeatRoom(owner: JobOwner): void {
    if (this.repeats.size >= this.limits.maxRepeats) throw new Error(`repeat: ${this.repeats.size} repeats registered already (limit)`);
    const mine = this.repeatsByUid.get(owner.uid) ?? 0;
    if (mine >= this.limits.maxRepeatsPerOwner) throw new Error(`repeat: this user has ${mine} repeats registered already (limit ${this.limits.maxRepeatsPerOwner})`);
  }

  addRepeat(r: Repeat): void {
    this.repeats.set(r.id, r);
    this.repeatsByUid.set(r.owner.uid, (this.repeatsByUid.get(r.owner.uid) ?? 0) + 1);
    this.join(r.root);
  }

  // ---- waiting ----

  /** The job's wait was answered. */
  unbusy(self: Live, w: Wait): void {
    if (self.busy !== w) return;
    self.busy = null;
    this.waiting--;
  }

  /** Ends the job's pending recvmsg, if any: returns the function that answers it. */
  takeRecv(l: Live): ((m: Message | null) => void) | null {
    const r = l.recv;
    if (!r) return null;
    l.recv = null;
    this.waiting--;
    if (r.timer) clearTimeout(r.timer);
    return r.resolve;
  }

  /** Starts the timeout of a wait, or answers it at once when nothing is left to wait for. */
  arm(self: Live, w: Wait, timeoutMs: number | undefined): void {
    if (w.remaining === 0 || (w.first && w.outcomes.size > 0) || timeoutMs === 0) {
      w.answer();
      return;
    }
    self.busy = w;
    this.waiting++;
    if (timeoutMs !== undefined) w.timer = setTimeout(() => w.answer(), timeoutMs);
  }

  // ---- messages ----

  /** A queued message leaves its queue: received (R) or never to be (N). */
  unqueue(m: Message, outcome: 'R' | 'N'): void {
    if (this.queued.delete(m.id)) {
      this.queuedBytes -= m.data.length;
      const left = (this.queuedBytesByFamily.get(m.family) ?? 0) - m.data.length;
      if (left > 0) this.queuedBytesByFamily.set(m.family, left);
      else this.queuedBytesByFamily.delete(m.family);
    }
    this.recordDelivery(m, outcome);
  }

  recordDelivery(m: Message, outcome: 'R' | 'N'): void {
    if (this.live.has(m.from)) this.msgResults.set(m.id, { outcome, family: m.family }, m.from);
    for (const w of [...m.waiters]) w.done(m.id, outcome);
    m.waiters.clear();
  }
}

/**
 * What waitjobs reports for an ended job, as chaqum 0.16 does (Python's
 * returncode): its exit code, or minus the number of the signal that ended
 * it (-15 for SIGTERM); null when it never ran.
 */
export function waitCode(exitCode: number | null, signal: string | null | undefined): number | null {
  if (exitCode !== null) return exitCode;
  const n = signal ? os.constants.signals[signal as NodeJS.Signals] : undefined;
  return n === undefined ? null : -n;
}

/** One command being handled: the protocol's state, the asking job, where its relative scripts resolve, its channel. */
export interface Call {
  core: Core;
  self: Live;
  tree: string;
  io: ChannelIO;
}
