// Intake: where a candidate waits between being found and being queued in
// its group. A file found in the spool waits until it holds still (--settle
// on shared filesystems, and always a while when it is empty); a retry waits
// until it is due; a sub-job (enqueued over fd 3, or --init) is queued at
// once and remembered until it is claimed, so that it can be killed before
// it starts.

import fs from 'node:fs';
import path from 'node:path';
import type { EnqueueRequest } from '../run/protocol/index.js';
import type { Group, Groups } from '../schedule/groups.js';
import { Heap } from '../util/heap.js';
import type { Logger } from '../util/log.js';
import type { Candidate } from './candidate.js';
import type { IdMaker, Layout } from './layout.js';
import * as names from './names.js';

/** an empty executable is taken only once it has stayed empty (and unchanged) this long */
const EMPTY_FILE_WAIT_MS = 2000;

export interface IntakeDeps {
  layout: Layout;
  groups: Groups;
  ids: IdMaker;
  log: Logger;
  /** the group of a spool directory, its settings read */
  groupFor: (dir: string) => Group;
  /** the scanner no longer tracks it (it left the spool) */
  forget: (c: Candidate) => void;
  /** a sub-job is over before it started (killed): its parent is told */
  subEnded: (id: string) => void;
  /** something was queued: a scheduling pass soon */
  queued: () => void;
  /** a waiting room let candidates in: a scheduling pass now */
  released: () => void;
  stopping: () => boolean;
}

interface DueRetry { c: Candidate; dueMs: number }

export class Intake {
  /** --settle: how long a found file must hold still before it is taken */
  settleMs = 0;
  /** files waiting to hold still, with when (Date.now()) they were last seen to change */
  private readonly unsteady = new Map<Candidate, number>();
  private stillTimer: NodeJS.Timeout | null = null;
  /** Date.now() when stillTimer fires */
  private stillCheckAt = 0;
  /** retry entries not due yet, earliest first */
  private readonly delayed = new Heap<DueRetry>((a, b) => a.dueMs < b.dueMs);
  private delayedTimer: NodeJS.Timeout | null = null;
  /** sub-jobs enqueued and not claimed yet, by id */
  private readonly subs = new Map<string, Candidate>();

  constructor(private readonly d: IntakeDeps) {}

  /** files waiting to hold still */
  get unsteadyCount(): number { return this.unsteady.size; }
  /** retries not due yet */
  get delayedCount(): number { return this.delayed.size; }

  /** A candidate the scanner found (or a retry now due). */
  found(c: Candidate): void {
    this.d.groupFor(c.dir);
    if (c.retry && c.retry.dueMs > Date.now()) {
      this.delayed.push({ c, dueMs: c.retry.dueMs });
      this.armDelayed();
      return;
    }
    const wait = c.retry || c.sub ? 0 : this.stillFor(c);
    if (wait > 0) {
      // On shared filesystems ETXTBSY does not cross nodes: a file is taken
      // only once its size and mtime have held still for --settle.
      this.unsteady.set(c, c.seenAt);
      if (c.size === 0) this.d.log.debug('settling', { file: names.display(c.name), group: c.group, wait_ms: wait, reason: 'empty: its content may not be written yet' });
      this.armStillCheck(wait);
      return;
    }
    this.d.groups.add(c);
    this.d.queued();
  }

  /** Queue a sub-job; its id is valid at once. It runs with its parent's owner's privileges, never more. */
  enqueueSub(req: EnqueueRequest): string {
    if (this.d.stopping()) throw new Error('pmjq is stopping');
    // a sub-job or a repeat's instance runs as the job that asked, never more: no owner, no job
    const owner = req.owner;
    if (!owner) throw new Error('sub-job without an owner: refused');
    const id = this.d.ids.next();
    const g = this.d.groups.get(req.group ?? 'default');
    if (req.maxproc !== undefined) g.protocolSettings = { ...g.protocolSettings, max: req.maxproc };
    if (req.maxcpu !== undefined) g.protocolSettings = { ...g.protocolSettings, cpu: req.maxcpu };
    const now = Date.now();
    const c: Candidate = {
      group: g.name, dir: '', name: Buffer.from(path.basename(req.script)), key: id,
      orderMs: now, mtimeMs: 0, size: 0, seenUid: owner.uid, seenAt: now, gone: false, listed: 0,
      sub: { id, script: req.script, args: req.args, parent: req.parent || null, tree: req.tree, owner },
    };
    this.subs.set(id, c);
    g.queue.push(c);
    this.d.log.debug('enqueued', { id, script: req.script, group: g.name, parent: req.parent || undefined });
    this.d.queued();
    return id;
  }

  /** A candidate is being claimed: a sub-job can no longer be killed here. */
  claiming(c: Candidate): void {
    if (c.sub) this.subs.delete(c.sub.id);
  }

  /** Kill a sub-job not started yet; false if `id` is none. */
  killSub(id: string): boolean {
    const c = this.subs.get(id);
    if (!c) return false;
    c.gone = true;
    this.subs.delete(id);
    this.d.log.info('job-end', { id, name: names.display(c.name), group: c.group, status: 'killed', error: 'killed before it started' });
    this.d.subEnded(id);
    return true;
  }

  /** Stopping: nothing more leaves the waiting rooms. */
  stop(): void {
    for (const t of [this.stillTimer, this.delayedTimer]) if (t) clearTimeout(t);
  }

  /** Stopping: no sub-job is left to start. */
  killSubs(): void {
    for (const id of [...this.subs.keys()]) this.killSub(id);
  }

  /** Wake up when the earliest waiting retry is due. */
  private armDelayed(): void {
    const next = this.delayed.peek();
    if (this.delayedTimer) clearTimeout(this.delayedTimer);
    this.delayedTimer = null;
    if (!next || this.d.stopping()) return;
    this.delayedTimer = setTimeout(() => {
      this.delayedTimer = null;
      const now = Date.now();
      for (let r = this.delayed.peek(); r && r.dueMs <= now; r = this.delayed.peek()) {
        this.delayed.pop();
        if (!r.c.gone) this.found(r.c);
      }
      this.armDelayed();
      this.d.released();
    }, Math.max(0, next.dueMs - Date.now()));
  }

  /** Take the files that have held still long enough; look again later at the others. */
  private checkStill(): void {
    this.stillTimer = null;
    const now = Date.now();
    let next = Infinity;
    for (const [c, since] of this.unsteady) {
      if (c.gone) { this.unsteady.delete(c); continue; }
      const wait = this.stillFor(c);
      if (now - since < wait) { next = Math.min(next, since + wait - now); continue; }
      let st: fs.Stats;
      try {
        st = fs.lstatSync(names.join(this.d.layout.groupDir(c.dir), c.name));
      } catch {
        this.unsteady.delete(c);
        this.d.forget(c);
        continue;
      }
      if (st.size !== c.size || st.mtimeMs !== c.mtimeMs) {
        c.size = st.size;
        c.mtimeMs = st.mtimeMs;
        c.orderMs = st.mtimeMs;
        this.unsteady.set(c, now);
        next = Math.min(next, this.stillFor(c));
        continue;
      }
      this.unsteady.delete(c);
      this.d.groups.add(c);
    }
    if (next !== Infinity) this.armStillCheck(next);
    this.d.released();
  }

  /** Look at the unsteady files again in `ms` (or sooner, if already due sooner). */
  private armStillCheck(ms: number): void {
    const at = Date.now() + ms;
    if (this.stillTimer && this.stillCheckAt <= at) return;
    if (this.stillTimer) clearTimeout(this.stillTimer);
    this.stillCheckAt = at;
    this.stillTimer = setTimeout(() => this.checkStill(), ms);
  }

  /**
   * How long a file must hold still before it is taken: --settle; and an
   * empty file at least EMPTY_FILE_WAIT_MS, because `touch f; chmod +x f;
   * cat >> f` makes it executable before its content is written (ETXTBSY
   * only covers a file that is open when it is run).
   */
  private stillFor(c: Candidate): number {
    return c.size === 0 ? Math.max(this.settleMs, EMPTY_FILE_WAIT_MS) : this.settleMs;
  }
}
