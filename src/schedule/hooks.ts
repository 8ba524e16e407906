// Idle and saturation hooks (pmjq(1) HOOKS): a command run once the node has
// been idle (nothing queued, nothing running) for --idle-after, or saturated
// (jobs queued but held back by a limit or barrier) for --saturated-after.
// Each fires once per period: the state must end and begin again before the
// hook runs again. A failing hook is logged and never stops pmjq.

import type { Logger } from '../util/log.js';

export interface HookSpec {
  command: string;
  afterMs: number;
}

export interface NodeSnapshot {
  queued: number;
  running: number;
  load: number;
  heldBy: string | null;
}

type Kind = 'idle' | 'saturated';

class Hook {
  private since: number | null = null;
  private timer: NodeJS.Timeout | null = null;
  private fired = false;
  private runningHook = false;

  constructor(
    private readonly kind: Kind,
    private readonly spec: HookSpec,
    private readonly env: Record<string, string>,
    private readonly log: Logger,
    private readonly snapshot: () => NodeSnapshot,
  ) {}

  update(active: boolean, now = Date.now()): void {
    if (!active) {
      this.since = null;
      this.fired = false;
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
      return;
    }
    if (this.since !== null) return;
    this.since = now;
    this.timer = setTimeout(() => this.fire(), this.spec.afterMs);
    this.timer.unref();
  }

  private fire(): void {
    this.timer = null;
    if (this.fired || this.runningHook || this.since === null) return;
    this.fired = true;
    this.runningHook = true;
    const s = this.snapshot();
    const env = {
      ...this.env,
      PMJQ_HOOK: this.kind,
      PMJQ_SINCE: new Date(this.since).toISOString(),
      PMJQ_QUEUED: String(s.queued),
      PMJQ_RUNNING: String(s.running),
      PMJQ_LOAD: s.load.toFixed(2),
      PMJQ_HELD_BY: s.heldBy ?? '',
    };
    this.log.info('hook-start', { hook: this.kind, command: this.spec.command, queued: s.queued, running: s.running });
    // execa: a hook is rare, and its output is wanted in the log; loaded when one runs (a third of pmjq's start-up otherwise)
    import('execa')
      .then(({ execa }) => execa(this.spec.command, { shell: true, env, stdin: 'ignore', all: true, reject: false, timeout: 600_000, maxBuffer: 64 * 1024 }))
      .then((r) => {
        const output = String(r.all ?? '').trim().slice(0, 500) || undefined;
        if (r.exitCode === 0) this.log.info('hook-end', { hook: this.kind, exit: 0, output });
        else this.log.warn('hook-failed', { hook: this.kind, exit: r.exitCode ?? null, signal: r.signal ?? undefined, error: r.timedOut ? 'timed out after 10 minutes' : undefined, output });
      })
      .catch((err: unknown) => this.log.warn('hook-failed', { hook: this.kind, error: (err as Error).message }))
      .finally(() => { this.runningHook = false; });
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

export class Hooks {
  private readonly idle: Hook | null;
  private readonly saturated: Hook | null;

  constructor(opts: { idle?: HookSpec; saturated?: HookSpec; env: Record<string, string> }, log: Logger, snapshot: () => NodeSnapshot) {
    this.idle = opts.idle ? new Hook('idle', opts.idle, opts.env, log, snapshot) : null;
    this.saturated = opts.saturated ? new Hook('saturated', opts.saturated, opts.env, log, snapshot) : null;
  }

  /** Called whenever the node's state may have changed (after each scheduling pass). */
  update(queued: number, running: number, heldBack: boolean): void {
    this.idle?.update(queued === 0 && running === 0);
    this.saturated?.update(heldBack);
  }

  stop(): void {
    this.idle?.stop();
    this.saturated?.stop();
  }
}
