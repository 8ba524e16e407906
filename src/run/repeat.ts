// Repeats (`repeat -i INTERVAL` / `repeat -c CRON`, pmjq-protocol(7)): when each
// fires next, and a timer that fires it. Whether a firing starts an instance
// (at most one at a time) is the protocol's business.

import { createRequire } from 'node:module';
import { parseDuration } from '../util/duration.js';

/** Shortest interval accepted: anything shorter is a busy loop, not a schedule. */
export const MIN_INTERVAL_MS = 100;
/** setTimeout's limit (about 24.8 days); longer waits are chained. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A schedule: the first firing strictly after `after` (ms since the epoch). */
export type NextFiring = (after: number) => number;

/** `30s`, `5m`, `1h30m`, chaqum's `0s5m0h0d0w`, or a bare number of seconds. */
export function intervalSchedule(text: string): { ms: number; next: NextFiring } {
  const ms = parseDuration(text);
  if (ms < MIN_INTERVAL_MS) throw new Error(`interval '${text}' is shorter than ${MIN_INTERVAL_MS} ms`);
  return { ms, next: (after) => after + ms };
}

/**
 * Cron: 5 fields (minute hour day-of-month month day-of-week) or 6 with
 * seconds first, in the manager's local time zone (cron-parser).
 */
export function cronSchedule(text: string): NextFiring {
  const fields = text.trim().split(/\s+/);
  if (fields.length !== 5 && fields.length !== 6) {
    throw new Error(`cron '${text}' has ${fields.length} fields; expected 5, or 6 with seconds first`);
  }
  const expr = fields.join(' ');
  // required here, not imported: cron-parser and luxon were a tenth of every pmjq's start-up, for a rare `repeat -c`
  const { CronExpressionParser } = createRequire(import.meta.url)('cron-parser') as typeof import('cron-parser');
  const parse = (after: number): number =>
    CronExpressionParser.parse(expr, { currentDate: new Date(after) }).next().getTime();
  try {
    parse(Date.now());
  } catch (err) {
    throw new Error(`cron '${text}': ${(err as Error).message}`);
  }
  return parse;
}

/**
 * Calls `fire` at each firing of `next`, from now on. Firings missed while
 * the process was busy or asleep are skipped, not caught up in a burst.
 */
export class RepeatTimer {
  private timer: NodeJS.Timeout | null = null;
  private due = 0;
  private stopped = false;

  constructor(private readonly next: NextFiring, private readonly fire: () => void) {}

  start(): void {
    this.due = this.next(Date.now());
    this.arm();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** When it fires next (ms since the epoch). */
  get nextAt(): number { return this.due; }

  private arm(): void {
    if (this.stopped) return;
    const wait = Math.max(0, this.due - Date.now());
    this.timer = setTimeout(() => this.tick(), Math.min(wait, MAX_TIMER_MS));
  }

  private tick(): void {
    this.timer = null;
    if (this.stopped) return;
    const now = Date.now();
    // timers may run a millisecond early; a chained long wait is not due yet
    if (now < this.due - 1) {
      this.arm();
      return;
    }
    let due = this.next(this.due);
    if (due <= now) due = this.next(now);
    this.due = due;
    try {
      this.fire();
    } finally {
      this.arm();
    }
  }
}
