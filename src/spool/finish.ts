// Finishing a job (pmjq(5) RECORDS): the job file goes to the archive (or the
// errors directory) under a sortable UTC timestamp prefix, its log and record
// beside it, and the record is appended to this node's history. An archive
// entry is never overwritten: same-named jobs finishing in the same
// millisecond get distinct names.

import fs from 'node:fs';
import path from 'node:path';
import { type ClaimedEntry, toDirForm } from './claimed.js';
import { inGroupDir } from './groupdir.js';
import { ringDoorbell } from './doorbell.js';
import { LOG_FILE, META_FILE, REJECT_FILE, groupOf, hostName, stamp, type Layout } from './layout.js';
import { nameBytes, nameFields, type JobMeta } from './meta.js';
import * as names from './names.js';
import { setRecordPath, type JobRecord, type JobStatus } from './record.js';
import { exists, isErrno, linkNoReplace, moveNoReplace, removeTree, writeFileAtomic, type PathLike } from '../util/fsx.js';

const NAME_MAX = 255;
const HISTORY_ROTATE_BYTES = 64 * 1024 * 1024;

export interface FinishOptions {
  archive?: string;
  errors?: string;
  /** without an archive: how many finished jobs' logs and records to keep in .pmjq/done, and for how long */
  keep: number;
  keepAgeMs: number;
}

export interface Outcome {
  status: JobStatus;
  exitCode: number | null;
  signal: string | null;
  started: Date | null;
  finished: Date;
  error?: string;
}

export class Finisher {
  private historyFd: number | null = null;
  private historyBytes = 0;
  /** ids of this run's entries in .pmjq/done, oldest first, for --keep */
  private readonly kept: string[] = [];

  constructor(private readonly layout: Layout, private readonly node: string, private readonly opts: FinishOptions) {}

  logPath(job: ClaimedEntry): string {
    return job.log;
  }

  /**
   * Archive a job that ended. Throws if the archive cannot be written (full
   * disk, permissions): the job then stays in its claimed directory, intact,
   * and the caller tries again later.
   */
  archive(job: ClaimedEntry, outcome: Outcome): JobRecord {
    const meta = job.meta;
    const dest = outcome.status === 'done' ? this.opts.archive : this.opts.errors ?? this.opts.archive;
    const record = this.record(meta, outcome);
    const logSrc = this.logPath(job);
    // a sub-job's script belongs to its job tree: it is run, never moved
    const isSub = meta.script !== undefined;
    if (dest !== undefined) {
      const linked = isSub ? null : this.archiveJobFile(job, dest, outcome.finished);
      const base = linked?.base ?? null;
      let movedLog: Buffer | null = null;
      let wroteJson: Buffer | null = null;
      try {
        setRecordPath(record, 'archive', base);
        const logDst = base === null ? this.freeArchiveName(dest, meta, outcome.finished, '.log') : Buffer.concat([base, Buffer.from('.log')]);
        try {
          // a flat job's log stays until its file is gone: its name holds the job's id
          if (job.dir === null) linkNoReplace(logSrc, logDst); else moveNoReplace(logSrc, logDst);
          movedLog = logDst;
          setRecordPath(record, 'log', logDst);
        } catch (err) {
          if (!isErrno(err, 'ENOENT')) throw err; // no log: it never started
        }
        const jsonDst = Buffer.concat([base ?? logDst.subarray(0, logDst.length - 4), Buffer.from('.json')]);
        writeNew(jsonDst, JSON.stringify(record, null, 2) + '\n', stagingPath(dest, meta.id, 'record'));
        wroteJson = jsonDst;
        this.appendHistory(record);
        if (base !== null) fs.unlinkSync(job.file);
      } catch (err) {
        // Half an entry (the job file without its log or record: a full
        // disk; no history line: the spool out of reach) is undone, so
        // that the job stays whole in its claimed directory and the next
        // try starts afresh, rather than taking the moved file for one the
        // job removed itself.
        if (wroteJson !== null) try { fs.unlinkSync(wroteJson); } catch { /* gone */ }
        if (movedLog !== null) {
          try {
            if (job.dir === null) fs.unlinkSync(movedLog); else moveNoReplace(movedLog, logSrc);
          } catch { /* left where the record would name it */ }
        }
        if (base !== null && exists(job.file)) try { fs.unlinkSync(base); } catch { /* gone */ }
        this.dropStaging(meta.id);
        throw err;
      }
      // the entry is whole: a staging copy (archive on another filesystem) has done its work
      if (linked?.staged) this.dropStaging(meta.id);
    } else {
      if (!isSub) try { fs.unlinkSync(job.file); } catch (err) { if (!isErrno(err, 'ENOENT')) throw err; }
      const done = this.layout.doneRoot;
      if (exists(logSrc)) {
        fs.renameSync(logSrc, path.join(done, `${meta.id}.log`));
        record.log = path.join(done, `${meta.id}.log`);
      }
      writeFileAtomic(path.join(done, `${meta.id}.json`), JSON.stringify(record) + '\n');
      this.keep(meta.id);
      this.appendHistory(record);
    }
    removeClaimed(job);
    return record;
  }

  /**
   * A node died between linking `job`'s file into the archive (or errors)
   * directory and unlinking it from its claimed directory. The other link is
   * found by inode among the entries named after the job. If its record is
   * there, the entry is whole and only the unlink was missing: the step is
   * completed (the history line added if the dead node had not written it)
   * and the record returned, so that the job is not run a second time.
   * Otherwise the half entry is removed, so that the archive holds no file
   * without its record, and null returned.
   */
  repairHalfArchived(job: ClaimedEntry, dead: string): JobRecord | null {
    const st = fs.statSync(job.file);
    const name = nameBytes(job.meta);
    for (const dest of this.dests()) {
      // the entry is a link to the claimed file, or to the staging copy of it
      const ref = statOrNull(stagingPath(dest, job.id)) ?? (st.nlink > 1 ? st : null);
      if (ref === null) continue;
      let list: Buffer[];
      try { list = fs.readdirSync(dest, { encoding: 'buffer' }); } catch { continue; }
      for (const e of list) {
        const dash = e.indexOf(0x2d); // TIMESTAMP-NAME: the stamp has no '-'
        const tail = e.subarray(dash + 1);
        if (dash < 0 || tail.length === 0 || !name.subarray(0, tail.length).equals(tail)) continue;
        const p = names.join(dest, e);
        try {
          const o = fs.lstatSync(p);
          if (o.ino !== ref.ino || o.dev !== ref.dev) continue;
          const json = Buffer.concat([p, Buffer.from('.json')]);
          const whole = readRecord(json);
          if (whole !== null && whole.id === job.id && whole.attempt === job.meta.attempt) {
            if (!this.inHistory(dead, whole)) this.appendHistory(whole);
            fs.unlinkSync(job.file);
            this.dropStaging(job.id);
            removeClaimed(job);
            return whole;
          }
          // the log and record that may already stand beside it go too: the
          // log back to the claimed directory, the record away
          const log = Buffer.concat([p, Buffer.from('.log')]);
          const claimedLog = job.log;
          if (exists(log)) {
            if (exists(claimedLog)) fs.unlinkSync(log); else moveNoReplace(log, claimedLog);
          }
          try { fs.unlinkSync(json); } catch { /* not written yet */ }
          fs.unlinkSync(p);
        } catch { /* gone */ }
      }
    }
    this.dropStaging(job.id);
    return null;
  }

  /** Whether `node`'s history ends with `rec` (its last lines, in either generation). */
  private inHistory(node: string, rec: JobRecord): boolean {
    const file = this.layout.historyFile(node);
    return [file, `${file}.1`].some((f) => tail(f, 256 * 1024).split('\n').some((line) => {
      if (!line.includes(rec.id)) return false;
      try {
        const r = JSON.parse(line) as JobRecord;
        return r.id === rec.id && r.attempt === rec.attempt && r.finished === rec.finished;
      } catch { return false; }
    }));
  }

  /**
   * Note in the claimed directory how a job ended whose archive step failed,
   * so that a node recovering it archives it rather than running it again.
   */
  noteOutcome(job: ClaimedEntry, o: Outcome): void {
    const ended: NonNullable<JobMeta['ended']> = {
      status: o.status, exit_code: o.exitCode, signal: o.signal,
      started: o.started?.toISOString() ?? null, finished: o.finished.toISOString(),
      ...(o.error !== undefined ? { error: o.error } : {}),
    };
    // a flat entry has no metadata file to hold the note: it gets one
    if (job.dir === null) toDirForm(job, { ...job.meta, ended });
    else writeFileAtomic(path.join(job.dir, META_FILE), JSON.stringify({ ...job.meta, ended }) + '\n');
  }

  /**
   * Put a job back for another attempt: its whole claimed directory (file,
   * metadata, log; a flat entry is made one first) moves to retry/DUE.ID in
   * one rename. Returns the entry's name and the updated metadata, and the
   * record of the attempt that ended.
   */
  requeue(job: ClaimedEntry, dueMs: number, why: string, outcome: Outcome | null): { entry: string; meta: JobMeta; record: JobRecord | null } {
    const ended = job.meta;
    const meta: JobMeta = { ...job.meta, attempt: job.meta.attempt + 1, previous: why };
    if (outcome?.status === 'interrupted') meta.interrupted = (meta.interrupted ?? 0) + 1;
    if (job.dir === null) {
      toDirForm(job, meta);
      meta.file = job.meta.file;
    } else {
      writeFileAtomic(path.join(job.dir, META_FILE), JSON.stringify(meta) + '\n');
    }
    // A job to run again at once (interrupted, never started, no backoff) is
    // due 0, not at this node's "now": a node whose clock is behind would
    // otherwise leave it waiting for the difference (an hour's skew, an hour)
    const dueNow = dueMs <= Date.now();
    const name = `${dueNow ? 0 : Math.round(dueMs)}.${meta.id}`;
    const entry = path.join(this.layout.retry, name);
    fs.renameSync(job.dir!, entry);
    // due at once: every node should look at the retry area at its next poll,
    // not at its idle pace (a node stopping or recovering hands the job on)
    if (dueNow) ringDoorbell(this.layout.spool);
    if (outcome === null) return { entry: name, meta, record: null };
    const record = this.record(ended, outcome);
    record.archive = path.join(entry, meta.file);
    record.log = path.join(entry, LOG_FILE);
    if (outcome.status !== 'interrupted') record.retry_at = new Date(dueMs).toISOString();
    this.appendHistory(record);
    return { entry: name, meta, record };
  }

  /** Move an unacceptable file to rejected/ with the reason; it is never opened or run. */
  reject(id: string, dir: string, name: names.Name, reason: string): JobRecord | null {
    // through the group directory itself: a symlink swapped in its place is never followed
    return this.rejectFrom(id, dir, name, reason, (dst) => inGroupDir(this.layout, dir, (where) => fs.renameSync(names.join(where, name), dst)));
  }

  /** A claimed file that is not an acceptable job after all (its name had another file when it was scanned). */
  rejectClaimed(job: ClaimedEntry, reason: string): JobRecord | null {
    const rec = this.rejectFrom(job.id, job.meta.dir, nameBytes(job.meta), reason, (dst) => fs.renameSync(job.file, dst));
    if (rec) {
      if (job.dir !== null) removeTree(job.dir);
      else fs.rmSync(job.log, { force: true });
    }
    return rec;
  }

  private rejectFrom(id: string, dir: string, name: names.Name, reason: string, move: (dst: Buffer) => void): JobRecord | null {
    const target = path.join(this.layout.rejected, id);
    const now = new Date();
    const record: JobRecord = {
      ...this.record({
        id, ...nameFields(name), file: '', group: groupOf(dir), dir, owner: -1,
        created: now.toISOString(), claimed: now.toISOString(), node: this.node, attempt: 0, parent: null,
      }, { status: 'rejected', exitCode: null, signal: null, started: null, finished: now, error: reason }),
      owner: null, created: null, claimed: null,
    };
    fs.mkdirSync(target);
    const dst = names.join(target, name);
    setRecordPath(record, 'archive', dst);
    record.log = null;
    try {
      fs.writeFileSync(path.join(target, REJECT_FILE), JSON.stringify(record, null, 2) + '\n');
      move(dst);
    } catch (err) {
      removeTree(target);
      // gone already (another node rejected it), or its group is no longer a directory
      if (isErrno(err, 'ENOENT', 'ELOOP', 'ENOTDIR')) return null;
      throw err;
    }
    this.appendHistory(record);
    return record;
  }

  record(meta: JobMeta, o: Outcome): JobRecord {
    return {
      id: meta.id,
      name: meta.name,
      ...(meta.name_b64 !== undefined ? { name_b64: meta.name_b64 } : {}),
      group: meta.group,
      node: this.node,
      host: hostName(),
      owner: meta.owner,
      parent: meta.parent,
      created: meta.created,
      claimed: meta.claimed,
      started: o.started?.toISOString() ?? null,
      finished: o.finished.toISOString(),
      duration_ms: o.started ? o.finished.getTime() - o.started.getTime() : null,
      status: o.status,
      exit_code: o.exitCode,
      signal: o.signal,
      attempt: meta.attempt,
      archive: null,
      log: null,
      ...(o.error !== undefined ? { error: o.error } : {}),
    };
  }

  /**
   * Link the job file into dest under a free timestamped name; null if the
   * job removed its own file. Where the archive is on another filesystem
   * (EXDEV) the file is first copied to a staging name in dest that only this
   * job uses, and the entry is a hard link to that copy: like the claimed
   * file on one filesystem, the staging copy stays until the entry is whole
   * and the claimed file gone, so a node that dies in between leaves an
   * entry that recovery finds by inode (repairHalfArchived), not an orphan.
   */
  private archiveJobFile(job: ClaimedEntry, dest: string, when: Date): { base: Buffer; staged: boolean } | null {
    let src: PathLike = job.file;
    for (let n = 0; ; n++) {
      const base = archiveName(dest, job.meta, when, n, '.json'.length);
      // an entry is the file with its .log and .json: another job's "NAME.log" must not be taken for our log
      if (!sidesFree(base)) continue;
      try {
        // linked, not moved: the job file leaves its claimed directory only
        // once its log and record are beside it in the archive (archive()), so
        // a node dying in between leaves a job that recovery can undo and rerun
        fs.linkSync(src, base);
        return { base, staged: src !== job.file };
      } catch (err) {
        if (isErrno(err, 'EEXIST')) continue;
        if (isErrno(err, 'ENOENT') && !exists(job.file)) return null;
        if (src !== job.file || !isErrno(err, 'EXDEV', 'EPERM', 'ENOTSUP', 'ENOSYS')) throw err;
        src = stagingPath(dest, job.id);
        copyWhole(job.file, src);
        n--; // the same name again, from the copy
      }
    }
  }

  /** Remove the staging copies of a job whose entry is whole or undone (best effort: a leftover is only a hidden copy). */
  dropStaging(id: string): void {
    for (const dest of this.dests()) {
      for (const what of ['file', 'record'] as const) {
        try { fs.unlinkSync(stagingPath(dest, id, what)); } catch { /* none, or out of reach */ }
      }
    }
  }

  private dests(): Set<string> {
    return new Set([this.opts.archive, this.opts.errors].filter((d): d is string => d !== undefined));
  }

  private freeArchiveName(dest: string, meta: JobMeta, when: Date, suffix: string): Buffer {
    for (let n = 0; ; n++) {
      const base = archiveName(dest, meta, when, n, '.json'.length);
      if (!exists(base) && sidesFree(base)) return Buffer.concat([base, Buffer.from(suffix)]);
    }
  }

  private appendHistory(record: JobRecord): void {
    const file = this.layout.historyFile(this.node);
    if (this.historyFd === null) {
      this.historyFd = fs.openSync(file, 'a');
      this.historyBytes = fs.fstatSync(this.historyFd).size;
    }
    const line = Buffer.from(JSON.stringify(record) + '\n');
    // one write(2) for the line; a short write (a full disk) is finished, never left to be glued to the next line
    for (let off = 0; off < line.length;) off += fs.writeSync(this.historyFd, line, off, line.length - off);
    this.historyBytes += line.length;
    if (this.historyBytes > HISTORY_ROTATE_BYTES) {
      // one old generation is kept; readers read both
      fs.renameSync(file, `${file}.1`);
      fs.closeSync(this.historyFd);
      this.historyFd = null;
    }
  }

  /** Bounded retention of .pmjq/done when there is no archive: --keep entries of this run. */
  private keep(id: string): void {
    this.kept.push(id);
    while (this.kept.length > this.opts.keep) {
      const old = this.kept.shift()!;
      for (const ext of ['.log', '.json']) {
        try { fs.unlinkSync(path.join(this.layout.doneRoot, old + ext)); } catch { /* already gone */ }
      }
    }
  }

  /** Drop entries of .pmjq/done older than --keep-age (their age is in their id: no stat). */
  pruneOld(now = Date.now()): number {
    let removed = 0;
    let list: string[];
    try { list = fs.readdirSync(this.layout.doneRoot); } catch { return 0; }
    for (const f of list) {
      const parts = f.replace(/\.(log|json)$/, '').split('.');
      const sec = Number(parts[parts.length - 3]);
      if (Number.isFinite(sec) && now - sec * 1000 > this.opts.keepAgeMs) {
        try { fs.unlinkSync(path.join(this.layout.doneRoot, f)); removed++; } catch { /* gone */ }
      }
    }
    return removed;
  }

  close(): void {
    if (this.historyFd !== null) fs.closeSync(this.historyFd);
    this.historyFd = null;
  }
}

/** DEST/20261122T134501.123Z-NAME (…Z.N-NAME on a collision), cut to fit NAME_MAX with `reserve` bytes to spare. */
function archiveName(dest: string, meta: JobMeta, when: Date, n: number, reserve: number): Buffer {
  const prefix = Buffer.from(`${stamp(when)}${n === 0 ? '' : `.${n}`}-`);
  const name = names.truncate(nameBytes(meta), NAME_MAX - reserve - prefix.length);
  return names.join(dest, Buffer.concat([prefix, name]));
}

/** The outcome noteOutcome noted. */
export function notedOutcome(e: NonNullable<JobMeta['ended']>): Outcome {
  return {
    status: e.status as JobStatus, exitCode: e.exit_code, signal: e.signal,
    started: e.started === null ? null : new Date(e.started), finished: new Date(e.finished),
    ...(e.error !== undefined ? { error: e.error } : {}),
  };
}

/**
 * Create a record that must not exist yet, whole or not at all: written under
 * a staging name, then linked into place, so that a reader (or a watcher of
 * the archive) never sees it half written.
 */
function writeNew(file: Buffer, data: string, staging: string): void {
  try {
    try {
      fs.writeFileSync(staging, data, { flag: 'wx' });
    } catch (err) {
      if (!isErrno(err, 'EEXIST')) throw err;
      // a dead node's leftover: unlinked, not overwritten (it may be linked to a record already)
      fs.unlinkSync(staging);
      fs.writeFileSync(staging, data, { flag: 'wx' });
    }
    fs.linkSync(staging, file);
  } finally {
    try { fs.unlinkSync(staging); } catch { /* never made */ }
  }
}

/** Where a job's file (copied from another filesystem) or record is written before it is linked into the archive. */
function stagingPath(dest: string, id: string, what: 'file' | 'record' = 'file'): string {
  // (no .json suffix: a watcher of the archive waiting for records must not take it for one)
  return path.join(dest, what === 'file' ? `.pmjq-staging.${id}` : `.pmjq-staging.${id}.record`);
}

/** Copy `src` whole to `dst`, replacing a partial copy a dead node left there; the mode follows. */
function copyWhole(src: PathLike, dst: string): void {
  // unlinked, not overwritten: a leftover may be linked to a half entry
  try { fs.unlinkSync(dst); } catch { /* none */ }
  fs.copyFileSync(src, dst, fs.constants.COPYFILE_EXCL);
  fs.chmodSync(dst, fs.statSync(src).mode & 0o7777);
}

/** An archive record, or null if it is missing or half written. */
function readRecord(p: Buffer): JobRecord | null {
  try { return JSON.parse(fs.readFileSync(p, 'utf8')) as JobRecord; } catch { return null; }
}

/** The last `bytes` of a file ('' if it cannot be read). */
function tail(file: string, bytes: number): string {
  let fd: number;
  try { fd = fs.openSync(file, 'r'); } catch { return ''; }
  try {
    const size = fs.fstatSync(fd).size;
    const buf = Buffer.alloc(Math.min(size, bytes));
    fs.readSync(fd, buf, 0, buf.length, size - buf.length);
    return buf.toString('utf8');
  } catch { return ''; } finally { fs.closeSync(fd); }
}

function statOrNull(p: string): fs.Stats | null {
  try { return fs.statSync(p); } catch { return null; }
}

/** Neither BASE.log nor BASE.json exists. */
function sidesFree(base: Buffer): boolean {
  return !exists(Buffer.concat([base, Buffer.from('.log')])) && !exists(Buffer.concat([base, Buffer.from('.json')]));
}

/**
 * What is left of a finished job in its claimed area: a flat entry's log
 * (linked into the archive, or moved); for a directory, normally only
 * the metadata: two syscalls instead of a recursive removal's ten. Anything
 * else in it (a job that wrote beside itself) is removed the general way.
 */
function removeClaimed(job: ClaimedEntry): void {
  if (job.dir === null) {
    try { fs.unlinkSync(job.log); } catch { /* moved with no archive, or never made */ }
    return;
  }
  try {
    fs.unlinkSync(path.join(job.dir, META_FILE));
    fs.rmdirSync(job.dir);
  } catch {
    removeTree(job.dir);
  }
}

