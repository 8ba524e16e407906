// pmjqctl's requests as a daemon reads them: the pause flags (logged when
// they change) and kill requests for jobs of this node. Read every poll on
// a local disk; on a file server only when the doorbell rang or, at the idle
// pace, when one of the request directories changed.

import { DirStamp } from '../spool/dirstamp.js';
import type { Layout } from '../spool/layout.js';
import type { Logger } from '../util/log.js';
import { controlPaths, doneKill, readControl, type ControlState } from './requests.js';

export interface InboxDeps {
  layout: Layout;
  log: Logger;
  /** the name of a job running or waiting to start on this node; undefined if it is not here */
  jobHere: (id: string) => string | undefined;
  /** kill a job of this node */
  kill: (id: string) => void;
}

export class ControlInbox {
  private state: ControlState = { pauseAll: false, paused: new Set(), kills: [] };
  /** pmjqctl's request directories: read again without a doorbell only if one of them changed */
  private readonly stamps: { dir: string; stamp: DirStamp }[];

  constructor(private readonly d: InboxDeps) {
    const ctl = controlPaths(d.layout);
    this.stamps = [d.layout.control, ctl.paused, ctl.kill].map((dir) => ({ dir, stamp: new DirStamp() }));
  }

  /** Whether a request directory changed since last looked at (`fsNow`: the file server's clock, if known). */
  changed(nfs: boolean, fsNow: number | undefined): boolean {
    return this.stamps.map((s) => s.stamp.due(s.dir, nfs, fsNow)).includes(true);
  }

  paused(group: string): boolean {
    return this.state.pauseAll || this.state.paused.has(group);
  }

  /** Read the pause flags and kill requests. */
  read(): void {
    const { d } = this;
    const before = this.state;
    const after = (this.state = readControl(d.layout));
    const was = (g: string): boolean => (g === '*' ? before.pauseAll : before.paused.has(g));
    const now = (g: string): boolean => (g === '*' ? after.pauseAll : after.paused.has(g));
    for (const g of new Set(['*', ...before.paused, ...after.paused])) {
      if (was(g) !== now(g)) d.log.info(now(g) ? 'paused' : 'resumed', { groups: g === '*' ? 'all' : g, by: 'pmjqctl' });
    }
    for (const id of after.kills) {
      const name = d.jobHere(id);
      if (name === undefined) continue; // another node's job (or already over)
      d.log.warn('job-kill', { id, name, requested_by: 'pmjqctl kill' });
      d.kill(id);
      doneKill(d.layout, id);
    }
  }
}
