// Issue 12, the job protocol in a multi-user spool: an unprivileged attacker
// and a victim (users made here with useradd) drop jobs into one sticky
// spool served by a root daemon. Through fd 3/4 the attacker tries to run
// something as root or as the victim, to reach the victim's jobs and
// messages, to change groups' settings for everyone, to exhaust the daemon's
// memory, and to learn what lies in directories closed to them. Everything
// runs for real: the built daemon, real users, real processes; every wait is
// for a file or a log line, bounded.

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { BIN, IS_ROOT, archivedRaw, openToAll, readJson, scratch, start, waitFor, type Proc, type TestLike } from '../helpers/helpers.js';
import { PRELUDE, attacker, dirOf, dropAs, filesWithOwners, rss, victim, type User } from '../helpers/security.js';

interface Fixture {
  A: User;
  V: User;
  dir: string;
  spool: string;
  archive: string;
  out: string;
  bin: string;
  agroup: string;
  vgroup: string;
  secret: string;
  vhome: string;
  daemon: Proc;
}

const read = (f: string): string => fs.readFileSync(f, 'utf8');
const lines = (f: string): string[] => (fs.existsSync(f) ? read(f).split('\n').filter(Boolean) : []);
const until = <T>(what: string, fn: () => T | undefined | null | false, ms = 30_000): Promise<T> => waitFor(what, fn, ms);

async function fixture(t: TestLike): Promise<Fixture> {
  const A = attacker();
  const V = victim();
  const { dir, spool, archive } = scratch(t, 'pmjq-security-');
  openToAll(dir);
  fs.chmodSync(spool, 0o1777); // anyone may drop jobs; nobody may remove another's
  const out = dirOf(null, path.join(dir, 'out'), 0o1777);
  const bin = dirOf(null, path.join(dir, 'bin'));
  fs.writeFileSync(path.join(bin, 'report'), `#!/bin/sh
# report NAME: who runs, appended to OUT/NAME
printf '%s %s %s %s\\n' "$(id -u)" "$(id -g)" "\${CHAQUM_PARENT-none}" "$PMJQ_JOB_ID" >> ${out}/"$1"
`, { mode: 0o755 });
  fs.writeFileSync(path.join(bin, 'hold'), '#!/bin/sh\nexec sleep 60\n', { mode: 0o755 });
  // waiter OUT: waits for OUT.go, then receives what was sent to it (twice), into OUT
  fs.writeFileSync(path.join(bin, 'waiter'), `${PRELUDE}while [ ! -e "$1.go" ]; do sleep 0.05; done
printf 'recvmsg -t 5\\n' >&3; IFS= read -r h <&4; IFS= read -r d <&4
echo "$h $d $(id -u)" > "$1.tmp"
ask 'recvmsg -t 0' >> "$1.tmp"
mv "$1.tmp" "$1"
`, { mode: 0o755 });
  const secret = dirOf(null, path.join(dir, 'secret'), 0o700);
  fs.writeFileSync(path.join(secret, 'run.sh'), `#!/bin/sh\nid -u > ${out}/secret-ran\n`, { mode: 0o755 });
  const vhome = dirOf(V, path.join(dir, 'vhome'), 0o700);
  dropAs(V, vhome, 'private.sh', `#!/bin/sh\nid -u > ${out}/private-ran\n`);
  const agroup = dirOf(A, path.join(spool, 'agroup'));
  const vgroup = dirOf(V, path.join(spool, 'vgroup'));
  const daemon = start(t, BIN.pmjq, ['-j', '0', '--poll', '200ms', '-o', archive, spool]);
  await daemon.waitLine(/event=start /, 60_000);
  return { A, V, dir, spool, archive, out, bin, agroup, vgroup, secret, vhome, daemon };
}

/**
 * `pmjqctl kill`, run without blocking this process: the daemon's log comes
 * through a pipe this process reads, and a daemon blocked on a full pipe
 * would never see the request.
 */
async function pmjqctlKill(spool: string, id: string): Promise<void> {
  await promisify(execFile)(process.execPath, [BIN.pmjqctl, 'kill', spool, id]);
}

/** Resolves once the daemon logged the end of the job named `name`. */
function ended(f: Fixture, name: string, ms = 30_000): Promise<string> {
  return f.daemon.waitLine(new RegExp(`event=job-end .*name=${name} `), ms);
}

/** `id uid gid parent` lines of report, parsed. */
function reports(file: string): { uid: number; gid: number; parent: string; id: string }[] {
  return lines(file).map((l) => {
    const [uid, gid, parent, id] = l.split(' ');
    return { uid: Number(uid), gid: Number(gid), parent: parent!, id: id! };
  });
}

t.test('the job protocol in a multi-user spool, as an attacker tries it', async (t) => {
  if (!IS_ROOT) {
    t.fail('these tests need root: they make users (useradd) and run a root daemon');
    return;
  }
  const f = await fixture(t);
  const { A, V, out, bin } = f;

  await t.test('sub-jobs and repeats run as the user who asked, repeat instances without a parent', async (t) => {
    dropAs(A, f.agroup, 'a1', `${PRELUDE}echo "$PMJQ_JOB_ID" > ${out}/a1.id
{ ask "enqueue -- ${bin}/report sub"; ask "repeat -i 300ms -- ${bin}/report rep"; } > ${out}/a1.answers
`);
    await ended(f, 'a1');
    const a1 = read(path.join(out, 'a1.id')).trim();
    t.match(lines(path.join(out, 'a1.answers')), [/^S \S+$/, /^S$/], 'enqueue and repeat accepted');
    // instances that fired after the registering job was gone
    const before = lines(path.join(out, 'rep')).length;
    await until('two more repeat instances after the registrant ended', () => lines(path.join(out, 'rep')).length >= before + 2);
    const sub = reports(path.join(out, 'sub'));
    t.same(sub.map((r) => [r.uid, r.gid, r.parent]), [[A.uid, A.gid, a1]], 'the sub-job ran as the attacker, CHAQUM_PARENT its parent');
    const rep = reports(path.join(out, 'rep'));
    t.ok(rep.length >= 2, `${rep.length} repeat instances ran`);
    t.same([...new Set(rep.map((r) => `${r.uid}:${r.gid}`))], [`${A.uid}:${A.gid}`], 'every instance ran as the attacker (never as root), also after the registrant ended');
    t.same([...new Set(rep.map((r) => r.parent))], ['none'], 'repeat instances have no CHAQUM_PARENT (chaqum 0.16)');
  });

  await t.test('another family\'s jobs and messages answer as unknown ids', async (t) => {
    dropAs(V, f.vgroup, 'v1', `${PRELUDE}c=$(ask "enqueue -- ${bin}/waiter ${out}/vchild"); c=\${c#S }
printf 'sendmsg -- %s 5\\nhello\\n' "$c" >&3; IFS= read -r m <&4; m=\${m#S }
echo "$PMJQ_JOB_ID $c $m" > ${out}/v1.tmp; mv ${out}/v1.tmp ${out}/v1.ids
while [ ! -e ${out}/go-v1 ]; do sleep 0.05; done
ask "recvmsg -t 0" > ${out}/v1.recv
ask "waitjobs -t 20 -- $c" > ${out}/v1.wait
`);
    const ids = await until('the victim\'s ids', () => fs.existsSync(path.join(out, 'v1.ids')) && read(path.join(out, 'v1.ids')).trim().split(' '));
    const [v1, child, msg] = ids as [string, string, string];
    const probe = `${PRELUDE}read v c m < ${out}/v1.ids
for id in "$v" "$c" nosuch.job; do
  printf 'sendmsg -- %s 4\\nEVIL\\n' "$id" >&3; IFS= read -r a <&4; echo "send $id $a"
  echo "wait $id $(ask "waitjobs -t 0 -- $id")"
  echo "kill $id $(ask "killjobs -t 1 -- $id")"
done > ${out}/NAME.answers
echo "waitrecv $(ask "waitrecv -t 0 -- $m")" >> ${out}/NAME.answers
echo "waitrecv $(ask "waitrecv -t 0 -- msg:999999")" >> ${out}/NAME.answers
`;
    dropAs(A, f.agroup, 'a2', probe.replace(/NAME/g, 'a2'));
    await ended(f, 'a2');
    const answers = lines(path.join(out, 'a2.answers'));
    const as = (id: string): string[] => answers.filter((l) => l.split(' ')[1] === id).map((l) => l.split(id).join('ID'));
    t.same(as(v1), as('nosuch.job'), `the victim's job ${v1}: every answer as for an id that does not exist`);
    t.same(as(child), as('nosuch.job'), `the victim's sub-job ${child}: the same`);
    t.same(as('nosuch.job'), ['send ID E sendmsg: unknown job \'ID\'', 'wait ID S', 'kill ID S'], 'unknown: E unknown job, S, S');
    const wr = answers.filter((l) => l.startsWith('waitrecv '));
    t.same(wr, ['waitrecv S', 'waitrecv S'], `the victim's message ${msg}: answered as an unknown message`);

    fs.writeFileSync(path.join(out, 'vchild.go'), '');
    fs.writeFileSync(path.join(out, 'go-v1'), '');
    await ended(f, 'v1');
    t.equal(read(path.join(out, 'v1.recv')).trim(), 'T', 'the victim received nothing from the attacker');
    t.equal(read(path.join(out, 'v1.wait')).trim(), `S ${child} 0`, 'the victim\'s sub-job was not killed: it ended with 0');
    t.same(lines(path.join(out, 'vchild')), [`S 5 hello ${V.uid}`, 'T'], 'the sub-job got its parent\'s message and nothing else, as the victim');

    // after the victim's job ended, its kept exit code is no oracle either
    dropAs(A, f.agroup, 'a3', probe.replace(/NAME/g, 'a3'));
    await ended(f, 'a3');
    const after = lines(path.join(out, 'a3.answers'));
    const as3 = (id: string): string[] => after.filter((l) => l.split(' ')[1] === id).map((l) => l.split(id).join('ID'));
    t.same(as3(v1), as3('nosuch.job'), 'the ended victim job: still answered as unknown (not "has ended")');
  });

  await t.test('groups: the spool\'s settings are the operator\'s; -c 0 refused; another family\'s group is not ours', async (t) => {
    dropAs(V, f.vgroup, 'v2', `${PRELUDE}ask "enqueue -g vwork -m 1 -- ${bin}/report vwork" > ${out}/v2.answers
touch ${out}/v2.ready
while [ ! -e ${out}/go-v2 ]; do sleep 0.05; done
`);
    await until('the victim made group vwork', () => fs.existsSync(path.join(out, 'v2.ready')));
    const tries = [
      ['enqueue -g default -c 0 -- /bin/true', /^E .*(group of the spool|-c 0)/],
      ['enqueue -g default -m 1 -- /bin/true', /^E .*group of the spool/],
      ['enqueue -g vgroup -m 1 -- /bin/true', /^E .*group of the spool/],
      ['enqueue -g agroup -c 50 -- /bin/true', /^E .*group of the spool/],
      ['enqueue -g mine -c 0 -- /bin/true', /^E .*-c 0/],
      ['enqueue -g vwork -m 5 -- /bin/true', /^E .*made by another job family/],
      ['enqueue -g vwork -c 10 -- /bin/true', /^E .*made by another job family/],
      ['enqueue -g mine -m 2 -c 50 -- /bin/true', /^S /],
      ['enqueue -g vwork -- /bin/true', /^S /],
      ['enqueue -g vwork -m 1 -- /bin/true', /^S /],
    ] as const;
    dropAs(A, f.agroup, 'a4', `${PRELUDE}{\n${tries.map(([c]) => `ask '${c}'`).join('\n')}\n} > ${out}/a4.answers\n`);
    await ended(f, 'a4');
    const got = lines(path.join(out, 'a4.answers'));
    tries.forEach(([c, want], i) => {
      t.match(got[i], want, `${c} → ${got[i]}`);
    });
    // the default group and the victim's group still start jobs at once
    dropAs(V, f.spool, 'v3', `#!/bin/sh\nid -u > ${out}/v3\n`);
    dropAs(V, f.vgroup, 'v4', `#!/bin/sh\nid -u > ${out}/v4\n`);
    await Promise.all([ended(f, 'v3', 15_000), ended(f, 'v4', 15_000)]);
    t.same([read(path.join(out, 'v3')).trim(), read(path.join(out, 'v4')).trim()], [String(V.uid), String(V.uid)], 'the victim\'s jobs in default and vgroup ran: nothing was held');
    fs.writeFileSync(path.join(out, 'go-v2'), '');
    await ended(f, 'v2');
  });

  await t.test('per-user caps on queued sub-jobs: E beyond 16 MiB and 10 000; the daemon\'s memory stays bounded', async (t) => {
    const flood = (name: string, group: string, arg: string): string => `${PRELUDE}echo "$PMJQ_JOB_ID" > ${out}/${name}.id
${arg}
n=0
while :; do
  printf '%s\\n' "enqueue -F -g ${group} -m 1 -- ${bin}/hold $big" >&3; IFS= read -r a <&4
  case $a in S*) n=$((n+1));; *) break;; esac
done
echo "$n $a" > ${out}/${name}.tmp; mv ${out}/${name}.tmp ${out}/${name}.result
while [ ! -e ${out}/go-${name} ]; do sleep 0.05; done
`;
    const rss0 = rss(f.daemon.child.pid!);
    // bytes: 60 kB of arguments each
    dropAs(A, f.agroup, 'a5', flood('a5', 'flood', "big=$(head -c 60000 /dev/zero | tr '\\0' x)"));
    const r5 = await until('the bytes flood to end', () => fs.existsSync(path.join(out, 'a5.result')) && read(path.join(out, 'a5.result')).trim(), 60_000);
    const n5 = Number(r5.split(' ')[0]);
    t.ok(n5 >= 270 && n5 <= 282, `${n5} sub-jobs of 60 kB queued before E (16 MiB)`);
    t.match(r5, /E enqueue: this user's queued sub-jobs hold \d+ bytes .*\(limit 16777216\)/, 'E names the bytes limit');
    // the victim is not held by the attacker's cap
    dropAs(V, f.vgroup, 'v5', `${PRELUDE}ask "enqueue -- ${bin}/report v5sub" > ${out}/v5.answers\n`);
    await ended(f, 'v5');
    t.match(read(path.join(out, 'v5.answers')), /^S /, 'meanwhile the victim enqueues as usual');
    await until('the victim\'s sub-job', () => reports(path.join(out, 'v5sub')).length === 1);
    t.equal(reports(path.join(out, 'v5sub'))[0]!.uid, V.uid, '… and it runs as the victim');
    // killing the flooding job takes its queued sub-jobs with it: the count is free again
    await pmjqctlKill(f.spool, read(path.join(out, 'a5.id')).trim());
    await ended(f, 'a5');

    const t0 = Date.now();
    dropAs(A, f.agroup, 'a6', flood('a6', 'flood2', 'big='));
    const r6 = await until('the count flood to end', () => fs.existsSync(path.join(out, 'a6.result')) && read(path.join(out, 'a6.result')).trim(), 120_000);
    const n6 = Number(r6.split(' ')[0]);
    const grown = rss(f.daemon.child.pid!) - rss0;
    t.comment(`count flood: ${n6} enqueues in ${Date.now() - t0} ms; daemon RSS ${(rss0 / 1e6).toFixed(0)} MB → +${(grown / 1e6).toFixed(0)} MB`);
    t.ok(n6 >= 10_000 && n6 <= 10_002, `${n6} sub-jobs queued before E (10 000 queued, one running)`);
    t.match(r6, /E enqueue: 10000 sub-jobs of this user are queued already \(limit 10000\)/, 'E names the count limit');
    t.ok(grown < 300e6, `the daemon's memory grew by ${(grown / 1e6).toFixed(0)} MB (bounded)`);
    await pmjqctlKill(f.spool, read(path.join(out, 'a6.id')).trim());
    await ended(f, 'a6');
  });

  await t.test('scripts are resolved as the job\'s user: out of reach answers as absent', async (t) => {
    const pairs: [string, string][] = [
      ['/root/.bashrc', '/root/nonexistent'],
      [path.join(f.secret, 'run.sh'), path.join(f.secret, 'nonexistent')],
      [path.join(f.vhome, 'private.sh'), path.join(f.vhome, 'nonexistent')],
    ];
    dropAs(A, f.agroup, 'a7', `${PRELUDE}for s in ${pairs.flat().join(' ')}; do
  echo "$s|$(ask "enqueue -- $s")|$(ask "repeat -i 1h -- $s")"
done > ${out}/a7.answers
`);
    await ended(f, 'a7');
    const got = new Map(lines(path.join(out, 'a7.answers')).map((l) => {
      const [s, ...rest] = l.split('|');
      return [s!, rest.join('|').split(s!).join('PATH')];
    }));
    for (const [there, absent] of pairs) {
      t.equal(got.get(there), got.get(absent), `${there} answers exactly as ${absent}`);
      t.match(got.get(there), /^E .*does not exist \(or is out of reach of this job's user\)\|E /, '… "does not exist (or is out of reach)"');
    }
    t.notOk(fs.existsSync(path.join(out, 'secret-ran')) || fs.existsSync(path.join(out, 'private-ran')), 'neither the root-only nor the victim\'s script ran');
  });

  await t.test('nothing ran as root, nor as the victim for the attacker', async (t) => {
    t.equal(f.daemon.child.exitCode, null, 'the daemon kept running');
    const owners = filesWithOwners(out).filter((e) => !/(^|\/)go-|\.go$/.test(e.file));
    const byRoot = owners.filter((e) => e.uid === 0).map((e) => e.file);
    t.same(byRoot, [], 'no job wrote a file as root');
    const attackerFiles = owners.filter((e) => /\/(a\d|sub|rep)[^/]*$/.test(e.file));
    t.ok(attackerFiles.length > 0 && attackerFiles.every((e) => e.uid === A.uid), 'every file of the attacker\'s jobs is the attacker\'s');
    const records = archivedRaw(f.archive).map((e) => readJson<{ owner: number; name: string }>(e.json));
    t.ok(records.length > 0 && records.every((r) => r.owner === A.uid || r.owner === V.uid), `no archived job ran as root (${records.length} records)`);
    f.daemon.kill('SIGTERM');
    t.equal(await f.daemon.exited, 0, 'the daemon stops cleanly');
  });
});
