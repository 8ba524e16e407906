// recvmsg [-t TIMEOUT]   →  S LENGTH \n bytes (the channel adds \n) | T
//
// The oldest message for the caller, waiting for one if there is none.

import { getopt } from '../words.js';
import { parseTimeout } from './args.js';
import type { Call } from './core.js';
import type { Message } from './types.js';

export async function recvmsg({ core, self }: Call, args: string[]): Promise<string | Buffer> {
  const { opts, operands } = getopt(args, 't:');
  if (operands.length > 0) throw new Error('recvmsg: takes no arguments (recvmsg [-t TIMEOUT])');
  const timeout = parseTimeout('recvmsg', opts.get('t'));
  let m: Message | null | undefined = self.inbox.shift();
  if (m) {
    self.inboxBytes -= m.data.length;
    core.unqueue(m, 'R');
  } else {
    if (timeout === 0) return 'T';
    m = await new Promise<Message | null>((resolve) => {
      const timer = timeout === undefined ? null : setTimeout(() => core.takeRecv(self)?.(null), timeout);
      self.recv = { resolve, timer };
      core.waiting++;
    });
    if (!m) return 'T';
  }
  return Buffer.concat([Buffer.from(`S ${m.data.length}\n`), m.data]);
}
