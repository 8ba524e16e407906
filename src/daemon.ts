// The pmjq daemon: it wires the stages a job goes through, in this order —
//
//   watch     spool/watch.ts       notices changes (inotify), ticks the periodic rescan
//   scan      spool/scan.ts        turns directory entries into candidates (or rejections)
//   intake    spool/intake.ts      candidates wait to hold still (--settle) or to be due (retries)
//   queue     schedule/groups.ts   queues candidates, oldest first, groups taking turns
//   admit     schedule/admission.ts  pause, load, CPU, max and cluster_max: a ticket, or a hold
//   claim     spool/claimer.ts     moves a candidate into this node's claimed area (one rename)
//   launch    run/starter.ts       starts it as its owner (run/launch.ts), keeps it while it runs;
//                                  behind a short job, its slot's next one waits in the job helper (a standby)
//   complete  spool/completion.ts  decides what its end means: retry, requeue or archive
//   archive   spool/finish.ts      links it into the archive (or errors) with its log and record; history
//
// and beside them: cluster/fencing.ts (heartbeat, watchdog, recovery of
// stale nodes), spool/state-check.ts (an untrusted .pmjq), control/inbox.ts
// (pmjqctl's pause and kill requests), signals and shutdown. The Daemon holds no stage's
// state itself; the stages talk through the callbacks given here.

import fs from 'node:fs';
import path from 'node:path';
import { Fencing } from './cluster/fencing.js';
import { Slots } from './cluster/slots.js';
import { stallForTest } from './cluster/watchdog.js';
import { ControlInbox } from './control/inbox.js';
import type { DaemonOptions } from './options.js';
import { closeInheritedDescriptors, launcher, type Launcher } from './run/launch.js';
import { spawner } from './run/spawner.js';
import type { JobOwner } from './run/owner.js';
import { ownerOf } from './run/privileges.js';
import { Protocol } from './run/protocol/index.js';
import { STANDBY_WAIT_MS, Starter } from './run/starter.js';
import { Admission } from './schedule/admission.js';
import { Holds, LoadModel } from './schedule/barrier.js';
import { GroupSettingsFiles } from './schedule/group-settings.js';
import { Groups } from './schedule/groups.js';
import { Hooks } from './schedule/hooks.js';
import { pruneGroupAreas } from './spool/claimed.js';
import { Claimer } from './spool/claimer.js';
import { Completion } from './spool/completion.js';
import { Finisher } from './spool/finish.js';
import { Intake } from './spool/intake.js';
import { DEFAULT_GROUP, IdMaker, Layout, makeNodeId } from './spool/layout.js';
import { BacklogBell } from './spool/doorbell.js';
import { Scanner, type Polled } from './spool/scan.js';
import { StateCheck } from './spool/state-check.js';
import { Watcher, detectWatchMode, type WatchMode } from './spool/watch.js';
import { errText } from './util/fsx.js';
import { monotonicMs } from './util/monotonic.js';
import type { Logger } from './util/log.js';
import { VERSION } from './version.js';

const SHARED_FS_SETTLE_MS = 2000;
/** with inotify, the full safety scan waits this many times its own duration (≥ --poll) */
const SAFETY_SCAN_BUDGET = 50;

export class Daemon {
  readonly node: string;
  readonly layout: Layout;
  private readonly ids = new IdMaker();
  private readonly groups = new Groups();
  private readonly load = new LoadModel();
  private readonly holds: Holds;
  private readonly hooks: Hooks;
  private readonly slots: Slots;
  private readonly finisher: Finisher;
  private readonly claimer: Claimer;
  /** how jobs are started: as their owner, in a clean environment */
  private readonly launcher: Launcher;
  private readonly scanner: Scanner;
  private watcher: Watcher | null = null;
  private readonly groupFiles: GroupSettingsFiles;
  private readonly intake: Intake;
  private readonly admission: Admission;
  private readonly starter: Starter;
  private readonly completion: Completion;
  private readonly fencing: Fencing;
  private readonly stateCheck: StateCheck;
  /** the fd 3/4 command protocol of every job */
  private readonly protocol: Protocol;
  /** pmjqctl's pause and kill requests */
  private readonly inbox: ControlInbox;
  private readonly uid = process.getuid?.() ?? 0;
  private readonly asRoot = this.uid === 0;
  /** who --init's script runs as: the operator's, pmjq's own user */
  private readonly selfOwner: JobOwner = ownerOf(this.uid, process.getgid?.() ?? 0);
  private mode: WatchMode = 'inotify';
  /** poll mode: announces work this node leaves waiting */
  private backlogBell: BacklogBell | null = null;
  private recheck: NodeJS.Timeout | null = null;
  private stopping = false;
  /** performance.now() before which the inotify-mode safety scan is not due */
  private nextFullScan = 0;
  /** performance.now() when settings and pmjqctl requests are read again without a doorbell */
  private nextSlowLook = 0;
  /** NFS: directory stamps are read from an open directory (dirstamp.ts) */
  private nfs = false;
  private pumping = false;
  private pumpQueued = false;
  private resolveDone!: (code: number) => void;

  constructor(private readonly opts: DaemonOptions, private readonly log: Logger) {
    const o = opts;
    this.layout = new Layout(o.spool);
    this.node = makeNodeId();
    const { layout, node, groups } = this;
    const stopping = (): boolean => this.stopping;
    const changed = (): void => this.schedulePump();
    this.finisher = new Finisher(layout, node, { archive: o.archive, errors: o.errors, keep: o.keep, keepAgeMs: o.keepAgeMs });
    this.claimer = new Claimer(layout, node, this.ids, this.finisher, { asRoot: this.asRoot, allowRoot: o.allowRoot }, log);
    this.launcher = launcher(layout.spool, node, o.env);
    this.holds = new Holds(log);
    this.slots = new Slots(layout.state, node);
    this.groupFiles = new GroupSettingsFiles(groups, layout, log);
    for (const [name, settings] of o.groupSettings) groups.get(name).cliSettings = settings;
    this.protocol = new Protocol({
      enqueue: (req) => this.intake.enqueueSub(req), kill: (id) => this.starter.kill(id) || this.intake.killSub(id), log,
      // chaqum(1) drives one user's job tree: no spool, no operator's groups
      isSpoolGroup: (name) => !o.chaqum && (name === DEFAULT_GROUP || groups.find(name)?.dir !== undefined || fs.existsSync(layout.groupDir(name))),
    });
    this.scanner = new Scanner(
      layout,
      { asRoot: this.asRoot, allowRoot: o.allowRoot },
      {
        found: (c) => this.intake.found(c),
        reject: (dir, name, reason) => this.claimer.reject(dir, name, reason),
        groupSeen: (dir, present) => { if (present) this.groupFiles.groupFor(dir); },
      },
      log,
      (group) => !o.groups || o.groups.includes(group),
    );
    this.intake = new Intake({
      layout, groups, ids: this.ids, log,
      groupFor: (dir) => this.groupFiles.groupFor(dir),
      forget: (c) => this.scanner.forget(c),
      subEnded: (id) => this.protocol.jobEnded(id, null, true),
      queued: changed,
      released: () => this.pump(),
      stopping,
    });
    this.admission = new Admission({
      limits: { load: o.load, cpu: o.cpu }, pollMs: o.pollMs, load: this.load, holds: this.holds, slots: this.slots, log,
      paused: (g) => this.inbox.paused(g.name), queued: () => groups.queued(), newId: () => this.ids.next(),
    });
    this.completion = new Completion({
      layout, node, finisher: this.finisher, protocol: this.protocol, log,
      opts: { retries: o.retries, backoffMs: o.backoffMs, pollMs: o.pollMs },
      fenced: { requeued: () => this.fencing.requeued(), lost: (job) => this.fencing.lost(job), handled: () => this.fencing.handled() },
      retryWritten: (entry, dueMs, meta) => this.scanner.addRetry(entry, dueMs, meta),
      retried: () => this.checkDrained(),
    });
    this.starter = new Starter({
      layout, launcher: this.launcher, log, load: this.load, protocol: this.protocol,
      opts: { timeoutMs: o.timeoutMs, killGraceMs: o.killGraceMs, tree: o.tree, chaqum: o.chaqum },
      logPath: (job) => this.finisher.logPath(job),
      watch: (pgid) => this.fencing.watch(pgid),
      started: () => stallForTest('started'),
      requested: () => stallForTest('requested'),
      stoppedByWatchdog: (pgid, groupLeft) => this.fencing.stoppedByWatchdog(pgid, groupLeft),
      reject: (r) => this.claimer.rejectClaimed(r),
      exited: (job, ticket, end, stopped) => this.completion.exited(job, ticket, end, stopped),
      conclude: (job, outcome, ticket) => this.completion.conclude(job, outcome, ticket.group),
      requeue: (job, why) => { this.completion.requeueUnstarted(job, why); this.checkDrained(); },
      changed,
      stopping,
    });
    this.fencing = new Fencing({
      layout, node, version: VERSION, log, finisher: this.finisher, slots: this.slots,
      opts: { leaseMs: o.leaseMs, killGraceMs: o.killGraceMs, logFormat: o.logFormat, verbosity: o.verbosity },
      snapshot: (fenced) => ({
        groups: o.groups ?? null, running: this.starter.slotsTaken, queued: groups.queued(), jobs: o.jobs, lease_ms: o.leaseMs, holds: this.holds.list(),
        state: this.stopping ? 'stopping' : fenced ? 'fenced' : this.starter.running.size > 0 ? 'processing' : 'idle',
      }),
      keepUnarchived: (job, outcome) => this.completion.keepUnarchived(job, outcome),
      scanRetry: () => this.scanner.scanRetry(),
      fsClock: (fsNow) => { this.scanner.fsSkewMs = fsNow - Date.now(); },
      mayClaim: () => this.pump(),
      running: () => this.starter.running.size,
      stopping,
    });
    this.inbox = new ControlInbox({ layout, log, jobHere: (id) => this.starter.nameOf(id), kill: (id) => this.starter.killRequested(id) });
    this.stateCheck = new StateCheck({
      layout, node, uid: this.uid, log,
      trusted: () => this.holds.release('state'),
      recreated: () => this.finisher.close(),
    });
    this.hooks = new Hooks(
      { idle: o.onIdle, saturated: o.onSaturated, env: { PMJQ_NODE: node, PMJQ_SPOOL: layout.spool } },
      log,
      () => ({ queued: groups.queued(), running: this.starter.running.size, load: this.load.predictedLoad(), heldBy: this.holds.reason() }),
    );
  }

  /** Runs until stopped (or, with --once, until the spool is drained). Resolves to the exit code. */
  async run(): Promise<number> {
    const done = new Promise<number>((resolve) => { this.resolveDone = resolve; });
    const o = this.opts;
    // nothing this process inherited reaches a job
    closeInheritedDescriptors();
    // a spool others could rearrange, or a .pmjq someone else made, is refused (TrustError: exit 2)
    this.stateCheck.prepare();
    // the job helper answers before anything is claimed (no helper: one error now, not one per job)
    spawner.onTrouble = (error) => this.log.error('job-helper', { error });
    spawner.onHelper = (pid) => this.fencing.helper(pid);
    await spawner.ready();
    const detected = detectWatchMode(this.layout.spool);
    this.mode = o.watch === 'auto' ? detected.mode : o.watch;
    if (this.mode === 'poll') this.backlogBell = new BacklogBell(this.layout.spool, o.pollMs);
    this.intake.settleMs = o.settleMs ?? (detected.mode === 'poll' ? SHARED_FS_SETTLE_MS : 0);
    this.nfs = detected.fsType === 'nfs';
    this.scanner.pacing(o.pollMs, this.nfs);
    this.log.info('start', {
      node: this.node, version: VERSION, spool: this.layout.spool, archive: o.archive, errors: o.errors,
      watch: this.mode, fs: detected.fsType, poll_ms: o.pollMs, settle_ms: this.intake.settleMs,
      jobs: o.jobs, load: o.load, cpu: o.cpu, once: o.once, lease_ms: o.leaseMs, kill_grace_ms: o.killGraceMs,
    });

    this.fencing.start();
    const prune = (): void => {
      const pruned = this.finisher.pruneOld();
      if (pruned) this.log.info('pruned', { dir: this.layout.doneRoot, files: pruned, older_than_ms: o.keepAgeMs });
    };
    prune();
    setInterval(prune, 3_600_000).unref();

    this.installSignals();
    // pmjqctl's pause flags, before anything can be claimed
    this.inbox.read();
    // the first scan looks at every queued file once (its mtime: the oldest
    // starts first), and only then is any claimed (pump); it yields to the
    // event loop, so that a SIGTERM during a long one is acted on at once
    if (!(await this.scanner.scanAllYielding(() => this.stopping))) return done;
    this.groupFiles.refresh();
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
      this.intake.enqueueSub({ parent: '', owner: this.selfOwner, script: o.init.script, args: o.init.args, tree: o.tree ?? path.dirname(o.init.script), forget: false });
    }
    this.pump();
    this.checkDrained();
    return done;
  }

  // ---- watch, scan ----

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
    if (everything || slow || polled.changed.length > 0 || this.starter.running.size > 0 || this.groups.queued() > 0) this.stateCheck.check();
    // settings: a group's at the pace its directory is looked at, the top level's at the slow pace
    this.groupFiles.refresh(everything ? undefined : new Set(slow ? [...polled.looked, ''] : polled.looked));
    if (everything || (slow && this.inbox.changed(this.nfs, this.scanner.fsNow()))) this.inbox.read();
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

  // ---- admit, claim, launch ----

  /**
   * One scheduling pass soon — in this loop iteration's check phase — however
   * many candidates or job ends arrive meanwhile (a scan may find 100 000).
   */
  private schedulePump(): void {
    if (this.pumpQueued) return;
    this.pumpQueued = true;
    setImmediate(() => { this.pumpQueued = false; this.pump(); });
  }

  /** A scheduling pass: start the jobs admission lets start, groups taking turns. */
  private pump(): void {
    // timers run late while jobs keep ending: a busy node beats from here
    this.fencing.beatIfDue();
    const fenced = this.fencing.fenced;
    // what is queued may come from .pmjq (its retry area): it is looked at (one lstat) right before claiming
    if (this.groups.queued() > 0) this.stateCheck.check();
    const untrusted = this.stateCheck.untrusted;
    if (untrusted !== null && this.groups.queued() > 0) this.holds.hold('state', `.pmjq untrusted: ${untrusted}`, this.groups.queued());
    if (this.stopping || this.pumping || fenced || untrusted !== null) return;
    // nothing is claimed before the first scan has seen every queued job: the oldest goes first
    if (this.scanner.inProgress) return;
    this.pumping = true;
    try {
      for (;;) {
        // a free slot; or, all taken by short jobs, a standby for one of them
        // (run/starter.ts; not in chaqum, whose jobs mostly wait on each other)
        const free = this.opts.jobs === 0 || this.starter.slotsTaken < this.opts.jobs;
        const after = free || this.opts.chaqum ? null : this.starter.standbySlot();
        if (!free && after === null) break;
        // a standby starts by its deadline or not at all, and never once the watchdog no longer covers this node
        const standby = after === null ? undefined : { after, deadlineMs: Math.min(monotonicMs() + STANDBY_WAIT_MS, this.fencing.fencingAtMs) };
        if (standby && standby.deadlineMs <= monotonicMs()) break;
        const ticket = this.groups.next((g) => this.admission.admitted(g));
        if (!ticket) break;
        const c = ticket.group.queue.pop()!;
        this.scanner.forget(c);
        this.intake.claiming(c);
        const job = this.claimer.claim(c);
        if (job) this.starter.start(job, ticket, standby);
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
    const heldBack = this.groups.all().some((g) => !this.inbox.paused(g.name) && g.peek() !== undefined);
    if (heldBack) this.backlogBell?.ring();
    this.hooks.update(this.groups.queued() + this.intake.unsteadyCount + this.intake.delayedCount, this.starter.slotsTaken + this.starter.notReadyCount, heldBack);
    this.checkDrained();
  }

  // ---- lifetime ----

  /** --once: exit when nothing is queued, running or waiting. */
  private checkDrained(): void {
    if (!(this.opts.once || this.opts.untilIdle) || this.stopping) return;
    // (the first scan is not over: there may be jobs it has not seen yet)
    if (this.scanner.inProgress || !this.protocol.idle) return;
    const { intake } = this;
    if (this.starter.running.size > 0 || this.starter.notReadyCount > 0 || intake.unsteadyCount > 0 || intake.delayedCount > 0) return;
    if (this.groups.all().some((g) => g.peek() !== undefined)) return;
    // a last look: anything dropped while we were busy?
    this.scanner.scanAll();
    if (this.groups.all().some((g) => g.peek() !== undefined) || intake.unsteadyCount > 0) {
      queueMicrotask(() => this.pump());
      return;
    }
    const unarchived = this.completion.unarchivedCount;
    if (unarchived > 0) {
      this.log.error('unarchived', { jobs: unarchived, error: 'jobs could not be archived; they stay claimed and the next pmjq archives them' });
    }
    void this.shutdown(this.completion.failures > 0 || unarchived > 0 ? 1 : 0);
  }

  private installSignals(): void {
    let signals = 0;
    const onStop = (sig: NodeJS.Signals): void => {
      signals++;
      if (signals === 1) {
        this.log.info('stopping', { signal: sig, running: this.starter.running.size, grace_ms: this.opts.graceMs });
        void this.shutdown(0);
      } else {
        this.log.info('stopping-now', { signal: sig, running: this.starter.running.size });
        this.starter.interruptAll();
      }
    };
    process.on('SIGTERM', onStop);
    process.on('SIGINT', onStop);
    process.on('SIGHUP', () => {
      if (this.opts.chaqum) return onStop('SIGHUP');
      this.log.info('reload', { reason: 'SIGHUP' });
      this.groupFiles.forget();
      this.rescan();
    });
  }

  private async shutdown(code: number): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (this.recheck) clearTimeout(this.recheck);
    this.intake.stop();
    this.hooks.stop();
    await this.watcher?.stop();
    this.protocol.close();
    this.intake.killSubs();
    this.starter.requeueNotReady();
    this.starter.withdrawStandbys();
    this.admission.stop();
    const running = [...this.starter.running.values()];
    if (running.length > 0) {
      const grace = setTimeout(() => this.starter.interruptAll(), this.opts.graceMs);
      await Promise.all(running.map((r) => r.proc.settled));
      // let the exit handlers archive or requeue
      await new Promise((resolve) => setImmediate(resolve));
      clearTimeout(grace);
    }
    this.completion.stop();
    this.fencing.stop();
    this.finisher.close();
    // our claimed area is empty unless something could not be archived or requeued
    pruneGroupAreas(this.layout.claimed(this.node));
    try { fs.rmdirSync(this.layout.claimed(this.node)); } catch { /* not empty: recovered by the next pmjq */ }
    this.log.info('stopped', { node: this.node, finished: this.completion.archivedCount, failed: this.completion.failures });
    this.resolveDone(code);
  }
}
