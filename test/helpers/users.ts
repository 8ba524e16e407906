// Real unprivileged users for the security tests: an attacker who can write
// into the spool and a victim whose identity the attacker wants. Made once
// (idempotent) with useradd; the tests run as root, as CI does.

import { execFileSync, spawn, spawnSync } from 'node:child_process';

export interface User { name: string; uid: number; gid: number }

const ok = (cmd: string, args: string[]): boolean => spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;

/** The user `name`, made if missing (no home, no login shell). */
export function user(name: string): User {
  if (!ok('getent', ['passwd', name])) {
    // concurrent test files may make it at the same moment: the second useradd fails, the user exists
    spawnSync('useradd', ['--no-create-home', '--home-dir', `/nonexistent-${name}`, '--shell', '/usr/sbin/nologin', '--user-group', name], { stdio: 'ignore' });
  }
  const id = (flag: string): number => Number(execFileSync('id', [flag, name], { encoding: 'utf8' }).trim());
  return { name, uid: id('-u'), gid: id('-g') };
}

export const attacker = (): User => user('pmjqattacker');
export const victim = (): User => user('pmjqvictim');

/** argv prefix that runs a command as `u` (no supplementary groups). */
export function as(u: User): string[] {
  return ['setpriv', `--reuid=${u.uid}`, `--regid=${u.gid}`, '--clear-groups', '--'];
}

/** Run a shell command as `u`; throws on failure. */
export function shAs(u: User, script: string, env: NodeJS.ProcessEnv = {}): string {
  return execFileSync(as(u)[0]!, [...as(u).slice(1), 'sh', '-c', script], { encoding: 'utf8', env: { ...process.env, ...env } });
}

/** Start a shell command as `u` in its own process group; resolves with its exit code. The caller kills it by group. */
export function startAs(u: User, script: string, env: NodeJS.ProcessEnv = {}): { pid: number; exited: Promise<number> } {
  const child = spawn(as(u)[0]!, [...as(u).slice(1), 'sh', '-c', script], { stdio: 'ignore', detached: true, env: { ...process.env, ...env } });
  const exited = new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? 128)));
  return { pid: child.pid!, exited };
}
