// Helpers for the `pmjqctl serve` tests: a real server process on a free
// loopback port (its URL is the first line of its stdout), a real daemon,
// plain HTTP requests, and a client of the server-sent events that waits for
// the snapshot a test expects. Every wait is bounded and ends on an event:
// an HTTP response, an SSE message, a line of output.

import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { BIN, IS_ROOT, ROOT_ARGS, start, waitFor, type Proc, type TestLike } from './helpers.js';


export const TOKEN = 'test-token-0123456789abcdef';
/** As root, a server that accepts writes must give submitted jobs to another user. */
export const SUBMIT_USER = 'nobody';

export interface Server {
  url: string;
  proc: Proc;
}

/** Start `pmjqctl serve SPOOL --listen 127.0.0.1:0 [--token-file F]`; resolves once it printed its URL. */
export async function startServer(t: TestLike, spool: string, o: { tokenDir?: string; args?: string[] } = {}): Promise<Server> {
  const args = ['serve', spool, '--listen', '127.0.0.1:0'];
  if (o.tokenDir) {
    const file = path.join(o.tokenDir, 'token');
    fs.writeFileSync(file, `${TOKEN}\n`, { mode: 0o600 });
    args.push('--token-file', file);
    if (IS_ROOT) args.push('--submit-user', SUBMIT_USER);
  }
  args.push(...(o.args ?? []));
  const proc = start(t, BIN.pmjqctl, args);
  let exited: number | null = null;
  void proc.exited.then((c) => { exited = c; });
  const line = await waitFor('the server to print its URL', () => {
    if (exited !== null) throw new Error(`pmjqctl serve exited (${exited}) before printing its URL:\n${proc.stderr()}`);
    const out = proc.stdout();
    const nl = out.indexOf('\n');
    return nl >= 0 ? out.slice(0, nl) : null;
  }, 90_000);
  if (!/^http:\/\/127\.0\.0\.1:\d+$/.test(line)) throw new Error(`unexpected first line from pmjqctl serve: ${JSON.stringify(line)}`);
  return { url: line, proc };
}

/** A pmjq daemon on `spool` (-o archive), started and ready (its heartbeat is written). */
export async function startDaemon(t: TestLike, spool: string, archive: string, extra: string[] = []): Promise<Proc> {
  const p = start(t, BIN.pmjq, [spool, '-o', archive, '--poll', '200ms', ...ROOT_ARGS, ...extra]);
  await p.waitLine(/event=start /, 60_000);
  await waitFor('the daemon\'s heartbeat', () => {
    try { return fs.readdirSync(path.join(spool, '.pmjq/nodes')).some((f) => !f.startsWith('.')); } catch { return false; }
  }, 60_000);
  return p;
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  // biome-ignore lint/suspicious/noExplicitAny: a response body, whatever its shape; tests check it field by field
  json: any;
}

/** One HTTP request with node:http (so that a server answering before the whole body is sent is still read). */
export function request(url: string, o: { method?: string; headers?: Record<string, string>; body?: string | Buffer; timeoutMs?: number } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: o.method ?? 'GET', headers: o.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown = null;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    });
    const timer = setTimeout(() => { req.destroy(new Error(`no answer to ${o.method ?? 'GET'} ${url} within ${o.timeoutMs ?? 30_000} ms`)); }, o.timeoutMs ?? 30_000);
    let answered = false;
    req.on('response', () => { answered = true; });
    // the server may answer (413) and close before the body is all sent: that answer counts
    req.on('error', (err) => { if (!answered) { clearTimeout(timer); reject(err); } });
    if (o.body !== undefined) req.end(o.body); else req.end();
  });
}

export function postJson(url: string, body: unknown, token: string | null = TOKEN): Promise<Reply> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  return request(url, { method: 'POST', headers, body: body === undefined ? undefined : JSON.stringify(body) });
}

// biome-ignore lint/suspicious/noExplicitAny: the /events snapshot, whatever its shape; tests check it field by field
export type Snapshot = any;

/** A listener on GET /events: every `state` snapshot, and waiting for one that satisfies a predicate. */
export class Events {
  readonly snapshots: Snapshot[] = [];
  private req: http.ClientRequest | null = null;
  private waiters: { pred: (s: Snapshot) => unknown; resolve: (v: unknown) => void }[] = [];
  private buf = '';
  contentType = '';

  static open(t: TestLike, url: string): Promise<Events> {
    const e = new Events();
    t.teardown(() => e.close());
    return new Promise((resolve, reject) => {
      e.req = http.get(`${url}/events`, { agent: false }, (res) => {
        e.contentType = String(res.headers['content-type']);
        if (res.statusCode !== 200) { reject(new Error(`GET /events: ${res.statusCode}`)); return; }
        res.setEncoding('utf8');
        res.on('data', (d: string) => e.feed(d));
        resolve(e);
      });
      e.req.on('error', (err) => reject(err));
    });
  }

  private feed(d: string): void {
    this.buf += d;
    for (;;) {
      const end = this.buf.indexOf('\n\n');
      if (end < 0) return;
      const block = this.buf.slice(0, end);
      this.buf = this.buf.slice(end + 2);
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (event !== 'state' || data.length === 0) continue;
      const snap = JSON.parse(data.join('\n')) as Snapshot;
      this.snapshots.push(snap);
      for (const w of [...this.waiters]) {
        const v = w.pred(snap);
        if (v) { this.waiters.splice(this.waiters.indexOf(w), 1); w.resolve(v); }
      }
    }
  }

  /** The first snapshot (already received or to come) for which pred is truthy; resolves with pred's value. */
  wait<T>(what: string, pred: (s: Snapshot) => T | undefined | null | false, timeoutMs = 30_000): Promise<T> {
    const last = this.snapshots[this.snapshots.length - 1];
    if (last !== undefined) {
      const v = pred(last);
      if (v) return Promise.resolve(v);
    }
    return new Promise<T>((resolve, reject) => {
      const w = { pred, resolve: (v: unknown) => { clearTimeout(timer); resolve(v as T); } };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`timed out after ${timeoutMs} ms waiting (by server-sent events) for ${what}; last snapshot: ${JSON.stringify(this.snapshots[this.snapshots.length - 1] ?? null).slice(0, 2000)}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  close(): void {
    this.req?.destroy();
    this.req = null;
  }
}

/** A job row of a snapshot's running/recent lists by name. */
export function jobIn(list: { name: string; id: string | null }[] | undefined, name: string): { id: string; name: string; status?: string; state?: string; attempt?: number } | undefined {
  return list?.find((j) => j.name === name) as never;
}
