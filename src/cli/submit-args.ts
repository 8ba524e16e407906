// `pmjqctl submit` without yargs. Loading yargs is most of a call's start-up
// (37 of the 51 modules a submit loaded), and a job submitted from a loop or
// a Makefile pays it every time. The plain forms of submit are parsed here;
// anything else — --help, a short-option cluster, a value that looks like an
// option, a repeated option, an unknown word, a usage error — returns null
// and goes through yargs as before, so that help and error messages are
// yargs' own, word for word.

export interface SubmitArgs {
  _: string[];
  spool: string;
  files: string[];
  group?: string;
  name?: string;
  'fs-timeout'?: string;
  json?: boolean;
  lines?: boolean;
  null?: boolean;
  '--'?: string[];
  [k: string]: unknown;
}

const VALUED: Record<string, 'group' | 'name' | 'fs-timeout'> = { '-g': 'group', '--group': 'group', '--name': 'name', '--fs-timeout': 'fs-timeout' };
/** the default of --fs-timeout on a spool that can hang (pmjqctl.ts spoolOf) */
export const FS_TIMEOUT_DEFAULT = '10s';
const FLAGS: Record<string, 'json' | 'lines' | 'null'> = { '--json': 'json', '-l': 'lines', '--lines': 'lines', '-0': 'null', '--null': 'null' };
/** words yargs would read as a boolean flag's value (`--json false`) */
const BOOLEAN_WORDS = new Set(['true', 'false']);

/** The arguments after `submit`, or null when this is not a plain form (yargs then parses them). */
export function plainSubmitArgs(argv: readonly string[]): SubmitArgs | null {
  const dash = argv.indexOf('--');
  const words = dash < 0 ? argv : argv.slice(0, dash);
  const positional: string[] = [];
  const a: Partial<Record<'group' | 'name' | 'fs-timeout' | 'json' | 'lines' | 'null', string | boolean>> = {};
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    if (w === '-' || !w.startsWith('-')) {
      if (w === '') return null;
      positional.push(w);
      continue;
    }
    const eq = w.indexOf('=');
    const opt = eq > 0 && w.startsWith('--') ? w.slice(0, eq) : w;
    const key = VALUED[opt];
    if (key !== undefined) {
      if (a[key] !== undefined) return null;
      const v = eq > 0 && opt !== w ? w.slice(eq + 1) : words[++i];
      if (v === undefined || v === '' || v.startsWith('-')) return null;
      a[key] = v;
      continue;
    }
    const flag = opt === w ? FLAGS[w] : undefined;
    if (flag === undefined || a[flag] !== undefined) return null;
    if (BOOLEAN_WORDS.has(words[i + 1] ?? '')) return null;
    a[flag] = true;
  }
  if (positional.length === 0) return null;
  const [spool, ...files] = positional;
  return {
    ...a, _: ['submit'], spool: spool!, files, ...(dash < 0 ? {} : { '--': argv.slice(dash + 1) }),
  } as SubmitArgs;
}
