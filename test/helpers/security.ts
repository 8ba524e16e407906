// The multi-user setting of the protocol and HTTP security tests (issue 12):
// as root, an unprivileged attacker and a victim (security-users.ts), a spool that both
// may write into (sticky, mode 1777, as /tmp) with a root-owned .pmjq made
// by the daemon, and group directories owned by each user. Jobs are dropped
// owned by their user, the way that user would drop them (written under a
// hidden name, then renamed).

import fs from 'node:fs';
import path from 'node:path';
import type { User } from './users.js';

export { as, attacker, victim, type User } from './users.js';

/** A directory owned by `u` with `mode`. */
export function dirOf(u: User | null, dir: string, mode = 0o755): string {
  fs.mkdirSync(dir, { recursive: true });
  fs.chmodSync(dir, mode);
  if (u) fs.chownSync(dir, u.uid, u.gid);
  return dir;
}

/** An executable script owned by `u`, in place at once (hidden name, chown, then rename). */
export function dropAs(u: User, dir: string, name: string, body: string, mode = 0o755): string {
  const tmp = path.join(dir, `.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`);
  fs.writeFileSync(tmp, body, { mode });
  fs.chmodSync(tmp, mode);
  fs.chownSync(tmp, u.uid, u.gid);
  const dst = path.join(dir, name);
  fs.renameSync(tmp, dst);
  return dst;
}

/**
 * The start of every job script of these tests: `ask CMD` writes one raw
 * protocol command to fd 3 and prints the answer line read from fd 4.
 */
export const PRELUDE = `#!/bin/sh
ask() { printf '%s\\n' "$1" >&3; IFS= read -r a <&4; printf '%s\\n' "$a"; }
`;

/** Resident memory of a process in bytes (VmRSS). */
export function rss(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** Every file under `dir` (recursively) with its owner. */
export function filesWithOwners(dir: string): { file: string; uid: number }[] {
  const out: { file: string; uid: number }[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    out.push({ file: p, uid: fs.lstatSync(p).uid });
    if (e.isDirectory()) out.push(...filesWithOwners(p));
  }
  return out;
}
