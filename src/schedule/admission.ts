// Admission: may a group start one more job on this node now? Every limit
// is decided here, in one place and in this order: the group's `max` on
// this node, a pmjqctl pause, the node's load and CPU, the group's load and
// CPU, and its `cluster_max` slots. A hold is logged once when it starts and
// once when it ends (Holds); `max` is a plain limit, never logged.
//
// Admitted, the caller gets a Ticket. It owns the cluster_max slot taken for
// the job (if the group has one) and travels with the job from claim to end:
// whoever is done with the job releases it, and releasing twice is harmless.

import type { Slots } from '../cluster/slots.js';
import { errText } from '../util/fsx.js';
import type { Logger } from '../util/log.js';
import type { Holds, LoadModel } from './barrier.js';
import type { Group } from './groups.js';

/** The right to start one job of a group; owns its cluster slot, if any. */
export class Ticket {
  constructor(
    readonly group: Group,
    private slot: string | undefined,
    private readonly free: (slot: string, yieldTurn: boolean) => void,
  ) {}

  /** Give the slot back (if any). Safe to call more than once. */
  release(): void { this.drop(false); }

  /** The job ran and ended: give the slot back, and let a node waiting for one have it first. */
  releaseAfterRun(): void { this.drop(true); }

  private drop(yieldTurn: boolean): void {
    const slot = this.slot;
    this.slot = undefined;
    if (slot !== undefined) this.free(slot, yieldTurn);
  }
}

/** Why a group may not start a job now. */
export interface Held { held: string }

export interface AdmissionDeps {
  /** the node's barriers (--load, --cpu) */
  limits: { load?: number; cpu?: number };
  /** --poll: how long a freed slot is left to a waiting node */
  pollMs: number;
  load: LoadModel;
  holds: Holds;
  slots: Slots;
  /** pmjqctl's pause flags */
  paused: (g: Group) => boolean;
  /** jobs queued in every group (logged with a node hold) */
  queued: () => number;
  /** a fresh id naming a slot's holder */
  newId: () => string;
  log: Logger;
}

export class Admission {
  /** group → having freed a slot that another node waits for: take none before this time (ms) */
  private readonly turnAt = new Map<string, number>();

  constructor(private readonly d: AdmissionDeps) {}

  /** The ticket to start the group's next job, or null when it is held back. */
  admitted(g: Group): Ticket | null {
    const a = this.admit(g);
    return a instanceof Ticket ? a : null;
  }

  admit(g: Group): Ticket | Held {
    const { holds, load } = this.d;
    const s = g.settings;
    if (s.max && g.running >= s.max) return { held: 'max' };
    if (this.d.paused(g)) { holds.hold(`paused ${g.name}`, 'paused by pmjqctl', g.queue.size); return { held: 'paused' }; }
    holds.release(`paused ${g.name}`);
    const node = load.holds(this.d.limits);
    if (node) { holds.hold('node', node, this.d.queued()); return { held: node }; }
    holds.release('node');
    const group = s.load !== undefined || s.cpu !== undefined ? load.holds({ load: s.load, cpu: s.cpu }) : null;
    if (group) { holds.hold(`group ${g.name}`, group, g.queue.size); return { held: group }; }
    holds.release(`group ${g.name}`);
    return this.clusterSlot(g, s.cluster_max);
  }

  /** A group with nothing queued waits for no slot. */
  idle(g: Group): void {
    this.d.slots.unwait(g.name);
  }

  /** Stopping: this node waits for no slot anywhere. */
  stop(): void {
    this.d.slots.unwaitAll();
  }

  private clusterSlot(g: Group, clusterMax: number | undefined): Ticket | Held {
    const free = (slot: string, yieldTurn: boolean): void => this.free(g, slot, yieldTurn);
    if (!clusterMax) return new Ticket(g, undefined, free);
    const turn = this.turnAt.get(g.name);
    if (turn !== undefined && Date.now() < turn) return { held: 'a waiting node\'s turn' }; // the next rescan tries again
    const { slots, holds } = this.d;
    let slot: string | undefined;
    try {
      slot = slots.acquire(g.name, clusterMax, this.d.newId()) ?? undefined;
    } catch (err) {
      this.d.log.error('slot-failed', { group: g.name, error: errText(err) });
    }
    if (slot === undefined) {
      slots.wait(g.name);
      holds.hold(`cluster ${g.name}`, `cluster_max ${clusterMax} reached`, g.queue.size);
      return { held: `cluster_max ${clusterMax} reached` };
    }
    slots.unwait(g.name);
    holds.release(`cluster ${g.name}`);
    return new Ticket(g, slot, free);
  }

  private free(g: Group, slot: string, yieldTurn: boolean): void {
    this.d.slots.release(slot);
    // another node waits for this group's slots: let it have this one
    if (yieldTurn && this.d.slots.othersWait(g.name)) this.turnAt.set(g.name, Date.now() + this.d.pollMs * (1 + Math.random()));
  }
}
