// Recovery of a dead node's claimed jobs (pmjq(1) RUNNING A CLUSTER). The taker renames
// the dead node's whole claimed area in one step (of several live nodes only
// one rename succeeds), kills any process the dead node's jobs left on this
// host, and puts each job back for another attempt as `interrupted`.

import fs from 'node:fs';
import path from 'node:path';
import { type ClaimedEntry, dirEntry, listArea, pruneGroupAreas } from '../spool/claimed.js';
import { notedOutcome, type Finisher, type Outcome } from '../spool/finish.js';
import { hostName, parseNodeId, type Layout } from '../spool/layout.js';
import type { JobMeta } from '../spool/meta.js';
import { errText, isErrno, removeTree } from '../util/fsx.js';
import type { Logger } from '../util/log.js';

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return isErrno(err, 'EPERM');
  }
}

/** Nodes on this host whose pmjq process is gone: stale at once, whatever their heartbeat says. */
export function deadLocalNodes(layout: Layout, me: string): string[] {
  let list: string[];
  try { list = fs.readdirSync(layout.claimedRoot); } catch { return []; }
  const host = hostName();
  return list.filter((n) => {
    if (n === me || n.startsWith('.')) return false;
    const p = parseNodeId(n);
    return p !== null && p.host === host && !pidAlive(p.pid);
  });
}

/** Kill what a dead node's jobs left running on this host (they carry PMJQ_NODE in their environment). */
export function killLeftovers(node: string): number {
  const marker = Buffer.from(`\0PMJQ_NODE=${node}\0`);
  let killed = 0;
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let env: Buffer;
    try { env = Buffer.concat([Buffer.from([0]), fs.readFileSync(`/proc/${entry}/environ`)]); } catch { continue; }
    if (env.indexOf(marker) < 0) continue;
    try { process.kill(Number(entry), 'SIGKILL'); killed++; } catch { /* gone */ }
  }
  return killed;
}

/**
 * Take over `dead`'s claimed area (`from`: or what is left of it in a
 * recovery another taker did not finish) and requeue its jobs. Returns the
 * number of jobs requeued, or null when another node took it first.
 */
export function recoverNode(
  layout: Layout, me: string, dead: string, finisher: Finisher, log: Logger,
  /** true when a job has been interrupted too often to run again: it is archived as failed */
  exhausted: (meta: JobMeta) => boolean = () => false,
  /** a job that had ended but cannot be archived yet: moved into `me`'s claimed area, for `me` to archive later */
  unfinished?: (job: ClaimedEntry, outcome: Outcome) => void,
  from = layout.claimed(dead),
): number | null {
  const taken = path.join(layout.claimedRoot, `.recovering.${dead}.by.${me}`);
  try {
    fs.renameSync(from, taken);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return null;
    throw err;
  }
  const killed = killLeftovers(dead);
  let requeued = 0;
  for (const item of listArea(taken, dead)) {
    if (item.kind === 'leftover') {
      // a claim cut short before its rename (the job is still queued where
      // it was), or a log without its job: archived, only the cleanup was
      // missing (a staging copy in the archive, too)
      if (item.id !== undefined) finisher.dropStaging(item.id);
      removeTree(item.path);
      continue;
    }
    try {
      if (!item.entry) throw new Error(item.error ?? 'unreadable');
      const job = item.entry;
      const meta = job.meta;
      if (meta.script !== undefined) {
        // a sub-job lives in memory: its parent is requeued and enqueues it again
        const now = new Date();
        finisher.archive(job, {
          status: 'interrupted', exitCode: null, signal: null, started: null, finished: now, error: `node ${dead} died; sub-jobs are not requeued (their parent is)`,
        });
        continue;
      }
      if (!fs.existsSync(job.file)) {
        // it had finished and was archived; only the cleanup was missing
        finisher.dropStaging(meta.id);
        removeTree(item.path);
        continue;
      }
      // died while archiving it (the job file is linked, or copied, into
      // the archive until its log and record are there too): a whole entry
      // stays and the job is done; a half entry goes, and the job is
      // archived again below (outcome known) or runs again
      const whole = finisher.repairHalfArchived(job, dead);
      if (whole !== null) {
        log.info('archive-recovered', { id: meta.id, node: dead, archive: whole.archive });
        continue;
      }
      if (meta.ended && job.dir !== null) {
        // it ran to its end and only its archive step failed: archive it with
        // that outcome, never run it again
        const outcome = notedOutcome(meta.ended);
        try {
          const rec = finisher.archive(job, outcome);
          log.info('archive-recovered', { id: meta.id, node: dead, archive: rec.archive });
        } catch (err) {
          if (!unfinished) throw err;
          const mine = path.join(layout.claimed(me), meta.id);
          fs.renameSync(job.dir, mine);
          unfinished(dirEntry(mine, meta), outcome);
        }
        continue;
      }
      const now = new Date();
      const outcome = { status: 'interrupted' as const, exitCode: null, signal: null, started: null, finished: now, error: `node ${dead} died` };
      if (exhausted(meta)) {
        const rec = finisher.archive(job, { ...outcome, status: 'failed', error: `node ${dead} died while running it, and it has been interrupted too often (attempt ${meta.attempt})` });
        log.warn('job-end', { id: meta.id, name: meta.name, group: meta.group, status: 'failed', error: rec.error, archive: rec.archive });
      } else {
        finisher.requeue(job, now.getTime(), `interrupted: node ${dead} died`, outcome);
        requeued++;
      }
    } catch (err) {
      log.error('recover-failed', { node: dead, job: item.path, error: errText(err) });
    }
  }
  pruneGroupAreas(taken);
  try { fs.rmdirSync(taken); } catch (err) { log.warn('recover-incomplete', { dir: taken, error: errText(err) }); }
  log.info('recovered', { node: dead, requeued, killed });
  return requeued;
}
