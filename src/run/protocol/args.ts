// Operands and option values shared by the commands, and what they answer
// when one is wrong.

import type { ChannelIO } from '../channel.js';
import { parseDuration } from '../../util/duration.js';

/** sendmsg payloads are read and discarded in pieces of this size. */
export const CHUNK = 64 * 1024;

/** Each id once, in the order first asked. */
export function unique(ids: string[]): string[] {
  return [...new Set(ids)];
}

export function parseTimeout(cmd: string, t: string | undefined): number | undefined {
  if (t === undefined) return undefined;
  try {
    return parseDuration(t);
  } catch (err) {
    throw new Error(`${cmd}: -t ${(err as Error).message}`);
  }
}

/**
 * `-c`: a fraction 0–1, or a percentage above 1 (as chaqum and pmjq -c
 * accept). 0 is refused: it would hold the group's jobs back forever.
 */
export function parseCpu(c: string): number {
  const v = Number(c);
  if (c.trim() === '' || !Number.isFinite(v) || v < 0 || v > 100) throw new Error(`enqueue: -c '${c}' is not a CPU limit (0–1, or a percentage)`);
  if (v === 0) throw new Error('enqueue: -c 0 would never let the group start a job; give a fraction above 0 (or a percentage)');
  return v > 1 ? v / 100 : v;
}

/** `-m`: processes of the group at once; 0 = no limit. */
export function parseMax(m: string): number {
  if (!/^\d{1,9}$/.test(m)) throw new Error(`enqueue: -m '${m}' is not a number of processes`);
  return Number(m);
}

export function checkGroupName(g: string): void {
  if (g === '' || g.startsWith('.') || g.includes('/') || g.includes('\0') || Buffer.byteLength(g) > 255) {
    throw new Error(`enqueue: '${g}' is not a group name (not empty, no '/', not starting with '.')`);
  }
}

/** The job's input ended inside a payload: what is left is no command; drop it. */
export async function endedInPayload(io: ChannelIO): Promise<never> {
  while (await io.discardLine()) { /* the rest of the buffer, up to the end of input */ }
  throw new Error('sendmsg: input ended inside the payload');
}
