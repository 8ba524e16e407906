// Load and CPU barriers (pmjq(1) LOAD BARRIER). The kernel's 1-minute load average is
// an exponentially damped mean that takes about a minute to show a new job
// (and as long to forget a finished one). A naive "start while load < LIMIT"
// therefore starts everything at once. We predict instead:
//
//   predicted = loadavg1 + Σ running jobs   e^(−age/60)
//                        − Σ finished jobs  (1 − e^(−ran/60))·e^(−since/60)
//
// A CPU-bound job that has run for `age` seconds shows in loadavg1 as
// 1 − e^(−age/60), so e^(−age/60) of it is still to come; a job that ended
// `since` seconds ago after running `ran` seconds still inflates loadavg1 by
// its visible share, decaying with the same time constant. A job starts only
// while predicted < LIMIT: the seed's rule ("no job while load ≥ LIMIT"),
// counting what is already on its way.
//
// CPU utilisation is read from /proc/stat (one small read; systeminformation
// spawns nothing for this but allocates far more per call) and sampled at
// most every 250 ms; jobs started since the last sample count as busy CPUs.

import fs from 'node:fs';
import os from 'node:os';
import type { Logger } from '../util/log.js';

const TAU_S = 60;

export interface BarrierLimits {
  /** no job starts while the predicted 1-minute load average is at or above this */
  load?: number;
  /** no job starts while CPU utilisation (0–1) is at or above this */
  cpu?: number;
}

/** chaqum accepts a CPU limit as a fraction or a percentage: 0.7 and 70 mean the same. */
export function normaliseCpu(limit: number): number {
  return limit > 1 ? limit / 100 : limit;
}

interface Finished { ran: number; at: number }

export class LoadModel {
  private readonly started = new Map<string, number>();
  private finished: Finished[] = [];
  private readonly cpus = os.availableParallelism();
  private cpuSample = readCpuTimes();
  private cpuSampleAt = Date.now();
  private cpuUtil = 0;
  private startedSinceSample = 0;

  constructor(private readonly loadavg: () => number = () => os.loadavg()[0]!) {}

  jobStarted(id: string, now = Date.now()): void {
    this.started.set(id, now);
    this.startedSinceSample++;
  }

  jobEnded(id: string, now = Date.now()): void {
    const t = this.started.get(id);
    if (t === undefined) return;
    this.started.delete(id);
    this.finished.push({ ran: (now - t) / 1000, at: now });
  }

  /** The load average as it will be once recent starts and ends have shown. */
  predictedLoad(now = Date.now()): number {
    let p = this.loadavg();
    for (const t of this.started.values()) p += Math.exp(-(now - t) / 1000 / TAU_S);
    this.finished = this.finished.filter((f) => now - f.at < 5 * TAU_S * 1000);
    for (const f of this.finished) p -= (1 - Math.exp(-f.ran / TAU_S)) * Math.exp(-(now - f.at) / 1000 / TAU_S);
    return Math.max(0, p);
  }

  /** CPU utilisation 0–1 including jobs started since the last sample. */
  cpuUtilisation(now = Date.now()): number {
    if (now - this.cpuSampleAt >= 250) {
      const s = readCpuTimes();
      const busy = s.busy - this.cpuSample.busy;
      const total = s.total - this.cpuSample.total;
      if (total > 0) this.cpuUtil = busy / total;
      this.cpuSample = s;
      this.cpuSampleAt = now;
      this.startedSinceSample = 0;
    }
    return Math.min(1, this.cpuUtil + this.startedSinceSample / this.cpus);
  }

  /** null when a job may start under these limits, else why not. */
  holds(limits: BarrierLimits, now = Date.now()): string | null {
    if (limits.load !== undefined) {
      const p = this.predictedLoad(now);
      if (p >= limits.load) return `load ${p.toFixed(2)} >= ${limits.load}`;
    }
    if (limits.cpu !== undefined) {
      const u = this.cpuUtilisation(now);
      if (u >= limits.cpu) return `cpu ${(u * 100).toFixed(0)}% >= ${(limits.cpu * 100).toFixed(0)}%`;
    }
    return null;
  }
}

function readCpuTimes(): { busy: number; total: number } {
  try {
    const line = fs.readFileSync('/proc/stat', 'latin1').split('\n', 1)[0]!;
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const idle = (v[3] ?? 0) + (v[4] ?? 0); // idle + iowait
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    return { busy: total - idle, total };
  } catch {
    // not Linux: fall back to os.cpus() (slower, but works everywhere)
    let busy = 0, total = 0;
    for (const c of os.cpus()) {
      const t = c.times;
      const sum = t.user + t.nice + t.sys + t.irq + t.idle;
      total += sum;
      busy += sum - t.idle;
    }
    return { busy, total };
  }
}

/**
 * Which barriers hold jobs back right now. A hold is logged when it starts
 * and when it ends, not on every scheduling pass.
 */
export class Holds {
  private readonly active = new Map<string, string>();
  constructor(private readonly log: Logger) {}

  hold(what: string, reason: string, queued: number): void {
    if (this.active.has(what)) return;
    this.active.set(what, reason);
    this.log.info('barrier-hold', { barrier: what, reason, queued });
  }

  release(what: string): void {
    const was = this.active.get(what);
    if (was === undefined) return;
    this.active.delete(what);
    this.log.info('barrier-release', { barrier: what, was });
  }

  /** every active hold, or null */
  list(): string[] | null {
    return this.active.size === 0 ? null : [...this.active].map(([what, reason]) => `${what}: ${reason}`);
  }

  /** the first active hold, or null */
  reason(): string | null {
    for (const [what, reason] of this.active) return `${what}: ${reason}`;
    return null;
  }
}
