// Helpers of the cluster tests (issue 5): a "cluster" is N FUSE mounts
// (bindfs) of one backing directory, one per node, so that — as on NFS — a
// change made through one mount raises no inotify event on another and pmjq
// detects a shared filesystem (statfs: fuse) and polls. Each node is a real
// pmjq process on its own mount, optionally in its own UTS namespace (its own
// host name), so that it is "another host": its death is then noticed by its
// lease running out, not by its pid being gone; and optionally in its own PID
// namespace too, so that it cannot see or signal the other nodes' processes.
// A cluster may keep each bindfs in the foreground, as the test's child, so
// that a test can SIGSTOP the server of one mount: every call on that mount
// then blocks, as on a hard NFS mount whose server is gone.
//
// Teardown order (tap runs teardowns last-registered first): nodes are
// killed, then every job process left on any mount (found by environment),
// then stopped servers are continued and the mounts unmounted (fusermount -u,
// falling back to umount -l), then the scratch directory is removed. A process exit hook does the same
// synchronously if the test process ends without its teardowns.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, ROOT_ARGS, field, jobProcesses, processesWithEnv, waitFor, type TestLike } from './helpers.js';


interface TestWithResult extends TestLike {
  passing(): boolean;
  comment(...args: unknown[]): void;
}

/** Where the logs of the nodes of a failed test are kept (the scratch directory is removed). */
let keptLogs: string | null = null;

/** statfs f_type of FUSE */
const FUSE_MAGIC = 0x65735546;

function which(cmd: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

/** bindfs must be there: the cluster tests fail (never skip) without it. */
export function requireBindfs(): string {
  const p = which('bindfs');
  if (!p) {
    throw new Error('bindfs is not installed: the cluster tests need FUSE mounts of one directory (Debian/Ubuntu: apt-get install bindfs fuse3; .ci/run installs them when run as root)');
  }
  if (!fs.existsSync('/dev/fuse')) throw new Error('/dev/fuse is missing: the cluster tests need FUSE (bindfs)');
  return p;
}

/** unshare(1) with a UTS namespace, to give a node its own host name: fails (never skips) without it. */
export function requireUnshare(): void {
  const r = spawnSync('unshare', ['--uts', '--', 'true'], { encoding: 'utf8' });
  if (r.status !== 0) {
    throw new Error(`unshare --uts does not work here (${r.error?.message ?? r.stderr.trim()}): the cluster tests need it, as root, to run a node under another host name`);
  }
}

// ---- mounts ----

/** Mounts still mounted, their foreground servers and node processes still running, for the exit hook. */
const liveMounts = new Set<string>();
const liveServers = new Set<number>();
const liveNodes = new Set<number>();
let exitHook = false;

function installExitHook(): void {
  if (exitHook) return;
  exitHook = true;
  process.once('exit', () => {
    for (const pid of liveNodes) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    for (const pid of liveServers) { try { process.kill(pid, 'SIGCONT'); } catch { /* gone */ } }
    for (const m of liveMounts) {
      for (const pid of jobProcesses(m)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
      unmountSync(m, 0);
    }
    for (const pid of liveServers) { try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ } }
  });
}

function mounted(mount: string): boolean {
  const want = path.resolve(mount);
  let text = '';
  try { text = fs.readFileSync('/proc/self/mounts', 'utf8'); } catch { return false; }
  // /proc/self/mounts escapes spaces and the like as \040 octal
  return text.split('\n').some((l) => l.split(' ')[1]?.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))) === want);
}

function tryUnmount(mount: string): boolean {
  for (const [cmd, args] of [['fusermount3', ['-u']], ['fusermount', ['-u']]] as const) {
    const r = spawnSync(cmd, [...args, mount], { stdio: 'ignore' });
    if (r.status === 0) return true;
  }
  return !mounted(mount);
}

/** Unmount, retrying while busy for up to `busyMs` (processes still exiting), then lazily. Never throws. */
function unmountSync(mount: string, busyMs: number): void {
  const end = Date.now() + busyMs;
  for (;;) {
    if (!mounted(mount) || tryUnmount(mount)) break;
    if (Date.now() >= end) {
      spawnSync('umount', ['-l', mount], { stdio: 'ignore' });
      break;
    }
    // a synchronous pause between attempts (Atomics.wait: no busy loop)
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
  }
  liveMounts.delete(mount);
}

export interface Cluster {
  /** the scratch directory (on the local disk) */
  dir: string;
  /** the directory all mounts show: the "NFS server's" export */
  backing: string;
  /** one FUSE mount of `backing` per node: each node's view of the spool */
  mounts: string[];
  /** local scratch space for what the jobs report (results, pids, stamps) */
  work: string;
  archive: string;
  /** with { servers: true }: the pid of the bindfs serving each mount (our child) */
  servers: number[];
}

export interface ClusterOptions {
  /** keep each bindfs in the foreground, as our child, its pid in Cluster.servers */
  servers?: boolean;
}

/**
 * A scratch directory with a backing spool and `n` bindfs mounts of it,
 * unmounted at teardown even when the test fails; the job processes left on
 * any mount are killed before.
 */
export function cluster(t: TestLike, n: number, prefix = 'pmjq-cluster-', opts: ClusterOptions = {}): Cluster {
  const bindfs = requireBindfs();
  installExitHook();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const backing = path.join(dir, 'backing');
  const work = path.join(dir, 'work');
  const archive = path.join(dir, 'archive');
  for (const d of [backing, work, archive]) fs.mkdirSync(d);
  // runs last: by then nothing is mounted any more
  t.teardown(() => {
    if ([...liveMounts].some((m) => m.startsWith(dir + '/'))) return; // never recurse into a mount
    try { fs.rmSync(dir, { recursive: true, force: true }); } catch { /* left in tmp */ }
  });
  const mounts: string[] = [];
  const servers: number[] = [];
  t.teardown(() => {
    // a stopped server would leave its mount's users, and the unmount, hanging
    for (const pid of servers) { try { process.kill(pid, 'SIGCONT'); } catch { /* gone */ } }
    for (const m of mounts) unmountSync(m, 3000);
    // unmounted, a foreground bindfs exits by itself
    for (const pid of servers) { try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ } liveServers.delete(pid); }
  });
  for (let i = 0; i < n; i++) {
    const m = path.join(dir, `node${i}`);
    fs.mkdirSync(m);
    if (opts.servers) {
      const child = spawn(bindfs, ['-f', '--no-allow-other', backing, m], { stdio: 'ignore' });
      servers.push(child.pid!);
      liveServers.add(child.pid!);
      liveMounts.add(m);
      const end = Date.now() + 10_000;
      while (!mounted(m)) {
        if (Date.now() > end) throw new Error(`bindfs -f ${backing} ${m} did not mount within 10 s`);
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
      }
    } else {
      const r = spawnSync(bindfs, ['--no-allow-other', backing, m], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`bindfs ${backing} ${m} failed (exit ${r.status}): ${r.stderr || r.error?.message}`);
      liveMounts.add(m);
    }
    mounts.push(m);
    if ((fs.statfsSync(m).type >>> 0) !== FUSE_MAGIC) throw new Error(`${m} is not a FUSE mount after bindfs`);
  }
  // job processes of every node (they carry PMJQ_SPOOL=their mount): killed before the unmount
  t.teardown(() => {
    for (const m of mounts) for (const pid of jobProcesses(m)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
  });
  return { dir, backing, mounts, work, archive, servers };
}

// ---- nodes ----

export interface Node {
  child: ChildProcess;
  /** pmjq's pid (as the test sees it: in a PID namespace of its own, it has another one there) */
  pid: number;
  /** the node id (HOST.PID.START), from its start line */
  id: string;
  mount: string;
  stderr(): string;
  /** resolves with the first stderr line matching re (lines already seen count) */
  waitLine(re: RegExp, timeoutMs?: number): Promise<string>;
  exited: Promise<number>;
  /** signal the node (its process alone: its jobs have their own sessions) */
  kill(sig?: NodeJS.Signals): void;
}

export interface NodeOptions {
  env?: NodeJS.ProcessEnv;
  /** run the node in its own UTS namespace under this host name ("another host") */
  host?: string;
  /** with host: and in a PID namespace of its own (with its own /proc), where it cannot see or signal other nodes' processes */
  pidns?: boolean;
}

/** Start `pmjq ROOT_ARGS… args… mount`; resolves once it logged its start and wrote its heartbeat. */
export async function startNode(t: TestWithResult, mount: string, args: string[], opts: NodeOptions = {}): Promise<Node> {
  const pmjq = [process.execPath, BIN.pmjq, ...ROOT_ARGS, ...args, mount];
  if (opts.pidns && !opts.host) throw new Error('startNode: pidns needs a host');
  // in a PID namespace: unshare forks pmjq (pid 1 there) and dies with it; --kill-child: and it with unshare
  const unshare = opts.pidns ? ['unshare', '--pid', '--fork', '--kill-child', '--mount-proc', '--uts'] : ['unshare', '--uts'];
  const [cmd, ...argv] = opts.host
    ? [...unshare, '--', 'sh', '-c', 'hostname "$0" && exec "$@"', opts.host, ...pmjq]
    : pmjq;
  const child = spawn(cmd!, argv, { stdio: ['ignore', 'ignore', 'pipe'], detached: true, env: { ...process.env, ...opts.env } });
  let pid = child.pid!;
  liveNodes.add(pid);
  let err = '';
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  const check = (): void => {
    for (const w of [...waiters]) {
      const line = err.split('\n').find((l) => w.re.test(l));
      if (line !== undefined) { waiters.splice(waiters.indexOf(w), 1); w.resolve(line); }
    }
  };
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); check(); });
  const exited = new Promise<number>((resolve) => {
    child.on('exit', (code, signal) => { liveNodes.delete(child.pid!); liveNodes.delete(pid); resolve(code ?? 128 + (os.constants.signals[signal as NodeJS.Signals] ?? 0)); });
  });
  let done = false;
  void exited.then(() => { done = true; });
  // the node's pid, not its process group: a job forked a moment ago may still be in that group before its setsid()
  const kill = (sig: NodeJS.Signals = 'SIGTERM'): void => { try { process.kill(pid, sig); } catch { /* gone */ } };
  t.teardown(async () => {
    if (!done) { kill('SIGKILL'); await exited; }
    if (!t.passing()) {
      // a failed test's daemon logs outlive its scratch directory
      keptLogs ??= fs.mkdtempSync(path.join(os.tmpdir(), 'pmjq-cluster-failed-'));
      const file = path.join(keptLogs, `${path.basename(mount)}-${pid}.log`);
      fs.writeFileSync(file, err);
      t.comment(`log of the node on ${mount}: ${file}`);
    }
  });
  const waitLine = (re: RegExp, timeoutMs = 15_000): Promise<string> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${re} from the node on ${mount}:\n${err}`)), timeoutMs);
      waiters.push({ re, resolve: (l) => { clearTimeout(timer); resolve(l); } });
      check();
    });
  const startLine = await Promise.race([
    waitLine(/ event=start /, 30_000),
    exited.then((c) => { throw new Error(`pmjq on ${mount} exited ${c} before starting:\n${err}`); }),
  ]);
  const id = field(startLine, 'node')!;
  if (opts.pidns) {
    // pmjq is unshare's child (it has logged: it is exec'd)
    const children = fs.readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    if (children.length !== 1) throw new Error(`unshare ${child.pid} has ${children.length} children, not pmjq alone`);
    pid = Number(children[0]);
    liveNodes.add(pid);
  }
  await waitFor(`the heartbeat of ${id}`, () => fs.existsSync(path.join(mount, '.pmjq/nodes', id)), 15_000);
  return { child, pid, id, mount, stderr: () => err, waitLine, exited, kill };
}

// ---- reading logs and reports ----

// field and eventLines: helpers.ts (re-exported here for the cluster tests)
export { eventLines, field } from './helpers.js';

/** Milliseconds since the epoch of a log line's leading ISO timestamp. */
export function lineTime(line: string): number {
  return Date.parse(line.split(' ')[0]!);
}

/** Whether process `pid` is alive (a zombie counts as gone). */
export function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Pids of live processes whose environment has PMJQ_NODE=node: what that node's jobs left running. */
export function nodeProcesses(node: string): number[] {
  return processesWithEnv('PMJQ_NODE', node);
}

/** Lines of the files in `dir`, split on spaces: [file name, fields…] per line. */
export function reportLines(dir: string): { file: string; fields: string[] }[] {
  const out: { file: string; fields: string[] }[] = [];
  for (const f of fs.readdirSync(dir)) {
    for (const l of fs.readFileSync(path.join(dir, f), 'utf8').split('\n')) if (l) out.push({ file: f, fields: l.split(' ') });
  }
  return out;
}

/**
 * A gate jobs wait at (`flock -s LOCK true` in a job): a process holds an
 * exclusive flock on LOCK until open() is called, so jobs stay running, on
 * whatever node, exactly as long as the test wants.
 */
export async function gate(t: TestLike, dir: string): Promise<{ lock: string; wait: string; open(): void }> {
  const lock = path.join(dir, 'gate.lock');
  fs.writeFileSync(lock, '');
  const holder = spawn('flock', ['-x', lock, '-c', 'echo locked; exec cat >/dev/null'], { stdio: ['pipe', 'pipe', 'inherit'], detached: true });
  const exited = new Promise((r) => holder.once('exit', r));
  t.teardown(async () => { try { process.kill(-holder.pid!, 'SIGKILL'); } catch { /* gone */ } await exited; });
  await new Promise<void>((resolve, reject) => {
    holder.stdout!.once('data', () => resolve());
    holder.once('exit', () => reject(new Error('flock holder exited early')));
  });
  return { lock, wait: `flock -s '${lock}' true`, open: () => holder.stdin!.end() };
}
