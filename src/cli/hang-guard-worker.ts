// The thread of pmjqctl's hang guard (see hang-guard.ts). The main thread
// is taken to be stuck when, for the whole timeout, its event loop has not
// run, the kernel has not scheduled it once (/proc/self/task/PID/schedstat:
// a thread stuck in one system call is never woken), and it is not waiting
// for a pipe, a socket or a terminal (a pager that is not reading, a slow
// writer on standard input: waiting for a person is not a hung filesystem).
// Then the guard writes its line to fd 2 and ends the process with its exit
// status — through WASI's proc_exit, the one call a worker thread can make
// that ends the whole process with a status of its choosing (process.exit
// in a worker ends the worker); SIGKILL if that fails.

import fs from 'node:fs';
import { createRequire } from 'node:module';
import { workerData } from 'node:worker_threads';
import { monotonicMs } from '../util/monotonic.js';
import { TICKS, type GuardData } from './hang-guard.js';

const d = workerData as GuardData;
const cells = new Int32Array(d.cells);
const main = `/proc/self/task/${process.pid}`;
const every = Math.min(250, Math.max(10, d.timeoutMs / 8));

let seen = '';
let lastProgress = monotonicMs();
for (;;) {
  Atomics.wait(cells, 1, 0, every); // a pause (cell 1 stays 0: nothing wakes it)
  const now = monotonicMs();
  const state = `${Atomics.load(cells, TICKS)} ${read(`${main}/schedstat`)}`;
  if (state !== seen || waitingForPeople()) {
    seen = state;
    lastProgress = now;
  } else if (now - lastProgress >= d.timeoutMs) {
    giveUp();
  }
}

/** The main thread is blocked on a pipe, socket, terminal or its event loop's epoll. */
function waitingForPeople(): boolean {
  // "NR ARG1 … SP PC" while in a system call; "running" or "-1 SP PC" otherwise
  const fields = read(`${main}/syscall`).split(' ');
  if (fields.length < 3 || fields[0] === '-1' || !/^0x[0-9a-f]+$/.test(fields[1] ?? '')) return false;
  const fd = Number.parseInt(fields[1]!.slice(2), 16);
  if (!(fd >= 0 && fd < 1 << 20)) return false; // not a file descriptor: a path (stat, open…)
  let target: string;
  try { target = fs.readlinkSync(`/proc/self/fd/${fd}`); } catch { return false; }
  return /^(pipe|socket|anon_inode):/.test(target) || target.startsWith('/dev/');
}

function read(file: string): string {
  try { return fs.readFileSync(file, 'utf8').trim(); } catch { return ''; }
}

function giveUp(): never {
  try { fs.writeSync(2, d.message); } catch { /* nowhere to say it */ }
  try {
    const { WASI } = createRequire(import.meta.url)('node:wasi') as typeof import('node:wasi');
    const wasi = new WASI({ version: 'preview1', returnOnExit: false });
    wasi.start(new WebAssembly.Instance(new WebAssembly.Module(procExit(d.exitCode)), wasi.getImportObject() as WebAssembly.Imports));
  } catch { /* fall through */ }
  process.kill(process.pid, 'SIGKILL');
  for (;;) Atomics.wait(cells, 1, 0);
}

/**
 * A WebAssembly module whose _start calls wasi_snapshot_preview1.proc_exit(code):
 * (module (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
 *   (memory (export "memory") 1) (func (export "_start") i32.const CODE call 0))
 */
function procExit(code: number): Uint8Array<ArrayBuffer> {
  const str = (s: string): number[] => [s.length, ...Buffer.from(s)];
  const section = (id: number, body: number[]): number[] => [id, body.length, ...body];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // \0asm, version 1
    ...section(1, [2, 0x60, 1, 0x7f, 0, 0x60, 0, 0]), // types: (i32) → (), () → ()
    ...section(2, [1, ...str('wasi_snapshot_preview1'), ...str('proc_exit'), 0x00, 0]), // import func of type 0
    ...section(3, [1, 1]), // one function of type 1
    ...section(5, [1, 0x00, 1]), // one memory of 1 page
    ...section(7, [2, ...str('memory'), 0x02, 0, ...str('_start'), 0x00, 1]), // exports
    ...section(10, [1, 6, 0, 0x41, code & 0x3f, 0x10, 0, 0x0b]), // _start: i32.const code; call 0; end
  ]);
}
