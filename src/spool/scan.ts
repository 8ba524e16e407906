// Finding jobs: one pass over each directory (the spool's top level, each
// group directory, the retry area). A name is lstat'ed once, when it is first
// seen; after that a rescan only stamps the names it lists, so a rescan of
// 100 000 queued jobs costs a directory read, no stats and no allocation that
// outlives the pass.

import fs from 'node:fs';
import path from 'node:path';
import type { Candidate } from './candidate.js';
import { classify, isHidden, type ClassifyContext } from './classify.js';
import { clearStaleBell } from './doorbell.js';
import { DirStamp, type DirLook } from './dirstamp.js';
import { groupOf, type Layout } from './layout.js';
import { readMeta, type JobMeta } from './meta.js';
import * as names from './names.js';
import { errText, isErrno } from '../util/fsx.js';
import type { Logger } from '../util/log.js';

export interface ScanEvents {
  /** a new job file (or a retry entry) to queue */
  found(c: Candidate): void;
  /** a file that must go to rejected/ */
  reject(dir: string, name: names.Name, reason: string): void;
  /** a group directory appeared or disappeared */
  groupSeen(dir: string, present: boolean): void;
}

/** A name seen that is not a job (yet): looked at again on every scan, in case it was made executable. */
interface Ignored { ignored: true; listed: number }

type Entry = Candidate | Ignored;
const isIgnored = (e: Entry): e is Ignored => 'ignored' in e;

interface DirState {
  /** names seen in this directory: candidates and ignored (non-executable) files */
  entries: Map<string, Entry>;
  /** the pace of poll()'s looks at it */
  pace: Pace;
  /** the keys of its ignored names: a chmod +x changes no directory stamp, so poll() looks at these by name */
  ignored: Set<string>;
}

/** When poll() looks at a directory next (performance.now() times). */
interface Pace {
  stamp: DirStamp;
  /** last seen changed (or first seen) */
  changedAt: number;
  every: number;
  next: number;
}

// a directory first seen is idle: the scan that found it has just read it
const newPace = (): Pace => ({ stamp: new DirStamp(), changedAt: -Infinity, every: 0, next: 0 });

/** a directory unchanged this long is looked at less and less often */
export const IDLE_AFTER_MS = 30_000;
/** ... down to once every IDLE_CAP_MS, or less often with many groups: */
export const IDLE_CAP_MS = 30_000;
/** ... so that idle groups cost at most this many looks a second, however many there are */
export const IDLE_LOOKS_PER_S = 0.5;

/** a yielding scan gives the event loop a turn this often (ms) */
const YIELD_MS = 1;

/** (√5 − 1) / 2: adding it modulo 1 spreads any number of points evenly */
const GOLDEN = 0.6180339887498949;

/** What a poll() did. */
export interface Polled {
  /** the top level changed: a job or group dropped there, or a doorbell (pmjqctl) */
  rang: boolean;
  /** the spool directories ('' = top level) read because they changed */
  changed: string[];
  /** the group directories looked at (their settings files may be looked at too, at the same pace) */
  looked: string[];
}

export class Scanner {
  private readonly dirs = new Map<string, DirState>();
  private readonly retryEntries = new Map<string, Candidate>();
  /** passes so far: each stamps the entries it lists */
  private scans = 0;
  /** where in the idle cap the last directory settled was first looked at (a fraction of it) */
  private spread = 0;
  /** a yielding scan is under way: no other scan may interleave with it (its sweep would drop their stamps) */
  private scanning = false;
  /** poll(): the top level is looked at every poll, each group at its own pace */
  private readonly topStamp = new DirStamp();
  private readonly retryPace = newPace();
  /** performance.now() when the top level's ignored names are looked at again */
  private nextTopRecheck = 0;
  private pollMs = 1000;
  /** NFS: a stamp is read from an open directory (an attribute cache could be out of date) */
  private openToLook = false;
  /** the file server's clock minus ours (from our heartbeat's mtime), once known */
  fsSkewMs: number | undefined;

  constructor(
    private readonly layout: Layout,
    private readonly ctx: Omit<ClassifyContext, 'topLevel'>,
    private readonly events: ScanEvents,
    private readonly log: Logger,
    /** only these groups are served (undefined = all) */
    private readonly serves: (group: string) => boolean = () => true,
  ) {}

  /** A yielding scan (the first, of a backlog perhaps) is not over: more jobs may be found. */
  get inProgress(): boolean { return this.scanning; }

  /** Rescan everything: top level, every group, the retry area. */
  scanAll(): void {
    if (this.scanning) return; // a yielding scan is under way and covers it
    for (const _ of this.steps()) { /* all at once */ }
  }

  /**
   * The same scan, giving the event loop a turn every YIELD_MS: the first
   * scan of a big backlog lstat's every file (a second or more for 100 000
   * queued jobs), and a signal must not wait for it. Returns false if
   * `stop()` ended it early.
   */
  async scanAllYielding(stop: () => boolean): Promise<boolean> {
    this.scanning = true;
    try {
      let turn = performance.now();
      for (const _ of this.steps()) {
        if (performance.now() - turn < YIELD_MS) continue;
        await new Promise((resolve) => setImmediate(resolve));
        if (stop()) return false;
        turn = performance.now();
      }
      return true;
    } finally {
      this.scanning = false;
    }
  }

  /** How poll() is paced: the daemon's --poll, and whether the spool is on NFS (dirstamp.ts). */
  pacing(pollMs: number, nfs: boolean): void {
    this.pollMs = pollMs;
    this.openToLook = nfs;
  }

  /** The file server's time now, if known. */
  fsNow(): number | undefined {
    return this.fsSkewMs === undefined ? undefined : Date.now() + this.fsSkewMs;
  }

  /** The longest pause between two looks at an idle directory. */
  get idleCapMs(): number {
    return Math.max(IDLE_CAP_MS, ((this.dirs.size + 1) * 1000) / IDLE_LOOKS_PER_S);
  }

  /**
   * The periodic look (every --poll), cheap when nothing changed: a
   * directory is stat'ed, and read only if it changed (dirstamp.ts). The top
   * level is looked at every time; a group or the retry area unchanged for
   * IDLE_AFTER_MS is looked at less and less often, down to once every
   * idleCapMs. A change of the top level (a job or a group dropped there, or
   * the doorbell of `pmjqctl`, doorbell.ts) has every directory looked at at
   * once: so a job submitted with pmjqctl, or dropped at the top level or
   * into a busy group, is found within one poll; one moved by hand into a
   * group idle for long, within idleCapMs. A name seen but not executable
   * is looked at again by name (a chmod changes no directory's stamp).
   */
  poll(): Polled {
    const out: Polled = { rang: false, changed: [], looked: [] };
    if (this.scanning) return out;
    const now = performance.now();
    const scan = ++this.scans;
    const top = this.topStamp.look(this.layout.spool, this.openToLook, this.fsNow(), now);
    if (top === 'gone') return out;
    out.rang = top === 'changed';
    if (top !== 'same') {
      if (!drain(this.topPass(scan))) { this.topStamp.reset(); return out; }
      out.changed.push('');
    } else if (now >= this.nextTopRecheck) {
      // the top level is looked at every poll: its ignored names at the idle pace
      this.nextTopRecheck = now + this.idleCapMs;
      const top = this.dirs.get('');
      if (top) this.recheckIgnored('', top, scan);
    }
    const cap = this.idleCapMs;
    for (const [dir, state] of this.dirs) {
      if (dir === '' || (!out.rang && now < state.pace.next) || !this.serves(groupOf(dir))) continue;
      out.looked.push(dir);
      const look = state.pace.stamp.look(this.layout.groupDir(dir), this.openToLook, this.fsNow(), now);
      // a group that went is forgotten by the top level's listing (its removal changed it)
      if (look === 'gone') continue;
      if (look !== 'same' && !drain(this.pass(dir, state, scan))) state.pace.stamp.reset();
      if (look === 'same') this.recheckIgnored(dir, state, scan);
      if (look === 'changed') out.changed.push(dir);
      this.paced(state.pace, look, now, cap);
    }
    if (out.rang || now >= this.retryPace.next) this.pollRetry(now, cap);
    return out;
  }

  /** The retry area at its pace (other nodes' failed jobs, `pmjqctl retry`). */
  pollRetry(now = performance.now(), cap = this.idleCapMs): void {
    const look = this.retryPace.stamp.look(this.layout.retry, this.openToLook, this.fsNow(), now);
    if (look === 'changed' || look === 'unsure') this.scanRetry();
    if (look !== 'gone') this.paced(this.retryPace, look, now, cap);
  }

  /** Names seen but not jobs (not executable, yet): looked at again by name, one lstat each. */
  private recheckIgnored(dir: string, state: DirState, scan: number): void {
    for (const k of [...state.ignored]) this.examine(dir, state, names.fromKey(k), k, scan);
  }

  private paced(p: Pace, look: DirLook, now: number, cap: number): void {
    if (look === 'changed') p.changedAt = now;
    p.every = now - p.changedAt < IDLE_AFTER_MS ? this.pollMs : Math.min(cap, Math.max(this.pollMs, p.every * 2));
    // polls tick every pollMs: half a tick early, so that the look falls on the tick due;
    // at the idle cap, a little jitter keeps many groups from being looked at in one burst
    p.next = now + p.every * (p.every === cap ? 0.8 + 0.4 * Math.random() : 1) - this.pollMs / 2;
  }

  /**
   * A directory the full scan has just read: its stamp taken before, idle
   * from now on, first looked at some time within the idle cap. The first
   * looks are spread evenly over the cap, however many directories there
   * are (each the golden ratio of the cap after the one before, modulo the
   * cap): random ones bunched up, as many as half again the average in some
   * half-minute.
   */
  private settled(p: Pace, dir: string): DirLook {
    const look = p.stamp.look(dir, this.openToLook, this.fsNow());
    p.changedAt = -Infinity;
    p.every = this.idleCapMs;
    this.spread = (this.spread + GOLDEN) % 1;
    p.next = performance.now() + this.spread * p.every;
    return look;
  }

  /** Rescan one directory (a watcher saw something there). */
  scanDir(dir: string): void {
    if (this.scanning || !this.serves(groupOf(dir))) return;
    if (dir === '') { this.scanAll(); return; }
    if (!this.dirs.has(dir)) {
      try { if (!fs.statSync(this.layout.groupDir(dir)).isDirectory()) return; } catch { return; }
      this.events.groupSeen(dir, true);
    }
    for (const _ of this.pass(dir, this.dirs.get(dir) ?? this.addDir(dir), ++this.scans)) { /* all at once */ }
  }

  /** A watcher reported one name: look at it without reading the whole directory. */
  hint(dir: string, name: names.Name): void {
    if (isHidden(name)) return;
    if (!this.serves(groupOf(dir))) return;
    const state = this.dirs.get(dir) ?? this.addDir(dir);
    const k = names.key(name);
    const seen = state.entries.get(k);
    if (seen !== undefined && !isIgnored(seen)) return;
    this.examine(dir, state, name, k, this.scans);
  }

  /** The scheduler claimed (or gave up on) this candidate: it left the spool. */
  forget(c: Candidate): void {
    c.gone = true;
    if (c.retry) { this.retryEntries.delete(c.retry.entry); return; }
    const state = this.dirs.get(c.dir);
    if (state?.entries.get(c.key) === c) state.entries.delete(c.key);
  }

  /** Number of names remembered (for status and the memory budget). */
  get knownCount(): number {
    let n = this.retryEntries.size;
    for (const s of this.dirs.values()) n += s.entries.size;
    return n;
  }

  private addDir(dir: string): DirState {
    const state: DirState = { entries: new Map(), pace: newPace(), ignored: new Set() };
    this.dirs.set(dir, state);
    return state;
  }

  private forgetDir(dir: string): void {
    const state = this.dirs.get(dir);
    if (!state) return;
    for (const e of state.entries.values()) if (!isIgnored(e)) e.gone = true;
    this.dirs.delete(dir);
    if (dir !== '') this.events.groupSeen(dir, false);
  }

  /** The full scan: one step per file looked at (lstat). Stamps are taken first, so that poll() knows what it has seen. */
  private *steps(): Generator<void, void> {
    const scan = ++this.scans;
    this.topStamp.look(this.layout.spool, this.openToLook, this.fsNow());
    if (!(yield* this.topPass(scan))) { this.topStamp.reset(); return; }
    for (const [dir, state] of this.dirs) {
      if (dir === '' || !this.serves(groupOf(dir))) continue;
      if (this.settled(state.pace, this.layout.groupDir(dir)) === 'gone') continue;
      yield* this.pass(dir, state, scan);
    }
    this.settled(this.retryPace, this.layout.retry);
    this.scanRetry();
  }

  /** The top level: its jobs, and the group directories that appeared (announced) or went (forgotten). */
  private *topPass(scan: number): Generator<void, boolean> {
    const groupsNow = new Set<string>(['']);
    // the top level is the group "default": served only if --groups names it
    const top = this.serves(groupOf('')) ? this.dirs.get('') ?? this.addDir('') : null;
    const ok = yield* this.pass('', top, scan, (d) => {
      if (!d.isDirectory()) return false;
      const bytes = names.fromKey(d.name);
      const dir = names.display(bytes);
      if (names.isUtf8(bytes) && !dir.includes('\n')) groupsNow.add(dir);
      return true;
    });
    if (!ok) return false;
    for (const dir of [...this.dirs.keys()]) {
      if (!groupsNow.has(dir)) this.forgetDir(dir);
    }
    for (const dir of groupsNow) {
      if (dir === '' || this.dirs.has(dir)) continue;
      this.events.groupSeen(dir, true);
      this.addDir(dir);
    }
    return true;
  }

  // A directory is read as a stream of entries, not as readdirSync's array:
  // with 100 000 names the array lives long enough to be promoted to the old
  // generation, and a rescan every second then grows the daemon by tens of
  // megabytes between major collections. Names are read as 'latin1' strings,
  // which are their map keys (one char per byte, lossless, see names.key).

  /**
   * One pass over a directory: a known candidate listed is stamped (no
   * stat); a new or ignored name is looked at (one step); then the names not
   * listed are swept. `aside` takes the entries that are not names to visit
   * (the top level's group directories); `state` null: nothing is visited
   * (a top level whose group this node does not serve). False if the
   * directory cannot be read (a log line unless it is simply gone).
   */
  private *pass(dir: string, state: DirState | null, scan: number, aside?: (d: fs.Dirent<string>) => boolean): Generator<void, boolean> {
    const where = this.layout.groupDir(dir);
    let handle: fs.Dir;
    try {
      handle = fs.opendirSync(where, { encoding: 'latin1', bufferSize: 1024 });
    } catch (err) {
      if (!isErrno(err, 'ENOENT', 'ENOTDIR')) this.log.warn('scan-failed', { dir: where, error: errText(err) });
      return false;
    }
    let listed = 0;
    try {
      for (let d = handle.readSync() as fs.Dirent<string> | null; d !== null; d = handle.readSync() as fs.Dirent<string> | null) {
        if (isHidden(d.name)) {
          if (dir === '') clearStaleBell(where, d.name);
          continue;
        }
        if (aside?.(d) || state === null) continue;
        const k = d.name;
        const seen = state.entries.get(k);
        if (seen !== undefined && !isIgnored(seen)) { seen.listed = scan; listed++; continue; }
        this.examine(dir, state, names.fromKey(k), k, scan);
        if (state.entries.get(k)?.listed === scan) listed++;
        yield;
      }
    } catch (err) {
      this.log.warn('scan-failed', { dir: where, error: errText(err) });
      return false;
    } finally {
      handle.closeSync();
    }
    if (state !== null) this.sweep(state, listed, scan);
    return true;
  }

  /** Forget the names a scan did not list (claimed by another node, removed): none if every entry was. */
  private sweep(state: DirState, listed: number, scan: number): void {
    if (listed === state.entries.size) return; // names are unique in a listing
    for (const [k, e] of state.entries) {
      if (e.listed === scan) continue;
      if (!isIgnored(e)) e.gone = true;
      state.entries.delete(k);
      state.ignored.delete(k);
    }
  }

  /** lstat a name and classify it: a candidate (announced), ignored, a group, or rejected. */
  private examine(dir: string, state: DirState, name: names.Name, k: string, scan: number): void {
    const full = names.join(this.layout.groupDir(dir), name);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(full);
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) this.log.warn('stat-failed', { file: names.display(full), error: errText(err) });
      state.entries.delete(k);
      state.ignored.delete(k);
      return;
    }
    state.ignored.delete(k);
    const verdict = classify(st, { ...this.ctx, topLevel: dir === '' });
    switch (verdict.kind) {
      case 'job': {
        const c: Candidate = {
          group: groupOf(dir), dir, name, key: k,
          orderMs: st.mtimeMs, mtimeMs: st.mtimeMs, size: st.size, seenUid: st.uid,
          seenAt: Date.now(), gone: false, listed: scan,
        };
        state.entries.set(k, c);
        this.events.found(c);
        return;
      }
      case 'ignore':
        state.entries.set(k, { ignored: true, listed: scan });
        state.ignored.add(k);
        return;
      case 'group':
        // a directory appeared at the top level between readdir and lstat
        this.scanDir(names.display(name));
        return;
      case 'reject':
        state.entries.delete(k);
        this.events.reject(dir, name, verdict.reason);
        return;
    }
  }

  /**
   * A job waiting in retry/ as a candidate: due at `due`, ordered among its group's
   * jobs by its creation time.
   */
  addRetry(entry: string, due: number, meta: JobMeta): void {
    const c: Candidate = {
      group: meta.group, dir: meta.dir, name: Buffer.from(meta.file), key: entry,
      orderMs: Date.parse(meta.created) || due, mtimeMs: 0, size: 0, seenUid: meta.owner, seenAt: Date.now(), gone: false, listed: 0,
      retry: { entry, meta, dueMs: due },
    };
    this.retryEntries.set(entry, c);
    this.events.found(c);
  }

  /** Jobs waiting for another attempt: entries DUE.ID in .pmjq/retry. */
  scanRetry(): void {
    let list: string[];
    try {
      list = fs.readdirSync(this.layout.retry);
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) this.log.warn('scan-failed', { dir: this.layout.retry, error: errText(err) });
      return;
    }
    const present = new Set<string>();
    for (const entry of list) {
      if (isHidden(entry)) continue;
      present.add(entry);
      if (this.retryEntries.has(entry)) continue;
      const due = Number(entry.slice(0, entry.indexOf('.')));
      if (!Number.isFinite(due)) continue;
      let meta: JobMeta;
      try {
        meta = readMeta(path.join(this.layout.retry, entry));
      } catch (err) {
        // another node may be claiming it this very moment; a broken entry is reported once
        if (!isErrno(err, 'ENOENT')) this.log.warn('retry-entry-unreadable', { entry, error: errText(err) });
        if (!isErrno(err, 'ENOENT')) this.retryEntries.set(entry, { gone: true } as Candidate);
        continue;
      }
      if (!this.serves(meta.group)) continue;
      this.addRetry(entry, due, meta);
    }
    for (const [entry, c] of this.retryEntries) {
      if (!present.has(entry)) { c.gone = true; this.retryEntries.delete(entry); }
    }
  }
}

/** Run a scan generator to its end, all at once. */
function drain<T>(g: Generator<void, T>): T {
  for (;;) {
    const r = g.next();
    if (r.done) return r.value;
  }
}
