// Who may change things through `pmjqctl serve` (pmjqctl(1) SERVE): reading is open
// to whoever reaches the address (127.0.0.1 by default); every mutating route
// needs `Authorization: Bearer TOKEN`, TOKEN being the content of
// --token-file. Without a token file the server is read-only: mutating routes
// answer 403 whatever is sent. A missing or wrong token answers 401.
//
// Submitted jobs never run as root: a server that runs as root and accepts
// writes must be given --submit-user, and the files it writes are chowned to
// that user before they appear in the spool (the daemons run a job as its
// file's owner).

import crypto from 'node:crypto';
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import type { FastifyReply, FastifyRequest } from 'fastify';

export class ConfigError extends Error {}

/** The token in a token file: its first line, without surrounding white space. */
export function readTokenFile(file: string): string {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`--token-file '${file}' cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const token = (text.split('\n', 1)[0] ?? '').trim();
  if (token.length < 8) throw new ConfigError(`--token-file '${file}': the token (its first line) must be at least 8 characters long`);
  if (/\s/.test(token)) throw new ConfigError(`--token-file '${file}': the token must not contain white space`);
  return token;
}

/** Is the token file readable by other users? (a warning, not an error) */
export function tokenFileIsOpen(file: string): boolean {
  try { return (fs.statSync(file).mode & 0o044) !== 0; } catch { return false; }
}

export interface SubmitUser {
  name: string;
  uid: number;
  gid: number;
}

/** A user by name or uid, through NSS (getent), as the daemon looks owners up. */
export function lookupSubmitUser(user: string): SubmitUser {
  let line = '';
  try {
    line = execFileSync('getent', ['passwd', user], { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'] }).split('\n')[0] ?? '';
  } catch { /* not found (exit 2) or no getent */ }
  const f = line.split(':');
  if (f.length < 7) throw new ConfigError(`--submit-user '${user}': no such user (getent passwd ${user})`);
  const u = { name: f[0]!, uid: Number(f[2]), gid: Number(f[3]) };
  if (u.uid === 0) throw new ConfigError(`--submit-user '${user}' is root: submitted jobs never run as root`);
  return u;
}

export interface AuthConfig {
  /** null: read-only server */
  token: string | null;
}

function digest(s: string): Buffer {
  return crypto.createHash('sha256').update(s).digest();
}

/** Compare in constant time (hashes first, so lengths do not leak). */
export function tokenMatches(expected: string, given: string): boolean {
  return crypto.timingSafeEqual(digest(expected), digest(given));
}

/** The bearer token of a request, or null. */
export function bearer(req: FastifyRequest): string | null {
  const h = req.headers.authorization;
  if (typeof h !== 'string') return null;
  const m = /^Bearer[ ]+(\S+)\s*$/i.exec(h);
  return m ? m[1]! : null;
}

/** A preHandler for mutating routes: 403 on a read-only server, 401 without the right token. */
export function requireToken(cfg: AuthConfig) {
  return async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    if (cfg.token === null) {
      await reply.code(403).send({
        error: 'read-only',
        message: 'this server is read-only: start pmjqctl serve with --token-file to allow changes',
      });
      return;
    }
    const given = bearer(req);
    if (given === null || !tokenMatches(cfg.token, given)) {
      await reply.code(401).header('www-authenticate', 'Bearer realm="pmjq"').send({
        error: 'unauthorized',
        message: given === null ? 'this route needs an "Authorization: Bearer TOKEN" header' : 'wrong token',
      });
    }
  };
}
