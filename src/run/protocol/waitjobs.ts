// waitjobs [-t TIMEOUT] -- JOBID…          →  S JOBID T|N|CODE …
// wait [-a|-f] [-t TIMEOUT] -- JOBID…      as waitjobs; -f: when the first is done
//
// CODE is the exit code, or minus the signal that ended a job (-15: SIGTERM,
// as chaqum 0.16 answers); N: it never ran. Ids of another family are left
// out, as unknown ids are.

import { getopt } from '../words.js';
import { parseTimeout, unique } from './args.js';
import type { Call } from './core.js';
import { Wait } from './wait.js';

export function waitjobs(call: Call, args: string[]): Promise<string> {
  return waitCommand(call, args, 't:', 'waitjobs');
}

export function wait(call: Call, args: string[]): Promise<string> {
  return waitCommand(call, args, 'aft:', 'wait');
}

async function waitCommand(call: Call, args: string[], spec: string, cmd: string): Promise<string> {
  const { opts, operands } = getopt(args, spec);
  if (opts.has('a') && opts.has('f')) throw new Error(`${cmd}: -a and -f exclude each other`);
  const timeout = parseTimeout(cmd, opts.get('t'));
  return waitForJobs(call, unique(operands), opts.has('f'), timeout);
}

/** Answers when the jobs `ids` (each once) of the caller's family ended — the first of them with `first` — or at the timeout. */
export function waitForJobs({ core, self }: Call, ids: string[], first: boolean, timeoutMs: number | undefined): Promise<string> {
  if (ids.includes(self.id)) return Promise.reject(new Error('a job cannot wait for itself'));
  return new Promise((resolve) => {
    const w = new Wait(ids, first, (id) => core.relative(self, id) !== undefined, (answer) => {
      core.unbusy(self, w);
      resolve(answer);
    });
    for (const id of ids) {
      const l = core.relative(self, id);
      if (l) {
        w.watch(l.waiters);
        continue;
      }
      const r = core.resultFor(self, id);
      if (r) w.outcomes.set(id, r.code === null ? 'N' : String(r.code));
    }
    core.arm(self, w, timeoutMs);
  });
}
