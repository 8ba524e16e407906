#!/usr/bin/env node
// pmjqctl(1): argument parsing and printing only; what each verb does is the
// library in src/control/ (pmjqctl(1)). Tables for people, --json for
// programs; exit status 0 ok, 1 the operation failed, 2 usage error, 3 the
// spool did not answer within --fs-timeout (hang-guard.ts).

import fs from 'node:fs';
import path from 'node:path';
import type { Argv } from 'yargs';
import { CtlError, checkPlainName, printable } from '../control/errors.js';
import { styleFor } from '../control/format.js';
import type { KillOutcome } from '../control/kill.js';
import type { SortKey } from '../control/ls.js';
import type { RetryOutcome } from '../control/retry.js';
import type { Source } from '../control/submit.js';
import { DEFAULT_GROUP, Layout } from '../spool/layout.js';
import { formatDuration } from '../util/duration.js';
import { errText } from '../util/fsx.js';
import { EXIT_FAILED, EXIT_USAGE, UsageError, completionShell, duration, exitWhenWritten, number, printCompletion, usageExit, unixManners } from './common.js';
import { EXIT_NO_ANSWER, guardAgainstHangs } from './hang-guard.js';
import { onLocalFilesystems } from './local-fs.js';
import { FS_TIMEOUT_DEFAULT, plainSubmitArgs } from './submit-args.js';

const PROG = 'pmjqctl';
/** state.ts DEFAULT_LEASE_MS and ls.ts SORT_KEYS, repeated so that --help imports neither (a test checks they agree) */
const DEFAULT_LEASE_MS = 60_000;
const SORT_KEYS = ['state', 'id', 'name', 'group', 'node', 'attempt', 'age', 'duration', 'eta', 'created'] as const;

type Args = Record<string, unknown> & { spool: string; '--'?: string[] };

const out = (s: string): void => { process.stdout.write(s); };
const json = (v: unknown): void => out(JSON.stringify(v, null, 2) + '\n');
/** One error line for one failed item (the verb goes on with the others). */
const complain = (verb: string, msg: string): void => { process.stderr.write(`${PROG}: ${verb}: ${printable(msg)}\n`); };

/**
 * The spool: an existing directory (writable when the verb writes). From the
 * first look at it on, a verb with --fs-timeout gives up on a spool that
 * does not answer (a hung NFS or FUSE mount) rather than hang for ever.
 */
function spoolOf(a: Args, write: boolean, guarded = true): Layout {
  const p = path.resolve(String(a.spool));
  if (guarded) {
    // without --fs-timeout, only a spool that can hang is guarded: one on a network or FUSE filesystem
    const given = a['fs-timeout'];
    const ms = given !== undefined ? duration('--fs-timeout', given) : onLocalFilesystems(p) ? 0 : duration('--fs-timeout', FS_TIMEOUT_DEFAULT);
    guardAgainstHangs(PROG, String((a._ as unknown[] | undefined)?.[0] ?? ''), p, ms);
  }
  let st: fs.Stats;
  try { st = fs.statSync(p); } catch { throw new UsageError(`spool '${p}' does not exist`); }
  if (!st.isDirectory()) throw new UsageError(`spool '${p}' is not a directory`);
  if (write) {
    try { fs.accessSync(p, fs.constants.W_OK | fs.constants.X_OK); } catch { throw new UsageError(`spool '${p}' is not writable by this user`); }
  }
  return new Layout(p);
}

/** Comma lists or repeated flags: --group a,b --group c. */
function list(v: unknown): string[] | undefined {
  if (v === undefined) return undefined;
  return (Array.isArray(v) ? v : [v]).flatMap((x) => String(x).split(',')).filter((x) => x !== '');
}

/** A promise that resolves at the first SIGINT or SIGTERM (and the signal's number, for exit codes). */
function interrupted(): Promise<number> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve(2));
    process.once('SIGTERM', () => resolve(15));
  });
}

const sleep = (ms: number, stop: Promise<unknown>): Promise<void> =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    void stop.then(() => { clearTimeout(t); resolve(); });
  });

/** Run a verb: CtlError → one line and its exit status (1, or 2 for bad values); UsageError → exit 2. */
// biome-ignore lint/suspicious/noConfusingVoidType: a verb returns its exit status, or nothing for 0
function act(verb: string, fn: (a: Args) => Promise<number | void> | number | void): (a: Args) => Promise<void> {
  return async (a) => {
    let code: number;
    try {
      code = (await fn(a)) ?? 0;
    } catch (err) {
      if (err instanceof UsageError) usageExit(PROG, `${verb}: ${err.message}`);
      if (err instanceof CtlError) {
        if (err.exitCode === EXIT_USAGE) usageExit(PROG, `${verb}: ${printable(err.message)}`);
        complain(verb, err.message);
        code = err.exitCode;
      } else {
        complain(verb, errText(err));
        code = EXIT_FAILED;
      }
    }
    process.exitCode = code;
  };
}

const jsonOpt = { type: 'boolean', describe: 'print JSON for programs (shapes in pmjqctl(1))' } as const;
const fsTimeoutOpt = {
  type: 'string', requiresArg: true, defaultDescription: `${FS_TIMEOUT_DEFAULT} on a network or FUSE filesystem, none on a local one`,
  describe: `give up (exit ${EXIT_NO_ANSWER}) when the spool's filesystem has not answered for DURATION (a hung NFS or FUSE mount); 0: wait for ever`,
} as const;
const leaseOpt = {
  type: 'string', default: `${DEFAULT_LEASE_MS / 1000}s`, requiresArg: true,
  describe: 'a node whose heartbeat is older than DURATION is STALE (when its heartbeat does not say its own lease)',
} as const;

function spoolPositional(y: Argv): Argv {
  return y.positional('spool', { type: 'string', describe: 'the spool directory' });
}

// ---- the verbs ----
// Each verb imports what it needs when it runs: start-up time is most of a
// `status`, and `run` alone needs the job-running machinery.


const submitVerb = act('submit', async (a) => {
  const layout = spoolOf(a, true);
  const { plan, stdinJob } = submitPlan(a);
  const { Submitter, checkJobName } = await import('../control/submit.js');
  if (!plan.batch && a.name !== undefined) checkJobName(String(a.name));
  const s = new Submitter(layout, a.group as string | undefined);
  try {
    if (!plan.batch) {
      const [source] = stdinJob ? [{ kind: 'stdin', data: fs.readFileSync(0) } as const] : [...plan.sources()];
      const r = s.submit(source!, a.name as string | undefined);
      s.ring();
      if (a.json) json(r);
      else out(`${printable(r.name)}\n`);
      return 0;
    }
    // a batch: each job's name (or JSON line) as it is made; a job that fails is said and the others go on
    let failed = 0;
    for (const source of plan.sources()) {
      try {
        const r = s.submitNext(source);
        s.ring(false);
        out(a.json ? JSON.stringify(r) + '\n' : `${printable(r.name)}\n`);
      } catch (err) {
        if (!(err instanceof CtlError)) throw err;
        complain('submit', err.message);
        failed++;
      }
    }
    s.ring();
    return failed ? EXIT_FAILED : 0;
  } finally {
    s.close();
  }
});

/** What `submit` was given: one job, or a batch (-l / -0 on standard input, or several FILEs). */
function submitPlan(a: Args): { plan: { batch: boolean; sources: () => Iterable<Source> }; stdinJob: boolean } {
  const cmd = a['--'] !== undefined && a['--'].length > 0 ? a['--'].map(String) : undefined;
  // yargs drops a lone '-' from a positional array: it is looked for in the words before '--'
  const raw = process.argv.slice(3);
  const stdinJob = (raw.indexOf('--') < 0 ? raw : raw.slice(0, raw.indexOf('--'))).includes('-');
  const files = ((a.files as string[] | undefined) ?? []).map(String).filter((f) => f !== '-' && f !== '');
  const fromStdin = Boolean(a.lines) || Boolean(a.null);
  const cwd = process.cwd();
  if (fromStdin) {
    if (cmd !== undefined || files.length > 0 || stdinJob) throw new UsageError(`-l and -0 read commands from standard input: give no FILE, '-' or command after '--' with them`);
  } else if (cmd !== undefined) {
    if (files.length > 0 || stdinJob) throw new UsageError(`give a command after '--' or a FILE, not both`);
  } else if (stdinJob) {
    if (files.length > 0) throw new UsageError(`'-' (a job read from standard input) cannot be given with FILEs`);
  } else if (files.length === 0) {
    throw new UsageError(`what to run? give a command after '--', a FILE, or '-' for standard input (-l: one command per line of it)`);
  }
  const batch = fromStdin || files.length > 1;
  if (batch && a.name !== undefined) throw new UsageError(`--name names one job: not with several`);
  const sources = function* (): Iterable<Source> {
    if (fromStdin) {
      for (const line of stdinRecords(a.null ? 0 : 0x0a)) if (/\S/.test(line.toString('latin1'))) yield { kind: 'shell', line, cwd };
    } else if (cmd !== undefined) {
      yield { kind: 'command', argv: cmd, cwd };
    } else {
      for (const f of files) yield { kind: 'file', path: path.resolve(f) };
    }
  };
  return { plan: { batch, sources }, stdinJob };
}

/** Standard input as records ending at `sep`, each handed out as soon as it is complete (a producer may be slow). */
function* stdinRecords(sep: number): Generator<Buffer> {
  const buf = Buffer.alloc(1 << 16);
  let rest = Buffer.alloc(0);
  for (;;) {
    let n: number;
    try {
      n = fs.readSync(0, buf, 0, buf.length, null);
    } catch (err) {
      // standard input left non-blocking by whoever started us: wait for it, briefly
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') { Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5); continue; }
      if ((err as NodeJS.ErrnoException).code === 'EOF') break;
      throw err;
    }
    if (n === 0) break;
    let data = rest.length ? Buffer.concat([rest, buf.subarray(0, n)]) : buf.subarray(0, n);
    for (let i = data.indexOf(sep); i >= 0; i = data.indexOf(sep)) {
      yield Buffer.from(data.subarray(0, i));
      data = data.subarray(i + 1);
    }
    rest = Buffer.from(data);
  }
  if (rest.length) yield rest;
}

const statusVerb = act('status', async (a) => {
  const layout = spoolOf(a, false);
  const leaseMs = duration('--lease', a.lease);
  const { readState } = await import('../control/state.js');
  const { renderStatus, statusReport } = await import('../control/status.js');
  const style = styleFor(process.stdout);
  const draw = (): string => {
    const r = statusReport(readState(layout, { leaseMs }));
    return a.json ? JSON.stringify(r) + '\n' : renderStatus(r, style);
  };
  if (!a.watch) { out(draw()); return; }
  const every = Math.max(100, duration('--interval', a.interval));
  const stop = interrupted();
  let stopped = false;
  void stop.then(() => { stopped = true; });
  const tty = Boolean(process.stdout.isTTY) && !a.json;
  while (!stopped) {
    const text = draw();
    if (tty) {
      // redraw in place: home, each line cleared to its end, the rest of the screen cleared
      const head = `Every ${formatDuration(every)}: pmjqctl status ${printable(layout.spool)}    ${new Date().toISOString()}\n\n`;
      out('\x1b[H' + (head + text).replace(/\n/g, '\x1b[K\n') + '\x1b[J');
    } else {
      out(a.json ? text : text + '\n');
    }
    await sleep(every, stop);
  }
});

const lsVerb = act('ls', async (a) => {
  const layout = spoolOf(a, false);
  let grep: RegExp | undefined;
  if (a.grep !== undefined) {
    try { grep = new RegExp(String(a.grep)); } catch (err) { throw new UsageError(`--grep: ${(err as Error).message}`); }
  }
  const groups = list(a.group);
  const { readState } = await import('../control/state.js');
  const { listJobs, parseStates, renderJobs } = await import('../control/ls.js');
  const r = listJobs(readState(layout, { leaseMs: duration('--lease', a.lease) }), {
    states: parseStates(list(a.state)),
    groups,
    sort: a.sort as SortKey | undefined,
    reverse: Boolean(a.reverse),
    limit: number('--limit', a.limit, { min: 0, integer: true }),
    grep,
  });
  if (a.json) json(r);
  else out(renderJobs(r, styleFor(process.stdout)));
});

const logsVerb = act('logs', async (a) => {
  const layout = spoolOf(a, false);
  const id = String(a.id);
  checkPlainName('id', id);
  const { logs, streamSink } = await import('../control/logs.js');
  const stop = interrupted();
  let signal = 0;
  void stop.then((s) => { signal = s; });
  await logs(layout, id, {
    follow: Boolean(a.follow), raw: Boolean(a.raw), pollMs: Math.max(20, duration('--poll', a.poll)),
    style: styleFor(process.stdout), sink: streamSink(process.stdout), stop: stop.then(() => undefined),
  });
  return signal ? 128 + signal : 0;
});

function pauseVerb(verb: 'pause' | 'resume'): (a: Args) => Promise<void> {
  return act(verb, async (a) => {
    const layout = spoolOf(a, true);
    const groups = ((a.groups as string[] | undefined) ?? []).map(String);
    const { pause, renderPaused, resume } = await import('../control/pause.js');
    const s = verb === 'pause' ? pause(layout, groups) : resume(layout, groups);
    for (const g of groups) {
      const dir = g === DEFAULT_GROUP ? layout.spool : path.join(layout.spool, g);
      if (!fs.existsSync(dir)) complain(verb, `note: there is no group directory ${dir} (yet); the flag applies when it appears, and to sub-jobs of that group`);
    }
    if (verb === 'resume' && groups.length && s.all) complain(verb, `note: every group is still paused (pmjqctl pause without a group); 'pmjqctl resume SPOOL' resumes all`);
    if (a.json) json(s);
    else out(renderPaused(s));
  });
}

/** Ids from the command line (and after '--', for ids that start with '-'). */
function ids(a: Args, key: string): string[] {
  const v = [...((a[key] as string[] | undefined) ?? []), ...(a['--'] ?? [])].map(String);
  if (v.length === 0) throw new UsageError('give at least one job id');
  for (const id of v) checkPlainName('id', id);
  return v;
}

const killVerb = act('kill', async (a) => {
  const layout = spoolOf(a, true);
  const waitMs = a.wait === false ? 0 : duration('--wait', a.wait ?? '10s');
  const errors = a.errors !== undefined ? path.resolve(String(a.errors)) : undefined;
  const { requestJobKill, waitKilled } = await import('../control/kill.js');
  const failed: { id: string; message: string }[] = [];
  const asked: KillOutcome[] = [];
  for (const id of ids(a, 'ids')) {
    try { asked.push(requestJobKill(layout, id, { errors })); } catch (err) {
      if (!(err instanceof CtlError)) throw err;
      failed.push({ id, message: err.message });
    }
  }
  const done = waitMs > 0 ? await Promise.all(asked.map((k) => waitKilled(layout, k, waitMs, { errors }))) : asked;
  const stillRunning = done.filter((k) => k.pending && waitMs > 0);
  if (a.json) {
    json({ jobs: done, errors: failed });
  } else {
    for (const k of done) (k.pending && waitMs > 0 ? (m: string) => complain('kill', m) : (m: string) => out(`${printable(m)}\n`))(k.message);
  }
  if (!a.json) for (const f of failed) complain('kill', f.message);
  return failed.length || stillRunning.length ? EXIT_FAILED : 0;
});

const retryVerb = act('retry', async (a) => {
  const layout = spoolOf(a, true);
  const { retryJob } = await import('../control/retry.js');
  const failed: { id: string; message: string }[] = [];
  const done: RetryOutcome[] = [];
  for (const id of ids(a, 'ids')) {
    try { done.push(retryJob(layout, id, { reset: Boolean(a.reset) })); } catch (err) {
      if (!(err instanceof CtlError)) throw err;
      failed.push({ id, message: err.message });
    }
  }
  if (a.json) {
    json({ jobs: done, errors: failed });
  } else {
    for (const r of done) {
      out(`${r.id} ${printable(r.name)}: queued again as attempt ${r.attempt}${a.reset ? ' (reset)' : ''} (attempt ${r.previous_attempt} ended ${r.previous_status})\n`);
    }
    for (const f of failed) complain('retry', f.message);
  }
  return failed.length ? EXIT_FAILED : 0;
});

const runVerb = act('run', async (a) => {
  // (a node while its job runs: it waits)
  const layout = spoolOf(a, true, false);
  const name = a.name !== undefined ? String(a.name) : a['--']?.[0];
  if (name === undefined) throw new UsageError('give the NAME of a queued job');
  const archive = a.archive !== undefined ? path.resolve(String(a.archive)) : undefined;
  const errors = a.errors !== undefined ? path.resolve(String(a.errors)) : undefined;
  for (const [what, d] of [['--archive', archive], ['--errors', errors]] as const) {
    if (d === undefined) continue;
    try { fs.mkdirSync(d, { recursive: true }); } catch (err) { throw new UsageError(`${what} '${d}' cannot be created (${errText(err)})`); }
  }
  const stream = a.json ? process.stderr : process.stdout;
  const { runManual } = await import('../control/run.js');
  const { parseEnvOptions } = await import('../run/launch.js');
  let env: Record<string, string>;
  try { env = parseEnvOptions((a.env as string[] | undefined) ?? []); } catch (err) { throw new UsageError((err as Error).message); }
  const { streamSink } = await import('../control/logs.js');
  const stop = interrupted();
  const r = await runManual(layout, {
    name,
    group: a.group as string | undefined,
    archive,
    errors,
    timeoutMs: a.timeout !== undefined ? duration('--timeout', a.timeout) || undefined : undefined,
    killGraceMs: duration('--kill-grace', a['kill-grace']),
    allowRoot: Boolean(a['allow-root']),
    env,
    sink: streamSink(stream),
    style: styleFor(stream),
    raw: Boolean(a.raw),
    stop,
  });
  const rec = r.record;
  if (a.json) {
    json(rec);
  } else {
    const how = rec.signal ? `signal ${rec.signal}` : rec.exit_code !== null ? `exit ${rec.exit_code}` : rec.error ?? '';
    const lines = [
      `${PROG}: job ${rec.id} (${printable(rec.name)}) ${rec.status}: ${printable(how)}${rec.duration_ms !== null ? ` after ${formatDuration(rec.duration_ms)}` : ''}`,
      `  node:    ${rec.node}`,
      `  group:   ${printable(rec.group)}`,
      `  archive: ${rec.archive === null ? '(removed: no --archive)' : printable(rec.archive)}`,
      `  log:     ${rec.log === null ? '(no output)' : printable(rec.log)}`,
    ];
    if (rec.error) lines.push(`  error:   ${printable(rec.error)}`);
    process.stderr.write(lines.join('\n') + '\n');
  }
  return r.exitCode;
});

// `serve`: src/http/ (the API, dashboard and metrics over this library)
async function serveVerb(a: Args): Promise<void> {
  const { runServe } = await import('../http/server.js'); // fastify is loaded by this verb only
  const opt = (k: string): string | null => (typeof a[k] === 'string' ? a[k] as string : null);
  process.exitCode = await runServe({ spool: a.spool, listen: opt('listen') ?? '127.0.0.1:8080', tokenFile: opt('token-file'), submitUser: opt('submit-user') });
}

// ---- the parser ----

const VERBS = ['submit', 'status', 'ls', 'logs', 'pause', 'resume', 'kill', 'retry', 'run', 'serve'];

// a function, not top-level await: the installed pmjqctl is this module bundled as CommonJS (scripts/bundle-cli.mjs)
async function main(): Promise<void> {
  const first = process.argv[2];
  if (first !== undefined && !first.startsWith('-') && !VERBS.includes(first)) usageExit(PROG, `unknown verb '${printable(first)}' (verbs: ${VERBS.join(', ')})`);
  const completion = completionShell(PROG, process.argv.slice(2));

  // a plain `submit` skips loading yargs, most of its start-up (submit-args.ts)
  const plainSubmit = first === 'submit' ? plainSubmitArgs(process.argv.slice(3)) : null;
  if (plainSubmit !== null) {
    await submitVerb(plainSubmit);
    // (a batch's names may be waiting for a slow reader)
    await exitWhenWritten();
  }
  const { default: yargs } = await import('yargs');
  const { hideBin } = await import('yargs/helpers');

  const parser = unixManners(yargs(hideBin(process.argv))
    .scriptName(PROG)
    .parserConfiguration({ 'populate--': true, 'parse-numbers': false, 'parse-positional-numbers': false })
    .usage('Usage: pmjqctl <verb> SPOOL [options]\n\nManage a pmjq spool from any machine that mounts it. See pmjqctl(1).')
    .command('submit <spool> [files..]', 'put jobs into the spool: -- CMD [ARG…], FILEs, - (a job on stdin), or -l/-0 (a command per line of stdin); prints their names', (y) => spoolPositional(y)
      .positional('files', { type: 'string', array: true, describe: 'job files to copy in (one job each), or - for a job on standard input' })
      .option('group', { alias: 'g', type: 'string', describe: 'the group (subdirectory), created if missing', requiresArg: true })
      .option('name', { type: 'string', describe: 'the job\'s exact name (refused if one of that name is queued); one job only', requiresArg: true })
      .option('lines', { alias: 'l', type: 'boolean', describe: 'read shell command lines from standard input, one job per line' })
      .option('null', { alias: '0', type: 'boolean', describe: 'like -l, the commands separated by NUL bytes (find -print0, xargs -0)' })
      .option('json', { type: 'boolean', describe: 'print JSON for programs (several jobs: one object per line; shapes in pmjqctl(1))' })
      .option('fs-timeout', fsTimeoutOpt)
      .example('pmjqctl submit spool -g convert -- convert "in put.png" out.jpg', 'queue a command')
      .example('printf \'make -C %s\\n\' a b c | pmjqctl submit spool -l', 'queue three commands'), submitVerb as never)
    .command('status <spool>', 'nodes, groups and totals', (y) => spoolPositional(y)
      .option('watch', { alias: 'w', type: 'boolean', describe: 'redraw every --interval until interrupted' })
      .option('interval', { type: 'string', default: '1s', describe: 'with --watch: how often', requiresArg: true })
      .option('lease', leaseOpt)
      .option('json', jsonOpt)
      .option('fs-timeout', fsTimeoutOpt), statusVerb as never)
    .command('ls <spool>', 'jobs in every state, one table', (y) => spoolPositional(y)
      .option('state', { alias: 's', type: 'string', array: true, describe: 'only these states: queued, running, retrying, failed, done, rejected (comma-separated)', requiresArg: true })
      .option('group', { alias: 'g', type: 'string', array: true, describe: 'only these groups (comma-separated)', requiresArg: true })
      .option('sort', { choices: [...SORT_KEYS], describe: 'sort by this column (default: state, then each state\'s natural order)' })
      .option('reverse', { alias: 'r', type: 'boolean', describe: 'reverse the order' })
      .option('limit', { alias: 'n', type: 'string', default: '100', describe: 'print at most N jobs (0 = all)', requiresArg: true })
      .option('grep', { type: 'string', describe: 'only jobs whose name, id, group or info match this regular expression', requiresArg: true })
      .option('lease', leaseOpt)
      .option('json', jsonOpt)
      .option('fs-timeout', fsTimeoutOpt), lsVerb as never)
    .command('logs <spool> <id>', 'a job\'s output, wherever it is', (y) => spoolPositional(y)
      .positional('id', { type: 'string', describe: 'the job id' })
      .option('follow', { alias: 'f', type: 'boolean', describe: 'follow a running job\'s output until it ends' })
      .option('raw', { type: 'boolean', describe: 'bytes as they are (no [level] rendering)' })
      .option('poll', { type: 'string', default: '250ms', describe: 'with -f: how often the file is read', requiresArg: true })
      .option('fs-timeout', fsTimeoutOpt), logsVerb as never)
    .command('pause <spool> [groups..]', 'every node stops claiming (these groups\' jobs); running jobs go on', (y) => spoolPositional(y)
      .positional('groups', { type: 'string', array: true, describe: 'groups ("default" is the top level); none = all' })
      .option('json', jsonOpt)
      .option('fs-timeout', fsTimeoutOpt), pauseVerb('pause') as never)
    .command('resume <spool> [groups..]', 'every node claims again (none = resume everything)', (y) => spoolPositional(y)
      .positional('groups', { type: 'string', array: true, describe: 'groups; none = all' })
      .option('json', jsonOpt)
      .option('fs-timeout', fsTimeoutOpt), pauseVerb('resume') as never)
    .command('kill <spool> [ids..]', 'kill running jobs wherever they run; jobs waiting for a retry are killed at once', (y) => spoolPositional(y)
      .positional('ids', { type: 'string', array: true, describe: 'job ids' })
      .option('wait', { type: 'string', default: '10s', describe: 'wait up to DURATION for the jobs to end (--no-wait: do not)' })
      .option('errors', { alias: 'e', type: 'string', describe: 'where a killed retrying job goes (default SPOOL/.pmjq/done)', requiresArg: true })
      .option('json', jsonOpt)
      .option('fs-timeout', fsTimeoutOpt), killVerb as never)
    .command('retry <spool> [ids..]', 'failed jobs back into the queue, as attempt + 1', (y) => spoolPositional(y)
      .positional('ids', { type: 'string', array: true, describe: 'job ids' })
      .option('reset', { type: 'boolean', describe: 'start again from attempt 1' })
      .option('json', jsonOpt)
      .option('fs-timeout', fsTimeoutOpt), retryVerb as never)
    .command('run <spool> [name]', 'claim one queued job now, here, ignoring barriers and pause; run it in the foreground', (y) => spoolPositional(y)
      .positional('name', { type: 'string', describe: 'the queued job\'s file name' })
      .option('group', { alias: 'g', type: 'string', describe: 'its group (default: the top level)', requiresArg: true })
      .option('archive', { alias: 'o', type: 'string', describe: 'archive it here (default: like pmjq without -o: file removed, log and record in SPOOL/.pmjq/done)', requiresArg: true })
      .option('errors', { alias: 'e', type: 'string', describe: 'if it fails, archive it here instead', requiresArg: true })
      .option('timeout', { type: 'string', describe: 'stop it after DURATION (default: its group\'s timeout)', requiresArg: true })
      .option('kill-grace', { type: 'string', default: '5s', describe: 'SIGKILL this long after SIGTERM', requiresArg: true })
      .option('allow-root', { type: 'boolean', describe: 'as root, run a root-owned job' })
      .option('env', { type: 'string', array: true, nargs: 1, describe: 'give the job NAME (from this environment) or NAME=VALUE, as pmjq --env does', requiresArg: true })
      .option('raw', { type: 'boolean', describe: 'output bytes as they are (no [level] rendering)' })
      .option('json', { type: 'boolean', describe: 'the record as JSON on stdout; the output goes to stderr' }), runVerb as never)
    .command('serve <spool>', 'HTTP JSON API, live dashboard and Prometheus metrics (see SERVE in pmjqctl(1))', (y) => spoolPositional(y)
      .option('listen', { type: 'string', default: '127.0.0.1:8080', describe: 'listen on ADDR:PORT (port 0: any free port; the URL is printed first)', requiresArg: true })
      .option('token-file', { type: 'string', describe: 'changes need "Authorization: Bearer TOKEN", TOKEN being this file\'s first line (without: read-only)', requiresArg: true })
      .option('submit-user', { type: 'string', describe: 'as root: submitted jobs are owned by, and run as, USER', requiresArg: true }), serveVerb as never)
    .demandCommand(1, 'a verb is needed: submit, status, ls, logs, pause, resume, kill, retry, run, serve'), PROG, `DURATION: 30, 30s, 250ms, 5m, 1h30m. Exit status: 0 ok, 1 the operation failed, 2 usage error, ${EXIT_NO_ANSWER} the spool did not answer (--fs-timeout).\nShell completion: pmjqctl --completion bash|zsh prints the script (see pmjqctl(1)).`);

  if (completion !== null) {
    printCompletion(parser, PROG, completion);
  } else {
    parser.parseAsync().catch((err: unknown) => {
      process.stderr.write(`${PROG}: ${errText(err)}\n`);
      process.exitCode = EXIT_FAILED;
    });
  }
}

void main();
