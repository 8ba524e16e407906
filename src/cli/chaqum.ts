#!/usr/bin/env node
// chaqum(1): the pmjq engine driving a job tree instead of a spool, with the
// chaqum job manager's command line. Argument parsing only.

import './lean-heap.js';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { Logger } from '../util/log.js';
import { EXIT_FAILED, completionShell, exitWhenWritten, printCompletion, usageExit, unixManners } from './common.js';

const PROG = 'chaqum';
const completion = completionShell(PROG, process.argv.slice(2));

const parser = unixManners(yargs(hideBin(process.argv))
  .scriptName(PROG)
  .usage('Usage: chaqum [-e ENTRY] [-l console|syslog] [-v] DIR [ARG...]\n\nRun the job tree DIR: start DIR/ENTRY with the ARGs as the first job, then\nrun until no job runs and no repeat is registered, or until SIGINT, SIGTERM\nor SIGHUP. Jobs use the fd 3/4 protocol of pmjq(5) (see pmjq-protocol(7)).')
  .option('entry', { alias: 'e', type: 'string', default: 'entry', describe: 'the first job, relative to DIR', requiresArg: true })
  .option('log', { alias: 'l', choices: ['console', 'syslog'], default: 'console', describe: 'where the manager and the jobs log' })
  .option('verbose', { alias: 'v', type: 'count', describe: 'log more (debug lines of jobs too)' })
  .option('log-format', { choices: ['text', 'json'], default: 'text', describe: 'log lines as key=value text or JSON' })
  .parserConfiguration({ 'halt-at-non-option': true }), PROG, 'Exit status: 0 when every job succeeded, 1 when one failed, 2 on a usage error.\nShell completion: chaqum --completion bash|zsh prints the script (see chaqum(1)).');

async function main(): Promise<void> {
  const a = await parser.parse();
  // options end at DIR: everything after it belongs to the entry job
  const [dir, ...args] = a._.map(String);
  if (dir === undefined) usageExit(PROG, 'no job tree DIR given');
  const tree = path.resolve(dir);
  const entry = path.resolve(tree, a.entry);
  let st: fs.Stats | undefined;
  try { st = fs.statSync(tree); } catch { /* said below */ }
  if (st === undefined) usageExit(PROG, `job tree '${tree}' does not exist`);
  if (!st.isDirectory()) usageExit(PROG, `job tree '${tree}' is not a directory`);
  try {
    fs.accessSync(entry, fs.constants.X_OK);
  } catch {
    usageExit(PROG, `no executable entry job '${entry}' (use -e to name another)`);
  }
  // the engine keeps its claimed areas and logs in a private state directory
  const state = fs.mkdtempSync(path.join(os.tmpdir(), 'chaqum-'));
  let write: ((line: string) => void) | undefined;
  if (a.log === 'syslog') {
    const logger = spawn('logger', ['-t', `chaqum[${process.pid}]`], { stdio: ['pipe', 'ignore', 'inherit'] });
    logger.on('error', () => { /* no logger(1): lines are lost, as syslog would lose them */ });
    write = (line) => { logger.stdin.write(line); };
  }
  const log = new Logger({ format: a['log-format'] as 'text' | 'json', verbosity: a.verbose ?? 0, write });
  // imported here, not above: shell completion and --help need none of it
  const { Daemon } = await import('../daemon.js');
  let code: number;
  try {
    code = await new Daemon({
      spool: state,
      jobs: 0,
      pollMs: 60_000,
      watch: 'poll',
      settleMs: 0,
      graceMs: 10_000,
      killGraceMs: 5000,
      once: false,
      untilIdle: true,
      chaqum: true,
      allowRoot: true,
      keep: 0,
      keepAgeMs: 0,
      logFormat: a['log-format'] as 'text' | 'json',
      verbosity: a.verbose ?? 0,
      retries: 0,
      backoffMs: 10_000,
      groupSettings: new Map(),
      leaseMs: 60_000,
      init: { script: entry, args },
      tree,
      // a job tree is one user's processes: its jobs get that user's environment
      env: inheritedEnv(),
    }, log).run();
  } finally {
    fs.rmSync(state, { recursive: true, force: true });
  }
  // (the jobs' last lines may be waiting for a slow reader)
  await exitWhenWritten(code);
}

/** chaqum's environment, less the variables that describe a job (a chaqum run from inside a job must not pass its own on). */
function inheritedEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !/^(PMJQ|CHAQUM)_/.test(k)) env[k] = v;
  return env;
}

if (completion !== null) {
  printCompletion(parser, PROG, completion);
} else {
  main().catch((err: unknown) => {
    process.stderr.write(`${PROG}: ${(err as Error).message}\n`);
    process.exit(EXIT_FAILED);
  });
}
