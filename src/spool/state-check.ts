// The spool's state directory .pmjq, looked at every rescan (one lstat).
// Removed with the spool and made again: our places are made again.
// Replaced, or not as pmjq makes it (someone else's, writable by others):
// nothing is claimed until it is put right — its contents could be forged.
// A spool out of reach (renamed away, unmounted) is waited for, never
// recreated.

import fs from 'node:fs';
import { errText, isErrno } from '../util/fsx.js';
import type { Logger } from '../util/log.js';
import type { Layout } from './layout.js';
import { prepareState } from './trust.js';

export interface StateCheckDeps {
  layout: Layout;
  node: string;
  uid: number;
  log: Logger;
  /** .pmjq is trusted again: the hold on claiming is lifted */
  trusted: () => void;
  /** .pmjq was made again: open files in the old one are let go */
  recreated: () => void;
}

export class StateCheck {
  /** why .pmjq is not trusted now; null: it is */
  untrusted: string | null = null;
  /** inode of .pmjq when last seen (a new one: the spool was made again) */
  private ino: number | undefined;

  constructor(private readonly d: StateCheckDeps) {}

  /** At start-up: a spool others could rearrange, or a .pmjq someone else made, is refused (TrustError: exit 2). */
  prepare(): void {
    this.ino = prepareState(this.d.layout, this.d.node, this.d.uid).ino;
  }

  check(): void {
    const { d } = this;
    let ino: number;
    try {
      ino = fs.lstatSync(d.layout.state).ino;
    } catch (err) {
      if (!isErrno(err, 'ENOENT') || !fs.existsSync(d.layout.spool)) return;
      ino = -1;
    }
    if (ino === this.ino && this.untrusted === null) return;
    let st: fs.Stats;
    try {
      st = prepareState(d.layout, d.node, d.uid);
    } catch (err) {
      const why = errText(err);
      if (this.untrusted !== why) d.log.error('state-untrusted', { spool: d.layout.spool, error: why, note: 'claiming nothing until it is put right' });
      this.untrusted = why;
      return;
    }
    if (this.untrusted !== null) d.log.warn('state-trusted', { spool: d.layout.spool, note: 'claiming again' });
    d.trusted();
    this.untrusted = null;
    if (st.ino !== this.ino) {
      d.log.warn('spool-recreated', { spool: d.layout.spool, note: 'its state directory .pmjq was removed or replaced: made again where missing' });
      d.recreated();
      this.ino = st.ino;
    }
  }
}
