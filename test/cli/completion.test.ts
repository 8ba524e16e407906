// Shell completion (pmjq(1), pmjqctl(1), chaqum(1)): `PROG --completion
// bash|zsh` prints yargs' script, which asks `PROG --get-yargs-completions
// WORDS…` at each TAB. The bash script is sourced in a real bash and its
// function run as bash runs it (COMP_WORDS, COMP_CWORD), with the programs on
// the PATH as `npm install -g` puts them; the zsh script is checked by
// `zsh -n`, and the answers it asks for (with descriptions) are checked.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { BIN, scratch } from '../helpers/helpers.js';

type Prog = keyof typeof BIN;
const PROGS: Prog[] = ['pmjq', 'pmjqctl', 'chaqum'];

/** A directory with pmjq, pmjqctl and chaqum in it, as the completion scripts call them by name. */
function binDir(dir: string): string {
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin);
  for (const p of PROGS) {
    fs.writeFileSync(path.join(bin, p), `#!/bin/sh\nexec '${process.execPath}' '${BIN[p]}' "$@"\n`, { mode: 0o755 });
    // the script, as a user saves it once
    const r = spawnSync(path.join(bin, p), ['--completion', 'bash'], { encoding: 'utf8' });
    fs.writeFileSync(path.join(dir, `${p}.bash`), r.stdout);
  }
  return bin;
}

function sh(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}, cwd?: string): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, ...env }, cwd, timeout: 30_000 });
  return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** What bash offers for the words typed so far (the last one being completed), through the sourced script. */
function bashComplete(bin: string, prog: Prog, words: string[], cwd: string): string[] {
  const quoted = words.map((w) => `'${w.replace(/'/g, `'\\''`)}'`).join(' ');
  const script = `source '${path.join(path.dirname(bin), `${prog}.bash`)}' || exit 9
COMP_WORDS=(${quoted}); COMP_CWORD=${words.length - 1}
_${prog}_yargs_completions
printf '%s\\n' "\${COMPREPLY[@]}"`;
  const r = sh('bash', ['-c', script], { PATH: `${bin}:${process.env.PATH}` }, cwd);
  if (r.code !== 0) throw new Error(`bash completion of ${words.join(' ')}: exit ${r.code}: ${r.stderr}`);
  return r.stdout.split('\n').filter((l) => l !== '');
}

t.test('PROG --completion bash|zsh prints the script; a bad shell or a word after it is a usage error', async (t) => {
  for (const p of PROGS) {
    const bash = sh(process.execPath, [BIN[p], '--completion', 'bash']);
    t.equal(bash.code, 0, `${p} --completion bash: exit 0`);
    t.match(bash.stdout, new RegExp(`^complete -o bashdefault -o default -F _${p}_yargs_completions ${p}$`, 'm'), `${p}: a bash script`);
    t.match(bash.stdout, `${p} --get-yargs-completions`, `${p}: it asks ${p} itself`);
    t.match(bash.stdout, `Installation: ${p} --completion bash >> ~/.bashrc`, `${p}: and says how to install it`);
    const zsh = sh(process.execPath, [BIN[p], '--completion=zsh']);
    t.equal(zsh.code, 0, `${p} --completion=zsh: exit 0`);
    t.match(zsh.stdout, new RegExp(`^#compdef ${p}\\n`), `${p}: a zsh script (usable as _${p} in $fpath)`);
    t.match(zsh.stdout, `compdef _${p}_yargs_completions ${p}`, `${p}: registered with compdef`);
    const byShell = sh(process.execPath, [BIN[p], '--completion'], { SHELL: '/usr/bin/zsh' });
    t.match(byShell.stdout, /^#compdef /, `${p} --completion: the shell of $SHELL`);
    const zr = spawnSync('zsh', ['-n'], { input: zsh.stdout, encoding: 'utf8' });
    t.equal(zr.error, undefined, 'zsh is installed (as root: apt-get install zsh; scripts/test.sh does it)');
    t.equal(zr.status, 0, `${p}: zsh -n finds no syntax error ${zr.stderr ?? ''}`);
  }
  const fish = sh(process.execPath, [BIN.pmjq, '--completion', 'fish']);
  t.equal(fish.code, 2, 'a shell it does not complete for: exit 2');
  t.match(fish.stderr, /^pmjq: --completion: 'fish' is not a shell pmjq completes for \(bash, zsh\)\n/, 'one line saying so');
  const extra = sh(process.execPath, [BIN.pmjqctl, '--completion', 'bash', 'status']);
  t.equal(extra.code, 2, 'a word after the shell: exit 2');
  t.match(extra.stderr, /--completion takes only the name of a shell/);
});

t.test('bash completes verbs, options and their values, and leaves spools to file-name completion', async (t) => {
  const { dir, spool } = scratch(t);
  const bin = binDir(dir);
  t.same(bashComplete(bin, 'pmjqctl', ['pmjqctl', 'st'], dir), ['status'], 'pmjqctl st → status');
  t.same(bashComplete(bin, 'pmjqctl', ['pmjqctl', 're'], dir).sort(), ['resume', 'retry'], 'pmjqctl re → resume, retry');
  t.same(bashComplete(bin, 'pmjqctl', ['pmjqctl', 'ls', spool, '--so'], dir), ['--sort'], 'pmjqctl ls SPOOL --so → --sort');
  t.ok(bashComplete(bin, 'pmjqctl', ['pmjqctl', 'ls', spool, '--sort', ''], dir).includes('eta'), 'pmjqctl ls SPOOL --sort → its keys');
  t.same(bashComplete(bin, 'pmjqctl', ['pmjqctl', 'status', ''], dir), [], 'pmjqctl status → nothing from pmjqctl: bash completes file names (-o default)');
  t.same(bashComplete(bin, 'pmjq', ['pmjq', '--wat'], dir), ['--watch'], 'pmjq --wat → --watch');
  t.same(bashComplete(bin, 'pmjq', ['pmjq', '--watch', ''], dir), ['auto', 'inotify', 'poll'], 'pmjq --watch → auto, inotify, poll');
  t.same(bashComplete(bin, 'pmjq', ['pmjq', '-C', '2', ''], dir), [], 'pmjq -C 2 → the spool, a file name');
  t.same(bashComplete(bin, 'chaqum', ['chaqum', '--ent'], dir), ['--entry'], 'chaqum --ent → --entry');
  t.same(bashComplete(bin, 'chaqum', ['chaqum', '-l', ''], dir), ['console', 'syslog'], 'chaqum -l → console, syslog');
  t.notOk(bashComplete(bin, 'pmjq', ['pmjq', '--'], dir).some((c) => /^--.$/.test(c)), 'no bogus --x for the one-letter aliases');
});

t.test('zsh gets the same answers with descriptions', async (t) => {
  // what the zsh script runs: COMP_CWORD and the words, from zsh ($SHELL is zsh there)
  const r = sh(process.execPath, [BIN.pmjqctl, '--get-yargs-completions', 'pmjqctl', 'st'], { SHELL: '/bin/zsh', COMP_CWORD: '1' });
  t.equal(r.code, 0);
  t.match(r.stdout, /^status:nodes, groups and totals$/m, 'pmjqctl st → status, described');
  const o = sh(process.execPath, [BIN.pmjq, '--get-yargs-completions', 'pmjq', '--wa'], { SHELL: '/bin/zsh', COMP_CWORD: '1' });
  t.match(o.stdout, /^--watch:how new jobs are noticed/m, 'pmjq --wa → --watch, described');
});

t.test('a word "completion" is a word: a spool, a group, a job tree', async (t) => {
  const { spool } = scratch(t);
  const r = sh(process.execPath, [BIN.pmjqctl, 'pause', spool, 'completion']);
  t.equal(r.code, 0, 'pmjqctl pause SPOOL completion: exit 0');
  t.equal(r.stdout, 'paused: completion\n', 'paused the group "completion", printed no script');
  const c = sh(process.execPath, [BIN.chaqum, path.join(spool, 'completion')]);
  t.match(c.stderr, /job tree '.*\/completion' does not exist/, 'chaqum completion: a job tree named completion');
});
