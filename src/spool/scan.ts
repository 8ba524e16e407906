// Finding jobs: one readdir per directory (the spool's top level, each group
// directory, the retry area). A name is lstat'ed once, when it is first seen;
// after that a rescan only compares names, so a rescan of 100 000 queued
// jobs costs a readdir and no stats.

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

interface DirState {
  /** names seen in this directory: candidates and ignored (non-executable) files */
  entries: Map<string, Candidate | 'ignored'>;
}

export class Scanner {
  private readonly dirs = new Map<string, DirState>();
  private readonly retryEntries = new Map<string, Candidate>();

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
    const top = this.readTop();
    if (top === null) return;
    const groupsNow = new Set<string>(['']);
    for (const d of top) {
      if (d.isDirectory() && !isHidden(d.name)) {
        const bytes = names.fromKey(d.name);
        const dir = names.display(bytes);
        if (names.isUtf8(bytes) && !dir.includes('\n')) groupsNow.add(dir);
      }
    }
    for (const dir of [...this.dirs.keys()]) {
      if (!groupsNow.has(dir)) this.forgetDir(dir);
    }
    // the top level is the group "default": served only if --groups names it
    if (this.serves(groupOf(''))) this.syncDir('', top);
    for (const dir of groupsNow) {
      if (dir === '') continue;
      if (!this.dirs.has(dir)) this.events.groupSeen(dir, true);
      if (!this.serves(groupOf(dir))) { this.dirs.set(dir, { entries: new Map() }); continue; }
      const list = this.readDir(dir);
      if (list !== null) this.syncDir(dir, list);
    }
    this.scanRetry();
  }

  /** Rescan one directory (a watcher saw something there). */
  scanDir(dir: string): void {
    if (!this.serves(groupOf(dir))) return;
    const list = dir === '' ? this.readTop() : this.readDir(dir);
    if (list === null) { if (dir !== '') this.forgetDir(dir); return; }
    if (dir !== '' && !this.dirs.has(dir)) this.events.groupSeen(dir, true);
    this.syncDir(dir, list);
  }

  /** A watcher reported one name: look at it without reading the whole directory. */
  hint(dir: string, name: names.Name): void {
    if (isHidden(name)) return;
    if (!this.serves(groupOf(dir))) return;
    const state = this.dirs.get(dir) ?? this.addDir(dir);
    const k = names.key(name);
    const seen = state.entries.get(k);
    if (seen !== undefined && seen !== 'ignored') return;
    this.examine(dir, state, name, k);
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
    for (const e of state.entries.values()) if (e !== 'ignored') e.gone = true;
    this.dirs.delete(dir);
    if (dir !== '') this.events.groupSeen(dir, false);
  }

  // Names are read as 'latin1' strings, which are their map keys (one char
  // per byte, lossless, see names.key): a Buffer per entry, as encoding
  // 'buffer' makes, costs several times more on a 100 000-entry directory.
  // Only the top level needs entry types (its directories are groups).

  /** The top level, with types; names are keys. */
  private readTop(): fs.Dirent<string>[] | null {
    return this.read('', () => fs.readdirSync(this.layout.spool, { withFileTypes: true, encoding: 'latin1' }));
  }

  /** A group directory: its names, as keys. */
  private readDir(dir: string): string[] | null {
    return this.read(dir, () => fs.readdirSync(this.layout.groupDir(dir), { encoding: 'latin1' }));
  }

  private read<T>(dir: string, readdir: () => T): T | null {
    try {
      return readdir();
    } catch (err) {
      if (!isErrno(err, 'ENOENT', 'ENOTDIR')) this.log.warn('scan-failed', { dir: this.layout.groupDir(dir), error: errText(err) });
      return null;
    }
  }

  private syncDir(dir: string, list: readonly (string | fs.Dirent<string>)[]): void {
    const state = this.dirs.get(dir) ?? this.addDir(dir);
    // the key of a listed name that can be a job, or null (hidden; a group at the top level: scanAll's)
    const keyOf = (d: string | fs.Dirent<string>): string | null =>
      typeof d === 'string' ? (isHidden(d) ? null : d) : isHidden(d.name) || d.isDirectory() ? null : d.name;
    let listed = 0;
    for (const d of list) {
      const k = keyOf(d);
      if (k === null) continue;
      listed++;
      const seen = state.entries.get(k);
      // known candidates need no stat; ignored (non-executable) files are
      // looked at again in case they were made executable since.
      if (seen === undefined || seen === 'ignored') this.examine(dir, state, names.fromKey(k), k);
    }
    // names are unique in a listing: as many entries as listed names means none left
    if (listed !== state.entries.size) {
      const present = new Set<string>();
      for (const d of list) { const k = keyOf(d); if (k !== null) present.add(k); }
      for (const [k, e] of state.entries) {
        if (!present.has(k)) {
          if (e !== 'ignored') e.gone = true;
          state.entries.delete(k);
        }
      }
    }
  }

  private examine(dir: string, state: DirState, name: names.Name, k: string): void {
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
          seenAt: Date.now(), gone: false,
        };
        state.entries.set(k, c);
        this.events.found(c);
        return;
      }
      case 'ignore':
        state.entries.set(k, 'ignored');
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
      mtimeMs: due, size: 0, uid: meta.owner, seenAt: Date.now(), gone: false,
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
