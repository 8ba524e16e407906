// Issue 9, hostile traffic on the command channel (pmjq-protocol(7): "an unknown or
// malformed command gets E and a log line — never a crash, never a hang"):
// jobs of a real daemon write random lines to fd 3 — commands of the
// protocol with random options, words, quotes and lengths, raw random bytes,
// lines longer than the limit, sendmsg with lengths that do not match what
// follows, and a last line cut off mid-way — some reading their answers on
// fd 4, some not, some closing fd 3 early. The daemon never crashes or
// blocks: every job ends, and a fresh job still runs at once afterwards.
//
// Scripts named in enqueue/repeat are nonexistent, or one harmless script
// that only exits (never a repeat of it: repeats outlive their job). The
// seed is printed (PMJQ_SEED=N replays it). CI: 160 jobs, some 6 000 lines.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { BIN, ROOT_ARGS, claimedJobs, scratch, start, waitFor } from '../helpers/helpers.js';
import { Ledger, SOAK, eventLines, prng, seedFor } from '../helpers/invariants.js';

const JOBS = SOAK ? 800 : 160;

t.test(`fuzz: ${JOBS} jobs writing random commands and bytes to fd 3`, async (t) => {
  const seed = seedFor(t, 'fd 3 fuzz');
  const rnd = prng(seed);
  const { dir, spool, archive } = scratch(t);
  const work = path.join(dir, 'work');
  const data = path.join(work, 'data');
  fs.mkdirSync(data, { recursive: true });
  const harmless = path.join(work, 'harmless');
  fs.writeFileSync(harmless, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  const l = new Ledger(t, { spool, archive, work });
  // --timeout: a safety net only; a job that needs it shows as status=timeout and fails the test
  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '-j', '8', '--timeout', '60s', '-q', '-o', archive, spool]);
  await waitFor('the daemon up', () => fs.existsSync(path.join(spool, '.pmjq/nodes')) && fs.readdirSync(path.join(spool, '.pmjq/nodes')).length === 1, 30_000);

  const word = (): string => {
    const kind = rnd.int(0, 9);
    if (kind === 0) return `'${rnd.bytes(rnd.int(0, 20)).toString('latin1').replace(/[\n']/g, 'x')}'`;
    if (kind === 1) return `"${rnd.bytes(rnd.int(0, 20)).toString('latin1').replace(/[\n"]/g, 'y')}`; // unbalanced
    if (kind === 2) return rnd.pick(['--', '-t', '-t 0', '-t 0.2', '-F', '-g', '-g grp', '-m', '-m -1', '-m 99999999999', '-c 150', '-a', '-f', '-i', '-c', '-x', '\\', '$HOME', '`id`']);
    if (kind === 3) return String(rnd.int(-5, 2 ** 31));
    if (kind === 4) return rnd.pick(['/nonexistent/x', 'nope', '../../etc/passwd', '/', '.', '', harmless]);
    return rnd.bytes(rnd.int(1, 12)).toString('latin1').replace(/[\n\r\0]/g, 'z');
  };
  const commands = ['enqueue', 'repeat', 'waitjobs', 'wait', 'killjobs', 'sendmsg', 'waitrecv', 'recvmsg', 'frobnicate', ''];
  const line = (): Buffer => {
    const r = rnd.next();
    if (r < 0.05) return Buffer.concat([Buffer.from('enqueue -- '), Buffer.alloc(rnd.int(60_000, 140_000), 0x61), Buffer.from('\n')]);
    if (r < 0.25) return Buffer.concat([rnd.bytes(rnd.int(0, 300)).filter((b) => b !== 10) as Buffer, Buffer.from('\n')]);
    if (r < 0.4) {
      // sendmsg whose payload is shorter or longer than announced (or to a job that does not exist)
      const len = rnd.int(0, 2000);
      const payload = rnd.bytes(Math.max(0, len + rnd.int(-50, 50)));
      return Buffer.concat([Buffer.from(`sendmsg -- ${rnd.pick(['$PMJQ_JOB_ID', 'nosuch', '', 'a b'])} ${rnd.pick([String(len), '-1', 'x', '99999999999'])}\n`), payload, Buffer.from(rnd.next() < 0.5 ? '\n' : '')]);
    }
    let cmd = rnd.pick(commands);
    const words = Array.from({ length: rnd.int(0, 6) }, word);
    // a repeat of an existing script would outlive the test: its scripts never exist
    if (cmd === 'repeat') return Buffer.from(`repeat ${rnd.pick(['-i 1s', '-c "* * * * *"', '-i', '-c', '-i 0s', '-i -5s'])} -- /nonexistent/${rnd.int(0, 9)}\n`, 'latin1');
    if (cmd === 'enqueue' && rnd.next() < 0.3) cmd = `enqueue -F -- ${harmless}`;
    // a wait without -t legitimately waits for ever (the job blocks on its own request): bounded here
    if (['waitjobs', 'wait', 'killjobs', 'waitrecv', 'recvmsg'].includes(cmd)) cmd += ` -t ${rnd.pick(['0', '0.1', '0.3'])}`;
    return Buffer.from(`${cmd} ${words.join(' ')}\n`, 'latin1');
  };

  let lines = 0;
  const styles = ['noread', 'read', 'read', 'close-early', 'slow'] as const;
  for (let i = 0; i < JOBS; i++) {
    const parts: Buffer[] = [];
    const n = rnd.int(5, 60);
    for (let k = 0; k < n; k++) parts.push(line());
    lines += n;
    // the last line cut off mid-way
    if (rnd.next() < 0.5) parts.push(Buffer.from(`enqueue -- ${harmless.slice(0, rnd.int(0, harmless.length))}`));
    const file = path.join(data, String(i));
    fs.writeFileSync(file, Buffer.concat(parts).toString('latin1').replaceAll('$PMJQ_JOB_ID', 'x'), 'latin1');
    const style = rnd.pick(styles);
    const body = ['#!/bin/sh', l.recordPid];
    if (style === 'noread') body.push(`cat '${file}' >&3`);
    else if (style === 'read') body.push(`cat <&4 >/dev/null & ${l.recordChild}`, `cat '${file}' >&3`, 'exec 3>&-', 'sleep 0.1');
    else if (style === 'close-early') body.push(`head -c ${rnd.int(0, 4000)} '${file}' >&3`, 'exec 3>&- 4<&-', 'sleep 0.05');
    else body.push(`cat <&4 >/dev/null & ${l.recordChild}`, `while read -r x; do printf '%s\\n' "$x" >&3; done < '${file}'`);
    body.push('exit 0', '');
    l.drop('', `p${String(i).padStart(4, '0')}`, body.join('\n'), 'archive');
  }
  const archivedTop = (): number => fs.readdirSync(archive).filter((f) => /-p\d{4}\.json$/.test(f)).length;
  await waitFor(`all ${JOBS} fuzz jobs archived`, () => archivedTop() >= JOBS || p.child.exitCode !== null, 300_000);
  t.comment(`${JOBS} jobs wrote ${lines} random lines to fd 3`);
  t.equal(p.child.exitCode, null, 'the daemon never crashed');
  const timeouts = eventLines(p.stderr(), 'job-end').filter((x) => / status=timeout /.test(x));
  t.same(timeouts, [], 'no job was held up until its timeout (nothing blocked)');
  const t0 = Date.now();
  const ms = await l.canary(20_000);
  t.comment(`a fresh job ran ${ms} ms after it was dropped (${Date.now() - t0} ms)`);
  t.ok(ms < 10_000, 'the daemon answers at once afterwards');
  await waitFor('everything archived and nothing running', () => archivedTop() >= JOBS
    && fs.readdirSync(path.join(spool, '.pmjq/claimed')).every((a) => claimedJobs(path.join(spool, '.pmjq/claimed', a)).length === 0), 60_000);
  p.kill('SIGTERM');
  t.equal(await p.exited, 0, 'the daemon exits 0');
  t.notMatch(p.stderr(), /level=error/, 'no error logged');
  l.check(t, true);
});
