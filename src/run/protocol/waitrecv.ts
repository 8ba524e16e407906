// waitrecv [-t TIMEOUT] -- MSGID…   →  S MSGID R|T|N …
//
// R: received; N: never to be (its recipient ended first); T: not yet at
// the timeout. Messages of another family are left out, as unknown ids are.

import { getopt } from '../words.js';
import { parseTimeout, unique } from './args.js';
import type { Call } from './core.js';
import { Wait } from './wait.js';

export function waitrecv({ core, self }: Call, args: string[]): Promise<string> {
  const { opts, operands } = getopt(args, 't:');
  const timeout = parseTimeout('waitrecv', opts.get('t'));
  const ids = unique(operands);
  const ours = (id: string) => {
    const m = core.queued.get(id);
    return m && m.family === self.root ? m : undefined;
  };
  return new Promise((resolve) => {
    const w = new Wait(ids, false, (id) => ours(id) !== undefined, (answer) => {
      core.unbusy(self, w);
      resolve(answer);
    });
    for (const id of ids) {
      const m = ours(id);
      if (m) {
        w.watch(m.waiters);
        continue;
      }
      const r = core.msgResults.get(id);
      if (r && r.family === self.root) w.outcomes.set(id, r.outcome);
    }
    core.arm(self, w, timeout);
  });
}
