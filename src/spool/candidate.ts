// A job file seen in the spool (or a job waiting in the retry area) that this
// node may claim. Candidates are found by the scanner, ordered by the
// scheduler and turned into running jobs by a claim.

import type { Name } from './names.js';
import type { JobMeta } from './meta.js';
import type { JobOwner } from '../run/owner.js';

export interface Candidate {
  group: string;
  /** spool-relative directory it was dropped into ('' = top level) */
  dir: string;
  name: Name;
  /** names.key(name): the map key */
  key: string;
  /** order within its group, oldest first (then by name): a file's mtime, a retry's creation, a sub-job's enqueueing */
  orderMs: number;
  /** a spool file's mtime when last looked at, to tell whether it still changes (--settle); 0 for the others */
  mtimeMs: number;
  size: number;
  /** the owner the scan saw: a guess for the metadata only; who runs it is decided after the claim */
  seenUid: number;
  /** local clock when first seen, for --settle */
  seenAt: number;
  /** set when the file is known to have left the spool (claimed elsewhere, removed) */
  gone: boolean;
  /** the scanner's pass that last listed it: a name a pass does not list is forgotten */
  listed: number;
  /** for a job waiting in .pmjq/retry: the entry's directory name, its metadata and when it is due */
  retry?: { entry: string; meta: JobMeta; dueMs: number };
  /** for a sub-job enqueued by a job over fd 3: it exists only in memory until it runs */
  sub?: { id: string; script: string; args: string[]; parent: string | null; tree: string; owner: JobOwner };
}

export function olderFirst(a: Candidate, b: Candidate): boolean {
  if (a.orderMs !== b.orderMs) return a.orderMs < b.orderMs;
  return a.key < b.key;
}
