// What a node's claimed area (.pmjq/claimed/NODE) holds, in its two forms.
//
// A job claimed from the spool keeps its own name, in a directory of the
// area for its group, `@DIR/NAME` (`@` alone for the top level; `%` and `=`
// escaped as %25 and %3D), so that its $0 ends in its name; its log is
// `@DIR/.NAME=ID.log` beside it (a job's name never starts with a dot). The
// log is created, then the file renamed in: nothing else is made for it,
// because every directory and metadata file made per job costs the file
// server, and on ext4 about a third of pmjq's time per job. All its
// metadata is in those two names, the file's inode (owner, mtime) and its
// id (the claim's time): attempt 1, no parent.
//
// Anything else is a directory `ID/` holding the job file under its own
// name, `.job.json` and `.log`: a job claimed again from the retry area, a
// sub-job, a name that is not UTF-8 or too long for the flat form or whose
// place is taken (a job of the same name already claimed here), and a flat
// job that needs metadata of its own (requeued, or its outcome noted when it
// could not be archived): it is turned into a directory first (toDirForm).

import fs from 'node:fs';
import path from 'node:path';
import { groupOf, LOG_FILE, META_FILE } from './layout.js';
import { readMeta, type JobMeta } from './meta.js';
import * as names from './names.js';
import { isErrno } from '../util/fsx.js';

/** A claimed job's place on disk: all that running, archiving, requeueing and recovery need. */
export interface ClaimedEntry {
  id: string;
  /** .pmjq/claimed/NODE/ID for the directory form; null for the flat form */
  dir: string | null;
  /** path of the job file (what is executed) */
  file: string;
  /** where its output goes */
  log: string;
  meta: JobMeta;
}

const NAME_MAX = 255;
const GROUP_MARK = '@';

/** The directory of the flat entries of a group directory ('' = the top level). */
export function groupArea(dir: string): string {
  return GROUP_MARK + dir.replace(/%/g, '%25').replace(/=/g, '%3D');
}

function dirOfGroupArea(entry: string): string {
  return entry.slice(1).replace(/%3D/g, '=').replace(/%25/g, '%');
}

/** The flat log's name, `.NAME=ID.log`, or null when the job needs the directory form (not UTF-8, too long). */
export function flatLogName(id: string, name: names.Name): string | null {
  if (!names.isUtf8(name)) return null;
  const log = `.${names.display(name)}=${id}.log`;
  return Buffer.byteLength(log) <= NAME_MAX ? log : null;
}

/** Name and id of a flat log `.NAME=ID.log`; null for anything else. */
function parseFlatLog(entry: string): { name: string; id: string } | null {
  if (!entry.startsWith('.') || !entry.endsWith('.log')) return null;
  const eq = entry.lastIndexOf('=');
  if (eq <= 1) return null;
  const id = entry.slice(eq + 1, -4);
  return id === '' ? null : { name: entry.slice(1, eq), id };
}

/** The claim's time, from an id HOST.PID.SECONDS.MILLIS.COUNTER. */
function claimedAt(id: string): string {
  const m = /\.(\d+)\.(\d{3})\.\d+$/.exec(id);
  return new Date(m ? Number(m[1]) * 1000 + Number(m[2]) : 0).toISOString();
}

/** A flat entry: attempt 1 of a spool job, its owner and creation time from the file. */
export function flatEntry(area: string, node: string, dir: string, name: string, id: string, st: Pick<fs.Stats, 'uid' | 'mtimeMs'>): ClaimedEntry {
  const where = path.join(area, groupArea(dir));
  return {
    id, dir: null, file: path.join(where, name), log: path.join(where, `.${name}=${id}.log`),
    meta: {
      id, name, file: name, group: groupOf(dir), dir, owner: st.uid,
      created: new Date(st.mtimeMs).toISOString(), claimed: claimedAt(id), node, attempt: 1, parent: null,
    },
  };
}

/** The directory form of a claimed job. */
export function dirEntry(dir: string, meta: JobMeta): ClaimedEntry {
  return { id: meta.id, dir, file: meta.script ?? path.join(dir, meta.file), log: path.join(dir, LOG_FILE), meta };
}

/** An entry of an area as listed: a job, or something a crash left behind. */
export type AreaItem = AreaJob | { kind: 'leftover'; path: string; why: string; id?: string };

/** A job in a claimed area: `path` is its directory or flat file; entry null when its .job.json cannot be read. */
export interface AreaJob { kind: 'job'; id: string; path: string; log: string; entry: ClaimedEntry | null; error?: string }

function areaJob(p: string, entry: ClaimedEntry): AreaJob {
  return { kind: 'job', id: entry.id, path: p, log: entry.log, entry };
}

const CUT_SHORT = 'a claim cut short before its rename: the job is still queued';

/**
 * Every job in a claimed area (`node`: whose area it is, for the flat
 * entries' metadata), and what a crash left: a directory whose job file was
 * never moved in, a log without its job.
 */
export function listArea(area: string, node: string): AreaItem[] {
  let list: string[];
  try { list = fs.readdirSync(area); } catch { return []; }
  const items: AreaItem[] = [];
  for (const e of list) {
    if (e.startsWith('.')) continue;
    const p = path.join(area, e);
    if (e.startsWith(GROUP_MARK)) {
      items.push(...listGroupArea(area, node, e));
      continue;
    }
    let entry: ClaimedEntry;
    try {
      entry = dirEntry(p, readMeta(p));
    } catch (err) {
      if (onlyMeta(p)) items.push({ kind: 'leftover', path: p, why: CUT_SHORT });
      else items.push({ kind: 'job', id: e, path: p, log: path.join(p, LOG_FILE), entry: null, error: (err as Error).message });
      continue;
    }
    if (entry.meta.script === undefined && onlyMeta(p)) items.push({ kind: 'leftover', path: p, why: CUT_SHORT });
    else items.push(areaJob(p, entry));
  }
  return items;
}

/** The flat entries of one group's directory in an area. */
function listGroupArea(area: string, node: string, sub: string): AreaItem[] {
  const where = path.join(area, sub);
  const dir = dirOfGroupArea(sub);
  let list: string[];
  try { list = fs.readdirSync(where); } catch { return []; }
  const files = new Set(list.filter((e) => !e.startsWith('.')));
  const items: AreaItem[] = [];
  for (const e of list) {
    const log = parseFlatLog(e);
    if (!log) continue;
    if (!files.delete(log.name)) {
      // its job was archived (or moved on) and only this was left to remove
      items.push({ kind: 'leftover', path: path.join(where, e), why: 'a log without its job', id: log.id });
      continue;
    }
    try {
      items.push(areaJob(path.join(where, log.name), flatEntry(area, node, dir, log.name, log.id, fs.lstatSync(path.join(where, log.name)))));
    } catch { /* gone meanwhile */ }
  }
  for (const name of files) {
    // its log is made before it comes and goes after it: only a hand can
    // leave it alone; it is a job all the same, under an id of its own
    try {
      const st = fs.lstatSync(path.join(where, name));
      items.push(areaJob(path.join(where, name), flatEntry(area, node, dir, name, `${node}.nolog.${st.ino}`, st)));
    } catch { /* gone meanwhile */ }
  }
  return items;
}

/** The directory holds nothing but (at most) a .job.json. */
function onlyMeta(dir: string): boolean {
  try { return fs.readdirSync(dir).every((f) => f === META_FILE); } catch { return false; }
}

/**
 * Job `id` in a claimed area, in either form, or null: one stat for the
 * directory form, a listing of the area's group directories for the flat.
 */
export function findInArea(area: string, node: string, id: string): AreaJob | null {
  const dir = path.join(area, id);
  try {
    if (fs.statSync(dir).isDirectory()) {
      try { return areaJob(dir, dirEntry(dir, readMeta(dir))); } catch (err) {
        return { kind: 'job', id, path: dir, log: path.join(dir, LOG_FILE), entry: null, error: (err as Error).message };
      }
    }
  } catch { /* not in the directory form */ }
  let list: string[];
  try { list = fs.readdirSync(area); } catch { return null; }
  const suffix = `=${id}.log`;
  for (const sub of list) {
    if (!sub.startsWith(GROUP_MARK)) continue;
    let logs: string[];
    try { logs = fs.readdirSync(path.join(area, sub)); } catch { continue; }
    for (const e of logs) {
      const log = e.endsWith(suffix) ? parseFlatLog(e) : null;
      if (!log || log.id !== id) continue;
      const file = path.join(area, sub, log.name);
      try { return areaJob(file, flatEntry(area, node, dirOfGroupArea(sub), log.name, id, fs.lstatSync(file))); } catch { return null; }
    }
  }
  return null;
}

/**
 * Turn a flat entry into the directory form, in place (the entry is
 * updated; `meta`: what its .job.json says): ID/ is made with the metadata,
 * then the job file moves in (from then on the directory is the job), then
 * its log. A crash before the file's move leaves a directory with only the
 * metadata, which listArea reports as a leftover; one after it leaves the
 * log behind, reported as a log without its job.
 */
export function toDirForm(job: ClaimedEntry, meta: JobMeta = job.meta): void {
  if (job.dir !== null) return;
  const area = path.dirname(path.dirname(job.file));
  const dir = path.join(area, job.id);
  const file = path.join(dir, job.meta.file);
  try { fs.mkdirSync(dir); } catch (err) { if (!isErrno(err, 'EEXIST')) throw err; }
  try {
    fs.writeFileSync(path.join(dir, META_FILE), JSON.stringify(meta) + '\n');
    fs.renameSync(job.file, file);
  } catch (err) {
    // an NFS rename whose reply was lost: the file is in the directory, done
    if (!fs.existsSync(job.file) && fs.existsSync(file)) { /* moved */ } else {
      // still flat (a full disk): the directory goes, the job stays as it was
      if (fs.existsSync(job.file)) fs.rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }
  const log = path.join(dir, LOG_FILE);
  try { fs.renameSync(job.log, log); } catch (err) { if (!isErrno(err, 'ENOENT')) throw err; }
  job.dir = dir;
  job.file = file;
  job.log = log;
}

/** Remove the group directories of an area that hold nothing (a node stopping). */
export function pruneGroupAreas(area: string): void {
  let list: string[];
  try { list = fs.readdirSync(area); } catch { return; }
  for (const e of list) {
    if (e.startsWith(GROUP_MARK)) try { fs.rmdirSync(path.join(area, e)); } catch { /* not empty */ }
  }
}
