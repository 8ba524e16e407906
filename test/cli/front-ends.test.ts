// Issue 2, the command line and the daemon's log (pmjq(1) LOGGING): a bad command
// line is one line saying what is wrong and exit 2, before anything is
// touched; --log-format json gives one JSON object per line; -q and -v.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { BIN, ROOT, ROOT_ARGS, dropJob, readJson, run, scratch, waitFor } from '../helpers/helpers.js';
import { cluster } from '../helpers/cluster.js';

t.test('bad command lines: one line naming the problem, exit 2, nothing touched', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const file = path.join(dir, 'a-file');
  fs.writeFileSync(file, '');
  dropJob(spool, 'job', '#!/bin/sh\ntouch ../ran\n');
  const cases: [string, string[], RegExp][] = [
    ['no spool', [], /SPOOL/],
    ['missing spool', [path.join(dir, 'nope')], /spool '.*nope' does not exist/],
    ['spool not a directory', [file], /spool '.*a-file' is not a directory/],
    ['-C abc', ['-C', 'abc', spool], /-C\/--load: 'abc' is not a number/],
    ['-j -1', ['-j', '-1', spool], /-j\/--jobs: -1 is below the minimum 0/],
    ['-j 1.5', ['-j', '1.5', spool], /-j\/--jobs: '1\.5' is not a whole number/],
    ['unknown option', ['--bogus', spool], /[Uu]nknown (argument|option).*bogus/],
    ['--poll xyz', ['--poll', 'xyz', spool], /--poll: 'xyz' is not a duration/],
    ['--timeout soon', ['--timeout', 'soon', spool], /--timeout: 'soon' is not a duration/],
    ['--watch sideways', ['--watch', 'sideways', spool], /watch.*sideways/],
    ['archive cannot be created', ['-o', path.join(file, 'sub'), spool], /archive directory '.*a-file\/sub' cannot be created/],
    ['archive inside the spool', ['-o', path.join(spool, 'arch'), spool], /inside the spool/],
    ['two spools', [spool, archive], /[Uu]nknown argument|too many|one SPOOL/],
    ['option without its value', [spool, '-j'], /following: j$|-j|jobs/],
  ];
  // four at a time: each is a node start-up
  const results: Awaited<ReturnType<typeof run>>[] = [];
  for (let i = 0; i < cases.length; i += 4) {
    results.push(...await Promise.all(cases.slice(i, i + 4).map(([, args]) => run(t, BIN.pmjq, [...ROOT_ARGS, ...args], { timeoutMs: 20_000 }))));
  }
  for (const [i, [what, , re]] of cases.entries()) {
    const r = results[i]!;
    t.equal(r.code, 2, `${what}: exit 2`);
    const lines = r.stderr.trimEnd().split('\n').filter((l) => !/^Try 'pmjq --help'/.test(l));
    t.equal(lines.length, 1, `${what}: one line (${JSON.stringify(r.stderr)})`);
    t.match(lines[0], /^pmjq: /, `${what}: the line names the program`);
    t.match(lines[0], re, `${what}: and the problem`);
    t.equal(r.stdout, '', `${what}: no usage dump on stdout`);
  }
  t.same(fs.readdirSync(spool), ['job'], 'the spool was never touched (no .pmjq, the job still queued)');
  t.notOk(fs.existsSync(path.join(dir, 'ran')), 'no job ran');
  t.same(fs.readdirSync(archive), [], 'the archive is untouched');
});

t.test('chaqum DIR: a missing DIR, a file, a DIR without its entry job: each says which, exit 2', async (t) => {
  const { dir } = scratch(t);
  const file = path.join(dir, 'a-file');
  fs.writeFileSync(file, '');
  const cases: [string, string[], RegExp][] = [
    ['missing DIR', [path.join(dir, 'nope')], /^chaqum: job tree '.*\/nope' does not exist$/],
    ['DIR a file', [file], /^chaqum: job tree '.*\/a-file' is not a directory$/],
    ['no entry', [dir], /^chaqum: no executable entry job '.*\/entry' \(use -e to name another\)$/],
  ];
  const results = await Promise.all(cases.map(([, args]) => run(t, BIN.chaqum, args, { timeoutMs: 20_000 })));
  for (const [i, [what, , re]] of cases.entries()) {
    const r = results[i]!;
    t.equal(r.code, 2, `${what}: exit 2`);
    t.match(r.stderr.split('\n')[0], re, `${what}: ${r.stderr.split('\n')[0]}`);
  }
});

t.test('--help and --version exit 0', async (t) => {
  const h = await run(t, BIN.pmjq, ['--help'], { timeoutMs: 20_000 });
  t.equal(h.code, 0);
  t.match(h.stdout, /Usage: pmjq \[options\] SPOOL/);
  for (const opt of ['--archive', '--errors', '--load', '--jobs', '--timeout', '--once', '--poll', '--watch', '--grace', '--kill-grace', '--allow-root', '--keep', '--log-format', '--quiet']) {
    t.match(h.stdout, opt, `--help lists ${opt}`);
  }
  const v = await run(t, BIN.pmjq, ['--version'], { timeoutMs: 20_000 });
  t.equal(v.code, 0);
  t.match(v.stdout.trim(), /^\d+\.\d+\.\d+/);
});

/** A spool with one job that succeeds and one that fails. */
function twoJobs(t: Test): { spool: string; archive: string } {
  const s = scratch(t);
  dropJob(s.spool, 'good', '#!/bin/sh\necho good\n');
  dropJob(s.spool, 'bad', '#!/bin/sh\nexit 4\n');
  return s;
}

t.test('--log-format json: one JSON object per line', async (t) => {
  const { spool, archive } = twoJobs(t);
  const r = await run(t, BIN.pmjq, [...ROOT_ARGS, '--once', '--log-format', 'json', '-o', archive, spool], { timeoutMs: 20_000 });
  t.equal(r.code, 1);
  const lines = r.stderr.trimEnd().split('\n');
  const objs = lines.map((l) => { try { return JSON.parse(l) as Record<string, unknown>; } catch { return null; } });
  t.ok(objs.every((o) => o !== null && typeof o === 'object'), 'every line is a JSON object');
  for (const o of objs) {
    t.match(o, { time: /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, level: /^(debug|info|warn|error)$/, event: /^[a-z-]+$/ }, `${o?.event as string}: time, level, event`);
  }
  const events = objs.map((o) => o!.event);
  for (const e of ['start', 'job-start', 'job-end', 'stopped']) t.ok(events.includes(e), `has ${e}`);
  const bad = objs.find((o) => o!.event === 'job-end' && o!.name === 'bad')!;
  t.match(bad, { level: 'warn', status: 'failed', exit: 4 }, 'fields keep their JSON types');
});

t.test('-q: no info lines; -qq: errors only; -v: debug lines', async (t) => {
  {
    const { spool, archive } = twoJobs(t);
    const r = await run(t, BIN.pmjq, [...ROOT_ARGS, '--once', '-q', '-o', archive, spool], { timeoutMs: 20_000 });
    t.equal(r.code, 1);
    t.notMatch(r.stderr, /level=info/, '-q: no info lines');
    t.match(r.stderr, /level=warn event=job-end .*name=bad .*status=failed/, '-q: warnings still shown');
  }
  {
    const { spool, archive } = twoJobs(t);
    const r = await run(t, BIN.pmjq, [...ROOT_ARGS, '--once', '-qq', '-o', archive, spool], { timeoutMs: 20_000 });
    t.equal(r.code, 1);
    t.equal(r.stderr, '', '-qq: nothing for a run without errors of pmjq\'s own');
  }
  {
    const { spool, archive } = twoJobs(t);
    const r = await run(t, BIN.pmjq, [...ROOT_ARGS, '--once', '-v', '-o', archive, spool], { timeoutMs: 20_000 });
    t.equal(r.code, 1);
    t.match(r.stderr, /level=debug event=claimed /, '-v: debug lines');
    t.match(r.stderr, /level=info event=job-start /, '-v: and info lines');
  }
});

// The installed commands are bundles (scripts/bundle-cli.mjs): one CommonJS
// file each, whose shell line starts Node with NODE_EXTRA_CA_CERTS moved aside
// and whose first statement puts it back for what they start.
t.test('the installed commands: one file each, started by its own shell line without NODE_EXTRA_CA_CERTS, which jobs still get', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const pkg = readJson<{ bin: Record<string, string>; version: string }>(path.join(ROOT, 'package.json'));
  // a bundle of certificates that cannot be loaded: Node warns on stderr when it sees one
  const ca = path.join(dir, 'no-such-ca.pem');
  const env = { ...process.env, NODE_EXTRA_CA_CERTS: ca };
  for (const name of ['pmjq', 'pmjqctl', 'chaqum'] as const) {
    t.equal(path.join(ROOT, pkg.bin[name]!), BIN[name], `package.json installs the ${name} the tests run`);
    const v = spawnSync(BIN[name], ['--version'], { env, encoding: 'utf8', timeout: 60_000 });
    t.equal(v.stdout, `${pkg.version}\n`, `${name} --version, run as a shell runs it: package.json's`);
    t.equal(v.stderr, '', `${name}: Node never saw NODE_EXTRA_CA_CERTS`);
  }
  dropJob(spool, 'env', `#!/bin/sh\nprintf '%s' "$NODE_EXTRA_CA_CERTS" > '${path.join(dir, 'seen')}'\n`);
  const d = spawnSync(BIN.pmjq, [...ROOT_ARGS, '--once', '-q', '--env', 'NODE_EXTRA_CA_CERTS', '-o', archive, spool], { env, encoding: 'utf8', timeout: 60_000 });
  t.equal(d.status, 0, `pmjq --once exits 0 ${d.stderr}`);
  t.equal(fs.readFileSync(path.join(dir, 'seen'), 'utf8'), ca, 'a job given NODE_EXTRA_CA_CERTS by --env gets pmjq\'s value');

  // a plain submit reads no other file of pmjq's
  const trace = path.join(dir, 'trace');
  const r = spawnSync('strace', ['-f', '-e', 'trace=openat', '-o', trace, BIN.pmjqctl, 'submit', spool, '--', 'true'], { env, encoding: 'utf8', timeout: 60_000 });
  t.equal(r.status, 0, `a plain submit exits 0 ${r.stderr}`);
  const ours = [...fs.readFileSync(trace, 'utf8').matchAll(/openat\(AT_FDCWD, "([^"]+)"/g)].map((m) => m[1]!)
    .filter((f) => f.startsWith(path.join(ROOT, 'dist') + '/'));
  t.same([...new Set(ours)], [BIN.pmjqctl], 'of pmjq\'s compiled files a plain submit opens pmjqctl\'s bundle only');
});

// pmjqctl's guard against a hung spool is a worker thread (hang-guard.ts):
// by default it runs for a spool on a network or FUSE filesystem, or reached
// through a symbolic link, not for one on a local filesystem (local-fs.ts).
t.test('without --fs-timeout, pmjqctl guards a spool on a FUSE mount or behind a symbolic link, not one on a local filesystem', async (t) => {
  const c = cluster(t, 1);
  const link = path.join(c.dir, 'link');
  fs.symlinkSync(c.backing, link);
  /** How many threads a `submit ARGS -` has while it waits for its standard input. */
  const threads = async (args: string[]): Promise<number> => {
    const child = spawn(process.execPath, [BIN.pmjqctl, 'submit', ...args, '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
    t.teardown(() => { try { child.kill('SIGKILL'); } catch { /* gone */ } });
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    // the guard, if any, is started before the spool is first looked at, long before the job is read
    // (its standard input is a socket: Node's 'pipe')
    await waitFor('pmjqctl to wait for its standard input', () => {
      try { return /pipe|unix|sock/.test(fs.readFileSync(`/proc/${child.pid}/wchan`, 'utf8')); } catch { return false; }
    }, 20_000);
    const n = fs.readdirSync(`/proc/${child.pid}/task`).length;
    child.stdin!.end('#!/bin/sh\ntrue\n');
    t.equal(await exited, 0, `submit ${args.join(' ')} - exits 0`);
    return n;
  };
  const local = await threads([c.backing]);
  t.ok(await threads([c.mounts[0]!]) > local, 'a spool on a FUSE mount: a thread more, the guard');
  t.ok(await threads([link]) > local, 'a spool behind a symbolic link: guarded too');
  t.ok(await threads(['--fs-timeout', '10s', c.backing]) > local, '--fs-timeout given: guarded wherever the spool is');
  t.equal(await threads([c.backing]), local, 'and the local spool again: as many threads as the first time');
});
