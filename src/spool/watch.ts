// Noticing new jobs. On a local filesystem inotify (through chokidar, native
// mode only) reports a new file within milliseconds; a rescan every --poll is
// the safety net for anything missed. On NFS/SMB/FUSE other nodes' writes
// raise no events, so there the rescan is the mechanism: one readdir per
// directory per interval. chokidar's own polling is never used: it stats
// every file separately, which on a 100 000-file NFS spool is ruinous.

import fs from 'node:fs';
import path from 'node:path';
import { watch as chokidarWatch, type FSWatcher } from 'chokidar';

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
  /** a new entry NAME in spool-relative DIR ('' = top level) */
  entry(dir: string, name: string): void;
  /** a new directory at the top level (a group) */
  group(dir: string): void;
  /** time for the periodic rescan */
  rescan(): void;
  error(err: Error): void;
}

export class Watcher {
  private chokidar: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;

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
    const root = this.spool;
    const w = chokidarWatch(root, {
      ignoreInitial: true,
      depth: 1,
      atomic: false,
      followSymlinks: false,
      usePolling: false,
      ignorePermissionErrors: true,
      ignored: (p: string) => p !== root && path.basename(p).startsWith('.'),
    });
    this.chokidar = w;
    w.on('add', (p) => this.onPath(p, false));
    w.on('change', (p) => this.onPath(p, false));
    w.on('addDir', (p) => this.onPath(p, true));
    w.on('error', (e) => this.events.error(e as Error));
    // chokidar reports a name once: a job dropped again under a name that was
    // just claimed (renamed away) went unreported until the next rescan. The
    // raw inotify events of the directory watches name every entry created
    // or moved in; each is a hint (a name already known costs nothing).
    // File watches report their own name: skipped, as is the ambiguous case
    // of a group holding an entry of its own name (the rescan finds it).
    w.on('raw', (event, name, details) => {
      const dir = (details as { watchedPath?: string } | undefined)?.watchedPath;
      if (event !== 'rename' || !name || dir === undefined) return;
      if (dir !== root && (path.dirname(dir) !== root || path.basename(dir) === name)) return;
      this.onPath(path.join(dir, name), false);
    });
    await new Promise<void>((resolve) => w.once('ready', () => resolve()));
  }

  private onPath(p: string, isDir: boolean): void {
    const rel = path.relative(this.spool, p);
    if (rel === '' || rel.startsWith('..')) return;
    const slash = rel.indexOf('/');
    if (slash < 0) {
      if (isDir) this.events.group(rel);
      else this.events.entry('', rel);
    } else {
      this.events.entry(rel.slice(0, slash), rel.slice(slash + 1));
    }
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const w = this.chokidar;
    this.chokidar = null;
    if (w) await w.close();
  }
}
