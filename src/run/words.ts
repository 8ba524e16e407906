// Words of a protocol line (pmjq-protocol(7)): POSIX-shell-like splitting and
// getopt-style options, so that a command written by `shlex.join` (chaqum's
// Python client), by a shell's `printf "'%s'"`, or by hand all mean the same.
//
//   splitWords   'a b' "c \"d\" \$e" f\ g  →  [a b] [c "d" $e] [f g]
//   getopt       -aF -gconvert -m 1 -- x  →  {a, F, g=convert, m=1} [x]
//   quoteWord    the inverse of splitWords for one word (single quotes)
//
// Only quoting is shell-like: no expansion ($, `, ~, globs), no comments,
// no operators. A line never holds a newline, so an argument cannot either.

export class WordsError extends Error {
  override name = 'WordsError';
}

const BLANK = new Set([' ', '\t']);

/**
 * Splits a line into words as a POSIX shell would split a simple command,
 * without expansions. Single quotes: everything literal up to the next
 * single quote. Double quotes: backslash escapes only `"` `\` `$` `` ` `` and
 * newline (which vanishes); any other backslash stays. Outside quotes a
 * backslash makes the next character literal. `''` is an empty word.
 * Throws WordsError on an unbalanced quote or a trailing backslash.
 */
export function splitWords(line: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  const n = line.length;
  let i = 0;
  while (i < n) {
    const c = line[i]!;
    if (BLANK.has(c)) {
      if (inWord) { words.push(word); word = ''; inWord = false; }
      i++;
      continue;
    }
    inWord = true;
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new WordsError(`unbalanced single quote at column ${i + 1}`);
      word += line.slice(i + 1, end);
      i = end + 1;
    } else if (c === '"') {
      const start = i;
      i++;
      for (;;) {
        if (i >= n) throw new WordsError(`unbalanced double quote at column ${start + 1}`);
        const d = line[i]!;
        if (d === '"') { i++; break; }
        if (d === '\\' && i + 1 < n) {
          const e = line[i + 1]!;
          if (e === '"' || e === '\\' || e === '$' || e === '`') { word += e; i += 2; continue; }
          if (e === '\n') { i += 2; continue; }
        }
        word += d;
        i++;
      }
    } else if (c === '\\') {
      if (i + 1 >= n) throw new WordsError('backslash at the end of the line');
      const e = line[i + 1]!;
      if (e !== '\n') word += e;
      i += 2;
    } else {
      word += c;
      i++;
    }
  }
  if (inWord) words.push(word);
  return words;
}

/** One word, quoted so that splitWords gives it back unchanged (and so would sh). */
export function quoteWord(word: string): string {
  if (word.includes('\n')) throw new WordsError('an argument cannot contain a newline');
  if (word !== '' && /^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** A command line from words, the inverse of splitWords. */
export function joinWords(words: readonly string[]): string {
  return words.map(quoteWord).join(' ');
}

export interface Options {
  /** option letter → its argument ('' for a flag); the last occurrence wins */
  opts: Map<string, string>;
  /** the operands: everything after the options (and after `--`) */
  operands: string[];
}

/**
 * POSIX getopt: `spec` lists the option letters, a letter followed by ':'
 * takes an argument (attached, `-gconvert`, or the next word, `-g convert`).
 * Flags cluster (`-aF`). Options end at `--` (which is dropped), at `-`, or
 * at the first word not starting with '-'. Throws WordsError on an unknown
 * option or a missing argument.
 */
export function getopt(args: readonly string[], spec: string): Options {
  const opts = new Map<string, string>();
  let i = 0;
  for (; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') { i++; break; }
    if (a.length < 2 || a[0] !== '-') break;
    for (let j = 1; j < a.length; j++) {
      const letter = a[j]!;
      const at = letter === ':' ? -1 : spec.indexOf(letter);
      if (at < 0) throw new WordsError(`unknown option -${letter}`);
      if (spec[at + 1] === ':') {
        if (j + 1 < a.length) {
          opts.set(letter, a.slice(j + 1));
        } else {
          if (i + 1 >= args.length) throw new WordsError(`option -${letter} needs an argument`);
          opts.set(letter, args[++i]!);
        }
        break;
      }
      opts.set(letter, '');
    }
  }
  return { opts, operands: args.slice(i) };
}
