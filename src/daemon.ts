// The pmjq daemon: watch → scan → claim → schedule → run → finish.
//
//   Watcher   notices changes (inotify) and ticks the periodic rescan
//   Scanner   turns directory entries into candidates (or rejections)
//   Groups    queue candidates, oldest first, groups taking turns
//   LoadModel holds starts back under the load/CPU barriers
//   claim     moves a candidate into this node's claimed area (one rename)
//   JobProcess runs it
//   Finisher  archives it, or requeues it

import fs from 'node:fs';
import path from 'node:path';
import { Heartbeat } from './cluster/heartbeat.js';
import { Membership } from './cluster/membership.js';
import { controlPaths, doneKill, readControl, type ControlState } from './control/requests.js';
import { deadLocalNodes, recoverNode } from './cluster/recovery.js';
import { Slots } from './cluster/slots.js';
import { Watchdog, stallForTest } from './cluster/watchdog.js';
import type { DaemonOptions } from './options.js';
import type { JobProcess, JobEnd } from './run/job-process.js';
import { loggerLevel, parseLevel } from './run/levels.js';
import { Protocol, type EnqueueRequest } from './run/protocol/index.js';
import { closeInheritedDescriptors, launch, launcher, type Launcher } from './run/launch.js';
import type { JobOwner } from './run/owner.js';
import { ownerOf } from './run/privileges.js';
import { Admission, type Ticket } from './schedule/admission.js';
import { Holds, LoadModel } from './schedule/barrier.js';
import { Groups, type Group } from './schedule/groups.js';
import { Hooks } from './schedule/hooks.js';
import { SETTINGS_FILE, readSettingsFile } from './schedule/settings.js';
import { Heap } from './util/heap.js';
import type { Candidate } from './spool/candidate.js';
import { ClaimRefused, claimFromRetry, claimFromSpool, claimSub, linkCount, type ClaimedEntry, type ClaimedJob } from './spool/claim.js';
import { Finisher, type Outcome } from './spool/finish.js';
import { DEFAULT_GROUP, IdMaker, Layout, groupOf, makeNodeId } from './spool/layout.js';
import * as names from './spool/names.js';
import type { JobRecord, JobStatus } from './spool/record.js';
import { DirStamp } from './spool/dirstamp.js';
import { Scanner, type Polled } from './spool/scan.js';
import { Watcher, detectWatchMode, type WatchMode } from './spool/watch.js';
import { errText, isErrno } from './util/fsx.js';
import type { Logger } from './util/log.js';
import { prepareState } from './spool/trust.js';
import { monotonicMs } from './util/monotonic.js';
import { VERSION } from './version.js';

interface Running {
  job: ClaimedJob;
  proc: JobProcess;
  /** its admission: the group it counts in, the cluster slot it holds */
  ticket: Ticket;
}

/** A claimed job whose file is still being written (ETXTBSY): tried again later. */
interface Busy {
  job: ClaimedJob;
  ticket: Ticket;
  timer: NodeJS.Timeout;
}

const SHARED_FS_SETTLE_MS = 2000;
/** an empty executable is taken only once it has stayed empty (and unchanged) this long */
const EMPTY_SETTLE_MS = 2000;
/** Retry delays double per attempt up to this. */
const BACKOFF_CAP_MS = 3_600_000;
/** Node crashes a job may live through before it is archived as failed (a job that kills its node must not do so forever). */
const MAX_INTERRUPTIONS = 3;
/** with inotify, the full safety scan waits this many times its own duration (≥ --poll) */
const SAFETY_SCAN_BUDGET = 50;
/** a claimed file with a second name waits this many not-ready rounds (50 ms doubling: 6 s) for it to go, then is rejected */
const LINK_WAIT_TRIES = 7;

export class Daemon {
  readonly node: string;
  readonly layout: Layout;
  private readonly ids: IdMaker;
  private readonly groups = new Groups();
  private readonly load = new LoadModel();
  private readonly finisher: Finisher;
  private readonly scanner: Scanner;
  private watcher: Watcher | null = null;
  private heartbeat: Heartbeat | null = null;
  /** stops our jobs when the heartbeat goes unrenewed for half the lease, even while this thread is blocked */
  private watchdog: Watchdog | null = null;
  private readonly running = new Map<string, Running>();
  private readonly busy = new Map<string, Busy>();
  /** ETXTBSY retries so far per job: each retry is a new start, the count must outlive it */
  private readonly notReadyTries = new Map<string, number>();
  /** jobs that ended but could not be archived yet (full disk, permissions) */
  private readonly unfinished: { job: ClaimedEntry; outcome: Outcome }[] = [];
  private readonly settling = new Map<Candidate, number>();
  /** retry entries not due yet, earliest first */
  private readonly delayed = new Heap<Candidate>((a, b) => a.mtimeMs < b.mtimeMs);
  private delayedTimer: NodeJS.Timeout | null = null;
  private readonly holds: Holds;
  private readonly hooks: Hooks;
  private readonly slots: Slots;
  private readonly admission: Admission;
  private readonly membership: Membership;
  /** monotonicMs() at which the last heartbeat written in time began */
  private lastBeat = monotonicMs();
  /** the heartbeat could not be renewed for half the lease: claim nothing, run nothing */
  private fenced = false;
  /** while fenced: what became of the jobs the watchdog stopped */
  private fence: { left: number; requeued: number } | null = null;
  /** the fd 3/4 command protocol of every job */
  private readonly protocol: Protocol;
  /** sub-jobs enqueued and not started yet, by id */
  private readonly subs = new Map<string, Candidate>();
  /** pmjqctl pause/kill requests, read every poll */
  private control: ControlState = { pauseAll: false, paused: new Set(), kills: [] };
  private readonly uid = process.getuid?.() ?? 0;
  private readonly asRoot = this.uid === 0;
  /** who --init's script runs as: the operator's, pmjq's own user */
  private readonly selfOwner: JobOwner = ownerOf(this.uid, process.getgid?.() ?? 0);
  /** how jobs are started: as their owner, in a clean environment */
  private readonly launcher: Launcher;
  /** .pmjq is not as pmjq made it (someone else's, writable by others): claim nothing until it is */
  private untrusted: string | null = null;
  private mode: WatchMode = 'inotify';
  private settleMs = 0;
  private recheck: NodeJS.Timeout | null = null;
  private settleTimer: NodeJS.Timeout | null = null;
  /** Date.now() when settleTimer fires */
  private settleAt = 0;
  private unfinishedTimer: NodeJS.Timeout | null = null;
  private stopping = false;
  /** performance.now() before which the inotify-mode safety scan is not due */
  private nextFullScan = 0;
  /** performance.now() when settings and pmjqctl requests are read again without a doorbell */
  private nextSlowLook = 0;
  /** performance.now() when other nodes' heartbeats are looked at again */
  private nextMembership = 0;
  /** NFS: directory stamps are read from an open directory (dirstamp.ts) */
  private nfs = false;
  /** pmjqctl's request directories: read again without a doorbell only if one of them changed */
  private readonly controlStamps: { dir: string; stamp: DirStamp }[];
  private pumping = false;
  private pumpQueued = false;
  private failures = 0;
  /** inode of .pmjq when last seen (a new one: the spool was made again) */
  private stateIno: number | undefined;
  private finishedCount = 0;
  private resolveDone!: (code: number) => void;

  constructor(private readonly opts: DaemonOptions, private readonly log: Logger) {
    this.layout = new Layout(opts.spool);
    this.node = makeNodeId();
    this.ids = new IdMaker();
    this.finisher = new Finisher(this.layout, this.node, {
      archive: opts.archive, errors: opts.errors, keep: opts.keep, keepAgeMs: opts.keepAgeMs,
    });
    this.scanner = new Scanner(
      this.layout,
      { asRoot: this.asRoot, allowRoot: opts.allowRoot },
      {
        found: (c) => this.found(c),
        reject: (dir, name, reason) => this.reject(dir, name, reason),
        groupSeen: (dir, present) => { if (present) this.groupFor(dir); },
      },
      log,
      (group) => !opts.groups || opts.groups.includes(group),
    );
    this.holds = new Holds(log);
    this.slots = new Slots(this.layout.state, this.node);
    this.admission = new Admission({
      limits: { load: opts.load, cpu: opts.cpu }, pollMs: opts.pollMs, load: this.load, holds: this.holds, slots: this.slots, log,
      paused: (g) => this.paused(g), queued: () => this.groups.queued(), newId: () => this.ids.next(),
    });
    this.protocol = new Protocol({
      enqueue: (req) => this.enqueueSub(req), kill: (id) => this.killJob(id), log,
      // chaqum(1) drives one user's job tree: no spool, no operator's groups
      isSpoolGroup: (name) => !opts.chaqum && (name === DEFAULT_GROUP || this.groups.find(name)?.dir !== undefined || fs.existsSync(this.layout.groupDir(name))),
    });
    this.membership = new Membership(this.layout, this.node, opts.leaseMs);
    const ctl = controlPaths(this.layout);
    this.controlStamps = [this.layout.control, ctl.paused, ctl.kill].map((dir) => ({ dir, stamp: new DirStamp() }));
    for (const [name, settings] of opts.groupSettings) this.groups.get(name).cliSettings = settings;
    this.hooks = new Hooks(
      { idle: opts.onIdle, saturated: opts.onSaturated, env: { PMJQ_NODE: this.node, PMJQ_SPOOL: this.layout.spool } },
      log,
      () => ({ queued: this.groups.queued(), running: this.running.size, load: this.load.predictedLoad(), heldBy: this.holds.reason() }),
    );
    this.launcher = launcher(this.layout.spool, this.node, opts.env);
  }

  /** Runs until stopped (or, with --once, until the spool is drained). Resolves to the exit code. */
  async run(): Promise<number> {
    const done = new Promise<number>((resolve) => { this.resolveDone = resolve; });
    const o = this.opts;
    // nothing this process inherited reaches a job
    closeInheritedDescriptors();
    // a spool others could rearrange, or a .pmjq someone else made, is refused (TrustError: exit 2)
    this.stateIno = prepareState(this.layout, this.node, this.uid).ino;
    const detected = detectWatchMode(this.layout.spool);
    this.mode = o.watch === 'auto' ? detected.mode : o.watch;
    this.settleMs = o.settleMs ?? (detected.mode === 'poll' ? SHARED_FS_SETTLE_MS : 0);
    this.nfs = detected.fsType === 'nfs';
    this.scanner.pacing(o.pollMs, this.nfs);
    if (this.asRoot && !this.launcher.setpriv) {
      this.log.warn('no-setpriv', { error: 'setpriv(1) not found: jobs run as their owner without supplementary groups' });
    }
    this.log.info('start', {
      node: this.node, version: VERSION, spool: this.layout.spool, archive: o.archive, errors: o.errors,
      watch: this.mode, fs: detected.fsType, poll_ms: o.pollMs, settle_ms: this.settleMs,
      jobs: o.jobs, load: o.load, cpu: o.cpu, once: o.once, lease_ms: o.leaseMs, kill_grace_ms: o.killGraceMs,
    });

    this.watchdog = new Watchdog({ node: this.node, leaseMs: o.leaseMs, killGraceMs: o.killGraceMs, logFormat: o.logFormat, verbosity: o.verbosity }, this.log);
    this.heartbeat = new Heartbeat(this.layout, this.node, VERSION, new Date(), () => ({
      groups: o.groups ?? null, running: this.running.size, queued: this.groups.queued(),
      state: this.stopping ? 'stopping' : this.fenced ? 'fenced' : this.running.size > 0 ? 'processing' : 'idle',
      jobs: o.jobs, lease_ms: o.leaseMs, holds: this.holds.list(),
    }), Math.min(5000, o.leaseMs / 4));
    this.heartbeat.start((fsNow, startedMs) => this.beaten(fsNow, startedMs), (err) => this.beatFailed(err));
    this.recoverDeadLocalNodes();
    const prune = (): void => {
      const pruned = this.finisher.pruneOld();
      if (pruned) this.log.info('pruned', { dir: this.layout.doneRoot, files: pruned, older_than_ms: o.keepAgeMs });
    };
    prune();
    setInterval(prune, 3_600_000).unref();

    this.installSignals();
    // the first scan looks at every queued file once: it yields to the event
    // loop, so that a SIGTERM during a long one is acted on at once
    if (!(await this.scanner.scanAllYielding(() => this.stopping))) return done;
    this.refreshSettings();
    this.readControl();
    if (!o.once) {
      this.watcher = new Watcher(this.layout.spool, this.mode, o.pollMs, {
        entry: (dir, name) => this.scanner.hint(dir, name),
        group: (dir) => { this.scanner.scanDir(dir); this.pump(); },
        rescan: () => this.rescan(),
        error: (err) => this.log.warn('watch-error', { error: errText(err) }),
      });
      await this.watcher.start();
      // files dropped while inotify watches were being set up
      this.scanner.scanAll();
    }
    if (o.init) {
      // the operator's own command: it runs as pmjq does
      this.enqueueSub({ parent: '', owner: this.selfOwner, script: o.init.script, args: o.init.args, tree: o.tree ?? path.dirname(o.init.script), forget: false });
    }
    this.pump();
    this.checkDrained();
    return done;
  }

  // ---- sub-jobs (enqueue over fd 3, --init) ----

  /** Queue a sub-job; its id is valid at once. It runs with its parent's owner's privileges, never more. */
  private enqueueSub(req: EnqueueRequest): string {
    if (this.stopping) throw new Error('pmjq is stopping');
    // a sub-job or a repeat's instance runs as the job that asked, never more: no owner, no job
    const owner = req.owner;
    if (!owner) throw new Error('sub-job without an owner: refused');
    const id = this.ids.next();
    const g = this.groups.get(req.group ?? 'default');
    if (req.maxproc !== undefined) g.protocolSettings = { ...g.protocolSettings, max: req.maxproc };
    if (req.maxcpu !== undefined) g.protocolSettings = { ...g.protocolSettings, cpu: req.maxcpu };
    const now = Date.now();
    const c: Candidate = {
      group: g.name, dir: '', name: Buffer.from(path.basename(req.script)), key: id,
      mtimeMs: now, size: 0, seenUid: owner.uid, seenAt: now, gone: false, listed: 0,
      sub: { id, script: req.script, args: req.args, parent: req.parent || null, tree: req.tree, owner },
    };
    this.subs.set(id, c);
    g.queue.push(c);
    this.log.debug('enqueued', { id, script: req.script, group: g.name, parent: req.parent || undefined });
    this.schedulePump();
    return id;
  }

  /** Terminate a queued or running job (killjobs, a killed parent's sub-jobs). */
  private killJob(id: string): boolean {
    const r = this.running.get(id);
    if (r) { r.proc.kill('killed'); return true; }
    const c = this.subs.get(id);
    if (c) {
      c.gone = true;
      this.subs.delete(id);
      this.log.info('job-end', { id, name: names.display(c.name), group: c.group, status: 'killed', error: 'killed before it started' });
      this.protocol.jobEnded(id, null, true);
      return true;
    }
    return false;
  }

  // ---- scan ----

  private rescan(): void {
    if (this.stopping) return;
    const polled = this.safetyScan();
    // what no directory stamp tells (a .group.json edited in place, a missed
    // doorbell) is read when the top level rang, else at the idle groups' pace
    const now = performance.now();
    const slow = now >= this.nextSlowLook;
    if (slow) this.nextSlowLook = now + this.scanner.idleCapMs;
    // on a local disk (inotify) there is no file server to spare: settings and requests are read every poll
    const everything = polled.rang || this.mode === 'inotify';
    // before anything can be claimed; an idle node with nothing new has nothing to claim
    if (everything || slow || polled.changed.length > 0 || this.running.size > 0 || this.groups.queued() > 0) this.checkLayout();
    // settings: a group's at the pace its directory is looked at, the top level's at the slow pace
    this.refreshSettings(everything ? undefined : new Set(slow ? [...polled.looked, ''] : polled.looked));
    if (everything || (slow && this.controlStamps.map((d) => d.stamp.due(d.dir, this.nfs, this.scanner.fsNow())).includes(true))) this.readControl();
    this.pump();
  }

  /**
   * The periodic look. In poll mode it is how jobs are found: every --poll,
   * each directory stat'ed and read if it changed (Scanner.poll). With
   * inotify it is a safety net for missed events, and reading 100 000
   * queued names costs tens of milliseconds: it then runs at most every
   * SAFETY_SCAN_BUDGET times its last duration (≤ 2 % of a core), and the
   * retry area (written by other nodes' failures too) at its own pace.
   */
  private safetyScan(): Polled {
    const now = performance.now();
    if (this.mode === 'inotify' && now < this.nextFullScan) { this.scanner.pollRetry(); return { rang: false, changed: [], looked: [] }; }
    const polled = this.scanner.poll();
    const took = performance.now() - now;
    this.nextFullScan = now + took * SAFETY_SCAN_BUDGET;
    return polled;
  }

  /**
   * .pmjq is looked at every rescan (one lstat). Removed with the spool and
   * made again: our places are made again. Replaced, or not as pmjq makes
   * it (someone else's, writable by others): nothing is claimed until it is
   * put right — its contents could be forged. A spool out of reach
   * (renamed away, unmounted) is waited for, never recreated.
   */
  private checkLayout(): void {
    let ino: number;
    try {
      ino = fs.lstatSync(this.layout.state).ino;
    } catch (err) {
      if (!isErrno(err, 'ENOENT') || !fs.existsSync(this.layout.spool)) return;
      ino = -1;
    }
    if (ino === this.stateIno && this.untrusted === null) return;
    let st: fs.Stats;
    try {
      st = prepareState(this.layout, this.node, this.uid);
    } catch (err) {
      const why = errText(err);
      if (this.untrusted !== why) this.log.error('state-untrusted', { spool: this.layout.spool, error: why, note: 'claiming nothing until it is put right' });
      this.untrusted = why;
      return;
    }
    if (this.untrusted !== null) this.log.warn('state-trusted', { spool: this.layout.spool, note: 'claiming again' });
    this.holds.release('state');
    this.untrusted = null;
    if (st.ino !== this.stateIno) {
      this.log.warn('spool-recreated', { spool: this.layout.spool, note: 'its state directory .pmjq was removed or replaced: made again where missing' });
      this.finisher.close();
      this.stateIno = st.ino;
    }
  }

  /** pmjqctl's pause flags and kill requests. */
  private readControl(): void {
    const before = this.control;
    this.control = readControl(this.layout);
    const was = (g: string): boolean => (g === '*' ? before.pauseAll : before.paused.has(g));
    const now = (g: string): boolean => (g === '*' ? this.control.pauseAll : this.control.paused.has(g));
    for (const g of new Set(['*', ...before.paused, ...this.control.paused])) {
      if (was(g) !== now(g)) this.log.info(now(g) ? 'paused' : 'resumed', { groups: g === '*' ? 'all' : g, by: 'pmjqctl' });
    }
    for (const id of this.control.kills) {
      const r = this.running.get(id);
      const b = this.busy.get(id);
      if (!r && !b) continue; // another node's job (or already over)
      this.log.warn('job-kill', { id, name: (r ?? b)!.job.meta.name, requested_by: 'pmjqctl kill' });
      if (r) r.proc.kill('killed');
      if (b) {
        clearTimeout(b.timer);
        this.busy.delete(id);
        b.ticket.release();
        this.complete(b.job, { status: 'killed', exitCode: null, signal: null, started: null, finished: new Date(), error: 'killed before it started' }, b.ticket.group);
      }
      doneKill(this.layout, id);
    }
  }

  private paused(g: Group): boolean {
    return this.control.pauseAll || this.control.paused.has(g.name);
  }

  /** The group of a spool directory, remembering where its settings file is. */
  private groupFor(dir: string): Group {
    const g = this.groups.get(groupOf(dir));
    if (g.dir === undefined) {
      g.dir = dir;
      // a spool group's settings are the operator's: none left from `enqueue -g NAME -m/-c`
      g.protocolSettings = {};
      // a group seen for the first time: its settings apply to its first job already
      this.readGroupSettings(g);
    }
    return g;
  }

  /** Re-read each group's .group.json (of these directories only) if it changed: one stat per group. */
  private refreshSettings(dirs?: Set<string>): void {
    this.groupFor('');
    for (const g of this.groups.all()) if (!dirs || (g.dir !== undefined && dirs.has(g.dir))) this.readGroupSettings(g);
  }

  private readGroupSettings(g: Group): void {
    if (g.dir === undefined) return;
    const file = path.join(this.layout.groupDir(g.dir), SETTINGS_FILE);
    try {
      const r = readSettingsFile(file, g.settingsStamp);
      if (r === undefined) return;
      g.settingsStamp = r.stamp;
      g.fileSettings = r.settings ?? {};
      if (r.settings !== null) this.log.info('settings', { group: g.name, file, ...g.settings });
    } catch (err) {
      const stamp = (err as { stamp?: string }).stamp;
      if (stamp !== undefined && stamp === g.settingsStamp) return;
      g.settingsStamp = stamp;
      this.log.warn('settings-invalid', { group: g.name, file, error: (err as Error).message, keeping: 'the last good settings' });
    }
  }

  private found(c: Candidate): void {
    this.groupFor(c.dir);
    if (c.retry && c.mtimeMs > Date.now()) {
      this.delayed.push(c);
      this.armDelayed();
      return;
    }
    if (c.retry) c.mtimeMs = Date.parse(c.retry.meta.created) || c.mtimeMs;
    const wait = c.retry || c.sub ? 0 : this.settleFor(c);
    if (wait > 0) {
      // On shared filesystems ETXTBSY does not cross nodes: a file is taken
      // only once its size and mtime have held still for --settle.
      this.settling.set(c, c.seenAt);
      if (c.size === 0) this.log.debug('settling', { file: names.display(c.name), group: c.group, wait_ms: wait, reason: 'empty: its content may not be written yet' });
      this.armSettle(wait);
      return;
    }
    this.groups.add(c);
    this.schedulePump();
  }

  /** Wake up when the earliest waiting retry is due. */
  private armDelayed(): void {
    const next = this.delayed.peek();
    if (this.delayedTimer) clearTimeout(this.delayedTimer);
    this.delayedTimer = null;
    if (!next || this.stopping) return;
    this.delayedTimer = setTimeout(() => {
      this.delayedTimer = null;
      const now = Date.now();
      for (let c = this.delayed.peek(); c && c.mtimeMs <= now; c = this.delayed.peek()) {
        this.delayed.pop();
        if (!c.gone) this.found(c);
      }
      this.armDelayed();
      this.pump();
    }, Math.max(0, next.mtimeMs - Date.now()));
  }

  private settle(): void {
    this.settleTimer = null;
    const now = Date.now();
    let next = Infinity;
    for (const [c, since] of this.settling) {
      if (c.gone) { this.settling.delete(c); continue; }
      const wait = this.settleFor(c);
      if (now - since < wait) { next = Math.min(next, since + wait - now); continue; }
      let st: fs.Stats;
      try {
        st = fs.lstatSync(names.join(this.layout.groupDir(c.dir), c.name));
      } catch {
        this.settling.delete(c);
        this.scanner.forget(c);
        continue;
      }
      if (st.size !== c.size || st.mtimeMs !== c.mtimeMs) {
        c.size = st.size;
        c.mtimeMs = st.mtimeMs;
        this.settling.set(c, now);
        next = Math.min(next, this.settleFor(c));
        continue;
      }
      this.settling.delete(c);
      this.groups.add(c);
    }
    if (next !== Infinity) this.armSettle(next);
    this.pump();
  }

  /** Look at the settling files again in `ms` (or sooner, if already due sooner). */
  private armSettle(ms: number): void {
    const at = Date.now() + ms;
    if (this.settleTimer && this.settleAt <= at) return;
    if (this.settleTimer) clearTimeout(this.settleTimer);
    this.settleAt = at;
    this.settleTimer = setTimeout(() => this.settle(), ms);
  }

  /**
   * How long a file must hold still before it is taken: --settle; and an
   * empty file at least EMPTY_SETTLE_MS, because `touch f; chmod +x f; cat
   * >> f` makes it executable before its content is written (ETXTBSY only
   * covers a file that is open when it is run).
   */
  private settleFor(c: Candidate): number {
    return c.size === 0 ? Math.max(this.settleMs, EMPTY_SETTLE_MS) : this.settleMs;
  }

  private reject(dir: string, name: names.Name, reason: string): void {
    const file = names.display(names.join(this.layout.groupDir(dir), name));
    try {
      const rec = this.finisher.reject(this.ids.next(), dir, name, reason);
      if (rec) this.log.warn('rejected', { file, reason, moved_to: rec.archive });
    } catch (err) {
      this.log.error('reject-failed', { file, reason, error: errText(err) });
    }
  }

  // ---- schedule ----

  /**
   * One scheduling pass soon — in this loop iteration's check phase — however
   * many candidates or job ends arrive meanwhile (a scan may find 100 000).
   */
  private schedulePump(): void {
    if (this.pumpQueued) return;
    this.pumpQueued = true;
    setImmediate(() => { this.pumpQueued = false; this.pump(); });
  }

  private pump(): void {
    // timers run late while jobs keep ending: a busy node beats from here
    this.heartbeat?.beatIfDue();
    this.noticeFence();
    if (this.untrusted !== null && this.groups.queued() > 0) this.holds.hold('state', `.pmjq untrusted: ${this.untrusted}`, this.groups.queued());
    if (this.stopping || this.pumping || this.fenced || this.untrusted !== null) return;
    this.pumping = true;
    try {
      while (this.opts.jobs === 0 || this.running.size < this.opts.jobs) {
        const ticket = this.groups.next((g) => this.admission.admitted(g));
        if (!ticket) break;
        const c = ticket.group.queue.pop()!;
        this.scanner.forget(c);
        const job = this.claim(c);
        if (job) this.start(job, ticket);
        else ticket.release();
      }
    } finally {
      this.pumping = false;
    }
    for (const g of this.groups.all()) if (g.peek() === undefined) this.admission.idle(g);
    const waiting = this.groups.all().some((g) => g.peek() !== undefined);
    // a barrier may lift without any event: look again in a second
    if (waiting && this.holds.reason() !== null) this.recheck ??= setTimeout(() => { this.recheck = null; this.pump(); }, 1000);
    // paused groups are the operator's choice, not saturation
    const heldBack = this.groups.all().some((g) => !this.paused(g) && g.peek() !== undefined);
    this.hooks.update(this.groups.queued() + this.settling.size + this.delayed.size, this.running.size + this.busy.size, heldBack);
    this.checkDrained();
  }

  // ---- claim ----

  private claim(c: Candidate): ClaimedJob | null {
    const now = new Date();
    const ctx = { asRoot: this.asRoot, allowRoot: this.opts.allowRoot };
    try {
      if (c.sub) this.subs.delete(c.sub.id);
      const job = c.sub
        ? claimSub(this.layout, this.node, c, now)
        : c.retry
          ? claimFromRetry(this.layout, this.node, c, now, ctx)
          : claimFromSpool(this.layout, this.node, this.ids.next(now.getTime()), c, now, ctx);
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

  /** The file claimed is not the one scanned, and not an acceptable job: it goes to rejected/. */
  private rejectClaimed(r: ClaimRefused): void {
    const file = r.job.meta.name;
    try {
      const rec = this.finisher.rejectClaimed(r.job, r.reason);
      this.log.warn('rejected', { file, group: r.job.meta.group, reason: r.reason, moved_to: rec?.archive, when: 'after the claim' });
    } catch (err) {
      this.log.error('reject-failed', { file, reason: r.reason, error: errText(err), kept_in: r.job.dir });
    }
  }

  // ---- run ----

  private start(job: ClaimedJob, ticket: Ticket): void {
    const m = job.meta;
    const group = ticket.group;
    if (job.links > 1 && (job.links = linkCount(job)) > 1) {
      if ((this.notReadyTries.get(job.id) ?? 0) < LINK_WAIT_TRIES) return this.notReady(job, ticket, 'the file has a second name (a hard link): waiting for it to go');
      ticket.release();
      this.notReadyTries.delete(job.id);
      this.rejectClaimed(new ClaimRefused(job, `has ${job.links} hard links (a job file must have one name)`));
      this.schedulePump();
      return;
    }
    const proc = launch(this.launcher, {
      id: job.id,
      file: job.file,
      args: m.args ?? [],
      cwd: m.tree ?? this.layout.groupDir(m.dir),
      owner: job.owner,
      identity: m,
      logPath: this.finisher.logPath(job),
      timeoutMs: group.settings.timeout ?? this.opts.timeoutMs,
      killGraceMs: this.opts.killGraceMs,
      handler: this.protocol.handlerFor({ id: job.id, tree: this.opts.tree ?? m.tree ?? this.layout.groupDir(m.dir), owner: job.owner }),
      log: this.log,
      onLine: this.opts.chaqum ? (line) => this.jobLine(job, line) : undefined,
    });
    let r;
    try {
      r = proc.start();
    } catch (err) {
      r = { ok: false as const, busy: false as const, error: errText(err) };
    }
    if (r.ok) {
      this.running.set(job.id, { job, proc, ticket });
      group.running++;
      this.load.jobStarted(job.id);
      this.protocol.jobStarted(job.id);
      this.log.info('job-start', { id: job.id, name: m.name, group: m.group, attempt: m.attempt, pid: proc.pid });
      // its process group id is its pid (its own session)
      if (proc.pid !== undefined && this.watchdog && !this.watchdog.watch(proc.pid)) {
        this.log.error('job-unwatched', { id: job.id, error: 'the fencing watchdog watches this many jobs already: stopped' });
        proc.kill('interrupted');
      }
      void proc.ended.then((end) => this.ended(job.id, end));
      stallForTest();
    } else if (r.busy) {
      this.notReady(job, ticket);
    } else {
      ticket.release();
      this.notReadyTries.delete(job.id);
      const now = new Date();
      this.log.warn('job-start-failed', { id: job.id, name: m.name, group: m.group, error: r.error });
      this.complete(job, { status: 'failed', exitCode: null, signal: null, started: null, finished: now, error: r.error }, group);
    }
  }

  /** chaqum mode: a job's output line in the log, at the level its prefix gives. */
  private jobLine(job: ClaimedJob, line: string): void {
    const { level, text } = parseLevel(line);
    this.log.log(loggerLevel(level), 'output', { id: job.id, job: path.basename(job.file), level: level ?? undefined, line: text });
  }

  /** Someone still writes the file (ETXTBSY), or a second name is still there. Not a failure: try again, backing off to 5 s. */
  private notReady(job: ClaimedJob, ticket: Ticket, reason = 'file still open for writing (ETXTBSY)'): void {
    const tries = this.notReadyTries.get(job.id) ?? 0;
    this.notReadyTries.set(job.id, tries + 1);
    if (tries === 0) this.log.info('job-not-ready', { id: job.id, name: job.meta.name, reason });
    const delay = Math.min(5000, 50 * 2 ** tries);
    const timer = setTimeout(() => {
      this.busy.delete(job.id);
      if (this.stopping) { ticket.release(); return this.requeueBusy(job); }
      this.start(job, ticket);
    }, delay);
    this.busy.set(job.id, { job, ticket, timer });
  }

  private requeueBusy(job: ClaimedJob): void {
    try {
      // it never ran: the attempt it used is given back
      job.meta.attempt--;
      this.notReadyTries.delete(job.id);
      this.finisher.requeue(job, Date.now(), 'not started: file still being written', null);
    } catch (err) {
      this.log.error('requeue-failed', { id: job.id, error: errText(err) });
    }
    this.checkDrained();
  }

  // ---- finish ----

  private ended(id: string, end: JobEnd): void {
    const r = this.running.get(id)!;
    // the watchdog stopped it: this node was fenced, and the job may be another node's by now
    const fencedStop = r.proc.pid !== undefined && this.watchdog !== null && this.watchdog.ended(r.proc.pid);
    this.running.delete(id);
    r.ticket.group.running--;
    this.load.jobEnded(id);
    if (end.busy && !fencedStop) {
      this.notReady(r.job, r.ticket);
      this.schedulePump();
      return;
    }
    this.notReadyTries.delete(id);
    r.ticket.releaseAfterRun();
    const status: JobStatus = fencedStop ? 'interrupted'
      : end.reason === 'exit' ? (end.exitCode === 0 ? 'done' : 'failed') : end.reason;
    const outcome: Outcome = { status, exitCode: end.exitCode, signal: end.signal, started: end.started, finished: end.finished };
    if (fencedStop && this.lostToRecovery(r.job)) {
      // another node took it over while we were cut off: no record, no archive, it is that node's now
      this.protocol.jobEnded(id, null, true);
      this.leftToRecovery(r.job);
    } else if (status === 'interrupted' && r.job.meta.script === undefined) {
      this.protocol.jobEnded(id, null, true);
      try {
        this.finisher.requeue(r.job, Date.now(), fencedStop ? `interrupted: node ${this.node} was fenced` : 'interrupted: pmjq stopped', outcome);
        this.log.info('job-requeued', { id, name: r.job.meta.name, group: r.job.meta.group, reason: fencedStop ? 'fenced' : 'interrupted' });
        if (fencedStop) this.fenceTally().requeued++;
      } catch (err) {
        if (fencedStop && this.lostToRecovery(r.job)) this.leftToRecovery(r.job);
        else this.log.error('requeue-failed', { id, error: errText(err) });
      }
    } else {
      this.complete(r.job, outcome, r.ticket.group);
    }
    if (fencedStop) this.fencedJobsHandled();
    // not this.pump(): spawning the next job from inside a child's exit
    // handling starves libuv's timers (measured: 38 s late after 10 s of
    // back-to-back jobs with fd 3/4 pipes); from the check phase it does not
    this.schedulePump();
  }

  /**
   * A failed attempt with retries left goes to retry/ and runs again after
   * BACKOFF·2^(attempt−1) (±20 % jitter, so that a burst of failures does
   * not come back as a burst), capped at an hour.
   */
  private retryLater(job: ClaimedJob, group: Group, outcome: Outcome): boolean {
    if (outcome.status !== 'failed' && outcome.status !== 'timeout') return false;
    if (job.meta.script !== undefined) return false; // a sub-job's parent decides what to do about it
    const retries = group.settings.retries ?? this.opts.retries;
    // interrupted attempts (a node stopped or died) do not count as failures
    if (job.meta.attempt - (job.meta.interrupted ?? 0) > retries) return false;
    const base = group.settings.backoff ?? this.opts.backoffMs;
    const delay = Math.min(BACKOFF_CAP_MS, base * 2 ** (job.meta.attempt - 1) * (0.8 + 0.4 * Math.random()));
    const due = Date.now() + delay;
    const why = outcome.error ?? (outcome.signal ? `signal ${outcome.signal}` : `exit ${outcome.exitCode}`);
    try {
      const r = this.finisher.requeue(job, due, `${outcome.status}: ${why}`, outcome);
      this.log.warn('job-retry', {
        id: job.id, name: job.meta.name, group: job.meta.group, status: outcome.status, exit: outcome.exitCode,
        attempt: job.meta.attempt, next_attempt: r.meta.attempt, retries, delay_ms: Math.round(delay),
      });
      this.scanner.addRetry(r.entry, due, r.meta);
      this.protocol.jobEnded(job.id, outcome.exitCode, false, outcome.signal);
      return true;
    } catch (err) {
      this.log.error('requeue-failed', { id: job.id, error: errText(err) });
      return false;
    }
  }

  private complete(job: ClaimedJob, outcome: Outcome, group = this.groupFor(job.meta.dir)): void {
    if (this.retryLater(job, group, outcome)) return;
    const s = outcome.status;
    this.protocol.jobEnded(job.id, outcome.exitCode, s === 'killed' || s === 'timeout' || s === 'interrupted', outcome.signal);
    if (outcome.status !== 'done') this.failures++;
    let record: JobRecord;
    try {
      record = this.finisher.finish(job, outcome);
    } catch (err) {
      if (this.lostToRecovery(job)) {
        // we were taken for dead (fenced too late?) and another node requeued it
        this.log.error('job-lost-to-recovery', { id: job.id, name: job.meta.name, error: 'its claimed directory was taken over by another node; that node requeued it' });
        return;
      }
      this.log.error('archive-failed', {
        id: job.id, name: job.meta.name, error: errText(err),
        kept_in: job.dir, retry: 'the archive step is tried again every poll interval',
      });
      // should we stop (or die) before it is archived, the next pmjq archives it: it never runs again
      try { this.finisher.markEnded(job, outcome); } catch { /* without the note it would be requeued */ }
      this.keepUnfinished(job, outcome);
      return;
    }
    this.finishedCount++;
    this.log.log(outcome.status === 'done' ? 'info' : 'warn', 'job-end', {
      id: job.id, name: job.meta.name, group: job.meta.group, status: record.status,
      exit: record.exit_code, signal: record.signal, duration_ms: record.duration_ms,
      archive: record.archive, error: record.error,
    });
  }

  /** Its claimed directory is gone while the claimed areas are in reach: another node took it over (out of reach is not gone). */
  private lostToRecovery(job: ClaimedEntry): boolean {
    return !fs.existsSync(job.dir) && fs.existsSync(this.layout.claimedRoot);
  }

  private keepUnfinished(job: ClaimedEntry, outcome: Outcome): void {
    this.unfinished.push({ job, outcome });
    this.unfinishedTimer ??= setInterval(() => this.retryUnfinished(), this.opts.pollMs);
  }

  private retryUnfinished(): void {
    const pending = this.unfinished.splice(0);
    for (const p of pending) {
      if (this.lostToRecovery(p.job)) {
        this.log.error('job-lost-to-recovery', { id: p.job.id, name: p.job.meta.name, error: 'its claimed directory was taken over by another node' });
        continue;
      }
      try {
        const rec = this.finisher.finish(p.job, p.outcome);
        this.log.info('archive-recovered', { id: p.job.id, archive: rec.archive });
      } catch {
        this.unfinished.push(p);
      }
    }
    if (this.unfinished.length === 0 && this.unfinishedTimer) {
      clearInterval(this.unfinishedTimer);
      this.unfinishedTimer = null;
    }
    this.checkDrained();
  }

  // ---- lifetime ----

  private recoverDeadLocalNodes(): void {
    for (const dead of deadLocalNodes(this.layout, this.node)) this.recover(dead);
    this.scanner.scanRetry();
  }

  /** Take over a stale node's claimed jobs, free its cluster slots, remove its heartbeat. */
  private recover(dead: string): void {
    try {
      const exhausted = (m: { interrupted?: number }): boolean => (m.interrupted ?? 0) >= MAX_INTERRUPTIONS;
      recoverNode(this.layout, this.node, dead, this.finisher, this.log, exhausted, (job, outcome) => {
        this.log.error('archive-failed', { id: job.id, name: job.meta.name, node: dead, kept_in: job.dir, retry: 'the archive step is tried again every poll interval' });
        this.keepUnfinished(job, outcome);
      });
      const freed = this.slots.releaseNode(dead);
      if (freed) this.log.info('slots-freed', { node: dead, slots: freed });
      try { fs.unlinkSync(this.layout.heartbeat(dead)); } catch { /* gone */ }
    } catch (err) {
      this.log.error('recover-failed', { node: dead, error: errText(err) });
    }
  }

  // ---- membership ----

  private beaten(fsNow: number, startedMs: number): void {
    this.noticeFence();
    const silent = startedMs - this.lastBeat;
    this.lastBeat = startedMs;
    this.watchdog?.renew(startedMs);
    this.scanner.fsSkewMs = fsNow - Date.now();
    if (this.fenced) {
      this.fenced = false;
      if (this.running.size === 0) this.fence = null;
      this.log.warn('unfenced', { node: this.node, silent_ms: Math.round(silent), note: 'heartbeat renewed: claiming again' });
    }
    // a node taken for dead has lost its claimed area to a recoverer: make a new one
    fs.mkdirSync(this.layout.claimed(this.node), { recursive: true });
    if (this.stopping) return;
    // a stale node is one silent for a lease: looking every quarter lease is soon enough, and spares the file server
    const now = performance.now();
    if (now < this.nextMembership) return;
    this.nextMembership = now + this.opts.leaseMs / 4;
    const stale = this.membership.stale(fsNow);
    for (const dead of stale) this.recover(dead);
    if (stale.length) { this.scanner.scanRetry(); this.pump(); }
  }

  /**
   * Self-fencing (pmjq(1), "Fencing"): unable to renew the heartbeat for half
   * the lease, claim nothing. The watchdog stops our jobs then, and logs
   * `fenced` — from its own thread, so that it does so even while this one
   * is blocked on a hung filesystem.
   */
  private beatFailed(err: unknown): void {
    const silent = monotonicMs() - this.lastBeat;
    this.log.warn('heartbeat-failed', { node: this.node, error: errText(err), silent_ms: Math.round(silent) });
    this.noticeFence();
    if (silent >= this.opts.leaseMs / 2) this.enterFence();
  }

  /** The watchdog has fenced the node since we last looked: claim nothing until a heartbeat is renewed. */
  private noticeFence(): void {
    if (this.watchdog?.fencedSinceAsked()) this.enterFence();
  }

  private enterFence(): void {
    this.fenced = true;
    this.fenceTally();
  }

  private fenceTally(): { left: number; requeued: number } {
    return (this.fence ??= { left: 0, requeued: 0 });
  }

  /** A job the watchdog stopped, whose claimed directory another node took over. */
  private leftToRecovery(job: ClaimedJob): void {
    this.fenceTally().left++;
    this.log.warn('job-lost-to-recovery', {
      id: job.id, name: job.meta.name, attempt: job.meta.attempt,
      error: 'stopped by the watchdog while this node was fenced; another node took its claimed directory over and runs it again',
    });
  }

  /** Every job the watchdog stopped has been dealt with: say where they went. */
  private fencedJobsHandled(): void {
    const f = this.fence;
    if (!f || this.running.size > 0) return;
    if (f.left + f.requeued > 0) {
      this.log.warn('jobs-left-to-recovery', {
        node: this.node, jobs: f.left + f.requeued, taken_over: f.left, requeued: f.requeued,
        note: 'jobs stopped by the watchdog: taken over by the node that recovered ours, or put back to run again',
      });
    }
    if (this.fenced) { f.left = 0; f.requeued = 0; } else { this.fence = null; }
  }

  /** --once: exit when nothing is queued, running or waiting. */
  private checkDrained(): void {
    if (!(this.opts.once || this.opts.untilIdle) || this.stopping) return;
    if (!this.protocol.idle) return;
    if (this.running.size > 0 || this.busy.size > 0 || this.settling.size > 0 || this.delayed.size > 0) return;
    if (this.groups.all().some((g) => g.peek() !== undefined)) return;
    // a last look: anything dropped while we were busy?
    this.scanner.scanAll();
    if (this.groups.all().some((g) => g.peek() !== undefined) || this.settling.size > 0) {
      queueMicrotask(() => this.pump());
      return;
    }
    if (this.unfinished.length > 0) {
      this.log.error('unarchived', { jobs: this.unfinished.length, error: 'jobs could not be archived; they stay claimed and the next pmjq archives them' });
    }
    void this.shutdown(this.failures > 0 || this.unfinished.length > 0 ? 1 : 0);
  }

  private installSignals(): void {
    let signals = 0;
    const onStop = (sig: NodeJS.Signals): void => {
      signals++;
      if (signals === 1) {
        this.log.info('stopping', { signal: sig, running: this.running.size, grace_ms: this.opts.graceMs });
        void this.shutdown(0);
      } else {
        this.log.info('stopping-now', { signal: sig, running: this.running.size });
        this.interruptAll();
      }
    };
    process.on('SIGTERM', onStop);
    process.on('SIGINT', onStop);
    process.on('SIGHUP', () => {
      if (this.opts.chaqum) return onStop('SIGHUP');
      this.log.info('reload', { reason: 'SIGHUP' });
      for (const g of this.groups.all()) g.settingsStamp = undefined;
      this.rescan();
    });
  }

  private interruptAll(): void {
    for (const r of this.running.values()) r.proc.kill('interrupted');
  }

  private async shutdown(code: number): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    for (const t of [this.recheck, this.settleTimer, this.delayedTimer]) if (t) clearTimeout(t);
    this.hooks.stop();
    await this.watcher?.stop();
    this.protocol.close();
    for (const id of [...this.subs.keys()]) this.killJob(id);
    for (const b of this.busy.values()) { clearTimeout(b.timer); b.ticket.release(); this.requeueBusy(b.job); }
    this.admission.stop();
    this.busy.clear();
    if (this.running.size > 0) {
      const grace = setTimeout(() => this.interruptAll(), this.opts.graceMs);
      await Promise.all([...this.running.values()].map((r) => r.proc.ended));
      // let the 'ended' handlers archive or requeue
      await new Promise((resolve) => setImmediate(resolve));
      clearTimeout(grace);
    }
    if (this.unfinishedTimer) { clearInterval(this.unfinishedTimer); this.retryUnfinished(); }
    if (this.unfinishedTimer) clearInterval(this.unfinishedTimer);
    this.heartbeat?.stop();
    this.watchdog?.stop();
    this.finisher.close();
    // our claimed area is empty unless something could not be archived or requeued
    try { fs.rmdirSync(this.layout.claimed(this.node)); } catch { /* not empty: recovered by the next pmjq */ }
    this.log.info('stopped', { node: this.node, finished: this.finishedCount, failed: this.failures });
    this.resolveDone(code);
  }
}
