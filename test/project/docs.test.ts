// The documentation (issue 2, "Documentation"): the man pages lint and
// render cleanly, pmjq(1) documents every option `pmjq --help` prints (with
// its short form and default) and every variable a job gets, pmjq(5) every
// field of a record, package.json lists the man pages, and `npm run demo`
// (scripts/demo.sh) works as the README's quick start promises.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { BIN, ROOT, ROOT_ARGS, archivedRaw, dropJob, readJson, run, scratch, type TestLike } from '../helpers/helpers.js';


const MAN = path.join(ROOT, 'man');
/** The pages the issue asks for; man/ may hold more. */
const REQUIRED = ['pmjq.1', 'pmjq.5', 'pmjqctl.1', 'chaqum.1'];
const PAGES = fs.readdirSync(MAN).filter((f) => /\.[1-8]$/.test(f)).sort();

/** Is `cmd` on the PATH? */
function have(cmd: string): boolean {
  return (process.env.PATH ?? '').split(':').some((d) => {
    try {
      fs.accessSync(path.join(d || '.', cmd), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/**
 * Run any command to completion, stdin from /dev/null, in its own process
 * group (killed at teardown if it is still running, or when it overruns).
 */
function exec(
  t: TestLike, cmd: string, args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = spawn(cmd, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
    cwd: opts.cwd ?? ROOT,
    env: { ...process.env, ...opts.env },
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  let done = false;
  const killGroup = (): void => {
    try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ }
  };
  t.teardown(() => { if (!done) killGroup(); });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      killGroup();
      reject(new Error(`${cmd} ${args.join(' ')} did not exit within ${opts.timeoutMs ?? 60_000} ms:\n${stdout}\n${stderr}`));
    }, opts.timeoutMs ?? 60_000);
    child.on('error', (err) => { clearTimeout(timer); done = true; reject(err); });
    // 'close': the output pipes are drained too
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      done = true;
      resolve({ code: code ?? 128 + (signal ? 15 : 0), stdout, stderr });
    });
  });
}

/** A page as man(1) shows it on an 80-column terminal, without a pager. */
function render(t: TestLike, page: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return exec(t, 'man', ['-l', path.join(MAN, page)], { env: { MANWIDTH: '80', MANPAGER: 'cat', PAGER: 'cat' } });
}

/** roff source with the escapes that can hide an option name removed: `\-` is '-'. */
function roffText(page: string): string {
  return fs.readFileSync(path.join(MAN, page), 'utf8')
    .replace(/\\-/g, '-')
    .replace(/\\f(\[[^\]]*\]|\(..|.)/g, '')
    .replace(/\\[&%|^]/g, '');
}

function mentions(text: string, word: string): boolean {
  const esc = word.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(^|[^A-Za-z0-9_-])${esc}(?![A-Za-z0-9_-])`, 'm').test(text);
}

interface HelpOption { long: string; short?: string; default?: string }

/** The options `pmjq --help` prints: long name, short alias, default. */
function helpOptions(help: string): HelpOption[] {
  const out: HelpOption[] = [];
  let cur: HelpOption | null = null;
  for (const line of help.split('\n')) {
    // an option's first line (continuation lines are indented further)
    const m = /^ {2,6}(?:(-[A-Za-z]), )?(--[a-z][a-z0-9-]*)\b/.exec(line);
    if (m) {
      cur = { long: m[2]!, ...(m[1] ? { short: m[1] } : {}) };
      out.push(cur);
    }
    const d = /\[default: "?([^"\]]*)"?\]/.exec(line);
    if (d && cur) cur.default = d[1]!;
  }
  return out;
}

/** The entries of a rendered OPTIONS section: tag line (`-o, --archive DIR`) → whole entry text, spaces squeezed. */
function optionEntries(rendered: string): Map<string, string> {
  const lines = rendered.split('\n');
  const from = lines.indexOf('OPTIONS');
  const to = lines.findIndex((l, i) => i > from && /^[A-Z]/.test(l));
  const entries = new Map<string, string>();
  let tag: string | null = null;
  let body: string[] = [];
  const flush = (): void => { if (tag !== null) entries.set(tag, body.join(' ').replace(/\s+/g, ' ')); };
  for (const l of lines.slice(from + 1, to)) {
    if (/^ {7}-/.test(l)) {
      flush();
      tag = l.trim().replace(/\s+/g, ' ');
      body = [tag];
    } else if (tag !== null) {
      body.push(l.trim());
    }
  }
  flush();
  return entries;
}

t.test('the man pages exist and package.json lists exactly them', async (t) => {
  const files = fs.readdirSync(MAN).sort();
  for (const p of REQUIRED) t.ok(files.includes(p), `man/${p} exists`);
  t.same(files, PAGES, 'man/ holds man pages only');
  const pkg = readJson<{ man: string[]; version: string }>(path.join(ROOT, 'package.json'));
  t.same(pkg.man.map((p) => path.normalize(p)).sort(), files.map((f) => path.join('man', f)), 'package.json "man" lists every file in man/, and nothing else');
  for (const f of files) {
    const th = fs.readFileSync(path.join(MAN, f), 'utf8').split('\n').find((l) => l.startsWith('.TH '));
    t.match(th, `"pmjq ${pkg.version}"`, `${f}: .TH names the package version`);
  }
});

for (const page of PAGES) {
  t.test(`${page}: groff -man -ww -z prints no warning`, { skip: !have('groff') && 'groff is not installed' }, async (t) => {
    const r = await exec(t, 'groff', ['-man', '-ww', '-z', path.join(MAN, page)]);
    t.equal(r.code, 0, 'exit 0');
    t.equal(r.stderr, '', 'no warnings');
  });

  t.test(`${page}: man -l renders it`, { skip: !have('man') && 'man is not installed' }, async (t) => {
    const r = await render(t, page);
    t.equal(r.code, 0, 'exit 0');
    t.notMatch(r.stderr, /warning|error/i, 'no warnings');
    const title = page.replace(/\.(\d)$/, (_, s: string) => `(${s})`).toUpperCase();
    t.match(r.stdout, new RegExp(`^${title.replace(/[()]/g, '\\$&')} `), `headed ${title}`);
    for (const section of ['NAME', 'SYNOPSIS', 'DESCRIPTION', 'SEE ALSO']) {
      t.match(r.stdout, new RegExp(`^${section}$`, 'm'), `has ${section}`);
    }
    const widest = Math.max(...r.stdout.split('\n').map((l) => [...l].length));
    t.ok(widest <= 80, `fits 80 columns (widest line: ${widest})`);
  });
}

t.test('pmjq(1) documents every option of pmjq --help', async (t) => {
  const r = await run(t, BIN.pmjq, ['--help']);
  t.equal(r.code, 0, 'pmjq --help exits 0');
  const help = r.stdout;
  const longs = [...new Set(help.match(/--[a-z][a-z0-9-]*/g) ?? [])];
  t.ok(longs.length >= 20, `--help prints the options (${longs.length})`);
  const src = roffText('pmjq.1');
  for (const o of longs) t.ok(mentions(src, o), `${o} appears in man/pmjq.1`);

  if (!have('man')) return;
  // each option has its own entry in OPTIONS, with the same short form and default
  const entries = optionEntries((await render(t, 'pmjq.1')).stdout);
  const opts = helpOptions(help);
  t.ok(opts.length >= 20, `parsed ${opts.length} options from --help`);
  for (const o of opts) {
    const text = [...entries].find(([tag]) => tag.split(/[ ,]/).includes(o.long))?.[1];
    if (!t.ok(text, `${o.long} has an entry in OPTIONS`)) continue;
    if (o.short) t.ok(text!.startsWith(`${o.short}, ${o.long}`), `${o.long}: short form ${o.short}`);
    if (o.default !== undefined) t.ok(mentions(text!, o.default), `${o.long}: default ${o.default} is given`);
  }
});

t.test('pmjq(1) documents every variable a job gets, pmjq(5) every field of its record', async (t) => {
  const { spool, archive } = scratch(t, 'pmjq-docs-');
  dropJob(spool, 'env', '#!/bin/sh\nenv\n');
  const r = await run(t, BIN.pmjq, [...ROOT_ARGS, '--once', '-o', archive, spool]);
  t.equal(r.code, 0, 'the job ran');
  const [entry] = archivedRaw(archive);
  const vars = [...new Set(fs.readFileSync(entry!.log, 'utf8').match(/^(PMJQ|CHAQUM)_[A-Z_]+(?==)/gm) ?? [])];
  t.ok(vars.includes('PMJQ_JOB_ID'), 'the job saw PMJQ_JOB_ID');
  const man1 = roffText('pmjq.1');
  for (const v of [...vars, 'CHAQUM_PARENT']) t.ok(mentions(man1, v), `${v} is in man/pmjq.1`);

  const man5 = roffText('pmjq.5');
  const fields = Object.keys(readJson(entry!.json));
  t.ok(fields.length >= 15, 'a record has its fields');
  for (const f of [...fields, 'name_b64', 'error', 'retry_at']) t.match(man5, new RegExp(`^\\.B ${f}$`, 'm'), `record field ${f} is described in man/pmjq.5`);
});

t.test('npm run demo: scripts/demo.sh drains a copy of spool-example and shows the archive and a record', async (t) => {
  const before = snapshot(path.join(ROOT, 'spool-example'));
  // The demo's load limit is CPUs + 1: on a test machine busy with other
  // suites pmjq would (rightly) hold the jobs back until the load drops.
  const r = await exec(t, 'sh', ['scripts/demo.sh'], { env: { PMJQ_DEMO_LOAD: '1000' }, timeoutMs: 120_000 });
  const scratchDir = /scratch copy of spool-example\/ in (\S+)\/spool/.exec(r.stdout)?.[1];
  if (scratchDir) t.teardown(() => fs.rmSync(scratchDir, { recursive: true, force: true }));
  t.equal(r.code, 0, 'exit 0', { stdout: r.stdout, stderr: r.stderr });
  t.ok(scratchDir?.startsWith('/'), 'says where its scratch copy is');
  t.match(r.stdout, /pmjq exited 1, as expected/, 'explains the exit status of pmjq --once');
  t.match(r.stdout, /== the archive: .*==\n(.*\n)*.*\d{8}T\d{6}\.\d{3}Z-slow\.json/, 'lists the archive');
  t.match(r.stdout, /== a record: .*-broken\.json ==\n\{\n(.*\n)*\s*"status": "failed",\n\s*"exit_code": 3,/, 'prints a record');
  t.match(r.stdout, /== a log: .*-thumbnail\.log .*\n(.*\n)*W\^_disk almost full/, 'prints a log with its level prefix');
  t.match(r.stderr, /event=job-end .*name=hello .*status=done/, "pmjq's own log is on stderr");
  if (scratchDir) {
    t.ok(fs.existsSync(path.join(scratchDir, 'spool', 'README.txt')), 'README.txt (not executable) is left in the spool');
    t.equal(fs.readdirSync(path.join(scratchDir, 'archive')).length, 12, 'four jobs archived with .log and .json');
  }
  t.same(snapshot(path.join(ROOT, 'spool-example')), before, 'spool-example/ itself is untouched');
});

t.test('spool-example: executable jobs, a non-job, valid group settings', async (t) => {
  const root = path.join(ROOT, 'spool-example');
  const jobs = ['hello', 'convert/thumbnail', 'convert/broken', 'report/slow'];
  // Git keeps only the execute bit; the rest of a mode comes from the umask
  // of whoever cloned (0755 under umask 022, 0775 under 002: scripts/demo.sh
  // removes group/other write before running the copy).
  for (const j of jobs) {
    const st = fs.statSync(path.join(root, j));
    t.ok(st.mode & 0o100, `${j} is executable`);
    t.notOk(st.mode & 0o6000, `${j} is not setuid/setgid`);
  }
  t.notOk(fs.statSync(path.join(root, 'README.txt')).mode & 0o111, 'README.txt is not executable: not a job');
  t.same(readJson(path.join(root, 'convert/.group.json')), { max: 1 }, 'convert/.group.json is valid JSON');
  if (fs.existsSync(path.join(ROOT, '.git')) && have('git')) {
    const r = await exec(t, 'git', ['ls-files', '-s', '--', 'spool-example']);
    const modes = new Map(r.stdout.trim().split('\n').map((l) => { const [mode, , , file] = l.split(/\s+/); return [file!, mode!]; }));
    for (const j of jobs) t.equal(modes.get(`spool-example/${j}`), '100755', `${j} is committed executable`);
    t.equal(modes.get('spool-example/README.txt'), '100644', 'README.txt is committed not executable');
  }
});

/** Names, modes and sizes of everything under dir. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      const st = fs.lstatSync(p);
      out.push(`${path.relative(dir, p)} ${(st.mode & 0o7777).toString(8)} ${e.isDirectory() ? '-' : st.size}`);
      if (e.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out.sort();
}
