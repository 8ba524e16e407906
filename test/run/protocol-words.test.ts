// Unit tests of the protocol's words: shell-like splitting, quoting and
// getopt. The reference for splitting is a real POSIX shell (and Python's
// shlex.join, which chaqum's client uses to write commands).

import { execFileSync } from 'node:child_process';
import t from 'tap';
import { getopt, joinWords, quoteWord, splitWords } from '../../dist/run/words.js';

t.test('splitting', async (t) => {
  const cases: [string, string[]][] = [
    ['', []],
    ['   \t ', []],
    ['enqueue -- a b', ['enqueue', '--', 'a', 'b']],
    ['  a   b\tc  ', ['a', 'b', 'c']],
    [`'a b' "c d"`, ['a b', 'c d']],
    [`''`, ['']],
    [`"" x ''`, ['', 'x', '']],
    [`a''b""c`, ['abc']],
    [`'it'\\''s'`, [`it's`]],
    [`'it'"'"'s'`, [`it's`]],
    [`"a \\" b"`, ['a " b']],
    [`"\\\\ \\$HOME \\\` \\n \\x"`, ['\\ $HOME ` \\n \\x']],
    [`"$HOME"`, ['$HOME']],
    [`'$HOME \\ "'`, ['$HOME \\ "']],
    [`a\\ b c\\'d \\"`, ['a b', `c'd`, '"']],
    ['\\a\\b', ['ab']],
    ['x\\\ny', ['xy']],
    ['"x\\\ny"', ['xy']],
    ['grüße "日本 語" \'€\'', ['grüße', '日本 語', '€']],
    ['-gconvert -m1 --', ['-gconvert', '-m1', '--']],
  ];
  for (const [line, words] of cases) t.same(splitWords(line), words, JSON.stringify(line));
});

t.test('unbalanced quotes and trailing backslash are errors', async (t) => {
  for (const line of [`'abc`, `"abc`, `a 'b" c`, `"a \\"`, `\\`, `abc\\`, `'a''`]) {
    t.throws(() => splitWords(line), { name: 'WordsError' }, JSON.stringify(line));
  }
});

t.test('splitting agrees with /bin/sh', async (t) => {
  // no unquoted $, `, globs or operators: those a shell would expand
  const lines = [
    `a 'b c' "d e" f\\ g`,
    `'it'\\''s' "say \\"hi\\"" back\\\\slash`,
    `"\\$x \\\` \\\\ \\a" '\\n'`,
    `x"y"'z' "" ''`,
    `"grüße 日本" '€ $'`,
    `a\\'b "c'd" 'e"f'`,
  ];
  for (const line of lines) {
    const out = execFileSync('/bin/sh', ['-c', `set -f; printf '%s\\0' ${line}`]).toString();
    const words = out.split('\0').slice(0, -1);
    t.same(splitWords(line), words, line);
  }
});

t.test('quoting round-trips, also through Python shlex.join and sh', async (t) => {
  const words = ['plain', '', ' ', 'a b', `it's`, `"quoted"`, '$HOME', '`cmd`', 'back\\slash', 'tab\there',
    'grüße 日本語 €', `'`, `''`, `\\'`, '-x', '--', 'a=b', '*', '~', '#x', ';', '&&', '|'];
  for (const w of words) t.same(splitWords(quoteWord(w)), [w], JSON.stringify(w));
  t.same(splitWords(joinWords(words)), words, 'joinWords');
  const py = execFileSync('python3', ['-c', 'import shlex,sys,json; print(shlex.join(json.load(sys.stdin)))'], { input: JSON.stringify(words) }).toString().replace(/\n$/, '');
  t.same(splitWords(py), words, 'shlex.join');
  const sh = execFileSync('/bin/sh', ['-c', `printf '%s\\0' ${joinWords(words)}`]).toString().split('\0').slice(0, -1);
  t.same(sh, words, 'sh reads quoteWord the same');
  t.throws(() => quoteWord('a\nb'), { name: 'WordsError' }, 'a newline cannot be sent');
});

t.test('getopt', async (t) => {
  const g = (args: string[], spec: string): [Record<string, string>, string[]] => {
    const r = getopt(args, spec);
    return [Object.fromEntries(r.opts), r.operands];
  };
  t.same(g(['-F', '-g', 'convert', '-m', '1', '--', 'x', '-y'], 'Fg:m:c:'), [{ F: '', g: 'convert', m: '1' }, ['x', '-y']]);
  t.same(g(['-Fgconvert', '-m1', '--', 'x'], 'Fg:m:c:'), [{ F: '', g: 'convert', m: '1' }, ['x']], 'clustered, attached');
  t.same(g(['-aF'], 'aFt:'), [{ a: '', F: '' }, []], 'clustered flags');
  t.same(g(['-at', '5', 'j1'], 'aft:'), [{ a: '', t: '5' }, ['j1']], 'flag then option with separate argument');
  t.same(g(['-t', '--', 'x'], 't:'), [{ t: '--' }, ['x']], 'an argument may look like --');
  t.same(g(['-g', '-m', 'x'], 'g:m:'), [{ g: '-m' }, ['x']], 'an argument may look like an option');
  t.same(g(['x', '-F'], 'F'), [{}, ['x', '-F']], 'options end at the first operand');
  t.same(g(['-', '-F'], 'F'), [{}, ['-', '-F']], "'-' is an operand");
  t.same(g(['-F', '--', '--'], 'F'), [{ F: '' }, ['--']], 'only the first -- ends options');
  t.same(g(['-t1', '-t', '2'], 't:'), [{ t: '2' }, []], 'last wins');
  t.same(g(['-g', ''], 'g:'), [{ g: '' }, []], 'empty argument');
  t.throws(() => getopt(['-x'], 'F'), /unknown option -x/);
  t.throws(() => getopt(['-g'], 'g:'), /option -g needs an argument/);
  t.throws(() => getopt(['-Fg'], 'Fg:'), /option -g needs an argument/);
  t.throws(() => getopt(['-:'], 'g:'), /unknown option/);
});
