// `pmjqctl serve SPOOL [--listen ADDR:PORT] [--token-file F] [--submit-user U]`
// (pmjqctl(1) SERVE): the JSON API (api.ts), the live dashboard (dashboard/, fed by
// events.ts) and Prometheus metrics (metrics.ts) of one spool, on fastify.
//
// It listens on 127.0.0.1:8080 unless told otherwise; port 0 takes any free
// port. The first line on stdout is the URL it serves (tests and scripts read
// it); everything else goes to stderr, one line per event.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify, { type FastifyInstance } from 'fastify';
import { Layout } from '../spool/layout.js';
import { Logger } from '../util/log.js';
import { VERSION } from '../version.js';
import { errorHandler, registerApi, setLimitText } from './api.js';
import { ConfigError, lookupSubmitUser, readTokenFile, tokenFileIsOpen, type SubmitUser } from './auth.js';
import { SpoolControl } from './control.js';
import { hostChecker } from './host-check.js';
import { registerEvents, StateHub } from './events.js';
import { Metrics } from './metrics.js';

export const DEFAULT_LISTEN = '127.0.0.1:8080';
export const BODY_LIMIT = 1 << 20;

export interface ServeOptions {
  spool: string;
  host: string;
  port: number;
  /** as given, for messages */
  listen?: string;
  /** null: read-only */
  token: string | null;
  /** as root with a token: the owner of submitted files */
  submitUser: SubmitUser | null;
  bodyLimit?: number;
  log?: Logger;
}

/** Where the dashboard's files are: src/http/dashboard, beside this module's source (it is not compiled). */
export function dashboardDir(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [path.join(here, 'dashboard'), path.resolve(here, '../../src/http/dashboard')];
  for (const c of candidates) if (fs.existsSync(path.join(c, 'index.html'))) return c;
  return candidates[candidates.length - 1]!;
}

const STATIC: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
};

export async function createServer(o: ServeOptions): Promise<{ app: FastifyInstance; hub: StateHub }> {
  const log = o.log ?? new Logger();
  const layout = new Layout(o.spool);
  const bodyLimit = o.bodyLimit ?? BODY_LIMIT;
  setLimitText(bodyLimit);
  const app = Fastify({
    logger: false,
    bodyLimit,
    // open event streams must not keep a stopping server alive
    forceCloseConnections: true,
    // URL/api/… from a URL that ended in '/' (as pmjq 0.1.0 printed it) still finds its route
    routerOptions: { ignoreDuplicateSlashes: true },
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
  });
  const hub = new StateHub({ layout, server: { version: VERSION, writable: o.token !== null }, onError: (err) => log.warn('state-read-failed', { error: (err as Error).message }) });
  const metrics = new Metrics(layout);
  const control = new SpoolControl(layout, { submitUser: o.submitUser, hub });

  app.setErrorHandler(errorHandler);
  // DNS-rebinding defence: only requests that name this server (see host-check.ts)
  const hostOk = hostChecker(o.host, () => {
    const a = app.server.address();
    return typeof a === 'object' && a ? a.port : o.port;
  });
  app.addHook('onRequest', async (req, reply) => {
    if (hostOk(req.headers.host)) return;
    const shown = (req.headers.host ?? '').slice(0, 100);
    void reply.code(421).send({
      error: 'misdirected',
      message: `Host ${JSON.stringify(shown)} is not this server's address: use a loopback name (localhost, 127.0.0.1, [::1]) or the --listen address with its port`,
    });
    return reply;
  });
  // JSON bodies; an empty body is no body (POST /api/resume with nothing to say)
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    const text = String(body);
    if (text.trim() === '') { done(null, undefined); return; }
    try {
      done(null, JSON.parse(text));
    } catch (err) {
      done(Object.assign(new Error((err as Error).message), { statusCode: 400, code: 'FST_ERR_CTP_INVALID_JSON_BODY' }), undefined);
    }
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ error: 'not-found', message: `no route ${req.method} ${req.url.split('?')[0]}` });
  });
  app.addHook('onSend', async (_req, reply, payload) => {
    reply.header('x-content-type-options', 'nosniff');
    reply.header('referrer-policy', 'no-referrer');
    return payload;
  });
  app.addHook('onResponse', async (req, reply) => {
    if (req.method !== 'GET' || reply.statusCode >= 400) {
      log.info('http', { method: req.method, url: req.url, status: reply.statusCode, ms: Math.round(reply.elapsedTime) });
    }
  });
  app.addHook('onClose', async () => hub.close());

  registerApi(app, control, { token: o.token });
  registerEvents(app, hub);

  app.get('/metrics', async (_req, reply) => {
    const text = await metrics.render();
    return reply.type(metrics.contentType).send(text);
  });

  const dir = dashboardDir();
  const sendStatic = (file: string) => async (_req: unknown, reply: import('fastify').FastifyReply) => {
    const body = await fs.promises.readFile(path.join(dir, file));
    return reply
      .type(STATIC[file]!)
      .header('cache-control', 'no-cache')
      // everything the page needs is served from here: no CDN, no inline script
      .header('content-security-policy', "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
      .send(body);
  };
  app.get('/', sendStatic('index.html'));
  app.get('/index.html', sendStatic('index.html'));
  app.get('/app.js', sendStatic('app.js'));
  app.get('/style.css', sendStatic('style.css'));

  return { app, hub };
}

export function parseListen(v: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(v);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new ConfigError(`--listen '${v}': expected ADDR:PORT (e.g. 127.0.0.1:8080, [::1]:8080; port 0 = any free port)`);
  return { host: (m[1] ?? m[2])!, port };
}

export function urlOf(host: string, port: number): string {
  const h = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '[::1]' : host;
  // no trailing slash: scripts append /api/… to it
  return `http://${h}:${port}`;
}

export interface ServeArgs {
  spool: string;
  listen: string;
  tokenFile: string | null;
  submitUser: string | null;
}

/**
 * The checks before serving: the spool exists, the token file is readable,
 * and a root server that accepts writes has a --submit-user (jobs never run
 * as root).
 */
export function resolveServeOptions(a: ServeArgs, log: Logger): ServeOptions {
  let st: fs.Stats;
  try { st = fs.statSync(a.spool); } catch { throw new ConfigError(`SPOOL '${a.spool}' does not exist`); }
  if (!st.isDirectory()) throw new ConfigError(`SPOOL '${a.spool}' is not a directory`);
  const { host, port } = parseListen(a.listen);
  const token = a.tokenFile === null ? null : readTokenFile(a.tokenFile);
  if (a.tokenFile !== null && tokenFileIsOpen(a.tokenFile)) {
    log.warn('token-file-readable', { file: a.tokenFile, note: 'other users can read the token: chmod 600 it' });
  }
  const root = process.getuid?.() === 0;
  let submitUser: SubmitUser | null = null;
  if (a.submitUser !== null) {
    submitUser = lookupSubmitUser(a.submitUser);
    if (!root && submitUser.uid !== process.getuid?.()) {
      throw new ConfigError(`--submit-user '${a.submitUser}': only root can write files owned by another user (this server runs as uid ${process.getuid?.()})`);
    }
  }
  if (root && token !== null && submitUser === null) {
    throw new ConfigError('running as root with --token-file: give --submit-user USER (submitted jobs never run as root; their files are owned by USER)');
  }
  return { spool: a.spool, host, port, listen: a.listen, token, submitUser, log };
}

function usage(message: string): number {
  process.stderr.write(`pmjqctl serve: ${message}\nTry 'pmjqctl serve --help' for more information.\n`);
  return 2;
}

/**
 * `pmjqctl serve` with its arguments parsed (by pmjqctl's front-end):
 * checks them, serves until SIGINT/SIGTERM, and returns the
 * exit status: 0 after a clean stop, 1 when it cannot listen, 2 on a usage
 * error (with a one-line reason on stderr).
 */
export async function runServe(a: ServeArgs): Promise<number> {
  const log = new Logger();
  let o: ServeOptions;
  try {
    o = resolveServeOptions(a, log);
  } catch (err) {
    if (err instanceof ConfigError) return usage(err.message);
    throw err;
  }
  const { app } = await createServer(o);
  try {
    await app.listen({ host: o.host, port: o.port });
  } catch (err) {
    process.stderr.write(`pmjqctl serve: cannot listen on ${o.listen}: ${(err as Error).message}\n`);
    return 1;
  }
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : o.port;
  const url = urlOf(o.host, port);
  process.stdout.write(`${url}\n`);
  log.info('serving', {
    url, spool: path.resolve(o.spool), version: VERSION,
    writes: o.token === null ? 'no (read-only: no --token-file)' : 'with bearer token',
    submit_user: o.submitUser?.name,
  });
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (sig: string): void => {
      if (stopping) return;
      stopping = true;
      log.info('stopping', { signal: sig });
      app.close().then(() => resolve(0), (err: Error) => { log.error('close-failed', { error: err.message }); resolve(1); });
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}
