// Issue 2, the job process (pmjq(1) THE JOB PROCESS): /bin/sh for scripts without #!,
// stdin /dev/null, stdout+stderr to the log, the environment, the working
// directory, its own process group, fd 3/4; and a file still being written
// (ETXTBSY) is never run truncated.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { BIN, IS_ROOT, ROOT_ARGS, archivedRaw, dropJob, openToAll, readJson, scratch, start, waitFor } from '../helpers/helpers.js';

type Rec = Record<string, unknown>;

/** A script without #! that reports what it sees, one key=value per line, into OUT/GROUP. */
function reporter(out: string): string {
  return `out='${out}'/"$PMJQ_GROUP"
{
echo "shell=$(readlink /proc/$$/exe)"
echo "stdin=$(readlink /proc/$$/fd/0)"
if read -r line; then echo "stdin_eof=no"; else echo "stdin_eof=yes"; fi
echo "id=$PMJQ_JOB_ID"
echo "group=$PMJQ_GROUP"
echo "spool=$PMJQ_SPOOL"
echo "node=$PMJQ_NODE"
echo "attempt=$PMJQ_ATTEMPT"
echo "ident=$CHAQUM_IDENT"
echo "inherited=$PMJQ_TEST_INHERITED"
echo "not_named=$PMJQ_TEST_NOT_NAMED"
echo "set=$PMJQ_TEST_SET"
echo "path=$PATH"
echo "cwd=$(pwd -P)"
echo "pid=$$"
echo "pgid=$(ps -o pgid= -p $$ | tr -d ' ')"
echo "fd3=$(readlink /proc/$$/fd/3)"
echo "fd4=$(readlink /proc/$$/fd/4)"
echo 'no-such-command --really' >&3
read -r answer <&4
echo "answer=$answer"
} > "$out"
echo "to stdout"
echo "to stderr" >&2
printf 'W\\037a warning line\\n'
`;
}

function parse(text: string): Record<string, string> {
  const o: Record<string, string> = {};
  for (const l of text.split('\n')) {
    const i = l.indexOf('=');
    if (i > 0) o[l.slice(0, i)] = l.slice(i + 1);
  }
  return o;
}

t.test('the job process: /bin/sh without #!, stdin, environment, cwd, process group, fd 3/4, log', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const out = path.join(dir, 'out');
  fs.mkdirSync(out);
  fs.mkdirSync(path.join(spool, 'grp'));
  dropJob(spool, 'report', reporter(out));
  dropJob(path.join(spool, 'grp'), 'report', reporter(out));
  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '--env', 'PMJQ_TEST_INHERITED', '--env', 'PMJQ_TEST_SET=a=b', '--once', '-o', archive, spool], {
    env: { PMJQ_TEST_INHERITED: 'yes', PMJQ_TEST_NOT_NAMED: 'secret' },
  });
  t.equal(await p.exited, 0, 'exit 0');
  const node = /event=start node=(\S+)/.exec(p.stderr())![1]!;
  const recs = archivedRaw(archive).map((e) => ({ e, rec: readJson<Rec>(e.json) }));
  t.equal(recs.length, 2);
  const sh = fs.realpathSync('/bin/sh');
  for (const [group, cwd] of [['default', spool], ['grp', path.join(spool, 'grp')]] as const) {
    const r = parse(fs.readFileSync(path.join(out, group), 'utf8'));
    const { e, rec } = recs.find((x) => x.rec.group === group)!;
    t.equal(r.shell, sh, `${group}: a script without #! runs under /bin/sh (${sh})`);
    t.equal(r.stdin, '/dev/null', `${group}: stdin is /dev/null`);
    t.equal(r.stdin_eof, 'yes', `${group}: reading stdin gives end of file`);
    t.equal(r.id, rec.id, `${group}: PMJQ_JOB_ID is the record id`);
    t.equal(r.ident, rec.id, `${group}: CHAQUM_IDENT is the job id`);
    t.equal(r.group, group, `${group}: PMJQ_GROUP`);
    t.equal(r.spool, spool, `${group}: PMJQ_SPOOL`);
    t.equal(r.node, node, `${group}: PMJQ_NODE`);
    t.equal(r.attempt, '1', `${group}: PMJQ_ATTEMPT=1`);
    t.equal(r.inherited, 'yes', `${group}: --env NAME passes pmjq's NAME on`);
    t.equal(r.set, 'a=b', `${group}: --env NAME=VALUE sets it`);
    t.equal(r.not_named, '', `${group}: nothing else of pmjq's environment reaches the job`);
    t.equal(r.path, IS_ROOT ? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' : '/usr/local/bin:/usr/bin:/bin', `${group}: a fixed PATH`);
    t.equal(r.cwd, fs.realpathSync(cwd), `${group}: working directory is where it was dropped`);
    t.equal(r.pgid, r.pid, `${group}: the job leads its own process group`);
    // Node's stdio pipes are socketpairs: either is a byte stream both ways
    t.match(r.fd3, /^(pipe|socket):/, `${group}: fd 3 is open (${r.fd3})`);
    t.match(r.fd4, /^(pipe|socket):/, `${group}: fd 4 is open (${r.fd4})`);
    t.match(r.answer, /^E( |$)/, `${group}: a command on fd 3 gets an answer beginning with E on fd 4 (${r.answer})`);
    t.equal(fs.readFileSync(e.log, 'utf8'), 'to stdout\nto stderr\nW\x1fa warning line\n', `${group}: stdout and stderr in the log, in order, level prefixes kept raw`);
    t.equal(rec.status, 'done');
  }
});

t.test('a file still being written (ETXTBSY) is not run until it is complete', async (t) => {
  const { spool, archive } = scratch(t);
  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '-o', archive, spool]);
  await p.waitLine(/event=start /);
  const fd = fs.openSync(path.join(spool, 'slow-writer'), 'w', 0o755);
  let closed = false;
  t.teardown(() => { if (!closed) fs.closeSync(fd); });
  fs.writeSync(fd, '#!/bin/sh\necho part-one\n');
  const line = await p.waitLine(/event=job-not-ready /, 5000);
  t.match(line, /name=slow-writer .*ETXTBSY/, 'pmjq says the file is not ready (ETXTBSY)');
  fs.writeSync(fd, 'echo part-two\n');
  fs.closeSync(fd);
  closed = true;
  await waitFor('the job archived', () => archivedRaw(archive).length === 1, 10_000);
  const e = archivedRaw(archive)[0]!;
  t.equal(fs.readFileSync(e.log, 'utf8'), 'part-one\npart-two\n', 'the whole file ran, once');
  const rec = readJson<Rec>(e.json);
  t.equal(rec.status, 'done');
  t.equal(rec.attempt, 1, 'not-ready is not an attempt');
  t.notMatch(p.stderr(), /job-start-failed|status=failed/, 'not-ready is not a failure');
  t.equal(p.stderr().split('event=job-not-ready ').length - 1, 1, 'not-ready is logged once');
  p.child.kill('SIGTERM');
  t.equal(await p.exited, 0);
});

t.test(`a file still being written is not run truncated (renamed into the spool while open${IS_ROOT ? ', run as its owner' : ''})`, async (t) => {
  const { dir, spool, archive } = scratch(t);
  openToAll(dir, spool);
  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '-o', archive, spool]);
  await p.waitLine(/event=start /);
  // written under a hidden name, then renamed into place while still open
  const tmp = path.join(spool, '.writing');
  const fd = fs.openSync(tmp, 'w', 0o755);
  let closed = false;
  t.teardown(() => { if (!closed) fs.closeSync(fd); });
  if (IS_ROOT) fs.fchownSync(fd, 65534, 65534);
  fs.writeSync(fd, '#!/bin/sh\necho "part-one uid=$(id -u)"\n');
  fs.renameSync(tmp, path.join(spool, 'renamed-open'));
  await p.waitLine(/event=job-not-ready .*name=renamed-open/, 5000);
  fs.writeSync(fd, 'echo part-two\n');
  fs.closeSync(fd);
  closed = true;
  await waitFor('the job archived', () => archivedRaw(archive).length === 1, 10_000);
  const e = archivedRaw(archive)[0]!;
  const uid = IS_ROOT ? 65534 : process.getuid!();
  t.equal(fs.readFileSync(e.log, 'utf8'), `part-one uid=${uid}\npart-two\n`, 'the whole file ran once, and the log holds nothing else');
  t.equal(readJson<Rec>(e.json).status, 'done');
  t.equal(p.stderr().split('event=job-not-ready ').length - 1, 1, 'not-ready is logged once');
  p.child.kill('SIGTERM');
  t.equal(await p.exited, 0);
});
