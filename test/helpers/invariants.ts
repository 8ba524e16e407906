// The invariants of issue 9 (pmjq(5), pmjq(5) RECORDS, pmjq(1) THE JOB PROCESS), checked after every
// fault-injection test:
//
//   1. every submitted job is in exactly one place: queued in the spool,
//      claimed, waiting in retry/, in the archive or errors directory (or
//      .pmjq/done without -o), or in rejected/ — never two, never none;
//   2. the history records match the archive: each archived record has
//      exactly one history record of the same id, status and attempt, and
//      each final history record (not interrupted, not a retry) has its
//      archived record; each rejected entry has its history record;
//   3. once the daemons are stopped, no claimed area holds anything;
//   4. no process of the test's jobs survives: jobs record their pid (and
//      their children's) in WORK/pids, checked by pid — a pid is the job's
//      only while /proc/PID/environ carries its PMJQ_JOB_ID, since pids are
//      reused over thousands of jobs — and, as a second net, no live
//      process carries the test's PMJQ_SPOOL. Survivors are reported, then
//      killed by pid and process group (never by name);
//   5. where a daemon is meant to be running, it still runs a fresh job
//      within a bound (Ledger.canary).
//
// A Ledger remembers what a test submitted; jobs are keyed by group and the
// exact bytes of their name, so any name a filesystem allows can be checked.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { dropJob, waitFor, type TestLike } from './helpers.js';


export type Place = 'queued' | 'claimed' | 'retry' | 'archive' | 'errors' | 'done' | 'rejected';

export interface LedgerOptions {
  /** the spool as the test sees it (for a cluster: the backing directory) */
  spool: string;
  archive?: string;
  errors?: string;
  /** local scratch space: WORK/pids (what jobs ran), WORK/canary */
  work: string;
  /** the paths the daemons see the spool under (cluster mounts); default [spool] */
  seenAs?: string[];
}

type Rec = Record<string, unknown>;

interface Entry { dir: string; name: Buffer; expect?: Place[] }

const groupOf = (dir: string): string => (dir === '' ? 'default' : dir);
const key = (group: string, name: Buffer): string => `${group}\0${name.toString('latin1')}`;
const show = (k: string): string => JSON.stringify(k.replace('\0', '/'));

function nameOf(r: Rec): Buffer {
  return typeof r.name_b64 === 'string' ? Buffer.from(r.name_b64, 'base64') : Buffer.from(String(r.name));
}

function list(dir: string | Buffer): Buffer[] {
  try { return fs.readdirSync(dir, { encoding: 'buffer' }); } catch { return []; }
}

function readRec(p: string | Buffer): Rec | null {
  try {
    const v = JSON.parse(fs.readFileSync(p, 'utf8')) as unknown;
    return typeof v === 'object' && v !== null && 'id' in v && 'status' in v ? v as Rec : null;
  } catch { return null; }
}

const isFinal = (r: Rec): boolean => r.status !== 'interrupted' && r.status !== 'rejected' && r.retry_at === undefined;

/** Whether pid is a live (not zombie) process whose environment has `marker` (NUL-delimited). */
function aliveWith(pid: number, marker: Buffer): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z') return false;
    const env = Buffer.concat([Buffer.from([0]), fs.readFileSync(`/proc/${pid}/environ`)]);
    return env.indexOf(marker) >= 0;
  } catch { return false; }
}

function killHard(pid: number): void {
  for (const target of [-pid, pid]) { try { process.kill(target, 'SIGKILL'); } catch { /* not a group leader, or gone */ } }
}

export class Ledger {
  readonly pids: string;
  private readonly jobs = new Map<string, Entry>();
  private canaries = 0;
  /** history lines cut short by a kill -9 of their writer (tolerated: see history()) */
  tornHistoryLines = 0;

  constructor(t: TestLike, readonly opts: LedgerOptions) {
    this.pids = path.join(opts.work, 'pids');
    fs.mkdirSync(this.pids, { recursive: true });
    // whatever the checks found or not: nothing of this test's jobs outlives it
    t.teardown(() => { for (const pid of this.survivors()) killHard(pid); });
  }

  /**
   * Shell lines a job runs first: its pid and job id into WORK/pids/PID.
   * Children a job starts in the background are recorded with recordChild.
   */
  get recordPid(): string {
    return `echo "$$ $PMJQ_JOB_ID" >> '${this.pids}'/$$`;
  }

  /** Shell line recording the pid of the last background child ($!). */
  get recordChild(): string {
    return `echo "$! $PMJQ_JOB_ID" >> '${this.pids}'/$$`;
  }

  /** Remember a job submitted by other means (spool-relative dir, '' = top level). */
  add(dir: string, name: string | Buffer, expect?: Place | Place[]): void {
    const n = typeof name === 'string' ? Buffer.from(name) : name;
    this.jobs.set(key(groupOf(dir), n), { dir, name: n, expect: expect === undefined ? undefined : ([] as Place[]).concat(expect) });
  }

  /** The user removed it (e.g. with its group directory): it is no longer expected anywhere. */
  withdraw(dir: string, name: string | Buffer): void {
    this.jobs.delete(key(groupOf(dir), typeof name === 'string' ? Buffer.from(name) : name));
  }

  /** Drop an executable job (atomically, as users are told to) and remember it. */
  drop(dir: string, name: string | Buffer, body: string, expect?: Place | Place[], mode = 0o755): string {
    const p = dropJob(path.join(this.opts.spool, dir), name, body, mode);
    this.add(dir, name, expect);
    return p;
  }

  get size(): number { return this.jobs.size; }

  /**
   * Invariant 5: drop a fresh job and wait until it has run (its marker
   * file exists). Returns how long that took.
   */
  async canary(timeoutMs = 10_000, dir = ''): Promise<number> {
    const n = ++this.canaries;
    const marks = path.join(this.opts.work, 'canary');
    fs.mkdirSync(marks, { recursive: true });
    const mark = path.join(marks, String(n));
    const t0 = Date.now();
    this.drop(dir, `canary-${n}`, `#!/bin/sh\n${this.recordPid}\necho "$PMJQ_JOB_ID" > '${mark}'\n`, this.opts.archive ? 'archive' : 'done');
    await waitFor(`canary job ${n} to run`, () => fs.existsSync(mark), timeoutMs);
    return Date.now() - t0;
  }

  /** Live processes of this test's jobs: by recorded pid (with its job id), and by PMJQ_SPOOL. */
  survivors(): number[] {
    const out = new Set<number>();
    for (const f of list(this.pids)) {
      let text = '';
      try { text = fs.readFileSync(path.join(this.pids, f.toString()), 'utf8'); } catch { continue; }
      for (const line of text.split('\n')) {
        const [pid, id] = line.split(' ');
        if (pid && id && aliveWith(Number(pid), Buffer.from(`\0PMJQ_JOB_ID=${id}\0`))) out.add(Number(pid));
      }
    }
    const markers = (this.opts.seenAs ?? [this.opts.spool]).map((s) => Buffer.from(`\0PMJQ_SPOOL=${s}\0`));
    for (const e of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(e)) continue;
      if (markers.some((m) => aliveWith(Number(e), m))) out.add(Number(e));
    }
    return [...out];
  }

  /** Where each job is, by key; plus entries found that no test submitted. */
  places(): { at: Map<string, Place[]>; unknown: string[]; records: Map<Place, Rec[]>; problems: string[] } {
    const s = this.opts.spool;
    const state = path.join(s, '.pmjq');
    const at = new Map<string, Place[]>();
    const unknown: string[] = [];
    const problems: string[] = [];
    const records = new Map<Place, Rec[]>();
    const put = (k: string, p: Place): void => {
      if (!this.jobs.has(k)) { unknown.push(`${p}: ${show(k)}`); return; }
      at.set(k, [...(at.get(k) ?? []), p]);
    };
    for (const [k, e] of this.jobs) {
      try { fs.lstatSync(Buffer.concat([Buffer.from(path.join(s, e.dir) + '/'), e.name])); put(k, 'queued'); } catch { /* not queued */ }
    }
    const metaDirs = (root: string, place: Place): void => {
      for (const d of list(root)) {
        if (place === 'claimed' && d[0] === 0x40) continue; // '@': a group's flat entries, above
        const dir = path.join(root, d.toString('latin1'));
        let m: Rec;
        try { m = JSON.parse(fs.readFileSync(path.join(dir, '.job.json'), 'utf8')) as Rec; } catch {
          problems.push(`${place}: ${dir} has no readable .job.json`);
          continue;
        }
        if (m.script !== undefined) continue; // a sub-job: lives in memory, not a submitted file
        put(key(String(m.group), nameOf(m)), place);
      }
    };
    for (const area of list(path.join(state, 'claimed'))) {
      const root = path.join(state, 'claimed', area.toString('latin1'));
      // a job claimed from the spool is @DIR/NAME (its log @DIR/.NAME=ID.log beside it), any other a directory ID/
      for (const sub of list(root)) {
        const s = sub.toString('latin1');
        if (!s.startsWith('@')) continue;
        const dir = Buffer.from(s.slice(1), 'latin1').toString('utf8').replace(/%3D/g, '=').replace(/%25/g, '%');
        for (const f of list(path.join(root, s))) {
          if (f[0] !== 0x2e) put(key(dir === '' ? 'default' : dir, f), 'claimed');
        }
      }
      metaDirs(root, 'claimed');
    }
    metaDirs(path.join(state, 'retry'), 'retry');
    for (const d of list(path.join(state, 'rejected'))) {
      const r = readRec(path.join(state, 'rejected', d.toString('latin1'), '.reject.json'));
      if (!r) { problems.push(`rejected: ${d.toString('latin1')} has no readable .reject.json`); continue; }
      records.set('rejected', [...(records.get('rejected') ?? []), r]);
      put(key(String(r.group), nameOf(r)), 'rejected');
    }
    const recordDir = (dir: string | undefined, place: Place): void => {
      if (dir === undefined) return;
      for (const f of list(dir)) {
        if (!f.toString('latin1').endsWith('.json')) continue;
        const r = readRec(Buffer.concat([Buffer.from(dir + '/'), f]));
        if (!r) continue; // a job file of its own whose name ends in .json
        records.set(place, [...(records.get(place) ?? []), r]);
        if (r.parent !== null && r.parent !== undefined) continue; // a sub-job's record
        put(key(String(r.group), nameOf(r)), place);
        // (the path is exact only for UTF-8 names: others are shown lossily, their bytes in name_b64)
        if (typeof r.archive === 'string' && r.name_b64 === undefined && !fs.existsSync(r.archive)) problems.push(`${place}: record ${String(r.id)} names ${r.archive}, which does not exist`);
      }
    };
    const errorsApart = this.opts.errors !== undefined && this.opts.errors !== this.opts.archive;
    recordDir(this.opts.archive, 'archive');
    if (errorsApart) recordDir(this.opts.errors, 'errors');
    recordDir(path.join(state, 'done'), 'done');
    // an archive file without its record (a half-finished archive step)
    for (const dir of [this.opts.archive, errorsApart ? this.opts.errors : undefined]) {
      if (dir === undefined) continue;
      const all = new Set(list(dir).map((b) => b.toString('latin1')));
      for (const f of all) {
        // a staging copy (archive on another filesystem) outlives its job's archive step only if nobody recovered it
        if (f.startsWith('.pmjq-staging.')) { problems.push(`${dir}: staging copy ${JSON.stringify(f)} left behind`); continue; }
        if (f.startsWith('.')) continue; // not pmjq's: archive entries start with a timestamp
        if (f.endsWith('.json') && readRec(Buffer.concat([Buffer.from(dir + '/'), Buffer.from(f, 'latin1')])) !== null) continue;
        const base = f.endsWith('.log') && !all.has(`${f}.json`) ? f.slice(0, -4) : f;
        if (!all.has(`${base}.json`)) problems.push(`${dir}: ${JSON.stringify(f)} has no record beside it`);
      }
    }
    return { at, unknown, records, problems };
  }

  /** History records of the spool (every node's file, rotated generations too); unparsable lines are problems. */
  history(problems: string[]): Rec[] {
    const dir = path.join(this.opts.spool, '.pmjq/history');
    const out: Rec[] = [];
    for (const f of list(dir)) {
      const text = fs.readFileSync(path.join(dir, f.toString()), 'utf8');
      const lines = text.split('\n');
      lines.forEach((line, i) => {
        if (!line) return;
        try {
          out.push(JSON.parse(line) as Rec);
        } catch {
          // the last line of a file, without its newline: an append cut short by
          // a kill -9 of its node (one write(2) can be torn on FUSE or NFS); the
          // node is gone (a new pmjq writes a new file) and the node that
          // recovered the job wrote the whole line in its own history
          if (i === lines.length - 1) this.tornHistoryLines++;
          else problems.push(`history ${f.toString()}:${i + 1} is not JSON: ${line.slice(0, 80)}`);
        }
      });
    }
    return out;
  }

  /**
   * Check invariants 1–4. `stopped`: every daemon of the test has exited
   * (only then must the claimed areas be empty). `historyGone`: ids of
   * archived jobs whose history the test removed with the spool. Returns the history for
   * the test's own checks.
   */
  check(t: TestLike, stopped: boolean, historyGone: string[] = []): Rec[] {
    const { at, unknown, records, problems } = this.places();
    const misplaced: string[] = [];
    for (const [k, e] of this.jobs) {
      const p = at.get(k) ?? [];
      if (p.length !== 1) misplaced.push(`${show(k)} is in ${p.length} places${p.length ? `: ${p.join(', ')}` : ''}`);
      else if (e.expect && !e.expect.includes(p[0]!)) misplaced.push(`${show(k)} is ${p[0]}, expected ${e.expect.join(' or ')}`);
    }
    t.same(misplaced, [], `invariant: each of the ${this.jobs.size} submitted jobs is in exactly one place`);
    t.same(unknown, [], 'invariant: nothing in any place that was not submitted');

    const hist = this.history(problems);
    const byId = new Map<string, Rec[]>();
    for (const h of hist) byId.set(String(h.id), [...(byId.get(String(h.id)) ?? []), h]);
    const mismatch: string[] = [];
    const finals = new Set<string>();
    for (const place of ['archive', 'errors', 'done'] as Place[]) {
      for (const r of records.get(place) ?? []) {
        if (historyGone.includes(String(r.id))) continue; // its history went with a spool the test removed
        const same = (byId.get(String(r.id)) ?? []).filter((h) => h.status === r.status && h.attempt === r.attempt && h.archive === r.archive);
        if (same.length !== 1) mismatch.push(`${place} record ${String(r.id)} (${String(r.status)}, attempt ${String(r.attempt)}) has ${same.length} matching history records`);
        finals.add(`${String(r.id)}/${String(r.attempt)}`);
      }
    }
    for (const h of hist) {
      if (isFinal(h) && !finals.has(`${String(h.id)}/${String(h.attempt)}`)) mismatch.push(`history record ${String(h.id)} (${String(h.status)}, attempt ${String(h.attempt)}) has no archived record`);
    }
    for (const r of records.get('rejected') ?? []) {
      if (!(byId.get(String(r.id)) ?? []).some((h) => h.status === 'rejected')) mismatch.push(`rejected entry ${String(r.id)} has no history record`);
    }
    t.same(mismatch, [], `invariant: the history (${hist.length} records) matches the archive`);
    t.same(problems, [], 'invariant: no half-written entry or record; no history line cut short but a dead node\'s last');
    if (this.tornHistoryLines) t.comment(`history lines cut short by a kill -9 (their job's whole line is in the recoverer's history): ${this.tornHistoryLines}`);

    if (stopped) {
      const claimedRoot = path.join(this.opts.spool, '.pmjq/claimed');
      const left: string[] = [];
      for (const a of list(claimedRoot)) {
        const inside = list(path.join(claimedRoot, a.toString('latin1'))).map((b) => b.toString('latin1'));
        left.push(`${a.toString('latin1')}/${inside.length ? ` (${inside.join(', ')})` : ''}`);
      }
      t.same(left, [], 'invariant: no claimed area is left once the daemons are stopped');
    }

    const alive = this.survivors();
    for (const pid of alive) {
      let cmd = '?';
      try { cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim(); } catch { /* gone */ }
      t.comment(`surviving job process ${pid}: ${cmd}`);
      killHard(pid);
    }
    t.same(alive, [], 'invariant: no process of the test\'s jobs survives (by recorded pid and by environment)');
    return hist;
  }
}

/** A small seeded PRNG (mulberry32): the same seed gives the same run. */
export function prng(seed: number): { next(): number; int(lo: number, hi: number): number; pick<T>(a: readonly T[]): T; bytes(n: number): Buffer } {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
  const int = (lo: number, hi: number): number => lo + Math.floor(next() * (hi - lo + 1));
  return {
    next,
    int,
    pick: (arr) => arr[int(0, arr.length - 1)]!,
    bytes: (n) => { const b = Buffer.alloc(n); for (let i = 0; i < n; i++) b[i] = int(0, 255); return b; },
  };
}

/** The seed of a randomised test: PMJQ_SEED if set (to replay a failure), else a fresh one. */
export function seedFor(t: { comment(...a: unknown[]): void }, what: string, offset = 0): number {
  const fixed = process.env.PMJQ_SEED;
  const seed = fixed !== undefined && fixed !== '' ? (Number(fixed) + offset) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
  t.comment(`${what}: seed ${seed} (replay with PMJQ_SEED=${fixed !== undefined && fixed !== '' ? fixed : (seed - offset) >>> 0})`);
  return seed;
}

/** Soak mode (PMJQ_SOAK=1, or --soak in PMJQ_TEST_ARGS): the long runs of issue 9. */
export const SOAK = process.env.PMJQ_SOAK === '1' || /(^|\s)--soak(\s|$)/.test(process.env.PMJQ_TEST_ARGS ?? '');

/** Mount a small tmpfs at dir (root only); unmounted (lazily if busy) at teardown. */
export function tmpfs(t: TestLike, dir: string, size = '256k'): { remount(opts: string): void; unmount(): void } {
  fs.mkdirSync(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  t.teardown(() => {
    try { execFileSync('umount', [dir], { stdio: 'ignore' }); } catch { try { execFileSync('umount', ['-l', dir], { stdio: 'ignore' }); } catch { /* gone */ } }
  });
  return {
    remount: (o) => { execFileSync('mount', ['-o', `remount,${o}`, dir]); },
    unmount: () => { execFileSync('umount', [dir]); },
  };
}

// field and eventLines: helpers.ts (re-exported here for the fault tests)
export { eventLines, field } from './helpers.js';
