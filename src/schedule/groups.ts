// Groups (pmjq(1) GROUPS): every direct subdirectory of the spool is one, the top
// level is "default", and sub-jobs may name groups that exist only in memory.
// Each has its queue (oldest first) and its count of running jobs.

import { Heap } from '../util/heap.js';
import { olderFirst, type Candidate } from '../spool/candidate.js';

export interface GroupSettings {
  /** running jobs of this group on this node (0 or undefined = no limit) */
  max?: number;
  /** running jobs of this group in the whole cluster */
  cluster_max?: number;
  load?: number;
  cpu?: number;
  timeout?: number;
  retries?: number;
  backoff?: number;
}

export class Group {
  readonly queue = new Heap<Candidate>(olderFirst);
  running = 0;
  /** spool-relative directory ('' = top level); undefined for groups that exist only in memory */
  dir?: string;
  /** from the group's .group.json, and the identity of the file they were read from */
  fileSettings: GroupSettings = {};
  settingsStamp?: string;
  /** from --group on the command line: these win */
  cliSettings: GroupSettings = {};
  /** from a job's `enqueue -g GROUP -m N -c C`: below the file and the command line */
  protocolSettings: GroupSettings = {};

  constructor(readonly name: string) {}

  get settings(): GroupSettings {
    return { ...this.protocolSettings, ...this.fileSettings, ...this.cliSettings };
  }

  /** The oldest candidate still in the spool, dropping ones that left meanwhile. */
  peek(): Candidate | undefined {
    let c = this.queue.peek();
    while (c?.gone) {
      this.queue.pop();
      c = this.queue.peek();
    }
    return c;
  }
}

/**
 * Fair turns: groups take turns (round-robin among those with a startable
 * job), so a group with 100 000 queued jobs delays another group's first job
 * by at most one turn.
 */
export class Groups {
  private readonly byName = new Map<string, Group>();
  private readonly order: Group[] = [];
  private cursor = 0;

  get(name: string): Group {
    let g = this.byName.get(name);
    if (!g) {
      g = new Group(name);
      this.byName.set(name, g);
      this.order.push(g);
    }
    return g;
  }

  find(name: string): Group | undefined { return this.byName.get(name); }

  all(): readonly Group[] { return this.order; }

  add(c: Candidate): void {
    this.get(c.group).queue.push(c);
  }

  /**
   * The admission of the next group whose turn it is, that has a job queued
   * and that `admit` lets start one now (null: held back).
   */
  next<T>(admit: (g: Group) => T | null): T | undefined {
    const n = this.order.length;
    for (let i = 0; i < n; i++) {
      const g = this.order[(this.cursor + i) % n]!;
      if (g.peek() === undefined) continue;
      const admitted = admit(g);
      if (admitted !== null) {
        this.cursor = (this.cursor + i + 1) % n;
        return admitted;
      }
    }
    return undefined;
  }

  queued(): number {
    let q = 0;
    for (const g of this.order) q += g.queue.size;
    return q;
  }
}
