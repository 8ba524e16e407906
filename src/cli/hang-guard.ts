// pmjqctl's guard against a hung spool (pmjqctl(1), --fs-timeout). On a
// hard-mounted NFS spool whose server is gone, or a FUSE mount whose server
// is stuck, a file operation never returns and cannot be interrupted but by
// SIGKILL: pmjqctl would hang for ever. A worker thread — it runs while the
// main thread is blocked in a system call — watches the main thread, and
// when it has made no progress for the timeout while waiting on a
// filesystem, prints one line naming the spool and ends the process with
// EXIT_NO_ANSWER (hang-guard-worker.ts).

import { createRequire } from 'node:module';
import type { Worker as WorkerType } from 'node:worker_threads';

/** pmjqctl's exit status when the spool did not answer in time. */
export const EXIT_NO_ANSWER = 3;

/** The cells (Int32) the threads share. */
export const TICKS = 0; // the main thread's event loop ran (counted by an interval timer)

export interface GuardData {
  cells: SharedArrayBuffer;
  /** the whole error line */
  message: string;
  timeoutMs: number;
  exitCode: number;
}

let started = false;

/** Guard the rest of this process's life (once; a timeout of 0 guards nothing). */
export function guardAgainstHangs(prog: string, verb: string, spool: string, timeoutMs: number): void {
  if (started || timeoutMs <= 0) return;
  started = true;
  const cells = new Int32Array(new SharedArrayBuffer(4 * 4));
  const every = Math.min(1000, Math.max(10, timeoutMs / 4));
  setInterval(() => Atomics.add(cells, TICKS, 1), every).unref();
  const seconds = timeoutMs % 1000 === 0 ? `${timeoutMs / 1000}s` : `${timeoutMs}ms`;
  const data: GuardData = {
    cells: cells.buffer as SharedArrayBuffer,
    message: `${prog}: ${verb}: the spool ${spool} did not answer for ${seconds} (a hung NFS or FUSE mount?); giving up (see --fs-timeout)\n`,
    timeoutMs,
    exitCode: EXIT_NO_ANSWER,
  };
  // loaded here, not at the top: worker_threads and the streams it pulls in are a tenth of a submit's start-up
  const { Worker } = createRequire(import.meta.url)('node:worker_threads') as { Worker: typeof WorkerType };
  const worker = new Worker(new URL('./hang-guard-worker.js', import.meta.url), { workerData: data });
  worker.unref();
  // a guard that cannot start leaves pmjqctl as it was: without a timeout
  worker.on('error', () => {});
}
