// pmjqctl submit (issue 6): atomic, collision-free, executable by all and
// writable by its owner only; a command becomes a script that runs it in the
// directory it was submitted from with every argument exactly as given.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { BIN, ROOT_ARGS, run, scratch } from '../helpers/helpers.js';
import { ctl, ctlJson } from '../helpers/ctl.js';

const WEIRD = [
  'two  spaces', "it's", '"double"', '$HOME', '`id`', '$(echo no)', 'a\nnew line', 'tab\there', '', '-n', '--', '*', '\\back\\slash',
  'ünïcødé 日本語 🙂', "'", "''", ';', '&&', '|', '>out', '!', '~', '%s',
];

t.test('a command is run with every argument exactly as given, in the directory it was submitted from', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const cwd = path.join(dir, "work dir with 'quotes' and $dollar");
  fs.mkdirSync(cwd);
  const out = path.join(dir, 'argv.json');
  const code = `require('fs').writeFileSync(process.argv[1], JSON.stringify({ argv: process.argv.slice(2), cwd: process.cwd() }))`;
  const r = await ctl(t, ['submit', spool, '--json', '--', process.execPath, '-e', code, out, ...WEIRD], { cwd });
  t.equal(r.code, 0, `submit exits 0 ${r.stderr}`);
  const sub = JSON.parse(r.stdout) as { name: string; group: string; path: string };
  t.same(Object.keys(sub).sort(), ['group', 'name', 'path'], '--json: name, group, path');
  t.equal(sub.group, 'default', 'top level = group default');
  t.equal(sub.path, path.join(spool, sub.name), 'path is the queued file');
  t.match(sub.name, /^node-\d{8}T\d{6}-[0-9a-z]{4}$/, 'default name: the command\'s base name and a unique suffix');
  const st = fs.statSync(sub.path);
  t.equal(st.mode & 0o7777, 0o755, 'mode 0755');
  t.same(fs.readdirSync(spool), [sub.name], 'nothing else left in the spool (no temporary file)');
  t.match(fs.readFileSync(sub.path, 'utf8'), /^#!\/bin\/sh\n/, 'a #!/bin/sh script');
  const syntax = spawnSync('sh', ['-n', sub.path]);
  t.equal(syntax.status, 0, 'sh -n accepts it');

  const d = await run(t, BIN.pmjq, [...ROOT_ARGS, '--once', '-o', archive, spool], { timeoutMs: 30_000 });
  t.equal(d.code, 0, `the job ran and succeeded ${d.stderr}`);
  const got = JSON.parse(fs.readFileSync(out, 'utf8')) as { argv: string[]; cwd: string };
  t.same(got.argv, WEIRD, 'every argument arrived intact (spaces, quotes, $, backquotes, newline, tab, empty, UTF-8)');
  t.equal(got.cwd, cwd, 'it ran in the directory it was submitted from');
});

t.test('names: --name, refusal of an existing name, unique default names, groups', async (t) => {
  const { spool } = scratch(t);
  const a = await ctl(t, ['submit', spool, '--name', 'exact name', '--', 'true']);
  t.equal(a.code, 0, 'submit --name exits 0');
  t.equal(a.stdout, 'exact name\n', 'prints the name');
  const b = await ctl(t, ['submit', spool, '--name', 'exact name', '--', 'false']);
  t.equal(b.code, 1, 'the same --name again: exit 1');
  t.match(b.stderr, /^pmjqctl: submit: a job named 'exact name' is already queued in '.*spool'\n$/, 'one line naming the job and where');
  t.match(fs.readFileSync(path.join(spool, 'exact name'), 'utf8'), /exec 'true'/, 'the queued job was not replaced');

  // many submitters at once, same command: every job kept under its own name
  const rs = await Promise.all(Array.from({ length: 12 }, () => ctl(t, ['submit', spool, '-g', 'many', '--', 'echo', 'x'])));
  t.ok(rs.every((r) => r.code === 0), 'all 12 submissions exit 0');
  const made = rs.map((r) => r.stdout.trim());
  t.equal(new Set(made).size, 12, '12 distinct names');
  t.same(fs.readdirSync(path.join(spool, 'many')).sort(), made.sort(), 'group directory created, holding exactly those 12 jobs');

  const g = await ctlJson<{ group: string; path: string }>(t, ['submit', spool, '-g', 'convert', '--', 'ls']);
  t.equal(g.group, 'convert', '-g names the group');
  t.equal(path.dirname(g.path), path.join(spool, 'convert'), 'the job is in the group\'s directory');
});

t.test('a FILE, or standard input, becomes the job as it is', async (t) => {
  const { dir, spool } = scratch(t);
  const file = path.join(dir, 'my job.sh');
  fs.writeFileSync(file, '#!/bin/sh\necho from file\n', { mode: 0o600 });
  const f = await ctlJson<{ name: string; path: string }>(t, ['submit', spool, file]);
  t.match(f.name, /^my_job\.sh-/, 'default name from the file\'s base name (tamed)');
  t.equal(fs.readFileSync(f.path, 'utf8'), '#!/bin/sh\necho from file\n', 'same content');
  t.equal(fs.statSync(f.path).mode & 0o7777, 0o755, 'made 0755 whatever the source mode');

  const body = '#!/bin/sh\necho from stdin\n';
  const s = spawnSync(process.execPath, [BIN.pmjqctl, 'submit', spool, '--name', 'piped', '-'], { input: body, timeout: 30_000 });
  t.equal(s.status, 0, `submit - exits 0 ${s.stderr}`);
  t.equal(fs.readFileSync(path.join(spool, 'piped'), 'utf8'), body, 'standard input is the job');

  const missing = await ctl(t, ['submit', spool, path.join(dir, 'nope')]);
  t.equal(missing.code, 1, 'a missing FILE: exit 1');
  t.match(missing.stderr, /job file '.*nope' does not exist/, 'naming the file');
});

t.test('usage errors exit 2 with one line', async (t) => {
  const { dir, spool } = scratch(t);
  const cases: [string, string[], RegExp][] = [
    ['nothing to run', ['submit', spool], /what to run\?/],
    ['a FILE and a command', ['submit', spool, 'f', '--', 'true'], /not both/],
    ['hidden group', ['submit', spool, '-g', '.hidden', '--', 'true'], /not a valid group name/],
    ['group with a slash', ['submit', spool, '-g', 'a/b', '--', 'true'], /not a valid group name/],
    ['hidden --name', ['submit', spool, '--name', '.x', '--', 'true'], /starts with '\.'/],
    ['no spool', ['submit', path.join(dir, 'nospool'), '--', 'true'], /spool '.*nospool' does not exist/],
    ['unknown option', ['submit', spool, '--bogus', '--', 'true'], /Unknown argument/],
  ];
  for (const [what, args, re] of cases) {
    const r = await ctl(t, args);
    t.equal(r.code, 2, `${what}: exit 2`);
    t.match(r.stderr, re, `${what}: says why`);
    t.equal(r.stderr.split('\n')[0]!.startsWith('pmjqctl: '), true, `${what}: an error line starting with the program's name`);
  }
  t.same(fs.readdirSync(spool), [], 'nothing was written');
});

t.test('a batch: a command per line (-l) or per NUL (-0), or many FILEs, queued in order in one call', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const outDir = path.join(dir, "out 'dir'");
  fs.mkdirSync(outDir);
  const N = 1000;
  // each line a shell command line: a redirection, a quoted argument with spaces, $ expanded by the job's shell
  const lines = Array.from({ length: N }, (_, i) => `echo "job ${i}" > "${outDir}/$(printf %05d ${i})"`).join('\n') + '\n\n';
  const t0 = process.hrtime.bigint();
  const l = spawnSync(process.execPath, [BIN.pmjqctl, 'submit', spool, '-g', 'many', '-l'], { input: lines, cwd: dir, timeout: 60_000, encoding: 'utf8' });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  t.equal(l.status, 0, `submit -l exits 0 ${l.stderr}`);
  t.comment(`${N} jobs queued by one submit -l in ${secs.toFixed(2)} s (${Math.round(N / secs)} jobs/s, start-up included; load ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ')[0]})`);
  const made = l.stdout.trimEnd().split('\n');
  t.equal(made.length, N, 'one name per non-empty line (the empty line is skipped)');
  t.match(made[0], /^echo-\d{8}T\d{6}-[0-9a-z]{4}-000001$/, 'batch names: BASE-TIME-XXXX-NNNNNN');
  t.same([...made].sort(), made, 'the names sort in the order given');
  t.same(fs.readdirSync(path.join(spool, 'many')).sort(), made, 'exactly those jobs, nothing else (no temporary file)');
  t.equal(fs.statSync(path.join(spool, 'many', made[7]!)).mode & 0o7777, 0o755, 'mode 0755');

  // -0: a command may span lines; --json: one object per line
  const z = spawnSync(process.execPath, [BIN.pmjqctl, 'submit', spool, '-0', '--json'], {
    input: `printf 'two\\n' > two-lines;\nprintf 'lines\\n' >> two-lines\0echo nul > nul\0`, cwd: outDir, timeout: 30_000, encoding: 'utf8',
  });
  t.equal(z.status, 0, `submit -0 exits 0 ${z.stderr}`);
  const zs = z.stdout.trimEnd().split('\n').map((s) => JSON.parse(s) as { name: string; group: string; path: string });
  t.equal(zs.length, 2, 'two NUL-separated commands: two jobs, one JSON object per line');
  t.same(zs.map((j) => j.group), ['default', 'default'], 'in the top level');
  t.match(zs[0]!.name, /^printf-/, 'named after the first word of the command line');

  // many FILEs: each a job as it is; one that does not exist is said and the others are queued
  const f1 = path.join(dir, 'first.sh'), f2 = path.join(dir, 'second.sh');
  fs.writeFileSync(f1, `#!/bin/sh\necho first > "${outDir}/first"\n`, { mode: 0o600 });
  fs.writeFileSync(f2, `#!/bin/sh\necho second > "${outDir}/second"\n`, { mode: 0o600 });
  const f = spawnSync(process.execPath, [BIN.pmjqctl, 'submit', spool, '-g', 'files', f1, path.join(dir, 'missing'), f2], { timeout: 30_000, encoding: 'utf8' });
  t.equal(f.status, 1, 'a missing FILE among several: exit 1');
  t.match(f.stderr, /^pmjqctl: submit: job file '.*missing' does not exist\n$/, 'said on one line');
  t.match(f.stdout, /^first\.sh-\S+-000001\nsecond\.sh-\S+-000003\n$/, 'the other two queued, numbered in the order given');
  t.equal(fs.readdirSync(path.join(spool, 'files')).length, 2, 'two jobs in the group');

  const d = await run(t, BIN.pmjq, [...ROOT_ARGS, '--once', '-j', '4', '-o', archive, spool], { timeoutMs: 150_000 });
  t.equal(d.code, 0, `all ${N + 4} jobs ran and succeeded ${d.stderr.split('\n').filter((l) => / status=(?!done)/.test(l)).join('\n')}`);
  const outs = fs.readdirSync(outDir).sort();
  t.equal(outs.filter((o) => /^\d{5}$/.test(o)).length, N, `the ${N} command lines each ran`);
  t.equal(fs.readFileSync(path.join(outDir, '00123'), 'utf8'), 'job 123\n', 'in the directory submit ran from, as the shell reads the line');
  t.equal(fs.readFileSync(path.join(outDir, 'two-lines'), 'utf8'), 'two\nlines\n', 'a -0 command over two lines ran whole');
  t.equal(fs.readFileSync(path.join(outDir, 'nul'), 'utf8'), 'nul\n', 'the second -0 command ran');
  t.equal(fs.readFileSync(path.join(outDir, 'second'), 'utf8'), 'second\n', 'the FILEs ran');
});

t.test('a batch\'s names all reach a reader slower than the batch (a full pipe)', async (t) => {
  const { spool } = scratch(t);
  const N = 5000;
  const child = spawn(process.execPath, [BIN.pmjqctl, 'submit', '-l', spool], { stdio: ['pipe', 'pipe', 'pipe'] });
  t.teardown(() => { try { child.kill('SIGKILL'); } catch { /* gone */ } });
  child.stdin!.end(Array.from({ length: N }, (_, i) => `echo ${i}`).join('\n') + '\n');
  // not read until every job is queued: the names fill the pipe meanwhile
  child.stdout!.pause();
  const queued = (): number => fs.readdirSync(spool).filter((f) => !f.startsWith('.')).length;
  while (queued() < N) await new Promise((r) => setTimeout(r, 20));
  let names = '';
  child.stdout!.on('data', (d: Buffer) => { names += d.toString(); });
  child.stdout!.resume();
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  t.equal(code, 0, 'exit 0');
  t.equal(names.trimEnd().split('\n').length, N, `all ${N} names, none lost at exit`);
});

t.test('batch usage errors exit 2 with one line, and write nothing', async (t) => {
  const { spool } = scratch(t);
  const cases: [string, string[], RegExp][] = [
    ['-l and a command', ['submit', spool, '-l', '--', 'true'], /-l and -0 read commands from standard input/],
    ['-0 and a FILE', ['submit', spool, '-0', 'f'], /-l and -0 read commands from standard input/],
    ['--name with several', ['submit', spool, '--name', 'x', '-l'], /--name names one job/],
    ['- with FILEs', ['submit', spool, '-', 'f'], /'-' .* cannot be given with FILEs/],
  ];
  for (const [what, args, re] of cases) {
    const r = await ctl(t, args);
    t.equal(r.code, 2, `${what}: exit 2`);
    t.match(r.stderr, re, `${what}: says why`);
    t.equal(r.stderr.split('\n').length, 3, `${what}: one line (and the --help hint)`);
  }
  t.same(fs.readdirSync(spool), [], 'nothing was written');
});

t.test('a plain submit does not load yargs; --help, odd forms and errors still go through it', async (t) => {
  const { dir, spool } = scratch(t);
  const trace = path.join(dir, 'trace');
  const loaded = (args: string[]): { status: number | null; yargs: boolean; stdout: string } => {
    const r = spawnSync('strace', ['-f', '-e', 'trace=openat', '-o', trace, process.execPath, BIN.pmjqctl, ...args], { timeout: 60_000, encoding: 'utf8' });
    if (r.error) throw r.error;
    return { status: r.status, yargs: fs.readFileSync(trace, 'utf8').includes('/node_modules/yargs/'), stdout: r.stdout };
  };
  for (const args of [['submit', spool, '--', 'true'], ['submit', spool, '-g', 'g', '--name', 'n1', '--json', '--', 'ls', '-l'], ['submit', '--group=g', spool, '--name=n2', '--', 'x']]) {
    const r = loaded(args);
    t.equal(r.status, 0, `${args.join(' ')}: exit 0`);
    t.notOk(r.yargs, `${args.join(' ')}: yargs not loaded`);
  }
  const odd: string[][] = [['submit', spool, '--help'], ['submit', spool, '-gg', '--', 'true'], ['submit', spool, '--json', 'false', '--', 'true'], ['submit', spool, '--bogus', '--', 'true']];
  for (const args of odd) t.ok(loaded(args).yargs, `${args.join(' ')}: parsed by yargs`);
  t.match(loaded(['submit', spool, '--help']).stdout, /-l, --lines/, '--help is yargs\' and names the batch options');
});

