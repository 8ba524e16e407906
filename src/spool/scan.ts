// Finding jobs: one pass over each directory (the spool's top level, each
// group directory, the retry area). A name is lstat'ed once, when it is first
// seen; after that a rescan only stamps the names it lists, so a rescan of
// 100 000 queued jobs costs a directory read, no stats and no allocation that
// outlives the pass.

import fs from 'node:fs';
import path from 'node:path';
import type { Candidate } from './candidate.js';
import { classify, isHidden, type ClassifyContext } from './classify.js';
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
}

export class Scanner {
  private readonly dirs = new Map<string, DirState>();
  private readonly retryEntries = new Map<string, Candidate>();
  /** passes so far: each stamps the entries it lists */
  private scans = 0;

  constructor(
    private readonly layout: Layout,
    private readonly ctx: Omit<ClassifyContext, 'topLevel'>,
    private readonly events: ScanEvents,
    private readonly log: Logger,
    /** only these groups are served (undefined = all) */
    private readonly serves: (group: string) => boolean = () => true,
  ) {}

  /** Rescan everything: top level, every group, the retry area. */
  scanAll(): void {
    const scan = ++this.scans;
    const groupsNow = new Set<string>(['']);
    // the top level is the group "default": served only if --groups names it
    const top = this.serves(groupOf('')) ? this.dirs.get('') ?? this.addDir('') : null;
    let listed = 0;
    const ok = this.list('', (d) => {
      if (isHidden(d.name)) return;
      if (d.isDirectory()) {
        const bytes = names.fromKey(d.name);
        const dir = names.display(bytes);
        if (names.isUtf8(bytes) && !dir.includes('\n')) groupsNow.add(dir);
      } else if (top !== null && this.visit('', top, d.name, scan)) {
        listed++;
      }
    });
    if (!ok) return;
    if (top !== null) this.sweep(top, listed, scan);
    for (const dir of [...this.dirs.keys()]) {
      if (!groupsNow.has(dir)) this.forgetDir(dir);
    }
    for (const dir of groupsNow) {
      if (dir === '') continue;
      if (!this.dirs.has(dir)) this.events.groupSeen(dir, true);
      if (!this.serves(groupOf(dir))) { this.dirs.set(dir, { entries: new Map() }); continue; }
      this.scanGroup(dir, scan);
    }
    this.scanRetry();
  }

  /** Rescan one directory (a watcher saw something there). */
  scanDir(dir: string): void {
    if (!this.serves(groupOf(dir))) return;
    if (dir === '') { this.scanAll(); return; }
    if (!this.dirs.has(dir)) {
      try { if (!fs.statSync(this.layout.groupDir(dir)).isDirectory()) return; } catch { return; }
      this.events.groupSeen(dir, true);
    }
    if (!this.scanGroup(dir, ++this.scans)) this.forgetDir(dir);
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
    const state: DirState = { entries: new Map() };
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

  /** One group directory: every name listed is visited, then those not listed are swept. False if it is gone. */
  private scanGroup(dir: string, scan: number): boolean {
    const state = this.dirs.get(dir) ?? this.addDir(dir);
    let listed = 0;
    const ok = this.list(dir, (d) => {
      if (!isHidden(d.name) && this.visit(dir, state, d.name, scan)) listed++;
    });
    if (ok) this.sweep(state, listed, scan);
    return ok;
  }

  // A directory is read as a stream of entries, not as readdirSync's array:
  // with 100 000 names the array lives long enough to be promoted to the old
  // generation, and a rescan every second then grows the daemon by tens of
  // megabytes between major collections. Names are read as 'latin1' strings,
  // which are their map keys (one char per byte, lossless, see names.key).

  /** Call visit for each entry of a directory; false if it cannot be read (a log line unless it is simply gone). */
  private list(dir: string, visit: (d: fs.Dirent<string>) => void): boolean {
    let handle: fs.Dir;
    try {
      handle = fs.opendirSync(this.layout.groupDir(dir), { encoding: 'latin1', bufferSize: 1024 });
    } catch (err) {
      if (!isErrno(err, 'ENOENT', 'ENOTDIR')) this.log.warn('scan-failed', { dir: this.layout.groupDir(dir), error: errText(err) });
      return false;
    }
    try {
      for (let d = handle.readSync(); d !== null; d = handle.readSync()) visit(d as fs.Dirent<string>);
    } catch (err) {
      this.log.warn('scan-failed', { dir: this.layout.groupDir(dir), error: errText(err) });
      return false;
    } finally {
      handle.closeSync();
    }
    return true;
  }

  /**
   * A listed name: a known candidate is stamped (no stat); a new or ignored
   * name is looked at. True if the name is now an entry stamped by this scan.
   */
  private visit(dir: string, state: DirState, k: string, scan: number): boolean {
    const seen = state.entries.get(k);
    if (seen !== undefined && !isIgnored(seen)) { seen.listed = scan; return true; }
    this.examine(dir, state, names.fromKey(k), k, scan);
    return state.entries.get(k)?.listed === scan;
  }

  /** Forget the names a scan did not list (claimed by another node, removed): none if every entry was. */
  private sweep(state: DirState, listed: number, scan: number): void {
    if (listed === state.entries.size) return; // names are unique in a listing
    for (const [k, e] of state.entries) {
      if (e.listed === scan) continue;
      if (!isIgnored(e)) e.gone = true;
      state.entries.delete(k);
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
      return;
    }
    const verdict = classify(st, { ...this.ctx, topLevel: dir === '' });
    switch (verdict.kind) {
      case 'job': {
        const c: Candidate = {
          group: groupOf(dir), dir, name, key: k,
          mtimeMs: st.mtimeMs, size: st.size, uid: st.uid,
          seenAt: Date.now(), gone: false, listed: scan,
        };
        state.entries.set(k, c);
        this.events.found(c);
        return;
      }
      case 'ignore':
        state.entries.set(k, { ignored: true, listed: scan });
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
   * A job waiting in retry/ as a candidate. Its order key is its due time
   * until it is due; the scheduler then orders it by its creation time.
   */
  addRetry(entry: string, due: number, meta: JobMeta): void {
    const c: Candidate = {
      group: meta.group, dir: meta.dir, name: Buffer.from(meta.file), key: entry,
      mtimeMs: due, size: 0, uid: meta.owner, seenAt: Date.now(), gone: false, listed: 0,
      retry: { entry, meta },
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
      let meta;
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
