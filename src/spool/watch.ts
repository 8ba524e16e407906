// Noticing new jobs. On a local filesystem inotify reports a new file within
// milliseconds; a rescan every --poll is the safety net for anything missed.
// On NFS/SMB/FUSE other nodes' writes raise no events, so there the rescan is
// the mechanism: one readdir per directory per interval.
//
// inotify is used through node:fs watch, one watch per directory (the spool
// and each group), each event naming the entry: a hint for the scanner. Not
// chokidar: it adds a watch per file and re-reads (and stats) the whole
// directory on every change, which with 100 000 queued jobs cost hundreds of
// MB and most of the daemon's CPU (bench/RESULTS.md, figure 3).

import fs from 'node:fs';
import path from 'node:path';
import * as names from './names.js';

export type WatchMode = 'inotify' | 'poll';

// statfs f_type magic numbers of filesystems whose changes on other machines
// raise no inotify events here (linux/magic.h and fs sources)
const SHARED_FS: Record<number, string> = {
  0x6969: 'nfs',
  0x517b: 'smb',
  0xff534d42: 'cifs',
  0xfe534d42: 'smb2',
  0x65735546: 'fuse',
  0x01021997: '9p',
  0x00c36400: 'ceph',
  0x0bd00bd0: 'lustre',
  0x47504653: 'gpfs',
  0x5346414f: 'afs',
  0x6b414653: 'afs',
  0x19830326: 'fhgfs/beegfs',
  0x013111a8: 'ibrix',
  0x73757245: 'coda',
  0x564c: 'ncp',
  0x7461636f: 'ocfs2',
  0x01161970: 'gfs2',
};

/** 'poll' on a shared filesystem, 'inotify' on a local one; the name of the filesystem type for the log. */
export function detectWatchMode(dir: string): { mode: WatchMode; fsType: string } {
  try {
    const t = fs.statfsSync(dir).type;
    const shared = SHARED_FS[t >>> 0];
    return shared ? { mode: 'poll', fsType: shared } : { mode: 'inotify', fsType: `0x${(t >>> 0).toString(16)}` };
  } catch {
    return { mode: 'poll', fsType: 'unknown' };
  }
}

export interface WatchEvents {
  /** a new entry NAME (its bytes) in spool-relative DIR ('' = top level) */
  entry(dir: string, name: Buffer): void;
  /** a new directory at the top level (a group) */
  group(dir: string): void;
  /** time for the periodic rescan */
  rescan(): void;
  error(err: Error): void;
}

export class Watcher {
  /** one inotify watch per directory: '' = the spool's top level, else a group */
  private readonly watches = new Map<string, fs.FSWatcher>();
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(
    private readonly spool: string,
    private readonly mode: WatchMode,
    private readonly pollMs: number,
    private readonly events: WatchEvents,
  ) {}

  /** Resolves once inotify watches are in place (immediately in poll mode). */
  async start(): Promise<void> {
    this.timer = setInterval(() => this.events.rescan(), this.pollMs);
    if (this.mode !== 'inotify') return;
    if (!this.watchDir('')) return;
    let top: fs.Dirent[];
    try {
      top = fs.readdirSync(this.spool, { withFileTypes: true });
    } catch (err) {
      this.events.error(err as Error);
      return;
    }
    for (const d of top) if (d.isDirectory() && !d.name.startsWith('.')) this.watchDir(d.name);
  }

  /** Watch a directory; false if that is impossible (the rescan still finds its jobs). */
  private watchDir(dir: string): boolean {
    if (this.stopped || this.watches.has(dir)) return true;
    const full = dir === '' ? this.spool : path.join(this.spool, dir);
    let w: fs.FSWatcher;
    try {
      // names as bytes: a name that is not UTF-8 would come back mangled as a string
      w = fs.watch(full, { persistent: true, encoding: 'buffer' }, (_event, name) => this.onEvent(dir, name));
    } catch (err) {
      // a group removed meanwhile, or unreadable: nothing to watch; anything else (ENOSPC: out of inotify watches) is said
      if (!isGone(err)) this.events.error(err as Error);
      return false;
    }
    w.on('error', (err) => {
      this.unwatch(dir);
      if (!isGone(err)) this.events.error(err);
    });
    this.watches.set(dir, w);
    return true;
  }

  private unwatch(dir: string): void {
    const w = this.watches.get(dir);
    if (!w) return;
    this.watches.delete(dir);
    w.close();
  }

  /** Every entry created, moved in or changed is a hint: a name already known costs the scanner nothing. */
  private onEvent(dir: string, name: Buffer | null): void {
    if (this.stopped) return;
    if (name === null) {
      // no name (the event queue overflowed): look at the whole directory
      if (dir === '') this.events.rescan();
      else this.events.group(dir);
      return;
    }
    if (name[0] === 0x2e) return; // hidden: '.'
    if (dir !== '') { this.events.entry(dir, name); return; }
    // at the top level an entry is a job or a group directory
    let st: fs.Stats | undefined;
    try {
      st = fs.lstatSync(names.join(this.spool, name), { throwIfNoEntry: false });
    } catch {
      st = undefined;
    }
    // a group's name is UTF-8 (scan.ts): other directories are left to the scanner
    const group = names.isUtf8(name) ? names.display(name) : null;
    if (st === undefined) {
      // gone (claimed, removed): a group directory that went is watched no more
      if (group !== null) this.unwatch(group);
    } else if (st.isDirectory()) {
      if (group !== null && !group.includes('\n') && !this.watches.has(group) && this.watchDir(group)) this.events.group(group);
    } else {
      if (group !== null) this.unwatch(group);
      this.events.entry('', name);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const dir of [...this.watches.keys()]) this.unwatch(dir);
  }
}

function isGone(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'EACCES' || code === 'EPERM';
}
