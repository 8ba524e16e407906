// The README's two commands on a fresh machine: `npm ci && npm run demo`
// (test/project/docs.test.ts runs the demo) and `npm test`, which is
// scripts/test.sh: it installs the Debian packages the tests need when run as
// root, and otherwise names them in one line and stops; .ci/run is `npm ci`
// then that same `npm test`. Here the script runs with a PATH on which the
// tools are missing (so nothing is installed, whoever runs it), and as an
// unprivileged user with every tool present.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { IS_ROOT, ROOT, readJson, scratch } from '../helpers/helpers.js';

const SCRIPT = path.join(ROOT, 'scripts/test.sh');
const PACKAGES = ['gcc', 'libc6-dev', 'groff-base', 'man-db', 'util-linux', 'bindfs', 'fuse3', 'chromium', 'strace', 'python3', 'systemd', 'zsh'];
/** What each package is checked by (the tools the tests call). */
const TOOLS = ['cc', 'groff', 'man', 'setpriv', 'unshare', 'bindfs', 'fusermount3', 'strace', 'python3', 'systemd-analyze', 'zsh'];

/** A bin directory with the basic commands the script itself uses (and `extra` as stubs), nothing else. */
function minimalPath(dir: string, extra: string[]): string {
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin);
  for (const c of ['sh', 'id', 'dirname']) {
    const real = spawnSync('sh', ['-c', `command -v ${c}`], { encoding: 'utf8' }).stdout.trim();
    fs.symlinkSync(real, path.join(bin, c));
  }
  for (const c of extra) fs.writeFileSync(path.join(bin, c), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  openUp(dir);
  return bin;
}

function openUp(dir: string): void {
  fs.chmodSync(dir, 0o755);
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) fs.chmodSync(path.join(dir, e.name), 0o755);
}

function runScript(bin: string, asNobody: boolean): { code: number | null; stdout: string; stderr: string } {
  const setpriv = spawnSync('sh', ['-c', 'command -v setpriv'], { encoding: 'utf8' }).stdout.trim();
  const argv = asNobody && IS_ROOT ? [setpriv, '--reuid=65534', '--regid=65534', '--clear-groups', '/bin/sh', SCRIPT] : ['/bin/sh', SCRIPT];
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', env: { PATH: bin, HOME: '/nonexistent' }, cwd: '/', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

t.test('npm test is scripts/test.sh; .ci/run is npm ci and then npm test; the README says so', async (t) => {
  const pkg = readJson<{ scripts: Record<string, string> }>(path.join(ROOT, 'package.json'));
  t.equal(pkg.scripts.test, 'sh scripts/test.sh', 'package.json: "test" runs scripts/test.sh');
  const ci = fs.readFileSync(path.join(ROOT, '.ci/run'), 'utf8').split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#'));
  t.same(ci.slice(-2), ['npm ci --no-audit --no-fund', 'npm test'], '.ci/run ends with npm ci, then the README\'s test command');
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const quick = /## Quick start\n[\s\S]*?```sh\n([\s\S]*?)```/.exec(readme)?.[1];
  t.equal(quick, 'npm ci && npm run demo\nnpm test\n', 'the README\'s quick start is two commands: install and demo, then the tests');
  const script = fs.readFileSync(SCRIPT, 'utf8');
  for (const p of PACKAGES) t.match(readme, p, `the README names ${p}`);
  for (const p of PACKAGES) t.match(script, new RegExp(`need="\\$need ${p}"`), `scripts/test.sh installs ${p} when it is missing`);
});

t.test('tools missing and no apt-get to install them: one line naming every package, exit 1, nothing run', async (t) => {
  const { dir } = scratch(t);
  const bin = minimalPath(dir, []);
  for (const asNobody of [false, true]) {
    const who = asNobody ? 'an unprivileged user' : `this user (${IS_ROOT ? 'root, without apt-get on the PATH' : 'not root'})`;
    const r = runScript(bin, asNobody);
    t.equal(r.code, 1, `${who}: exit 1`);
    t.equal(r.stdout, '', `${who}: nothing installed, nothing built`);
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    t.equal(lines.length, 1, `${who}: one line (${r.stderr.trim()})`);
    // chromium and libc's headers are looked for where Debian puts them, not on the PATH
    const missing = PACKAGES.filter((p) => (p !== 'chromium' || !fs.existsSync('/usr/bin/chromium')) && (p !== 'libc6-dev' || !fs.existsSync('/usr/include/stdio.h')));
    t.equal(lines[0], `test: the tests need packages this machine lacks; as root: apt-get install ${missing.join(' ')}`, `${who}: naming every missing package, ready to paste`);
  }
});

t.test('every tool there but not root: the whole suite is refused in one line, one file is not', async (t) => {
  const { dir } = scratch(t);
  const bin = minimalPath(dir, TOOLS);
  if (!fs.existsSync('/usr/bin/chromium')) t.fail('/usr/bin/chromium is missing (scripts/test.sh installs it as root)');
  const r = runScript(bin, true);
  t.equal(r.code, 1, 'exit 1');
  t.match(r.stderr, /^test: the whole suite needs root \(it mounts filesystems and runs jobs as other users\): sudo npm test; as \S+, npm test -- test\/FILE\.test\.ts runs one file\n$/, 'says why, and what works instead');
});

t.test('the job helper is built at install; without a C compiler, one line says what to install', async (t) => {
  const pkg = readJson<{ scripts: Record<string, string>; files: string[] }>(path.join(ROOT, 'package.json'));
  t.equal(pkg.scripts.install, 'sh scripts/build-helper.sh', 'npm runs scripts/build-helper.sh at install');
  t.match(pkg.scripts.build, /sh scripts\/build-helper\.sh/, 'and npm run build');
  t.ok(pkg.files.includes('libexec/pmjq-spawn.c') && pkg.files.includes('scripts/build-helper.sh'), 'the package holds its source and the script');
  const { dir } = scratch(t);
  const bin = minimalPath(dir, []);
  const r = spawnSync('/bin/sh', [path.join(ROOT, 'scripts/build-helper.sh')], { encoding: 'utf8', env: { PATH: bin }, timeout: 30_000 });
  t.equal(r.status, 1, 'exit 1');
  t.equal(r.stderr, 'pmjq: building libexec/pmjq-spawn needs a C compiler (cc not found): apt-get install gcc libc6-dev, or set CC\n', 'one line: what is missing and how to get it');
  t.ok(fs.existsSync(path.join(ROOT, 'libexec/pmjq-spawn')), 'the helper built before is left as it was');
});
