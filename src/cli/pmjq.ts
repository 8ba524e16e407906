#!/usr/bin/env node
// pmjq(1): argument parsing only; the daemon is src/daemon.ts.

import './lean-heap.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { DEFAULT_KILL_GRACE_MS, fencingRefusal, maxKillGraceMs } from '../cluster/watchdog.js';
import type { DaemonOptions } from '../options.js';
import { normaliseCpu } from '../schedule/barrier.js';
import type { GroupSettings } from '../schedule/groups.js';
import { parseGroupFlag } from '../schedule/settings.js';
import { Logger } from '../util/log.js';
import { LIBS } from '../run/libs.js';
import { parseEnvOptions } from '../run/launch.js';
import { TrustError } from '../spool/trust.js';
import { EXIT_FAILED, EXIT_USAGE, UsageError, completionShell, duration, existingDir, exitWhenWritten, number, printCompletion, usageExit, writableDir, unixManners } from './common.js';

const PROG = 'pmjq';
const completion = completionShell(PROG, process.argv.slice(2));

const parser = unixManners(yargs(hideBin(process.argv))
  .scriptName(PROG)
  .usage('Usage: pmjq [options] SPOOL\n\nWatch the directory SPOOL and run the executable files dropped into it,\none process each, under a load barrier; archive each when it ends.\nSee pmjq(1) and pmjq(5).')
  .command('$0 [spool]', false)
  .positional('spool', { type: 'string', describe: 'the spool directory' })
  .option('archive', { alias: 'o', type: 'string', describe: 'archive finished jobs here (DIR/TIMESTAMP-NAME, .log, .json)', requiresArg: true })
  .option('errors', { alias: 'e', type: 'string', describe: 'failed jobs go here instead (default: the archive)', requiresArg: true })
  .option('load', { alias: 'C', type: 'string', describe: 'start no job while the 1-minute load average is at or above LIMIT', requiresArg: true })
  .option('cpu', { alias: 'c', type: 'string', describe: 'start no job while CPU use is at or above LIMIT (0–1, or percent)', requiresArg: true })
  .option('jobs', { alias: 'j', type: 'string', describe: `run at most N jobs at once (default: CPUs, ${os.availableParallelism()}; 0 = no limit)`, requiresArg: true })
  .option('timeout', { type: 'string', describe: 'stop a job after DURATION (SIGTERM, then SIGKILL)', requiresArg: true })
  .option('retries', { type: 'string', default: '0', describe: 'run a failed job again up to N more times', requiresArg: true })
  .option('backoff', { type: 'string', default: '10s', describe: 'wait BASE·2^(attempt−1) (±20 %, at most 1h) before a retry', requiresArg: true })
  .option('group', { alias: 'g', type: 'string', array: true, nargs: 1, describe: 'settings of a group, over its .group.json: NAME:max=N,load=L,cpu=C,timeout=D,retries=N,backoff=D', requiresArg: true })
  .option('groups', { type: 'string', describe: 'serve only these groups (comma-separated; the top level is "default")', requiresArg: true })
  .option('on-idle', { type: 'string', describe: 'run CMD (sh -c) once nothing has been queued or running for --idle-after', requiresArg: true })
  .option('idle-after', { type: 'string', default: '5m', describe: 'idle time before --on-idle runs', requiresArg: true })
  .option('on-saturated', { type: 'string', describe: 'run CMD (sh -c) once queued jobs have been held back for --saturated-after', requiresArg: true })
  .option('saturated-after', { type: 'string', default: '5m', describe: 'held-back time before --on-saturated runs', requiresArg: true })
  .option('once', { type: 'boolean', describe: 'run what is queued, then exit (0 if every job succeeded, 1 otherwise); a registered repeat keeps it running' })
  .option('poll', { type: 'string', default: '1s', describe: 'rescan the spool every DURATION', requiresArg: true })
  .option('watch', { choices: ['auto', 'inotify', 'poll'], default: 'auto', describe: 'how new jobs are noticed (auto: poll on NFS/SMB/FUSE)' })
  .option('settle', { type: 'string', describe: 'take a file only once unchanged for DURATION (default: 0 locally, 2s on shared filesystems)', requiresArg: true })
  .option('grace', { type: 'string', default: '10s', describe: 'on SIGTERM, let running jobs finish for DURATION before stopping them', requiresArg: true })
  .option('kill-grace', { type: 'string', defaultDescription: '5s', describe: 'after SIGTERM, SIGKILL a job that is still running after DURATION (at most 0.4 × --lease, the default shrinks to fit)', requiresArg: true })
  .option('lease', { type: 'string', default: '60s', describe: 'a node whose heartbeat is older than DURATION is stale: its jobs are recovered (a node silent for half of it stops its jobs)', requiresArg: true })
  .option('init', { type: 'string', describe: 'start SCRIPT once at start-up, as chaqum\'s init job (e.g. to register repeats)', requiresArg: true })
  .option('tree', { type: 'string', describe: 'resolve relative SCRIPT paths of `enqueue` here (default: the enqueuing job\'s directory)', requiresArg: true })
  .option('lib', { choices: ['sh', 'python', 'perl', 'js'], describe: 'print where the client library for LANG is, and exit' })
  .option('env', { type: 'string', array: true, nargs: 1, describe: 'give every job NAME (from pmjq\'s environment) or NAME=VALUE; jobs get no other variable of pmjq\'s', requiresArg: true })
  .option('allow-root', { type: 'boolean', describe: 'as root, run root-owned jobs (otherwise they are rejected)' })
  .option('keep', { type: 'string', default: '1000', describe: 'without -o: keep logs and records of the last N jobs in SPOOL/.pmjq/done', requiresArg: true })
  .option('keep-age', { type: 'string', default: '7d', describe: 'without -o: and none older than DURATION', requiresArg: true })
  .option('log-format', { choices: ['text', 'json'], default: 'text', describe: 'daemon log lines on stderr' })
  .option('verbose', { alias: 'v', type: 'count', describe: 'log more (debug)' })
  .option('quiet', { alias: 'q', type: 'count', describe: 'log less (-q: warnings, -qq: errors)' }), PROG, 'DURATION: 30, 30s, 250ms, 5m, 1h30m. Exit status: 0 ok, 1 a job failed (--once), 2 usage error.\nShell completion: pmjq --completion bash|zsh prints the script (see pmjq(1)).');

function options(a: Awaited<ReturnType<typeof parser.parse>>): DaemonOptions {
  if (a.spool === undefined) throw new UsageError('no SPOOL directory given');
  const spool = path.resolve(String(a.spool));
  let init: DaemonOptions['init'];
  if (a.init !== undefined) {
    const script = path.resolve(a.init);
    try { fs.accessSync(script, fs.constants.X_OK); } catch { throw new UsageError(`--init: '${script}' is not an executable file`); }
    init = { script, args: [] };
  }
  let tree: string | undefined;
  if (a.tree !== undefined) {
    tree = path.resolve(a.tree);
    if (!fs.existsSync(tree) || !fs.statSync(tree).isDirectory()) throw new UsageError(`--tree: '${tree}' is not a directory`);
  }
  existingDir('spool', spool);
  const archive = a.archive !== undefined ? path.resolve(a.archive) : undefined;
  const errors = a.errors !== undefined ? path.resolve(a.errors) : undefined;
  for (const d of [archive, errors]) {
    if (d !== undefined && (d === spool || d.startsWith(spool + path.sep) && !d.startsWith(spool + path.sep + '.'))) {
      throw new UsageError(`'${d}' is inside the spool, where it would be taken for a group; put it outside, or under a name starting with '.'`);
    }
  }
  // created only once known not to be inside the spool
  if (archive !== undefined) writableDir('archive directory', archive);
  if (errors !== undefined) writableDir('errors directory', errors);
  const cpu = a.cpu !== undefined ? normaliseCpu(number('-c/--cpu', a.cpu, { min: 0 })) : undefined;
  const leaseMs = Math.max(1000, duration('--lease', a.lease));
  // a fenced node's jobs must be dead before its lease ends: the kill grace is bounded by the lease
  const killGraceMs = a['kill-grace'] !== undefined ? duration('--kill-grace', a['kill-grace']) : Math.min(DEFAULT_KILL_GRACE_MS, maxKillGraceMs(leaseMs));
  const refused = fencingRefusal(leaseMs, killGraceMs);
  if (refused) throw new UsageError(refused);
  return {
    spool,
    archive,
    errors,
    load: a.load !== undefined ? number('-C/--load', a.load, { min: 0 }) : undefined,
    cpu,
    jobs: a.jobs !== undefined ? number('-j/--jobs', a.jobs, { min: 0, integer: true }) : os.availableParallelism(),
    pollMs: Math.max(10, duration('--poll', a.poll)),
    watch: a.watch as DaemonOptions['watch'],
    settleMs: a.settle !== undefined ? duration('--settle', a.settle) : undefined,
    timeoutMs: a.timeout !== undefined ? duration('--timeout', a.timeout) || undefined : undefined,
    graceMs: duration('--grace', a.grace),
    killGraceMs,
    once: Boolean(a.once),
    allowRoot: Boolean(a['allow-root']),
    keep: number('--keep', a.keep, { min: 0, integer: true }),
    keepAgeMs: duration('--keep-age', a['keep-age']),
    logFormat: a['log-format'] as 'text' | 'json',
    verbosity: (a.verbose ?? 0) - (a.quiet ?? 0),
    leaseMs,
    init,
    tree,
    retries: number('--retries', a.retries, { min: 0, integer: true }),
    backoffMs: duration('--backoff', a.backoff),
    groupSettings: groupSettings(a.group ?? []),
    groups: a.groups !== undefined ? a.groups.split(',').map((g) => g.trim()).filter(Boolean) : undefined,
    env: jobEnv(a.env ?? []),
    onIdle: a['on-idle'] !== undefined ? { command: a['on-idle'], afterMs: duration('--idle-after', a['idle-after']) } : undefined,
    onSaturated: a['on-saturated'] !== undefined ? { command: a['on-saturated'], afterMs: duration('--saturated-after', a['saturated-after']) } : undefined,
  };
}

function jobEnv(specs: string[]): Record<string, string> {
  try {
    return parseEnvOptions(specs);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

function groupSettings(flags: string[]): Map<string, GroupSettings> {
  const out = new Map<string, GroupSettings>();
  for (const f of flags) {
    try {
      const { group, settings } = parseGroupFlag(f);
      out.set(group, { ...out.get(group), ...settings });
    } catch (err) {
      throw new UsageError(`--group: ${(err as Error).message}`);
    }
  }
  return out;
}

async function main(): Promise<void> {
  // Test hook: pretend this node's clock is off by N ms (cluster tests prove
  // that staleness is judged by the shared filesystem's clock, not ours).
  const skew = Number(process.env.PMJQ_TEST_CLOCK_SKEW_MS ?? 0);
  if (skew) {
    const realNow = Date.now.bind(Date);
    Date.now = () => realNow() + skew;
  }
  const a = await parser.parse();
  if (a.lib !== undefined) {
    process.stdout.write(LIBS[a.lib] + '\n');
    process.exit(0);
  }
  let opts: DaemonOptions;
  try {
    opts = options(a);
  } catch (err) {
    if (err instanceof UsageError) usageExit(PROG, err.message);
    throw err;
  }
  const log = new Logger({ format: opts.logFormat, verbosity: opts.verbosity });
  // imported here, not above: shell completion and --help need none of it
  const { Daemon } = await import('../daemon.js');
  const code = await new Daemon(opts, log).run();
  // (its last log lines may be waiting for a slow reader of stderr)
  await exitWhenWritten(code);
}

if (completion !== null) {
  printCompletion(parser, PROG, completion);
} else {
  main().catch((err: unknown) => {
    process.stderr.write(`${PROG}: ${(err as Error).message}\n`);
    // a spool pmjq must not trust is a setup error, like a bad option
    process.exit(err instanceof TrustError ? EXIT_USAGE : EXIT_FAILED);
  });
}
