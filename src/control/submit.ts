// `pmjqctl submit`: put a job into the spool the safe way (pmjq(1) THE JOB PROCESS): the
// whole file is written under a hidden name in the target directory, made
// executable, then given its real name in one step, so that no daemon ever
// sees half a job. The name is collision-free: link(2) never replaces an
// existing file, so two submitters can never overwrite each other.
//
// The group directory is held open while the job is written (opened with
// O_NOFOLLOW inside the spool, written through /proc/self/fd: see
// util/open-dir.ts): a group that is a symbolic link or not a directory is
// refused, and a group swapped for a symlink meanwhile cannot redirect the
// write — pmjqctl serve may run as root, and must never write outside the
// spool.

import fs from 'node:fs';
import path from 'node:path';
import { ringDoorbell } from '../spool/doorbell.js';
import { DEFAULT_GROUP, STATE_DIR, type Layout } from '../spool/layout.js';
import * as names from '../spool/names.js';
import { isErrno } from '../util/fsx.js';
import { OpenDir } from '../util/open-dir.js';
import { CtlError, q } from './errors.js';

export type Source =
  | { kind: 'command'; argv: string[]; cwd: string }
  | { kind: 'file'; path: string }
  | { kind: 'stdin'; data: Buffer }
  /** a shell command line (the batch forms: one per line of standard input) */
  | { kind: 'shell'; line: Buffer; cwd: string };

export interface SubmitOptions {
  /** group (a subdirectory of the spool, created if missing); default: the top level */
  group?: string;
  /** exact name; refused if a job of that name is queued already */
  name?: string;
  source: Source;
}

/** What `submit --json` prints. */
export interface Submitted {
  name: string;
  group: string;
  path: string;
}

const JOB_MODE = 0o755;
/** a batch into a group rings the doorbell this often while it runs */
const RING_EVERY_MS = 200;
const NAME_MAX = 255;

/** One shell word that stands for exactly `s`: single quotes, each ' written as '\''. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The job a command becomes: cd to where it was submitted from, then exec it with every argument intact. */
export function commandScript(argv: string[], cwd: string): string {
  return [
    '#!/bin/sh',
    '# written by pmjqctl submit: runs the command in the directory it was submitted from',
    `cd ${shellQuote(cwd)} || exit 126`,
    `exec ${argv.map(shellQuote).join(' ')}`,
    '',
  ].join('\n');
}

/** The job a shell command line becomes: cd to where it was submitted from, then the line as it is. */
export function shellScript(line: Buffer, cwd: string): Buffer {
  return Buffer.concat([
    Buffer.from(`#!/bin/sh\n# written by pmjqctl submit: runs the command line in the directory it was submitted from\ncd ${shellQuote(cwd)} || exit 126\n`),
    line,
    NEWLINE,
  ]);
}

const NEWLINE = Buffer.from('\n');

/** The first word of a command line (for a job's default name). */
function firstWord(line: string): string {
  return /^\s*([^\s;&|<>()]*)/.exec(line)?.[1] || 'sh';
}

/** A group name as typed: a plain directory name that is not hidden and not our state directory. */
export function checkGroup(group: string): void {
  if (group === '' || group.includes('/') || group.includes('\0') || group.startsWith('.') || group.includes('\n') || Buffer.byteLength(group) > NAME_MAX) {
    throw new CtlError(`group ${q(group)} is not a valid group name (a directory name: no '/', not starting with '.')`, 2);
  }
}

export function checkJobName(name: string): void {
  if (name === '' || name.includes('/') || name.includes('\0') || Buffer.byteLength(name) > NAME_MAX) {
    throw new CtlError(`--name ${q(name)} is not a valid file name (no '/', at most ${NAME_MAX} bytes)`, 2);
  }
  if (name.startsWith('.')) throw new CtlError(`--name ${q(name)} starts with '.': such files are never jobs`, 2);
}

/** A readable base for a default name: the command's or the file's base name, tamed. */
export function baseName(s: string): string {
  const b = path.basename(s).replace(/[^A-Za-z0-9._+-]+/g, '_').replace(/^[.-]+/, '').slice(0, 64);
  return b || 'job';
}

function suffix(): string {
  const t = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, '');
  return `${t}-${Math.random().toString(36).slice(2, 6).padEnd(4, '0')}`;
}

let tmpCounter = 0;

/** A group directory to submit into, held open; `path` is how it is named to people. */
export interface GroupDir {
  dir: OpenDir;
  path: string;
  group: string;
}

/**
 * Opens the directory of `group` (undefined or `default`: the spool's top
 * level), creating it if missing. Refused when it is a symbolic link or not
 * a directory, whoever made it so.
 */
export function openGroupDir(layout: Layout, group: string | undefined): GroupDir {
  // the spool itself is the operator's path: it may be a symlink; what is inside it is not trusted
  let spool: OpenDir;
  let real: string;
  try {
    real = fs.realpathSync(layout.spool);
    spool = OpenDir.open(real);
  } catch (err) {
    throw new CtlError(`cannot open the spool ${q(layout.spool)}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  if (group === undefined || group === DEFAULT_GROUP) return { dir: spool, path: layout.spool, group: DEFAULT_GROUP };
  try {
    checkGroup(group);
    if (group === STATE_DIR) throw new CtlError(`group ${q(group)} is pmjq's own state directory, not a group`, 2);
    const shown = path.join(layout.spool, group);
    const at = spool.at(group) as string;
    try {
      fs.mkdirSync(at);
    } catch (err) {
      if (!isErrno(err, 'EEXIST')) throw new CtlError(`cannot create group directory ${q(shown)}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
    try {
      return { dir: OpenDir.open(path.join(real, group), at), path: shown, group };
    } catch (err) {
      if (isErrno(err, 'ELOOP', 'ENOTDIR')) throw new CtlError(`${q(shown)} is a symbolic link or not a directory: it cannot be group ${q(group)}`);
      throw new CtlError(`cannot open group directory ${q(shown)}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
  } finally {
    if (group !== undefined && group !== DEFAULT_GROUP) spool.close();
  }
}

/**
 * Call after writing `name` into `g`: when the directory's path no longer
 * names it (renamed away, swapped for a symlink), the job is taken back and
 * the submission refused.
 */
export function checkStillThere(g: GroupDir, name: string | Buffer): void {
  if (g.dir.unchanged()) return;
  try { fs.unlinkSync(g.dir.at(name)); } catch { /* gone already */ }
  throw new CtlError(`group directory ${q(g.path)} was moved or replaced while the job was written: not submitted`);
}

export function submit(layout: Layout, o: SubmitOptions): Submitted {
  if (o.name !== undefined) checkJobName(o.name);
  const s = new Submitter(layout, o.group);
  try {
    const r = s.submit(o.source, o.name);
    s.ring();
    return r;
  } finally {
    s.close();
  }
}

/**
 * Jobs into one group directory of a spool, held open (openGroupDir): the
 * group is checked, created and opened once, then each job costs a create,
 * a write, a chmod (the umask, or a default ACL, may have changed the
 * mode), a link, the check that the directory is still there, and an
 * unlink. The batch forms of `pmjqctl submit` go through one Submitter.
 */
export class Submitter {
  private readonly g: GroupDir;
  /** batch names: BASE-TIME-XXXX-000001, … (one random part per batch, a counter that keeps submission order) */
  private readonly batchTag = Math.random().toString(36).slice(2, 6).padEnd(4, '0');
  private seq = 0;
  /** jobs queued in a group since the doorbell last rang */
  private unrung = 0;
  private rungAt = 0;

  constructor(private readonly layout: Layout, group?: string) {
    this.g = openGroupDir(layout, group);
  }

  close(): void {
    this.g.dir.close();
  }

  /** One job; `name` (checked by the caller) is its exact name, else a unique one is made. */
  submit(src: Source, name?: string): Submitted {
    return this.place(src, name, () => `${baseOf(src)}-${suffix()}`);
  }

  /** One job of a batch: named BASE-TIME-XXXX-NNNNNN, in the order of submission. */
  submitNext(src: Source): Submitted {
    const n = String(++this.seq).padStart(6, '0');
    let first = true;
    return this.place(src, undefined, () => {
      const t = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, '');
      // a name taken (another submitter's, by chance): another random part
      const tag = first ? this.batchTag : Math.random().toString(36).slice(2, 6).padEnd(4, '0');
      first = false;
      return `${baseOf(src)}-${t}-${tag}-${n}`;
    });
  }

  /**
   * Tell idle daemons (doorbell.ts) about the jobs queued in a group (a job at
   * the top level changes the top level itself). A batch calls this after
   * each job with `force` false: it rings at most every RING_EVERY_MS.
   */
  ring(force = true): void {
    if (this.unrung === 0 || this.g.group === DEFAULT_GROUP) return;
    const now = performance.now();
    if (!force && now - this.rungAt < RING_EVERY_MS) return;
    ringDoorbell(this.layout.spool);
    this.unrung = 0;
    this.rungAt = now;
  }

  private place(src: Source, exact: string | undefined, draw: () => string): Submitted {
    const g = this.g;
    const { dir, group } = g;
    const base = exact ?? baseOf(src);

    // 1. the whole file under a hidden name, executable by all, writable by its owner only
    const tmpName = Buffer.concat([
      Buffer.from('.'), names.truncate(Buffer.from(base), 180), Buffer.from(`.tmp.${process.pid}.${tmpCounter++}.${Math.random().toString(36).slice(2, 8)}`),
    ]);
    const tmp = dir.at(tmpName);
    try {
      if (src.kind === 'file') {
        try {
          fs.copyFileSync(src.path, tmp, fs.constants.COPYFILE_EXCL);
        } catch (err) {
          if (isErrno(err, 'ENOENT') && !fs.existsSync(src.path)) throw new CtlError(`job file ${q(src.path)} does not exist`);
          if (isErrno(err, 'EISDIR')) throw new CtlError(`job file ${q(src.path)} is a directory`);
          throw err;
        }
      } else {
        const data = src.kind === 'command' ? commandScript(src.argv, src.cwd) : src.kind === 'shell' ? shellScript(src.line, src.cwd) : src.data;
        fs.writeFileSync(tmp, data, { flag: 'wx', mode: JOB_MODE });
      }
      fs.chmodSync(tmp, JOB_MODE); // whatever the umask and the source's mode
    } catch (err) {
      try { fs.unlinkSync(tmp); } catch { /* not created */ }
      if (err instanceof CtlError) throw err;
      throw new CtlError(`cannot write the job into ${q(g.path)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }

    // 2. its real name, never replacing a file that is there
    try {
      for (let attempt = 0; ; attempt++) {
        const name = exact ?? draw();
        if (place(tmp, dir.at(name))) {
          checkStillThere(g, name);
          this.unrung++;
          return { name, group, path: names.display(names.join(g.path, name)) };
        }
        if (exact !== undefined) throw new CtlError(`a job named ${q(exact)} is already queued in ${q(g.path)}`);
        if (attempt > 100) throw new CtlError(`no free job name for ${q(base)} in ${q(g.path)} after 100 tries`);
      }
    } finally {
      try { fs.unlinkSync(tmp); } catch { /* renamed into place */ }
    }
  }
}

function baseOf(src: Source): string {
  return src.kind === 'command' ? baseName(src.argv[0]!) : src.kind === 'shell' ? baseName(firstWord(src.line.toString('utf8'))) : src.kind === 'file' ? baseName(src.path) : 'stdin';
}

/** link(2) tmp → dst (fails on an existing dst); where hard links are impossible, a checked rename. */
function place(tmp: string | Buffer, dst: string | Buffer): boolean {
  try {
    fs.linkSync(tmp, dst);
    return true;
  } catch (err) {
    if (isErrno(err, 'EEXIST')) return false;
    if (!isErrno(err, 'EPERM', 'ENOTSUP', 'ENOSYS', 'EOPNOTSUPP')) {
      throw new CtlError(`cannot name the job ${q(path.basename(dst.toString()))}: ${(err as NodeJS.ErrnoException).code}`);
    }
  }
  // no hard links here (some FUSE/SMB mounts): check, then rename (a narrow race, reported honestly)
  if (fs.existsSync(dst)) return false;
  fs.renameSync(tmp, dst);
  return true;
}
