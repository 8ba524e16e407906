// `pmjqctl submit`: put a job into the spool the safe way (DESIGN §5.1): the
// whole file is written under a hidden name in the target directory, made
// executable, then given its real name in one step, so that no daemon ever
// sees half a job. The name is collision-free: link(2) never replaces an
// existing file, so two submitters can never overwrite each other.

import fs from 'node:fs';
import path from 'node:path';
import { DEFAULT_GROUP, STATE_DIR, type Layout } from '../spool/layout.js';
import * as names from '../spool/names.js';
import { isErrno } from '../util/fsx.js';
import { CtlError, q } from './errors.js';

export type Source =
  | { kind: 'command'; argv: string[]; cwd: string }
  | { kind: 'file'; path: string }
  | { kind: 'stdin'; data: Buffer };

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

export function submit(layout: Layout, o: SubmitOptions): Submitted {
  const group = o.group ?? DEFAULT_GROUP;
  let dir = layout.spool;
  if (o.group !== undefined && o.group !== DEFAULT_GROUP) {
    checkGroup(o.group);
    if (o.group === STATE_DIR) throw new CtlError(`group ${q(o.group)} is pmjq's own state directory, not a group`, 2);
    dir = path.join(layout.spool, o.group);
    try {
      fs.mkdirSync(dir);
    } catch (err) {
      if (!isErrno(err, 'EEXIST')) throw new CtlError(`cannot create group directory ${q(dir)}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
      if (!fs.statSync(dir).isDirectory()) throw new CtlError(`${q(dir)} exists and is not a directory: it cannot be group ${q(o.group)}`);
    }
  }
  if (o.name !== undefined) checkJobName(o.name);
  const src = o.source;
  const base = o.name ?? (src.kind === 'command' ? baseName(src.argv[0]!) : src.kind === 'file' ? baseName(src.path) : 'stdin');

  // 1. the whole file under a hidden name, executable by all, writable by its owner only
  const tmp = names.join(dir, Buffer.concat([
    Buffer.from('.'), names.truncate(Buffer.from(base), 180), Buffer.from(`.tmp.${process.pid}.${tmpCounter++}.${Math.random().toString(36).slice(2, 8)}`),
  ]));
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
      const data = src.kind === 'command' ? commandScript(src.argv, src.cwd) : src.data;
      fs.writeFileSync(tmp, data, { flag: 'wx', mode: JOB_MODE });
    }
    fs.chmodSync(tmp, JOB_MODE); // whatever the umask and the source's mode
  } catch (err) {
    try { fs.unlinkSync(tmp); } catch { /* not created */ }
    if (err instanceof CtlError) throw err;
    throw new CtlError(`cannot write the job into ${q(dir)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }

  // 2. its real name, never replacing a file that is there
  try {
    for (let attempt = 0; ; attempt++) {
      const name = o.name ?? `${base}-${suffix()}`;
      const dst = names.join(dir, name);
      if (place(tmp, dst)) return { name, group, path: names.display(dst) };
      if (o.name !== undefined) throw new CtlError(`a job named ${q(o.name)} is already queued in ${q(dir)}`);
      if (attempt > 100) throw new CtlError(`no free job name for ${q(base)} in ${q(dir)} after 100 tries`);
    }
  } finally {
    try { fs.unlinkSync(tmp); } catch { /* renamed into place */ }
  }
}

/** link(2) tmp → dst (fails on an existing dst); where hard links are impossible, a checked rename. */
function place(tmp: Buffer, dst: Buffer): boolean {
  try {
    fs.linkSync(tmp, dst);
    return true;
  } catch (err) {
    if (isErrno(err, 'EEXIST')) return false;
    if (!isErrno(err, 'EPERM', 'ENOTSUP', 'ENOSYS', 'EOPNOTSUPP')) {
      throw new CtlError(`cannot name the job ${q(names.display(dst))}: ${(err as NodeJS.ErrnoException).code}`);
    }
  }
  // no hard links here (some FUSE/SMB mounts): check, then rename (a narrow race, reported honestly)
  if (fs.existsSync(dst)) return false;
  fs.renameSync(tmp, dst);
  return true;
}
