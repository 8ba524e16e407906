// Claiming: one atomic rename moves a queued job into this node's claimed
// area (claimed.ts: under its own name beside its log, nothing else made).
// Of several nodes racing for one file exactly one rename succeeds; the
// others get ENOENT and move on. No lock files.
//
// Who the job runs as is decided here, after the rename, from the file
// actually claimed: it now lies in a directory only the daemon can write,
// so what its lstat says can no longer change under us. What the scan saw
// earlier (another file may have had the name then) decides nothing.

import fs from 'node:fs';
import path from 'node:path';
import type { Candidate } from './candidate.js';
import { type ClaimedEntry, dirEntry, flatEntry, flatLogName, groupArea } from './claimed.js';
import { classify, type ClassifyContext } from './classify.js';
import { inGroupDir } from './groupdir.js';
import { META_FILE, type Layout } from './layout.js';
import { nameFields, writeMeta, type JobMeta } from './meta.js';
import * as names from './names.js';
import type { JobOwner } from '../run/owner.js';
import { ownerOf } from '../run/privileges.js';
import { exists, isErrno, writeFileAtomic } from '../util/fsx.js';

export type { ClaimedEntry } from './claimed.js';

/** A claimed job ready to run. */
export interface ClaimedJob extends ClaimedEntry {
  /** who it runs as: from the claimed file (spool and retry jobs) or from the job that enqueued it */
  owner: JobOwner;
  /**
   * the claimed file's link count: a job file has one name. A second one is
   * either a submitter's hidden temporary name, about to go (link, then
   * unlink), or another user's way to reach the file: the job waits for it
   * to go, and is rejected if it does not (run/starter.ts, linkCount).
   */
  links: number;
}

/** The claimed file is not an acceptable job (another file had its name when it was scanned). */
export class ClaimRefused extends Error {
  constructor(readonly job: ClaimedEntry, readonly reason: string) {
    super(reason);
  }
}

/**
 * The owner of a file just claimed, checked again as the scan checked it
 * (regular, executable, not setuid/setgid, writable by its owner only,
 * root's only with --allow-root), and its link count.
 */
function claimedOwner(job: ClaimedEntry, ctx: Omit<ClassifyContext, 'topLevel'>, st = fs.lstatSync(job.file)): { owner: JobOwner; links: number } {
  const verdict = classify(st, { ...ctx, topLevel: false });
  if (verdict.kind !== 'job') throw new ClaimRefused(job, verdict.kind === 'reject' ? verdict.reason : verdict.kind === 'ignore' ? verdict.why : 'a directory');
  if (job.meta.owner !== st.uid) {
    // the scan saw another owner: the metadata must say who really runs it
    job.meta.owner = st.uid;
    if (job.dir !== null) writeMeta(job.dir, job.meta);
  }
  // not root: every job runs as pmjq's own user, whoever owns the file
  const owner = ctx.asRoot ? ownerOf(st.uid, st.gid) : ownerOf(process.getuid?.() ?? st.uid, process.getgid?.() ?? st.gid);
  return { owner, links: st.nlink };
}

/** The job file's link count now. */
export function linkCount(job: ClaimedEntry): number {
  return fs.lstatSync(job.file).nlink;
}

/**
 * The job file keeps its own name inside the claimed directory so that $0
 * and ps show it; a name that is not valid UTF-8 (which cannot be passed to
 * exec from Node) is stored as "job" and its bytes kept in the metadata.
 */
function claimedFileName(name: names.Name): string {
  return names.isUtf8(name) ? names.display(name) : 'job';
}

/**
 * Claim a queued file. Returns null when another node (or the user) took it
 * first; throws ClaimRefused when the file claimed is not an acceptable job.
 */
export function claimFromSpool(layout: Layout, node: string, id: string, c: Candidate, now: Date, ctx: Omit<ClassifyContext, 'topLevel'>): ClaimedJob | null {
  const area = layout.claimed(node);
  const logName = flatLogName(id, c.name);
  const sub = groupArea(c.dir);
  const where = path.join(area, sub);
  const dst = logName === null || Buffer.byteLength(sub) > 255 ? null : path.join(where, names.display(c.name));
  // the directory form when the name does not fit, or a job of that name is claimed here already
  if (dst === null || exists(dst)) return claimIntoDir(layout, node, id, c, now, ctx);
  // the log first: a flat job is never without the id its log's name holds
  const log = path.join(where, logName!);
  createLog(where, log);
  let claimed = false;
  try {
    claimed = renameIn(layout, c, dst);
  } finally {
    if (!claimed) fs.rmSync(log, { force: true });
  }
  if (!claimed) return null;
  const st = fs.lstatSync(dst);
  const job = flatEntry(area, node, c.dir, path.basename(dst), id, st);
  return { ...job, ...claimedOwner(job, ctx, st) };
}

/** An empty log, in its group's part of the area (made on its first job). */
function createLog(where: string, log: string): void {
  try {
    fs.closeSync(fs.openSync(log, 'wx', 0o644));
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) throw err;
    // (the node's area too, should a recoverer have taken it: it is made anew on the next heartbeat anyway)
    fs.mkdirSync(where, { recursive: true, mode: 0o755 });
    fs.closeSync(fs.openSync(log, 'wx', 0o644));
  }
}

/** The rename that claims: false when the file is gone (another node took it) or its group directory is no longer one. */
function renameIn(layout: Layout, c: Candidate, dst: string): boolean {
  try {
    inGroupDir(layout, c.dir, (where) => fs.renameSync(names.join(where, c.name), dst));
    return true;
  } catch (err) {
    // On NFS a retransmitted rename can fail with ENOENT although the first
    // transmission succeeded: then the file is already at the destination.
    if (isErrno(err, 'ENOENT') && exists(dst)) return true;
    // gone, or its group directory is no longer one (a symlink now: the scan rejects it)
    if (isErrno(err, 'ENOENT', 'ELOOP', 'ENOTDIR')) return false;
    throw err;
  }
}

/**
 * The directory form, for a name the flat form cannot hold (not UTF-8, too
 * long, or taken by a job of that name claimed here already): the metadata
 * is written before the rename, so that the claimed job is never found
 * without it.
 */
function claimIntoDir(layout: Layout, node: string, id: string, c: Candidate, now: Date, ctx: Omit<ClassifyContext, 'topLevel'>): ClaimedJob | null {
  const dir = path.join(layout.claimed(node), id);
  const meta: JobMeta = {
    id,
    ...nameFields(c.name),
    file: claimedFileName(c.name),
    group: c.group,
    dir: c.dir,
    owner: c.seenUid,
    created: new Date(c.orderMs).toISOString(),
    claimed: now.toISOString(),
    node,
    attempt: 1,
    parent: null,
  };
  fs.mkdirSync(dir);
  let claimed = false;
  try {
    writeMeta(dir, meta);
    claimed = renameIn(layout, c, path.join(dir, meta.file));
  } finally {
    if (!claimed) fs.rmSync(dir, { recursive: true, force: true });
  }
  if (!claimed) return null;
  const job = dirEntry(dir, meta);
  return { ...job, ...claimedOwner(job, ctx) };
}

/**
 * A sub-job is not a file in the spool: "claiming" it only makes its claimed
 * directory (metadata and log) so that it shows, and is found, like any job.
 */
export function claimSub(layout: Layout, node: string, c: Candidate, now: Date): ClaimedJob {
  const sub = c.sub!;
  const owner = sub.owner;
  const dir = path.join(layout.claimed(node), sub.id);
  const meta: JobMeta = {
    id: sub.id,
    ...nameFields(c.name),
    file: '',
    group: c.group,
    dir: '',
    owner: owner.uid,
    created: new Date(c.orderMs).toISOString(),
    claimed: now.toISOString(),
    node,
    attempt: 1,
    parent: sub.parent,
    script: sub.script,
    args: sub.args,
    tree: sub.tree,
  };
  fs.mkdirSync(dir);
  try {
    writeMeta(dir, meta);
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return { ...dirEntry(dir, meta), owner, links: 1 };
}

/** Claim a job waiting in the retry area: the whole entry directory moves in one rename. */
export function claimFromRetry(layout: Layout, node: string, c: Candidate, now: Date, ctx: Omit<ClassifyContext, 'topLevel'>): ClaimedJob | null {
  const r = c.retry!;
  const id = r.meta.id;
  const dir = path.join(layout.claimed(node), id);
  try {
    fs.renameSync(path.join(layout.retry, r.entry), dir);
  } catch (err) {
    if (isErrno(err, 'ENOENT') && exists(path.join(dir, META_FILE))) {
      // NFS retransmission: it is ours
    } else if (isErrno(err, 'ENOENT')) {
      return null;
    } else {
      throw err;
    }
  }
  const meta: JobMeta = { ...r.meta, node, claimed: now.toISOString() };
  writeFileAtomic(path.join(dir, META_FILE), JSON.stringify(meta) + '\n');
  const job = dirEntry(dir, meta);
  return { ...job, ...claimedOwner(job, ctx) };
}

