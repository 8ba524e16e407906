// What the three front-ends share: usage errors on one line with exit 2, and
// checks of the values operators type.

import fs from 'node:fs';
import type { Argv, FallbackCompletionFunction } from 'yargs';
import { parseDuration } from '../util/duration.js';
import { VERSION } from '../version.js';

export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

export class UsageError extends Error {}

/**
 * process.exit once stdout and stderr are out: a write to a full pipe (a
 * slow reader) is queued, and process.exit would drop it.
 */
export async function exitWhenWritten(code?: number): Promise<never> {
  await Promise.all([process.stdout, process.stderr].map((s) => new Promise((resolve) => s.write('', resolve))));
  // (process.exit(undefined) would reset process.exitCode to 0)
  if (code === undefined) process.exit();
  process.exit(code);
}

export function usageExit(prog: string, message: string): never {
  // one line, whatever the message (yargs writes some on several)
  const line = message.replace(/\s*\n\s*/g, ' ').trim();
  process.stderr.write(`${prog}: ${line}\nTry '${prog} --help' for more information.\n`);
  process.exit(EXIT_USAGE);
}

export function number(flag: string, v: unknown, opts: { min?: number; integer?: boolean } = {}): number {
  const n = typeof v === 'number' ? v : Number(String(v).trim());
  if (String(v).trim() === '' || !Number.isFinite(n)) throw new UsageError(`${flag}: '${String(v)}' is not a number`);
  if (opts.integer && !Number.isInteger(n)) throw new UsageError(`${flag}: '${String(v)}' is not a whole number`);
  if (opts.min !== undefined && n < opts.min) throw new UsageError(`${flag}: ${n} is below the minimum ${opts.min}`);
  return n;
}

export function duration(flag: string, v: unknown): number {
  try {
    return parseDuration(String(v));
  } catch (err) {
    throw new UsageError(`${flag}: ${(err as Error).message}`);
  }
}

/** A directory that must exist and be writable (the spool). */
export function existingDir(what: string, p: string): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    throw new UsageError(`${what} '${p}' does not exist (create it with: mkdir -p '${p}')`);
  }
  if (!st.isDirectory()) throw new UsageError(`${what} '${p}' is not a directory`);
  try {
    fs.accessSync(p, fs.constants.W_OK | fs.constants.X_OK);
  } catch {
    throw new UsageError(`${what} '${p}' is not writable by this user`);
  }
}

/** A directory pmjq writes into (archive, errors): created when missing, must be writable. */
export function writableDir(what: string, p: string): void {
  try {
    fs.mkdirSync(p, { recursive: true });
  } catch (err) {
    throw new UsageError(`${what} '${p}' cannot be created (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  existingDir(what, p);
}

/**
 * The manners every front-end shares: -V/--version, -h/--help, unknown
 * options refused, usage errors on one line with exit status 2.
 */
export function unixManners<T>(y: Argv<T>, prog: string, epilog: string): Argv<T> {
  return y
    .version(VERSION)
    .alias('version', 'V')
    .help()
    .alias('help', 'h')
    .strict()
    .wrap(Math.min(100, process.stdout.columns || 80))
    .epilog(epilog)
    .fail((msg, err) => usageExit(prog, msg || err?.message || 'invalid arguments'))
    // The answers to the completion scripts' `PROG --get-yargs-completions WORDS…`.
    // Registered under a name no word can take ('--completion' parses as an
    // option), so that yargs never mistakes a spool or job argument named
    // 'completion' for a request of the script (completionShell handles it).
    .completion('--completion', false, completeWords);
}

/** yargs' completions, but where a word, not an option, is due and yargs knows none: none. */
const completeWords: FallbackCompletionFunction = (current, _argv, defaults, done) => {
  defaults((_err, found) => {
    // yargs offers the one-letter aliases as --x too: they are -x
    const list = (found ?? []).filter((c) => !/^--[^-](:|$)/.test(c));
    // a spool, a job tree, a job id: nothing, so that the shell completes file names
    done(!current.startsWith('-') && list.every((c) => c.startsWith('-')) ? [] : list);
  });
};

export type CompletionShell = 'bash' | 'zsh';

/**
 * `PROG --completion [bash|zsh]` asks for the shell completion script; it is
 * recognised as the first argument only, since later words may be a spool, a
 * job tree or a job's own arguments. yargs picks its template by $SHELL when
 * the parser is made, so this runs before that and sets it. Without a shell
 * named: zsh when $SHELL is zsh, bash otherwise.
 */
export function completionShell(prog: string, args: string[]): CompletionShell | null {
  const first = args[0];
  if (first === undefined || (first !== '--completion' && !first.startsWith('--completion='))) return null;
  const given = first.includes('=') ? [first.slice(first.indexOf('=') + 1)] : args.slice(1, 2);
  const rest = args.slice(first.includes('=') ? 1 : 2);
  const shell = given[0] ?? ((process.env.SHELL ?? '').endsWith('zsh') ? 'zsh' : 'bash');
  if (shell !== 'bash' && shell !== 'zsh') usageExit(prog, `--completion: '${shell}' is not a shell ${prog} completes for (bash, zsh)`);
  if (rest.length > 0) usageExit(prog, `--completion takes only the name of a shell (bash, zsh), not '${rest[0]}'`);
  process.env.SHELL = `/bin/${shell}`;
  delete process.env.ZSH_NAME;
  return shell;
}

/** Print yargs' completion script for `shell`: it asks `PROG --get-yargs-completions WORDS…` for each completion. */
export function printCompletion<T>(y: Argv<T>, prog: string, shell: CompletionShell): void {
  (y as unknown as { showCompletionScript($0: string, cmd: string): unknown }).showCompletionScript(prog, `--completion ${shell}`);
}
