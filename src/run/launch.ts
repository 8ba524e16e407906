// Launching a claimed job: the one path used by the daemon and by
// `pmjqctl run`. A job gets nothing of the launcher's: its identity is its
// owner's (decided from the claimed file), its environment is built from
// scratch as cron builds one, and no descriptor of the launcher reaches it
// beyond stdin/stdout/stderr and the fd 3/4 channel.

import fs from 'node:fs';
import path from 'node:path';
import { JobProcess, type JobSpec } from './job-process.js';
import { LIBS } from './libs.js';
import type { JobOwner } from './owner.js';
import { lookupAccount } from './privileges.js';

/** What every launch of one launcher (a daemon, a `pmjqctl run`) shares. */
export interface Launcher {
  spool: string;
  node: string;
  /** the launcher is root: a job switches to its owner */
  asRoot: boolean;
  /** --env: variables the operator gives every job */
  env: Record<string, string>;
}

export function launcher(spool: string, node: string, env: Record<string, string> = {}): Launcher {
  const asRoot = process.getuid?.() === 0;
  return { spool, node, asRoot, env };
}

/** The parts of a job its environment tells it about. */
export interface JobIdentity {
  id: string;
  name: string;
  group: string;
  attempt: number;
  /** the enqueuing job, for sub-jobs (not for repeat instances) */
  parent: string | null;
}

const PATH_USER = '/usr/local/bin:/usr/bin:/bin';
const PATH_ROOT = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * A job's environment, as cron gives one: the owner's HOME, USER, LOGNAME
 * and SHELL from its passwd entry (a uid without an account: HOME=/ and its
 * number), a fixed PATH, pmjq's and chaqum's variables, the client
 * libraries' paths, then whatever the operator named with --env.
 */
export function jobEnvironment(l: Launcher, owner: JobOwner, job: JobIdentity): NodeJS.ProcessEnv {
  const account = lookupAccount(owner.uid);
  const lib = path.dirname(LIBS.sh!);
  const env: NodeJS.ProcessEnv = {
    HOME: account.home,
    USER: account.name,
    LOGNAME: account.name,
    SHELL: account.shell,
    PATH: owner.uid === 0 ? PATH_ROOT : PATH_USER,
    PMJQ_JOB_ID: job.id,
    PMJQ_JOB_NAME: job.name,
    PMJQ_GROUP: job.group,
    PMJQ_SPOOL: l.spool,
    PMJQ_NODE: l.node,
    PMJQ_ATTEMPT: String(job.attempt),
    CHAQUM_IDENT: job.id,
    // chaqum's Python jobs (`from chaqum.lib import *`) and Perl jobs (`use Pmjq;`) run unchanged
    PMJQ_LIB: lib,
    PYTHONPATH: lib,
    PERL5LIB: lib,
  };
  if (job.parent) env.CHAQUM_PARENT = job.parent;
  return { ...env, ...l.env };
}

/** The part of a JobSpec that says who runs it: nothing when it is the launcher's own user (not root, or a root job). */
export function runAs(l: Launcher, owner: JobOwner): JobSpec['runAs'] {
  return l.asRoot && owner.uid !== 0 ? { owner } : undefined;
}

export type LaunchSpec = Omit<JobSpec, 'env' | 'runAs'> & { owner: JobOwner; identity: JobIdentity };

/** The job process of a claimed job, ready to start. */
export function launch(l: Launcher, spec: LaunchSpec): JobProcess {
  const { owner, identity, ...rest } = spec;
  return new JobProcess({ ...rest, env: jobEnvironment(l, owner, identity), runAs: runAs(l, owner) });
}

/**
 * --env NAME (take NAME's value from the launcher's environment, if set) or
 * NAME=VALUE. Throws on a name that is not one.
 */
export function parseEnvOptions(specs: string[], from: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const env: Record<string, string> = {};
  for (const s of specs) {
    const eq = s.indexOf('=');
    const name = eq < 0 ? s : s.slice(0, eq);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`--env '${s}': not NAME or NAME=VALUE`);
    if (eq >= 0) env[name] = s.slice(eq + 1);
    else if (from[name] !== undefined) env[name] = from[name]!;
  }
  return env;
}

const O_CLOEXEC = 0o2000000;

/**
 * Close the descriptors this process inherited without close-on-exec (an
 * fd 200 its parent left open on a root-only file): a job must not get
 * them. Node's own descriptors are all close-on-exec, so those left are
 * exactly the inherited ones. Returns how many were closed.
 */
export function closeInheritedDescriptors(): number {
  let closed = 0;
  let fds: string[];
  try { fds = fs.readdirSync('/proc/self/fd'); } catch { return 0; }
  const ipc = Number(process.env.NODE_CHANNEL_FD ?? -1);
  for (const f of fds) {
    const fd = Number(f);
    if (!(fd > 2) || fd === ipc) continue;
    try {
      const info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
      const flags = /^flags:\s*([0-7]+)/m.exec(info);
      if (!flags || (parseInt(flags[1]!, 8) & O_CLOEXEC) !== 0) continue;
      fs.closeSync(fd);
      closed++;
    } catch { /* closed meanwhile (the readdir's own descriptor) */ }
  }
  return closed;
}
