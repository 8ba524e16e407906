// Milliseconds on CLOCK_MONOTONIC, the clock every thread of the process
// shares (performance.now() counts from each thread's own start): the
// heartbeat stamps its beats with it on the main thread, the fencing
// watchdog compares them with it on its own thread.

export function monotonicMs(): number {
  return Number(process.hrtime.bigint() / 1_000_000n);
}
