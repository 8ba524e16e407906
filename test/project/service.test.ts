// The systemd template unit systemd/pmjq@.service ("RUNNING AS A SERVICE" in
// pmjq(1)): systemd-analyze verify accepts it; it stops pmjq the way pmjq
// wants to be stopped (SIGTERM to the daemon only, a stop timeout longer than
// --grace plus --kill-grace); every option it names is one pmjq has; it is in
// the npm package. Then its ExecStart line, run as systemd runs it (the
// instance's path for %f, PMJQ_OPTS from the environment file split into
// words), is stopped as KillMode=mixed stops it: SIGTERM to the main process
// only. The job that ends within --grace is archived, the one that does not is
// put back, and pmjq exits 0 well within TimeoutStopSec.
//
// No systemd runs as PID 1 here, so the stop is played by the test; the
// verification needs systemd-analyze (scripts/test.sh installs systemd when
// it is missing). This test never skips.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { BIN, IS_ROOT, ROOT, archivedRaw, dropJob, history, jobProcesses, readJson, scratch, waitFor } from '../helpers/helpers.js';

const UNIT = path.join(ROOT, 'systemd/pmjq@.service');
const text = fs.readFileSync(UNIT, 'utf8');

/** The unit's settings (comments left out): key → values in order. */
function settings(unit: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of unit.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (m) out.set(m[1]!, [...out.get(m[1]!) ?? [], m[2]!]);
  }
  return out;
}
const unit = settings(text);
const one = (k: string): string | undefined => unit.get(k)?.at(-1);

/** systemd's time spans as they are written here: 60s, 1min, 90 (seconds). */
function seconds(span: string): number {
  const m = /^(\d+)\s*(s|sec|min|m)?$/.exec(span.trim());
  if (!m) throw new Error(`unexpected time span ${span}`);
  return Number(m[1]) * (m[2] === 'min' || m[2] === 'm' ? 60 : 1);
}

/** `pmjq --help`: option names (long and short) and the defaults of --grace and --kill-grace. */
function pmjqHelp(): { names: Set<string>; defaults: Map<string, string> } {
  const r = spawnSync(process.execPath, [BIN.pmjq, '--help'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`pmjq --help: exit ${r.status}: ${r.stderr}`);
  const names = new Set<string>();
  const defaults = new Map<string, string>();
  let cur: string | null = null;
  for (const line of r.stdout.split('\n')) {
    // an option's first line; its default may be on a continuation line
    const m = /^ {2,6}(?:(-[A-Za-z]), )?(--[a-z][a-z0-9-]*)/.exec(line);
    if (m) {
      if (m[1]) names.add(m[1]);
      names.add(m[2]!);
      cur = m[2]!;
    }
    const d = /\[default: "?([^"\]]*)"?\]/.exec(line);
    if (d && cur) defaults.set(cur, d[1]!);
  }
  return { names, defaults };
}

t.test('systemd-analyze verify accepts pmjq@.service, instantiated for a spool', async (t) => {
  const have = spawnSync('sh', ['-c', 'command -v systemd-analyze'], { encoding: 'utf8' });
  if (!t.equal(have.status, 0, 'systemd-analyze is installed (as root: apt-get install systemd; scripts/test.sh does it)')) return;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pmjq-unit-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.copyFileSync(UNIT, path.join(dir, 'pmjq@.service'));
  const instance = spawnSync('systemd-escape', ['--template', 'pmjq@.service', '--path', '/srv/spool'], { encoding: 'utf8' }).stdout.trim();
  t.equal(instance, 'pmjq@srv-spool.service', 'systemd-escape --path names the instance');
  // --man=no: the pages are in man/ until `npm install -g` puts them where man finds them (checked below)
  const r = spawnSync('systemd-analyze', ['verify', '--man=no', path.join(dir, instance)], { encoding: 'utf8' });
  t.equal(r.status, 0, 'exit 0');
  t.equal(r.stderr + r.stdout, '', 'not a word of warning (systemd-analyze exits 0 on lines it ignores)');
  for (const doc of (one('Documentation') ?? '').split(/\s+/)) {
    const m = /^man:([a-z-]+)\((\d)\)$/.exec(doc);
    if (t.ok(m, `Documentation= ${doc} is a man page`)) t.ok(fs.existsSync(path.join(ROOT, 'man', `${m![1]}.${m![2]}`)), `man/${m![1]}.${m![2]} exists`);
  }
});

t.test('it stops pmjq gracefully, restarts it on failure, and names only options pmjq has', async (t) => {
  const { names, defaults } = pmjqHelp();
  t.equal(one('KillMode'), 'mixed', 'KillMode=mixed: SIGTERM to pmjq only, the rest of the cgroup is killed after it exited');
  t.equal(one('KillSignal') ?? 'SIGTERM', 'SIGTERM', 'the stop signal is SIGTERM');
  const grace = seconds(defaults.get('--grace') ?? '');
  const killGrace = seconds(defaults.get('--kill-grace') ?? '');
  const stop = seconds(one('TimeoutStopSec') ?? '');
  t.ok(stop >= 2 * (grace + killGrace), `TimeoutStopSec=${stop}s leaves room for --grace ${grace}s + --kill-grace ${killGrace}s and archiving (systemd's default is 90s, pmjq's is ${grace + killGrace}s)`);
  t.equal(one('Restart'), 'on-failure', 'Restart=on-failure');
  t.equal(one('RestartPreventExitStatus'), '2', 'but not after a usage error (exit 2)');
  t.match(one('ExecStart'), /^\/usr\/bin\/env pmjq \$PMJQ_OPTS %f$/, 'ExecStart: pmjq, the options of the environment file, the spool (%f)');
  t.ok(unit.get('EnvironmentFile')?.includes('-/etc/pmjq/%i.env'), 'options from /etc/pmjq/INSTANCE.env, optional');
  t.match(one('ExecReload'), /kill -HUP \$MAINPID/, 'reload: SIGHUP re-reads the groups\' settings');
  t.equal(one('RequiresMountsFor'), '%f', 'waits for the spool\'s mount');

  // every option of pmjq the unit names, in its settings or its comments (not systemctl's, systemd-escape's, kill's, npm's)
  const pmjqLines = text.split('\n').filter((l) => !/systemctl|systemd-escape|kill -HUP|npm install/.test(l)).join('\n');
  const named = [...new Set(pmjqLines.match(/(?<=[\s=])--?[A-Za-z][a-z0-9-]*/g) ?? [])];
  t.ok(named.length >= 4, `options named: ${named.join(' ')}`);
  for (const o of named) t.ok(names.has(o), `${o} is an option of pmjq --help`);

  const pkg = readJson<{ files: string[] }>(path.join(ROOT, 'package.json'));
  t.ok(pkg.files.some((f) => path.normalize(f).replace(/\/$/, '') === 'systemd'), 'package.json "files" ships systemd/');
  const pmjq1 = fs.readFileSync(path.join(ROOT, 'man/pmjq.1'), 'utf8');
  t.match(pmjq1, /^\.SH RUNNING AS A SERVICE$/m, 'pmjq(1) has RUNNING AS A SERVICE');
  t.match(fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8'), /^## Running as a service$/m, 'the README too');
});

t.test("its ExecStart, stopped as KillMode=mixed stops it: one job finishes, one is put back, exit 0 in time", async (t) => {
  const { dir, spool, archive } = scratch(t);
  // `pmjq` on the PATH, as npm install -g puts it there
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin);
  fs.writeFileSync(path.join(bin, 'pmjq'), `#!/bin/sh\nexec '${process.execPath}' '${BIN.pmjq}' "$@"\n`, { mode: 0o755 });
  // the environment file, as /etc/pmjq/INSTANCE.env would hold it
  const opts = `-o ${archive} --grace 2s --kill-grace 1s --poll 200ms${IS_ROOT ? ' --allow-root' : ''}`;
  // systemd: $PMJQ_OPTS alone as a word is split at whitespace; %f is the unescaped instance path
  const argv = (one('ExecStart') ?? '').split(' ').flatMap((w) => w === '$PMJQ_OPTS' ? opts.split(/\s+/) : [w === '%f' ? spool : w]);
  const gate = path.join(dir, 'gate');
  dropJob(spool, 'finishes', `#!/bin/sh\necho started\nwhile [ ! -e '${gate}' ]; do sleep 0.05; done\necho finished\n`);
  dropJob(spool, 'lingers', '#!/bin/sh\necho "attempt $PMJQ_ATTEMPT"\nexec sleep 60\n');

  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], detached: true, env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const exited = new Promise<number>((resolve) => child.on('exit', (code, sig) => resolve(code ?? 128 + (sig ? os.constants.signals[sig] : 0))));
  let done = false;
  void exited.then(() => { done = true; });
  t.teardown(async () => { if (!done) { try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ } await exited; } });

  await waitFor('both jobs to run', () => jobProcesses(spool).length >= 2 && /name=finishes/.test(stderr) && /name=lingers/.test(stderr), 20_000);
  // KillMode=mixed: SIGTERM to the main process, nothing else
  const stopAt = Date.now();
  process.kill(child.pid!, 'SIGTERM');
  await waitFor('pmjq to say it is stopping', () => /event=stopping /.test(stderr), 10_000);
  fs.writeFileSync(gate, '');
  const code = await exited;
  const took = (Date.now() - stopAt) / 1000;
  t.equal(code, 0, 'pmjq exits 0', { stderr });
  t.ok(took < seconds(one('TimeoutStopSec') ?? '0'), `within TimeoutStopSec (${took.toFixed(1)} s)`);
  const done1 = archivedRaw(archive).map((e) => readJson<Record<string, unknown>>(e.json));
  t.same(done1.map((r) => [r.name, r.status]), [['finishes', 'done']], 'the job that ended within --grace is archived, done');
  t.same(history(spool).filter((h) => h.status === 'interrupted').map((h) => h.name), ['lingers'], 'the other one is interrupted');
  t.equal(fs.readdirSync(path.join(spool, '.pmjq/retry')).length, 1, 'and put back into .pmjq/retry for the next pmjq');
  t.same(jobProcesses(spool), [], 'no job process is left for systemd to kill');
});
