// The claim step, as the daemon takes it: a queued candidate — a spool
// file, a retry entry or a sub-job — becomes a claimed job of this node (one
// rename, spool/claim.ts), or is rejected: a file found not to be an
// acceptable job goes to rejected/, before its claim or after it.

import type { Candidate } from './candidate.js';
import { ClaimRefused, claimFromRetry, claimFromSpool, claimSub, type ClaimedJob } from './claim.js';
import type { Finisher } from './finish.js';
import type { IdMaker, Layout } from './layout.js';
import * as names from './names.js';
import { errText } from '../util/fsx.js';
import type { Logger } from '../util/log.js';

export class Claimer {
  constructor(
    private readonly layout: Layout,
    private readonly node: string,
    private readonly ids: IdMaker,
    private readonly finisher: Finisher,
    private readonly ctx: { asRoot: boolean; allowRoot: boolean },
    private readonly log: Logger,
  ) {}

  /** The claimed job, or null: refused (rejected), or left where it is for the next rescan. */
  claim(c: Candidate): ClaimedJob | null {
    const now = new Date();
    try {
      const job = c.sub
        ? claimSub(this.layout, this.node, c, now)
        : c.retry
          ? claimFromRetry(this.layout, this.node, c, now, this.ctx)
          : claimFromSpool(this.layout, this.node, this.ids.next(now.getTime()), c, now, this.ctx);
      if (job) this.log.debug('claimed', { id: job.id, name: job.meta.name, group: job.meta.group, owner: job.owner.uid });
      return job;
    } catch (err) {
      if (err instanceof ClaimRefused) {
        this.rejectClaimed(err);
        return null;
      }
      // left where it is: the next rescan finds it again
      this.log.error('claim-failed', { file: names.display(c.name), group: c.group, error: errText(err) });
      return null;
    }
  }

  /** A file the scan found not acceptable as a job: it goes to rejected/. */
  reject(dir: string, name: names.Name, reason: string): void {
    const file = names.display(names.join(this.layout.groupDir(dir), name));
    try {
      const rec = this.finisher.reject(this.ids.next(), dir, name, reason);
      if (rec) this.log.warn('rejected', { file, reason, moved_to: rec.archive });
    } catch (err) {
      this.log.error('reject-failed', { file, reason, error: errText(err) });
    }
  }

  /** The file claimed is not the one scanned, and not an acceptable job: it goes to rejected/. */
  rejectClaimed(r: ClaimRefused): void {
    const file = r.job.meta.name;
    try {
      const rec = this.finisher.rejectClaimed(r.job, r.reason);
      this.log.warn('rejected', { file, group: r.job.meta.group, reason: r.reason, moved_to: rec?.archive, when: 'after the claim' });
    } catch (err) {
      this.log.error('reject-failed', { file, reason: r.reason, error: errText(err), kept_in: r.job.dir ?? r.job.file });
    }
  }
}
