// enqueue [-F] [-g GROUP] [-m MAXPROC] [-c MAXCPU] -- SCRIPT [ARG…]   →  S JOBID
//
// The sub-job runs as the enqueuing job's owner. -m and -c change a group's
// settings, so they are taken only for a group this family made (a name no
// spool group has, first used by this family), or when they change nothing;
// a spool group's settings are the operator's.

import { getopt } from '../words.js';
import { checkGroupName, parseCpu, parseMax } from './args.js';
import type { Call, Core } from './core.js';
import { resolveScript } from './script.js';
import type { EnqueueRequest, Live } from './types.js';

const USAGE = 'enqueue [-F] [-g GROUP] [-m MAXPROC] [-c MAXCPU] -- SCRIPT [ARG…]';

export async function enqueue({ core, self, tree }: Call, args: string[]): Promise<string> {
  const { opts, operands } = getopt(args, 'Fg:m:c:');
  if (operands.length === 0) throw new Error(`enqueue: SCRIPT missing (${USAGE})`);
  if (self.children.size >= core.limits.maxLiveChildren) {
    throw new Error(`enqueue: job has ${self.children.size} sub-jobs queued or running already (limit)`);
  }
  const owner = self.owner;
  if (!owner) throw new Error('enqueue: the user this job runs as is not known: nothing runs for it');
  const group = opts.get('g');
  if (group !== undefined) checkGroupName(group);
  const m = opts.get('m');
  let maxproc = m === undefined ? undefined : parseMax(m);
  const c = opts.get('c');
  let maxcpu = c === undefined ? undefined : parseCpu(c);
  if (group === undefined && (maxproc !== undefined || maxcpu !== undefined)) {
    // chaqum ignores them without -g; so do we, but say so
    core.host.log.warn('protocol-warning', { id: self.id, warning: 'enqueue: -m/-c without -g ignored' });
    maxproc = maxcpu = undefined;
  }
  const script = await resolveScript(tree, operands[0]!, owner);
  if (!core.live.has(self.id)) throw new Error('job has ended');
  if (group !== undefined) checkGroupSettings(core, self, group, maxproc, maxcpu);
  const req: EnqueueRequest = { parent: self.id, owner, script, args: operands.slice(1), tree, forget: opts.has('F') };
  if (group !== undefined) req.group = group;
  if (maxproc !== undefined) req.maxproc = maxproc;
  if (maxcpu !== undefined) req.maxcpu = maxcpu;
  const id = core.callEnqueue(req, self);
  if (group !== undefined && !core.host.isSpoolGroup(group)) {
    const g = core.madeGroup(group, self.root);
    if (maxproc !== undefined) g.max = maxproc;
    if (maxcpu !== undefined) g.cpu = maxcpu;
  }
  return `S ${id}`;
}

/** Throws E's message when -m/-c would change a group that is not this family's to change. */
function checkGroupSettings(core: Core, self: Live, group: string, maxproc: number | undefined, maxcpu: number | undefined): void {
  const changes = maxproc !== undefined || maxcpu !== undefined;
  if (core.host.isSpoolGroup(group)) {
    if (changes) throw new Error(`enqueue: '${group}' is a group of the spool: its settings are the operator's (.group.json, --group), -m and -c are refused`);
    return;
  }
  const g = core.madeGroup(group, self.root);
  if (g.family === self.root || !changes) return;
  if ((maxproc === undefined || maxproc === g.max) && (maxcpu === undefined || maxcpu === g.cpu)) return;
  throw new Error(`enqueue: group '${group}' was made by another job family: its -m and -c are that family's (enqueue without them, or use a group of your own)`);
}
