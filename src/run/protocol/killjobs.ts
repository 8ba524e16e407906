// killjobs [-t TIMEOUT] -- JOBID…   →  as waitjobs, once the jobs are terminated
//
// Only jobs of the caller's family are killed; other ids are left alone and
// left out of the answer, as unknown ids are (no oracle, no E).

import { getopt } from '../words.js';
import { parseTimeout, unique } from './args.js';
import type { Call } from './core.js';
import { waitForJobs } from './waitjobs.js';

export async function killjobs(call: Call, args: string[]): Promise<string> {
  const { core, self } = call;
  const { opts, operands } = getopt(args, 't:');
  const timeout = parseTimeout('killjobs', opts.get('t'));
  const ids = unique(operands);
  if (ids.includes(self.id)) throw new Error('killjobs: a job cannot kill itself (it may exit)');
  // registered as a waiter first: the kills below may end the jobs at once
  const answer = waitForJobs(call, ids, false, timeout);
  for (const id of ids) {
    if (!core.relative(self, id)) continue;
    if (!core.host.kill(id)) core.host.log.warn('protocol-warning', { id: self.id, warning: `killjobs: ${id} could not be killed (not running here)` });
  }
  return answer;
}
