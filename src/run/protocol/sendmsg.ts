// sendmsg -- JOBID LENGTH, then LENGTH bytes and a newline   →  S MSGID
//
// The payload is read (or skipped) in any case, to stay in step with the
// job. Only jobs of the sender's family receive; another family's id is
// answered as an unknown id.

import { getopt } from '../words.js';
import { CHUNK, endedInPayload } from './args.js';
import type { Call } from './core.js';
import type { Message } from './types.js';

export async function sendmsg({ core, self, io }: Call, args: string[]): Promise<string> {
  const { operands } = getopt(args, '');
  if (operands.length !== 2) throw new Error('sendmsg: expected sendmsg -- JOBID LENGTH');
  const [to, len] = operands as [string, string];
  if (!/^\d{1,15}$/.test(len)) throw new Error(`sendmsg: LENGTH '${len}' is not a number of bytes`);
  const length = Number(len);
  const limits = core.limits;
  const tooLong = length > limits.maxMessageBytes;
  const parts: Buffer[] = [];
  for (let left = length; left > 0;) {
    const piece = await io.readBytes(Math.min(CHUNK, left));
    if (piece === null) return endedInPayload(io);
    if (!tooLong) parts.push(Buffer.from(piece));
    left -= piece.length;
  }
  const nl = await io.readBytes(1);
  if (nl === null) return endedInPayload(io);
  if (nl[0] !== 10) {
    await io.discardLine();
    throw new Error(`sendmsg: the ${length} bytes of payload are not followed by a newline (wrong LENGTH?); skipped to the next line`);
  }
  if (tooLong) throw new Error(`sendmsg: message of ${length} bytes is longer than ${limits.maxMessageBytes}`);
  const dest = core.relative(self, to);
  if (!dest) throw new Error(core.resultFor(self, to) ? `sendmsg: job ${to} has ended` : `sendmsg: unknown job '${to}'`);
  if (dest.inbox.length >= limits.maxInboxMessages || dest.inboxBytes + length > limits.maxInboxBytes) {
    throw new Error(`sendmsg: job ${to} has ${dest.inbox.length} messages (${dest.inboxBytes} bytes) not received yet (limit)`);
  }
  const familyBytes = core.queuedBytesByFamily.get(self.root) ?? 0;
  if (familyBytes + length > limits.maxQueuedBytesPerFamily) {
    throw new Error(`sendmsg: this job tree has ${familyBytes} bytes of messages not received yet (limit ${limits.maxQueuedBytesPerFamily})`);
  }
  if (core.queuedBytes + length > limits.maxQueuedBytes) throw new Error('sendmsg: too many bytes queued for all jobs (limit)');
  const m: Message = { id: `msg:${++core.msgCounter}`, from: self.id, family: self.root, to, data: Buffer.concat(parts, length), waiters: new Set() };
  const waiting = core.takeRecv(dest);
  if (waiting) {
    core.recordDelivery(m, 'R');
    waiting(m);
  } else {
    dest.inbox.push(m);
    dest.inboxBytes += length;
    core.queued.set(m.id, m);
    core.queuedBytes += length;
    core.queuedBytesByFamily.set(self.root, familyBytes + length);
  }
  return `S ${m.id}`;
}
