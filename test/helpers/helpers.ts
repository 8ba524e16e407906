// Shared test helpers: real directories, the real built binaries, real
// processes. Waiting is always for an event (a file, a log line, an exit)
// with a bounded timeout, never a bare sleep; every process a test starts is
// killed by its process group at teardown.

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The commands as package.json installs them (scripts/bundle-cli.mjs); the tests run them with node, or as a shell does. */
export const BIN = {
  pmjq: path.join(ROOT, 'dist/cli/pmjq.cjs'),
  pmjqctl: path.join(ROOT, 'dist/cli/pmjqctl.cjs'),
  chaqum: path.join(ROOT, 'dist/cli/chaqum.cjs'),
};
export const IS_ROOT = process.getuid?.() === 0;

/** What helpers need of a tap test: tap's own Test type, named once. */
export type TestLike = Test;

/** A fresh scratch directory with spool/ and archive/, removed at teardown, with the spool's job processes. */
export function scratch(t: TestLike, prefix = 'pmjq-test-'): { dir: string; spool: string; archive: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const spool = path.join(dir, 'spool');
  const archive = path.join(dir, 'archive');
  fs.mkdirSync(spool);
  fs.mkdirSync(archive);
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  // job processes a test leaves running (a daemon killed with SIGKILL leaves its jobs)
  reapJobs(t, spool);
  return { dir, spool, archive };
}

/** Write an executable job atomically (hidden name, then rename), as users are told to. */
export function dropJob(dir: string, name: string | Buffer, body: string, mode = 0o755): string {
  const tmp = path.join(dir, `.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`);
  fs.writeFileSync(tmp, body, { mode });
  fs.chmodSync(tmp, mode);
  const dst = typeof name === 'string' ? path.join(dir, name) : Buffer.concat([Buffer.from(dir + '/'), name]);
  fs.renameSync(tmp, dst);
  return dst.toString();
}

export interface Proc {
  child: ChildProcess;
  /** everything written to stderr so far */
  stderr(): string;
  stdout(): string;
  /** resolves with the first stderr line matching re (lines already seen count) */
  waitLine(re: RegExp, timeoutMs?: number): Promise<string>;
  /** resolves with the exit code (or 128+signal) */
  exited: Promise<number>;
  kill(sig?: NodeJS.Signals): void;
}

/** Start a binary (node script) in its own process group; killed at teardown. */
export function start(t: TestLike, bin: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Proc {
  const child = spawn(process.execPath, [bin, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
    env: { ...process.env, ...opts.env },
    cwd: opts.cwd,
  });
  let err = '';
  let out = '';
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  const check = (): void => {
    for (const w of [...waiters]) {
      const line = err.split('\n').find((l) => w.re.test(l));
      if (line !== undefined) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  };
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); check(); });
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number>((resolve) => {
    child.on('exit', (code, signal) => resolve(code ?? 128 + (os.constants.signals[signal as NodeJS.Signals] ?? 0)));
  });
  let done = false;
  void exited.then(() => { done = true; });
  const kill = (sig: NodeJS.Signals = 'SIGTERM'): void => {
    try { process.kill(-child.pid!, sig); } catch { /* gone */ }
  };
  t.teardown(async () => {
    if (!done) {
      kill('SIGKILL');
      await exited;
    }
    // the job processes are in their own groups: anything left is found by its spool env in the test
  });
  return {
    child,
    stderr: () => err,
    stdout: () => out,
    waitLine: (re, timeoutMs = 10_000) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${re} in:\n${err}`)), timeoutMs);
        waiters.push({ re, resolve: (l) => { clearTimeout(timer); resolve(l); } });
        check();
      }),
    exited,
    kill,
  };
}

/** Run a binary to completion; returns its exit code and output. */
export async function run(t: TestLike, bin: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = start(t, bin, args, opts);
  const timeout = opts.timeoutMs ?? 60_000;
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([
    p.exited,
    new Promise<number>((_, reject) => { timer = setTimeout(() => reject(new Error(`${path.basename(bin)} ${args.join(' ')} did not exit within ${timeout} ms:\n${p.stderr()}`)), timeout); }),
  ]);
  clearTimeout(timer);
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

/**
 * Attach strace to a running process so that the `nth` call of `syscall`
 * (counted from the moment strace attaches, on any of its threads) is met
 * on entry by `signal`: a kill -9, or a SIGSTOP that freezes it at an exact
 * point, with the real binary. Resolves once strace has attached; strace is
 * killed at teardown (or by the returned function), which detaches it.
 */
export async function signalAtSyscall(t: TestLike, pid: number, syscall: string, nth: number, signal: 'KILL' | 'STOP'): Promise<() => void> {
  const st = spawn('strace', ['-p', String(pid), '-o', '/dev/null', '-e', `trace=${syscall}`, '-e', `inject=${syscall}:signal=${signal}:when=${nth}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  const detach = (): void => { try { st.kill('SIGKILL'); } catch { /* gone */ } };
  t.teardown(detach);
  let err = '';
  await new Promise<void>((resolve, reject) => {
    st.stderr!.on('data', (d: Buffer) => { err += d.toString(); if (/attached/.test(err)) resolve(); });
    st.on('error', reject);
    st.on('exit', (code) => reject(new Error(`strace exited ${code} before attaching: ${err.trim()}`)));
  });
  return detach;
}

/** Wait until fn() returns a truthy value (checked on fs events of dir and every 20 ms), bounded. */
export async function waitFor<T>(what: string, fn: () => T | undefined | null | false, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Archive entries (job files only, not .log/.json, not pmjq's hidden staging files), by name without the timestamp prefix. */
export function archived(archive: string): { file: string; name: string }[] {
  return fs.readdirSync(archive)
    .filter((f) => !f.startsWith('.') && !f.endsWith('.log') && !f.endsWith('.json'))
    .map((f) => ({ file: path.join(archive, f), name: f.replace(/^\d{8}T\d{6}\.\d{3}Z(\.\d+)?-/, '') }));
}

/** All history records of a spool. */
export function history(spool: string): Record<string, unknown>[] {
  const dir = path.join(spool, '.pmjq/history');
  const out: Record<string, unknown>[] = [];
  for (const f of fs.readdirSync(dir)) {
    for (const line of fs.readFileSync(path.join(dir, f), 'utf8').split('\n')) if (line) out.push(JSON.parse(line));
  }
  return out;
}

/** pmjq arguments every test needs: as root, root-owned test files must be allowed. */
export const ROOT_ARGS = IS_ROOT ? ['--allow-root'] : [];

// ---- helpers added for the core integration tests ----

/** Lines of `text` matching re. */
export function linesMatching(text: string, re: RegExp): string[] {
  return text.split('\n').filter((l) => re.test(l));
}

/** Wait until `p` has logged at least n stderr lines matching re; resolves with them. */
export function waitLines(p: Proc, re: RegExp, n: number, timeoutMs = 10_000): Promise<string[]> {
  return waitFor(`${n} lines matching ${re}`, () => {
    const l = linesMatching(p.stderr(), re);
    return l.length >= n ? l : null;
  }, timeoutMs).catch((err: Error) => { throw new Error(`${err.message} in:\n${p.stderr()}`); });
}

/**
 * Pids of the live processes whose environment has PMJQ_SPOOL=spool: the job
 * processes (and their children) of that spool's pmjq. Found by environment,
 * never by name, so other tests' processes are never touched.
 */
export function jobProcesses(spool: string): number[] {
  return processesWithEnv('PMJQ_SPOOL', spool);
}

/** Pids of the live processes whose environment has NAME=VALUE (by environment, never by name). */
export function processesWithEnv(name: string, value: string): number[] {
  const marker = Buffer.from(`\0${name}=${value}\0`);
  const out: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let env: Buffer;
    try { env = Buffer.concat([Buffer.from([0]), fs.readFileSync(`/proc/${entry}/environ`)]); } catch { continue; }
    // a zombie has an empty environ and is not counted: it is gone
    if (env.indexOf(marker) >= 0) out.push(Number(entry));
  }
  return out;
}

/** At teardown, SIGKILL every job process of `spool` still alive (found by environment, see jobProcesses). */
export function reapJobs(t: TestLike, spool: string): void {
  t.teardown(() => {
    for (const pid of jobProcesses(spool)) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
  });
}

/** Inode numbers of the directories process `pid` watches through inotify (from /proc/PID/fdinfo). */
export function inotifyWatches(pid: number): Set<number> {
  const inodes = new Set<number>();
  let fds: string[];
  try { fds = fs.readdirSync(`/proc/${pid}/fdinfo`); } catch { return inodes; }
  for (const fd of fds) {
    let info: string;
    try { info = fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'); } catch { continue; }
    for (const m of info.matchAll(/^inotify wd:\S+ ino:([0-9a-f]+) /gm)) inodes.add(parseInt(m[1]!, 16));
  }
  return inodes;
}

/** Wait until process `pid` has an inotify watch on directory `dir` (a daemon is ready to notice changes there). */
export function waitWatching(pid: number, dir: string, timeoutMs = 10_000): Promise<true> {
  const ino = fs.statSync(dir).ino;
  return waitFor(`an inotify watch of pid ${pid} on ${dir}`, () => inotifyWatches(pid).has(ino), timeoutMs);
}

/**
 * Archive entries as raw bytes (names need not be UTF-8): for each job file,
 * its full path, its name without the timestamp prefix, and the paths of the
 * .log and .json beside it.
 */
export function archivedRaw(archive: string): { file: Buffer; entry: Buffer; name: Buffer; log: Buffer; json: Buffer }[] {
  const all = fs.readdirSync(archive, { encoding: 'buffer' });
  const have = new Set(all.map((b) => b.toString('latin1')));
  const prefix = /^\d{8}T\d{6}\.\d{3}Z(\.\d+)?-/;
  return all
    .filter((b) => {
      const s = b.toString('latin1');
      // a job's own name may end in .log/.json: it is a job file when its .json sibling exists
      return have.has(`${s}.json`);
    })
    .map((entry) => {
      const m = prefix.exec(entry.toString('latin1'));
      const dir = Buffer.from(archive + '/');
      return {
        file: Buffer.concat([dir, entry]),
        entry,
        name: m ? entry.subarray(m[0].length) : entry,
        log: Buffer.concat([dir, entry, Buffer.from('.log')]),
        json: Buffer.concat([dir, entry, Buffer.from('.json')]),
      };
    });
}

/** Parse a JSON file (path as string or Buffer). */
export function readJson<T = Record<string, unknown>>(p: string | Buffer): T {
  return JSON.parse(fs.readFileSync(p, 'utf8')) as T;
}

/** The record fields pmjq(5) RECORDS requires. */
export const RECORD_FIELDS = ['id', 'name', 'group', 'node', 'owner', 'created', 'claimed', 'started', 'finished', 'status', 'exit_code', 'signal', 'attempt', 'archive', 'log'] as const;

/** ISO 8601 UTC with milliseconds, as records carry. */
export const ISO_MS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/** Make a scratch tree usable by other users (mkdtemp creates it 0700): for jobs that run as their owner. */
export function openToAll(...dirs: string[]): void {
  for (const d of dirs) fs.chmodSync(d, 0o755);
}

/** The value of key=value in a text log line (JSON-quoted values unquoted). */
export function field(line: string, key: string): string | undefined {
  const m = new RegExp(`(?:^| )${key}=("(?:[^"\\\\]|\\\\.)*"|\\S*)`).exec(line);
  if (!m) return undefined;
  return m[1]!.startsWith('"') ? JSON.parse(m[1]!) as string : m[1];
}

/** Log lines of an event (exact name). */
export function eventLines(text: string, name: string): string[] {
  return text.split('\n').filter((l) => l.includes(` event=${name} `) || l.endsWith(` event=${name}`));
}

/**
 * The jobs in a node's claimed area, in either form: the directories ID/,
 * and the files of its group directories @DIR/ (not their logs, .NAME=ID.log).
 */
export function claimedJobs(area: string): string[] {
  let list: string[];
  try { list = fs.readdirSync(area); } catch { return []; }
  return list.flatMap((e) => {
    if (e.startsWith('.')) return [];
    if (!e.startsWith('@')) return [e];
    try { return fs.readdirSync(path.join(area, e)).filter((f) => !f.startsWith('.')).map((f) => path.join(e, f)); } catch { return []; }
  });
}
