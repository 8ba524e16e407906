// repeat (-c CRON | -i INTERVAL) -- SCRIPT [ARG…]   →  S
//
// Every instance runs as the job that registered the repeat ran (its owner
// is kept with the repeat: the registrant may be long gone), in its family,
// with no parent (as in chaqum 0.16: no CHAQUM_PARENT). At most one
// instance at a time; a firing while one is queued or running is skipped.

import { RepeatTimer, cronSchedule, intervalSchedule, type NextFiring } from '../repeat.js';
import { getopt } from '../words.js';
import type { Call, Core } from './core.js';
import { resolveScript } from './script.js';
import type { Repeat } from './types.js';

export async function repeat({ core, self, tree }: Call, args: string[]): Promise<string> {
  const { opts, operands } = getopt(args, 'c:i:');
  const cron = opts.get('c');
  const every = opts.get('i');
  if ((cron === undefined) === (every === undefined)) throw new Error('repeat: give one of -c CRON or -i INTERVAL');
  if (operands.length === 0) throw new Error('repeat: SCRIPT missing (repeat (-c CRON | -i INTERVAL) -- SCRIPT [ARG…])');
  let next: NextFiring;
  let schedule: string;
  if (every !== undefined) {
    next = intervalSchedule(every).next;
    schedule = `every ${every}`;
  } else {
    next = cronSchedule(cron!);
    schedule = `cron ${cron!}`;
  }
  const owner = self.owner;
  if (!owner) throw new Error('repeat: the user this job runs as is not known: nothing runs for it');
  core.checkRepeatRoom(owner);
  const script = await resolveScript(tree, operands[0]!, owner);
  if (core.closed) throw new Error('manager shutting down');
  if (!core.live.has(self.id)) throw new Error('job has ended');
  core.checkRepeatRoom(owner);
  const r: Repeat = {
    id: `repeat:${++core.repeatCounter}`, script, args: operands.slice(1), tree, by: self.id, owner, root: self.root, schedule,
    timer: new RepeatTimer(next, () => fire(core, r)), current: null, fired: 0, skipped: 0,
  };
  core.addRepeat(r);
  r.timer.start();
  core.host.log.info('repeat-registered', {
    repeat: r.id, by: self.id, uid: owner.uid, script, schedule, next: new Date(r.timer.nextAt).toISOString(),
  });
  return 'S';
}

function fire(core: Core, r: Repeat): void {
  if (r.current !== null) {
    r.skipped++;
    core.host.log.info('repeat-skipped', { repeat: r.id, script: r.script, running: r.current });
    return;
  }
  let id: string;
  try {
    id = core.callEnqueue({ parent: '', owner: r.owner, script: r.script, args: r.args, tree: r.tree, forget: true, repeat: r.id }, null, r.root);
  } catch (err) {
    core.host.log.warn('repeat-failed', { repeat: r.id, script: r.script, error: (err as Error).message });
    return;
  }
  r.fired++;
  if (core.live.has(id)) {
    r.current = id;
    core.repeatOf.set(id, r);
  }
  core.host.log.debug('repeat-fired', { repeat: r.id, id });
}
