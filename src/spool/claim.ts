// Claiming: one atomic rename moves a queued job into this node's claimed
// area. Of several nodes racing for one file exactly one rename succeeds;
// the others get ENOENT and move on. No lock files.

import fs from 'node:fs';
import path from 'node:path';
import type { Candidate } from './candidate.js';
import { META_FILE, type Layout } from './layout.js';
import { nameFields, writeMeta, type JobMeta } from './meta.js';
import * as names from './names.js';
import { isErrno, writeFileAtomic } from '../util/fsx.js';

export interface ClaimedJob {
  id: string;
  /** .pmjq/claimed/NODE/ID */
  dir: string;
  /** path of the job file inside dir (what is executed) */
  file: string;
  meta: JobMeta;
}

/**
 * The job file keeps its own name inside the claimed directory so that $0
 * and ps show it; a name that is not valid UTF-8 (which cannot be passed to
 * exec from Node) is stored as "job" and its bytes kept in the metadata.
 */
function claimedFileName(name: names.Name): string {
  return names.isUtf8(name) ? names.display(name) : 'job';
}

/** Claim a queued file. Returns null when another node (or the user) took it first. */
export function claimFromSpool(layout: Layout, node: string, id: string, c: Candidate, now: Date): ClaimedJob | null {
  const dir = path.join(layout.claimed(node), id);
  const file = claimedFileName(c.name);
  const meta: JobMeta = {
    id,
    ...nameFields(c.name),
    file,
    group: c.group,
    dir: c.dir,
    owner: c.uid,
    created: new Date(c.mtimeMs).toISOString(),
    claimed: now.toISOString(),
    node,
    attempt: 1,
    parent: null,
  };
  // The metadata is written before the rename, so a claimed job is never
  // found without it (recovery needs its group and attempt).
  const src = names.join(layout.groupDir(c.dir), c.name);
  const dst = path.join(dir, file);
  fs.mkdirSync(dir);
  try {
    writeMeta(dir, meta);
    fs.renameSync(src, dst);
  } catch (err) {
    // On NFS a retransmitted rename can fail with ENOENT although the first
    // transmission succeeded: then the file is already at the destination.
    if (!(isErrno(err, 'ENOENT') && exists(dst))) {
      fs.rmSync(dir, { recursive: true, force: true });
      if (isErrno(err, 'ENOENT')) return null;
      throw err;
    }
  }
  return { id, dir, file: dst, meta };
}

/**
 * A sub-job is not a file in the spool: "claiming" it only makes its claimed
 * directory (metadata and log) so that it shows, and is found, like any job.
 */
export function claimSub(layout: Layout, node: string, c: Candidate, now: Date): ClaimedJob {
  const sub = c.sub!;
  const dir = path.join(layout.claimed(node), sub.id);
  const meta: JobMeta = {
    id: sub.id,
    ...nameFields(c.name),
    file: '',
    group: c.group,
    dir: '',
    owner: c.uid,
    created: new Date(c.mtimeMs).toISOString(),
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
  return { id: sub.id, dir, file: sub.script, meta };
}

/** Claim a job waiting in the retry area: the whole entry directory moves in one rename. */
export function claimFromRetry(layout: Layout, node: string, c: Candidate, now: Date): ClaimedJob | null {
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
  return { id, dir, file: path.join(dir, meta.file), meta };
}

function exists(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}
