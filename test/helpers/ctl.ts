// Helpers of the pmjqctl tests (issue 6): run pmjqctl and parse its JSON,
// start daemons on a spool, jobs that wait at a gate file, and bounded
// polling of pmjqctl's own view of the spool.

import fs from 'node:fs';
import path from 'node:path';
import { BIN, ROOT_ARGS, run, start, type Proc, type TestLike } from './helpers.js';


export interface CtlResult { code: number; stdout: string; stderr: string }

/** Run pmjqctl to completion (bounded). */
export function ctl(t: TestLike, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CtlResult> {
  return run(t, BIN.pmjqctl, args, { timeoutMs: 30_000, ...opts, env: { NO_COLOR: '1', ...opts.env } });
}

/** Run pmjqctl with --json and parse its output; fails loudly with its stderr when it does not exit 0. */
export async function ctlJson<T = Record<string, unknown>>(t: TestLike, args: string[], opts: { cwd?: string } = {}): Promise<T> {
  // --json before a '--' (after it, it would be part of a command)
  const dd = args.indexOf('--');
  const withJson = dd < 0 ? [...args, '--json'] : [...args.slice(0, dd), '--json', ...args.slice(dd)];
  const r = await ctl(t, withJson, opts);
  if (r.code !== 0) throw new Error(`pmjqctl ${args.join(' ')} --json exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

export interface Job {
  state: string; id: string | null; name: string; name_b64?: string; group: string; node: string | null; attempt: number | null;
  status: string | null; exit_code: number | null; signal: string | null; created: string | null; since: string | null;
  age_ms: number | null; duration_ms: number | null; eta_ms: number | null; info: string | null; path: string | null; log: string | null;
}

export async function jobs(t: TestLike, spool: string, ...args: string[]): Promise<Job[]> {
  return (await ctlJson<{ jobs: Job[] }>(t, ['ls', spool, '--limit', '0', ...args])).jobs;
}

/** Poll (every 100 ms, bounded) until fn() gives a truthy value. */
export async function until<T>(what: string, fn: () => Promise<T | null | undefined | false> | T | null | undefined | false, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A daemon on `spool` that polls often (control requests are read every --poll). */
export function daemon(t: TestLike, spool: string, args: string[] = []): Proc {
  return start(t, BIN.pmjq, [...ROOT_ARGS, '--poll', '100ms', '--settle', '0', ...args, spool]);
}

/** Wait until a daemon has logged its start line; returns its node id. */
export async function nodeOf(p: Proc): Promise<string> {
  const line = await p.waitLine(/event=start node=\S+/, 20_000);
  return /event=start node=(\S+)/.exec(line)![1]!;
}

/** A job body that says it started (a file), then waits until `gate` exists, then prints `after`. */
export function gatedJob(started: string, gate: string, before = 'started', after = 'after the gate'): string {
  return [
    '#!/bin/sh',
    `echo '${before}'`,
    `echo "$PMJQ_JOB_ID" > '${started}'`,
    `while [ ! -e '${gate}' ]; do sleep 0.05; done`,
    `echo '${after}'`,
    '',
  ].join('\n');
}

/** The history records of a spool (all nodes), for one id. */
export function recordsOf(spool: string, id: string): Record<string, unknown>[] {
  const dir = path.join(spool, '.pmjq/history');
  const out: Record<string, unknown>[] = [];
  let files: string[] = [];
  try { files = fs.readdirSync(dir); } catch { return out; }
  for (const f of files) {
    for (const line of fs.readFileSync(path.join(dir, f), 'utf8').split('\n')) {
      if (!line) continue;
      const r = JSON.parse(line) as Record<string, unknown>;
      if (r.id === id) out.push(r);
    }
  }
  return out;
}
