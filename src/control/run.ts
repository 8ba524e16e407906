// `pmjqctl run` (jobd's run-manual, pmjqctl(1)): claim one queued job now, on
// this machine, ignoring barriers and pause flags, run it in the foreground
// and print its output and its record. It is a node of its own for the time
// it runs — its own node id, claimed area and heartbeat — built from the
// daemon's parts (claimFromSpool, JobProcess, Finisher, Heartbeat), so that
// `status`, `ls`, `logs` and `kill` see it like any job, from any node, and
// the daemons' recovery treats it like any node.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Heartbeat } from '../cluster/heartbeat.js';
import type { JobEnd } from '../run/job-process.js';
import { closeInheritedDescriptors, launch, launcher } from '../run/launch.js';
import { spawner } from '../run/spawner.js';
import { SETTINGS_FILE, readSettingsFile } from '../schedule/settings.js';
import type { Candidate } from '../spool/candidate.js';
import { ClaimRefused, claimFromSpool, linkCount, type ClaimedJob } from '../spool/claim.js';
import { pruneGroupAreas } from '../spool/claimed.js';
import { inGroupDir } from '../spool/groupdir.js';
import { classify } from '../spool/classify.js';
import { Finisher, type Outcome } from '../spool/finish.js';
import { DEFAULT_GROUP, IdMaker, groupOf, makeNodeId, type Layout } from '../spool/layout.js';
import { nameBytes } from '../spool/meta.js';
import { prepareState } from '../spool/trust.js';
import * as names from '../spool/names.js';
import type { JobRecord, JobStatus } from '../spool/record.js';
import { errText, moveNoReplace, removeTree } from '../util/fsx.js';
import { Logger } from '../util/log.js';
import { VERSION } from '../version.js';
import { CtlError, q } from './errors.js';
import type { Style } from './format.js';
import { LevelRenderer, readFrom, type Sink } from './logs.js';
import { doneKill, killRequested } from './requests.js';

export interface RunOptions {
  name: string;
  /** group; default: the top level */
  group?: string;
  archive?: string;
  errors?: string;
  /** overrides the group's timeout */
  timeoutMs?: number;
  killGraceMs: number;
  /** as root: run a root-owned job (pmjq's --allow-root) */
  allowRoot: boolean;
  /** --env NAME[=VALUE]: variables the job gets (pmjq's --env) */
  env?: Record<string, string>;
  /** the job's output, as it comes */
  sink: Sink;
  style: Style;
  raw?: boolean;
  /** resolves when the operator interrupts (SIGINT/SIGTERM): the job is killed */
  stop?: Promise<unknown>;
  /** told once the job runs */
  onStart?: (job: ClaimedJob, node: string) => void;
  log?: Logger;
}

export interface RunResult {
  record: JobRecord;
  /** the job's exit status; 128+N when a signal ended it; 1 when it could not start */
  exitCode: number;
}

export async function runManual(layout: Layout, o: RunOptions): Promise<RunResult> {
  const dir = o.group === undefined || o.group === DEFAULT_GROUP ? '' : o.group;
  const where = layout.groupDir(dir);
  if (dir !== '' && !fs.existsSync(where)) throw new CtlError(`no group ${q(o.group!)} in ${q(layout.spool)}`);
  const name = Buffer.from(o.name);
  const file = names.join(where, name);
  let st: fs.Stats;
  try {
    st = fs.lstatSync(file);
  } catch {
    throw new CtlError(`no queued job ${q(o.name)} in ${q(where)}`);
  }
  const asRoot = process.getuid?.() === 0;
  const verdict = classify(st, { topLevel: dir === '', asRoot, allowRoot: o.allowRoot });
  if (verdict.kind === 'ignore') throw new CtlError(`${q(o.name)} in ${q(where)} is not executable: it is not a job (yet)`);
  if (verdict.kind === 'group') throw new CtlError(`${q(o.name)} in ${q(where)} is a group directory, not a job`);
  if (verdict.kind === 'reject') throw new CtlError(`${q(o.name)} in ${q(where)} is not an acceptable job: ${verdict.reason}`);

  const log = o.log ?? new Logger({ verbosity: -1 });
  const node = makeNodeId();
  // the same rules as the daemon's: a spool others could rearrange, or a forged .pmjq, is refused
  const uid = process.getuid?.() ?? 0;
  try {
    prepareState(layout, node, uid);
  } catch (err) {
    throw new CtlError(errText(err).replace(/^E[A-Z]+: /, ''));
  }
  closeInheritedDescriptors();
  try {
    await spawner.ready();
  } catch (err) {
    throw new CtlError(errText(err));
  }
  let job: ClaimedJob | null = null;
  const heartbeat = new Heartbeat(layout, node, VERSION, new Date(), () => ({
    groups: [], running: job ? 1 : 0, queued: 0, state: 'processing', jobs: 1, lease_ms: 60_000, holds: null,
  }));
  heartbeat.start(() => {}, (err) => log.warn('heartbeat-failed', { node, error: errText(err) }));
  const finisher = new Finisher(layout, node, { archive: o.archive, errors: o.errors, keep: Infinity, keepAgeMs: Infinity });
  try {
    const now = new Date();
    const id = new IdMaker().next(now.getTime());
    const c: Candidate = {
      group: groupOf(dir), dir, name, key: names.key(name), orderMs: st.mtimeMs, mtimeMs: st.mtimeMs, size: st.size, seenUid: st.uid, seenAt: Date.now(), gone: false, listed: 0,
    };
    try {
      job = claimFromSpool(layout, node, id, c, now, { asRoot, allowRoot: o.allowRoot });
    } catch (err) {
      if (!(err instanceof ClaimRefused)) throw err;
      finisher.rejectClaimed(err.job, err.reason);
      throw new CtlError(`${q(o.name)} in ${q(where)} is not an acceptable job: ${err.reason} (moved to rejected/)`);
    }
    if (!job) throw new CtlError(`${q(o.name)} left ${q(where)} just now (claimed by a node, or removed)`);
    return await runClaimed(layout, job, node, finisher, o, log);
  } finally {
    finisher.close();
    heartbeat.stop();
    pruneGroupAreas(layout.claimed(node));
    try { fs.rmdirSync(layout.claimed(node)); } catch { /* a job that could not be archived stays: the daemons recover it */ }
  }
}

async function runClaimed(layout: Layout, job: ClaimedJob, node: string, finisher: Finisher, o: RunOptions, log: Logger): Promise<RunResult> {
  const m = job.meta;
  let timeoutMs = o.timeoutMs;
  if (timeoutMs === undefined) {
    try { timeoutMs = readSettingsFile(path.join(layout.groupDir(m.dir), SETTINGS_FILE), undefined)?.settings?.timeout; } catch { /* invalid settings: no timeout */ }
  }
  if (job.links > 1 && linkCount(job) > 1) {
    putBack(layout, job);
    throw new CtlError(`${q(m.name)} has a second name (a hard link): left in the queue; a job file must have one name`);
  }
  const logPath = finisher.logPath(job);
  const proc = launch(launcher(layout.spool, node, o.env), {
    id: job.id, file: job.file, args: [], cwd: layout.groupDir(m.dir), owner: job.owner, identity: m, logPath, timeoutMs,
    killGraceMs: o.killGraceMs,
    handler: () => 'E the command protocol is not available under pmjqctl run',
    log,
  });
  // (start() never throws: whatever keeps the job from starting is in its result)
  const r = await proc.start();
  if (!r.ok && r.busy) {
    putBack(layout, job);
    throw new CtlError(`${q(m.name)} ${r.reason ?? 'is still being written (ETXTBSY)'}: left in the queue`);
  }
  if (!r.ok) {
    const record = finisher.archive(job, { status: 'failed', exitCode: null, signal: null, started: null, finished: new Date(), error: r.error });
    return { record, exitCode: 1 };
  }
  o.onStart?.(job, node);

  // the output as it comes, and kill requests from any node
  const out = new LevelRenderer(o.sink, o.style, o.raw);
  let offset = 0;
  let ended: JobEnd | null = null;
  void proc.exited.then((e) => { ended = e; });
  void o.stop?.then(() => proc.kill('killed'));
  let lastKillCheck = 0;
  while (ended === null) {
    await Promise.race([proc.exited, new Promise((res) => setTimeout(res, 100))]);
    offset = await readFrom(logPath, offset, out);
    if (Date.now() - lastKillCheck > 500) {
      lastKillCheck = Date.now();
      if (killRequested(layout, job.id)) {
        log.warn('job-kill', { id: job.id, requested_by: 'pmjqctl kill' });
        proc.kill('killed');
        doneKill(layout, job.id);
      }
    }
  }
  const end = ended as JobEnd;
  offset = await readFrom(logPath, offset, out);
  await out.end();
  const status: JobStatus = end.reason === 'exit' ? (end.exitCode === 0 ? 'done' : 'failed') : end.reason;
  const outcome: Outcome = { status, exitCode: end.exitCode, signal: end.signal, started: end.started, finished: end.finished };
  let record: JobRecord;
  try {
    record = finisher.archive(job, outcome);
  } catch (err) {
    throw new CtlError(`job ${m.id} ended (${status}) but could not be archived: ${errText(err)}; it stays in ${q(job.dir ?? job.file)} and a daemon recovers it`);
  }
  const sig = end.signal ? os.constants.signals[end.signal as NodeJS.Signals] : undefined;
  return { record, exitCode: end.exitCode ?? (sig !== undefined ? 128 + sig : 1) };
}

/** Back where it was, untouched (inside its group directory as opened: never through a symlink put in its place). */
function putBack(layout: Layout, job: ClaimedJob): void {
  try {
    inGroupDir(layout, job.meta.dir, (where) => moveNoReplace(job.file, names.join(where, nameBytes(job.meta))));
    removeTree(job.dir ?? job.log);
  } catch { /* left claimed: recovered by a daemon */ }
}
