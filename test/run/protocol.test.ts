// The job protocol with real processes (pmjq-protocol(7), issue 4): a job in each
// of sh, Python 3, Perl 5 and Node (dist/lib/job.js) enqueues sub-jobs in a
// group with -m 1 and waits for them, kills a sleeping sub-job, exchanges
// messages; hostile input on fd 3 is answered with E or dropped while the
// next job still runs. Plus in-process checks of the answers byte for byte,
// of cleanup and of the bounds. Repeats: protocol-repeat.test.ts; the man
// page's examples: protocol-examples.test.ts.
//
// The host (test/helpers/protocol-host.ts) spawns every job with JobProcess, as the
// engine will. Waiting is always for an event (a job's end, a log line, a
// file), bounded; every process is killed by its process group at teardown.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import type { ChannelIO, CommandHandler } from '../../dist/run/channel.js';
import { Protocol, type EnqueueRequest, type Limits, type ProtocolHost } from '../../dist/run/protocol/index.js';
import { Logger } from '../../dist/util/log.js';
import { ME, readStamps, setup, shq, until, writeScript } from '../helpers/protocol-host.js';

// ---- fixtures: the jobs ----
//
// An entry job is called as: entry OUT STAMPS PAYLOAD REPLY ARGSOUT ARG...
// and appends to OUT:   wait 0 3 7 / kill N / recv R / echo 0 / done
//   - enqueues `stamp` three times in group g-LANG with -m 1 (exit codes 0 3 7),
//     waits for them; the stamps (in STAMPS/LANGn) show they ran one at a time
//   - enqueues `sleeper`, which messages "up" to its parent, and kills it
//   - enqueues itself with --echo, sends it PAYLOAD's bytes, waits until it
//     was received, receives "echo:" + PAYLOAD back into REPLY
//   - enqueues `argv ARGSOUT ARG...`, which writes its arguments NUL-separated

const ARGS = ['a b', "it's", '"dq"', '$HOME', '`x`', 'grüße 日本語 €', '', 'back\\slash', '-x', '--', "'", 'tab\there', '*', '~'];
const PAYLOAD = "grüße, 日本語 € ✓\nsecond line: 'single' \"double\" $HOME `cmd` \\ backslash\n\nafter an empty line\n";

const ENTRY_SH = `#!/bin/sh
. "$PMJQ_LIB/pmjq.sh"
if [ "\${1-}" = --echo ]; then
  tmp=$(mktemp) || exit 1
  { printf 'echo:'; pmjq_recvmsg -t 20; } > "$tmp" || exit 1
  pmjq_sendmsg_file "$pmjq_parent" "$tmp" >/dev/null || exit 1
  rm -f "$tmp"
  exit 0
fi
out=$1 stamps=$2 payload=$3 reply=$4 argsout=$5
shift 5
a=$(pmjq_enqueue -g g-sh -m 1 -- stamp "$stamps" sh1 0) || exit 1
b=$(pmjq_enqueue -g g-sh -m 1 stamp "$stamps" sh2 3) || exit 1
c=$(pmjq_enqueue -g g-sh -m 1 stamp "$stamps" sh3 7) || exit 1
codes=$(pmjq_wait -- "$a" "$b" "$c" | cut -d' ' -f2 | tr '\\n' ' ')
echo "wait \${codes% }" >> "$out"
s=$(pmjq_enqueue sleeper) || exit 1
up=$(pmjq_recvmsg -t 20) || exit 1
[ "$up" = up ] || exit 1
k=$(pmjq_kill -t 20 -- "$s")
echo "kill \${k#* }" >> "$out"
e=$(pmjq_enqueue "$0" --echo) || exit 1
m=$(pmjq_sendmsg_file "$e" "$payload") || exit 1
r=$(pmjq_waitrecv -t 20 -- "$m")
echo "recv \${r#* }" >> "$out"
pmjq_recvmsg -t 20 > "$reply" || exit 1
w=$(pmjq_wait -t 20 -- "$e")
echo "echo \${w#* }" >> "$out"
x=$(pmjq_enqueue argv "$argsout" "$@") || exit 1
pmjq_wait -- "$x" > /dev/null
echo done >> "$out"
`;

const ENTRY_PY = `#!/usr/bin/env python3
import os, sys
from pmjq import *

if sys.argv[1:2] == ["--echo"]:
    data = recvmsg(timeout=20)
    parent.sendmsg(b"echo:" + data)
    sys.exit(0)

out, stamps, payload, reply, argsout, *rest = sys.argv[1:]
def w(line):
    with open(out, "a") as f:
        f.write(line + "\\n")

jobs = [enqueue("stamp", stamps, "py%d" % i, code, group="g-py", max_jobs=1) for i, code in ((1, 0), (2, 3), (3, 7))]
w("wait " + " ".join(str(status.exitcode) for _, status in waitjobs(*jobs)))
s = enqueue("sleeper")
assert recvmsg(timeout=20) == b"up"
st = s.kill(timeout=20)
w("kill %s" % (st.exitcode if st.done else repr(st)))
e = enqueue(os.path.abspath(sys.argv[0]), "--echo")
with open(payload, "rb") as f:
    m = e.sendmsg(f.read())
w("recv " + ("R" if m.waitrecv(timeout=20) else "not received"))
with open(reply, "wb") as f:
    f.write(recvmsg(timeout=20))
w("echo %s" % e.wait(timeout=20).exitcode)
enqueue("argv", argsout, *rest).wait()
w("done")
`;

const ENTRY_PL = `#!/usr/bin/perl
use strict;
use warnings;
use Pmjq qw(:all);

if (@ARGV && $ARGV[0] eq '--echo') {
    my $d = recvmsg(20);
    parent()->sendmsg("echo:$d");
    exit 0;
}
my ($out, $stamps, $payload, $reply, $argsout, @rest) = @ARGV;
sub w { open(my $f, '>>', $out) or die "$out: $!"; print $f "@_\\n"; close $f; }

my @jobs = map { enqueue({ group => 'g-pl', max_jobs => 1 }, 'stamp', $stamps, "pl$_->[0]", $_->[1]) } ([1, 0], [2, 3], [3, 7]);
w('wait', map { $_->{status}{exitcode} } waitjobs(@jobs));
my $s = enqueue('sleeper');
die "no up" unless recvmsg(20) eq 'up';
my $st = $s->kill(20);
w('kill', $st->{done} ? $st->{exitcode} : 'bad');
my $e = enqueue($0, '--echo');
my $data = do { open(my $p, '<:raw', $payload) or die; local $/; <$p> };
my $m = $e->sendmsg($data);
w('recv', $m->waitrecv(20) ? 'R' : 'not received');
open(my $r, '>:raw', $reply) or die; print $r recvmsg(20); close $r;
w('echo', $e->wait(20)->{exitcode});
enqueue('argv', $argsout, @rest)->wait;
w('done');
`;

const ENTRY_MJS = `#!${process.execPath}
import fs from 'node:fs';
const { enqueue, waitjobs, recvmsg, parent } = await import(process.env.PMJQ_JOB_JS);

const argv = process.argv.slice(2);
if (argv[0] === '--echo') {
  const d = recvmsg({ timeout: 20 });
  parent.sendmsg(Buffer.concat([Buffer.from('echo:'), d]));
  process.exit(0);
}
const [out, stamps, payload, reply, argsout, ...rest] = argv;
const w = (line) => fs.appendFileSync(out, line + '\\n');

const jobs = [[1, 0], [2, 3], [3, 7]].map(([i, code]) => enqueue('stamp', [stamps, 'js' + i, code], { group: 'g-js', maxJobs: 1 }));
w('wait ' + waitjobs(jobs).map((r) => r.status.exitcode).join(' '));
const s = enqueue('sleeper');
if (recvmsg({ timeout: 20 }).toString() !== 'up') process.exit(1);
const st = s.kill(20);
w('kill ' + (st.done ? st.exitcode : JSON.stringify(st)));
const e = enqueue(new URL(import.meta.url).pathname, ['--echo']);
const m = e.sendmsg(fs.readFileSync(payload));
w('recv ' + (m.waitrecv(20) ? 'R' : 'not received'));
fs.writeFileSync(reply, recvmsg({ timeout: 20 }));
w('echo ' + e.wait(20).exitcode);
enqueue('argv', [argsout, ...rest]).wait();
w('done');
`;

const ENTRIES: Record<string, { file: string; body: string }> = {
  sh: { file: 'entry-sh', body: ENTRY_SH },
  // the same library under bash with set -eu
  bash: {
    file: 'entry-bash',
    body: ENTRY_SH.replace('#!/bin/sh\n', '#!/bin/bash\nset -eu\n').replace(/g-sh/g, 'g-bash').replace(/ sh([123]) /g, ' bash$1 '),
  },
  py: { file: 'entry-py', body: ENTRY_PY },
  pl: { file: 'entry-pl', body: ENTRY_PL },
  js: { file: 'entry-js.mjs', body: ENTRY_MJS },
};

// ---- misbehaving jobs: each appends the answers it got to OUT ($1) ----

const ASK = `ask() { printf '%s\\n' "$1" >&3; IFS= read -r a <&4; printf '%s\\n' "$a" >> "$out"; }
out=$1
`;

const MALFORMED: string[] = [
  'frobnicate x y',
  "enqueue -- 'unbalanced",
  'enqueue -- "unbalanced',
  'enqueue -x -- stamp',
  'enqueue -g',
  'enqueue --',
  'enqueue -- /nonexistent/script',
  'enqueue -- notexec',
  'enqueue -- .',
  'enqueue -g .hidden -- stamp',
  'enqueue -g g -m many -- stamp',
  'repeat -- stamp',
  "repeat -c '* * *' -- stamp",
  'repeat -c "61 * * * *" -- stamp',
  'repeat -i 0s -- stamp',
  'repeat -i soon -- stamp',
  'repeat -i 1s -c "* * * * *" -- stamp',
  'waitjobs -t bogus -- x',
  'wait -a -f -- x',
  'killjobs -q -- x',
  'sendmsg -- x',
  'sendmsg -- x -5',
  'recvmsg extra',
  'recvmsg -t -1',
  '',
  'trailing\\',
];

const HOSTILE: Record<string, string> = {
  // every malformed command gets E; then the channel still answers
  malformed: `#!/bin/sh
${ASK}${MALFORMED.map((c) => `ask ${shq(c)}`).join('\n')}
ask "waitjobs -- $CHAQUM_IDENT"
ask 'waitjobs -- nosuchjob'
ask 'recvmsg -t 0'
`,
  // a line of megabytes: E, and the next command is answered
  longline: `#!/bin/sh
out=$1
{ head -c 3000000 /dev/zero | tr '\\0' a; echo; } >&3
IFS= read -r a <&4; printf '%s\\n' "$a" >> "$out"
printf 'recvmsg -t 0\\n' >&3
IFS= read -r a <&4; printf '%s\\n' "$a" >> "$out"
`,
  // wrong sendmsg lengths: E and back in step; a short payload and then EOF: dropped
  sendmsg: `#!/bin/sh
${ASK}me=$CHAQUM_IDENT
r() { IFS= read -r a <&4; printf '%s\\n' "$a" >> "$out"; }
printf 'sendmsg -- %s 5\\nabcdefgh\\n' "$me" >&3; r
ask 'recvmsg -t 0'
printf 'sendmsg -- %s 3\\nabc\\n' "$me" >&3; r
ask 'recvmsg -t 0'; r
{ printf 'sendmsg -- %s 2097152\\n' "$me"; head -c 2097152 /dev/zero; echo; } >&3; r
ask 'recvmsg -t 0'
printf 'sendmsg -- nosuchjob 2\\nhi\\n' >&3; r
printf 'sendmsg -- %s 100\\nabc\\n' "$me" >&3
exec 3>&-
r
if IFS= read -r a <&4; then echo "unexpected: $a" >> "$out"; else echo eof >> "$out"; fi
`,
  // never reads fd 4: answers pile up until the manager closes the channel
  noread: `#!/bin/sh
out=$1 me=$CHAQUM_IDENT
trap '' PIPE
i=0
while [ $i -lt 8 ]; do
  { printf 'sendmsg -- %s 1048576\\n' "$me"; head -c 1048576 /dev/zero; printf '\\nrecvmsg\\n'; } >&3 2>/dev/null || break
  i=$((i + 1))
done
echo "wrote $i" >> "$out"
exec sleep 60
`,
  // closes fd 3 in the middle of a line: the partial line is dropped
  midline: `#!/bin/sh
out=$1
printf 'enqueue -- stamp %s midline 0' "$2" >&3
exec 3>&-
if IFS= read -r a <&4; then echo "unexpected: $a" >> "$out"; else echo eof >> "$out"; fi
`,
};

const CANARY = `#!/bin/sh
. "$PMJQ_LIB/pmjq.sh"
id=$(pmjq_enqueue stamp "$2" "$3" 5) || exit 1
pmjq_wait -t 20 -- "$id" > "$1"
`;

// ---- the four client libraries, with real processes ----

for (const [lang, entry] of Object.entries(ENTRIES)) {
  t.test(`${lang} job: sub-jobs in a -m 1 group, kill, messages, arguments`, async (t) => {
    const { dir, tree, host } = setup(t);
    const file = writeScript(tree, entry.file, entry.body);
    const out = path.join(dir, 'out');
    const stampDir = path.join(dir, 'stamps');
    fs.mkdirSync(stampDir);
    const payload = path.join(dir, 'payload');
    fs.writeFileSync(payload, PAYLOAD);
    const reply = path.join(dir, 'reply');
    const argsOut = path.join(dir, 'args');
    const started = Date.now();
    const job = host.startTop(file, [out, stampDir, payload, reply, argsOut, ...ARGS]);
    const ended = await host.ended(job.id, 60_000);
    t.comment(`${lang}: entry job took ${Date.now() - started} ms`);
    t.equal(ended.end?.exitCode, 0, `the ${lang} entry job exits 0`, { log: host.jobLog(job.id) });
    t.same(fs.readFileSync(out, 'utf8').split('\n').filter(Boolean), ['wait 0 3 7', 'kill -15', 'recv R', 'echo 0', 'done'],
      'exit codes came back, the sleeper was killed (-15: SIGTERM, as chaqum 0.16 says), the message was received and echoed');

    // one at a time: each stamp job started after the previous one ended
    const runs = [1, 2, 3].map((i) => readStamps(path.join(stampDir, `${lang}${i}`)));
    t.ok(runs.every((r) => r.length === 1 && r[0]!.end !== null), 'each sub-job ran once, to its end');
    const spans = runs.map((r) => r[0]!).sort((a, b) => (a.start < b.start ? -1 : 1));
    for (let i = 1; i < spans.length; i++) {
      t.ok(spans[i]!.start >= spans[i - 1]!.end!, `sub-job ${i + 1} started after sub-job ${i} ended (group max 1)`);
    }

    t.equal(fs.readFileSync(reply, 'utf8'), 'echo:' + PAYLOAD, 'UTF-8 with embedded newlines came back byte for byte');
    t.same(fs.readFileSync(argsOut, 'utf8').split('\0').slice(0, -1), ARGS, 'arguments survived quoting (spaces, quotes, $, UTF-8, empty)');

    const subs = [...host.jobs.values()].filter((j) => j.parent === job.id);
    t.equal(subs.length, 6, 'six sub-jobs: three stamps, sleeper, echo, argv');
    t.same(new Set(subs.filter((j) => j.file.endsWith('/stamp')).map((j) => j.group)), new Set([`g-${lang}`]), 'the stamps ran in their -g group');
    const sleeper = subs.find((j) => j.file.endsWith('/sleeper'))!;
    t.equal(sleeper.end?.reason, 'killed', 'the sleeper was killed');
    t.same(host.protocol.stats().live, 0, 'nothing left live in the protocol');
    t.equal(host.protocol.stats().queuedBytes, 0, 'no message left queued');
  });
}

// ---- hostile input ----

t.test('hostile input on fd 3: answered with E or dropped; the next job still runs', async (t) => {
  const { dir, tree, host } = setup(t, { maxMessageBytes: 1024 * 1024 });
  let n = 0;
  const canary = async (after: string): Promise<void> => {
    const out = path.join(dir, `canary-${++n}`);
    const file = writeScript(tree, `canary-${n}`, CANARY);
    const job = host.startTop(file, [out, dir, `canary-stamp-${n}`]);
    await host.ended(job.id);
    t.match(fs.readFileSync(out, 'utf8'), /^sub\.\d+ 5\n$/, `after ${after}, the next job enqueues and waits as usual`);
  };
  const run = async (name: string, args: string[] = []): Promise<{ id: string; answers: string[] }> => {
    const out = path.join(dir, `out-${name}`);
    fs.writeFileSync(out, '');
    const job = host.startTop(writeScript(tree, name, HOSTILE[name]!), [out, ...args]);
    if (name === 'noread') {
      await host.waitLine(new RegExp(`event=protocol-error id=${job.id.replace('.', '\\.')} .*does not read its answers`));
      await until('the noread job to stop writing', () => /wrote \d/.test(fs.readFileSync(out, 'utf8')));
      host.kill(job.id);
    }
    await host.ended(job.id);
    return { id: job.id, answers: fs.readFileSync(out, 'utf8').split('\n').slice(0, -1) };
  };

  const bad = await run('malformed');
  t.equal(bad.answers.length, MALFORMED.length + 3, 'one answer per command');
  MALFORMED.forEach((cmd, i) => {
    t.match(bad.answers[i], /^E \S/, `${JSON.stringify(cmd)} → ${bad.answers[i]}`);
  });
  t.match(bad.answers[MALFORMED.indexOf('enqueue -- /nonexistent/script')], /does not exist/, 'a missing script is named');
  t.match(bad.answers[MALFORMED.indexOf('enqueue -- notexec')], /not executable/, 'a non-executable script is named');
  t.match(bad.answers[MALFORMED.indexOf('frobnicate x y')], /unknown command 'frobnicate'/);
  t.match(bad.answers[MALFORMED.indexOf("enqueue -- 'unbalanced")], /unbalanced single quote/);
  t.match(bad.answers[MALFORMED.length], /^E .*itself/, 'a job cannot wait for itself');
  t.equal(bad.answers[MALFORMED.length + 1], 'S', 'waiting for an unknown job: S, the id left out');
  t.equal(bad.answers[MALFORMED.length + 2], 'T', 'recvmsg -t 0 with nothing queued: T');
  const errors = host.lines.filter((l) => l.includes('event=protocol-error') && l.includes(`id=${bad.id} `));
  t.equal(errors.length, MALFORMED.length + 1, 'each E was logged');
  t.equal([...host.jobs.values()].filter((j) => j.parent === bad.id).length, 0, 'nothing was enqueued');
  await canary('malformed commands');

  const long = await run('longline');
  t.same(long.answers, ['E line too long', 'T'], 'a 3 MB line: E, then the next command is answered');
  await canary('a line of megabytes');

  const send = await run('sendmsg');
  t.match(send.answers[0], /^E sendmsg: .*not followed by a newline/, 'payload longer than LENGTH: E');
  t.equal(send.answers[1], 'T', '… and the channel is back in step');
  t.match(send.answers[2], /^S msg:\d+$/, 'a correct sendmsg to itself');
  t.same(send.answers.slice(3, 5), ['S 3', 'abc'], 'recvmsg returns it');
  t.match(send.answers[5], /^E sendmsg: message of 2097152 bytes is longer than 1048576/, 'an oversized message: E (payload skipped)');
  t.equal(send.answers[6], 'T', '… and in step again');
  t.match(send.answers[7], /^E sendmsg: unknown job 'nosuchjob'/, 'to an unknown job: E');
  t.match(send.answers[8], /^E sendmsg: input ended inside the payload/, 'a short payload and then EOF: E …');
  t.equal(send.answers[9], 'eof', '… and the channel is closed');
  await canary('wrong sendmsg lengths');

  const noread = await run('noread');
  t.match(noread.answers[0], /^wrote [1-7]$/, 'the job could not go on writing once the manager closed its channel');
  await canary('a job that never reads fd 4');

  const mid = await run('midline', [dir]);
  t.same(mid.answers, ['eof'], 'closing fd 3 mid-line: the channel closes');
  t.equal([...host.jobs.values()].filter((j) => j.parent === mid.id).length, 0, 'the partial enqueue was dropped');
  await canary('a job that closed fd 3 mid-line');

  const st = host.protocol.stats();
  t.equal(st.live, 0, 'no job left live');
  t.equal(st.queuedBytes, 0, 'no message bytes left queued');
  t.equal(st.queuedMessages, 0, 'no message left queued');
});

// ---- in-process: answers byte for byte, cleanup, bounds ----

class FakeHost implements ProtocolHost {
  n = 0;
  /** ids the next enqueues return (then j1, j2, …) */
  names: string[] = [];
  spoolGroups = new Set(['default']);
  enqueued: EnqueueRequest[] = [];
  killed: string[] = [];
  lines: string[] = [];
  log = new Logger({ verbosity: 1, write: (l) => { this.lines.push(l); } });
  onEnqueue?: (id: string) => void;
  enqueue(req: EnqueueRequest): string {
    const id = this.names.shift() ?? `j${++this.n}`;
    this.enqueued.push(req);
    this.onEnqueue?.(id);
    return id;
  }
  kill(id: string): boolean { this.killed.push(id); return true; }
  isSpoolGroup(name: string): boolean { return this.spoolGroups.has(name); }
}

/** A ChannelIO over fixed bytes (what follows the command line). */
function io(rest = ''): ChannelIO {
  let buf = Buffer.from(rest);
  return {
    readBytes: async (n) => {
      if (buf.length < n) return null;
      const out = buf.subarray(0, n);
      buf = buf.subarray(n);
      return out;
    },
    discardLine: async () => {
      const nl = buf.indexOf(10);
      if (nl < 0) { buf = Buffer.alloc(0); return false; }
      buf = buf.subarray(nl + 1);
      return true;
    },
  };
}

/** Calls a handler as the channel does: a thrown Error becomes `E message`. */
async function ask(h: CommandHandler, line: string, rest = ''): Promise<string> {
  try {
    const a = await h(line, io(rest));
    return Buffer.isBuffer(a) ? a.toString('utf8') : a;
  } catch (err) {
    return `E ${(err as Error).message}`;
  }
}

interface Fake { host: FakeHost; p: Protocol; h: CommandHandler; tree: string }

function fake(limits: Partial<Limits> = {}): Fake {
  const host = new FakeHost();
  const p = new Protocol(host, limits);
  const tree = path.dirname(process.execPath); // node itself is an executable there
  return { host, p, h: p.handlerFor({ id: 'top', tree, owner: ME }), tree };
}

const NODE = path.basename(process.execPath);

/** A job of `by`'s family named `name`: enqueued by it, then given its own handler. */
async function relative(f: Fake, name: string, by = f.h): Promise<CommandHandler> {
  f.host.names.push(name);
  const answer = await ask(by, `enqueue -- ${NODE}`);
  if (answer !== `S ${name}`) throw new Error(`enqueue of ${name}: ${answer}`);
  return f.p.handlerFor({ id: name, tree: f.tree, owner: ME });
}

t.test('answers byte for byte', async (t) => {
  const fx = fake();
  const { host, p, h } = fx;
  t.equal(await ask(h, `enqueue -- ${NODE} a 'b c'`), 'S j1');
  t.same(host.enqueued[0], { parent: 'top', owner: ME, script: process.execPath, args: ['a', 'b c'], tree: path.dirname(process.execPath), forget: false });
  t.equal(await ask(h, `enqueue -F -g convert -m 2 -c 70 -- ${NODE}`), 'S j2');
  t.match(host.enqueued[1], { forget: true, group: 'convert', maxproc: 2, maxcpu: 0.7 }, '-F -g -m -c, percent to fraction');
  t.equal(await ask(h, `enqueue -Fgconvert -m1 -c0.5 ${NODE}`), 'S j3', 'clustered and attached options, no --');
  t.match(host.enqueued[2], { forget: true, group: 'convert', maxproc: 1, maxcpu: 0.5 });
  t.equal(await ask(h, `enqueue -m 3 -- ${NODE}`), 'S j4');
  t.equal(host.enqueued[3]!.maxproc, undefined, '-m without -g is ignored, as chaqum does');
  t.ok(host.lines.some((l) => l.includes('-m/-c without -g ignored')), '… and said so');
  t.equal(await ask(h, `enqueue -- ${process.execPath}`), 'S j5', 'an absolute script');

  p.jobStarted('j1');
  p.jobEnded('j1', 0);
  p.jobEnded('j4', null);
  t.equal(await ask(h, 'waitjobs -t 0 -- j5 j1 j4'), 'S j5 T j1 0 j4 N', 'S id1 T id2 0 id3 N, in the order asked');
  t.equal(await ask(h, 'waitjobs -t 0 -- j1 j1 nosuch'), 'S j1 0', 'each id once, unknown ids left out');
  t.equal(await ask(h, 'waitjobs -- j1 j4'), 'S j1 0 j4 N', 'all ended: answered at once without a timeout');
  t.equal(await ask(h, 'waitjobs'), 'S', 'nothing to wait for');

  t.ok(p.idle, 'idle: nobody waits');
  const all = ask(h, 'wait -a -- j5 j1');
  t.notOk(p.idle, 'not idle while a job waits');
  const first = await relative(fx, 'other');
  const f = ask(first, 'wait -f -t 10 -- j5 j2');
  await new Promise((r) => setImmediate(r));
  p.jobEnded('j2', 3);
  t.equal(await f, 'S j5 T j2 3', 'wait -f: as soon as the first ended');
  p.jobEnded('j5', 128 + 9 - 137 + 42);
  t.equal(await all, 'S j5 42 j1 0', 'wait -a: when all ended');

  const waitT = Date.now();
  t.equal(await ask(h, 'waitjobs -t 150ms -- j3'), 'S j3 T', 'timeout: T');
  t.ok(Date.now() - waitT >= 140, 'after the timeout');

  const k = ask(h, 'killjobs -- j3');
  await new Promise((r) => setImmediate(r));
  t.same(host.killed, ['j3'], 'killjobs asks the host to kill');
  p.jobEnded('j3', null, true);
  t.equal(await k, 'S j3 N', 'and answers when it ended (N: it never ran)');
  t.equal(await ask(h, `enqueue -- ${NODE}`), 'S j6');
  p.jobStarted('j6');
  const k6 = ask(h, 'killjobs -- j6');
  await new Promise((r) => setImmediate(r));
  p.jobEnded('j6', null, true, 'SIGTERM');
  t.equal(await k6, 'S j6 -15', 'a running job killed by SIGTERM: -15, as chaqum 0.16 answers');

  t.equal(await ask(h, 'sendmsg -- other 5', 'ab\n'), 'E sendmsg: input ended inside the payload', 'a payload cut short by the end of input');
  t.equal(await ask(h, 'sendmsg -- other 6', 'héllo\n'), 'S msg:1', 'sendmsg: S MSGID; LENGTH counts bytes');
  t.equal(await ask(h, 'sendmsg -- other 0', '\n'), 'S msg:2', 'an empty message');
  t.equal(await ask(h, 'waitrecv -t 0 -- msg:1 msg:2 msg:99'), 'S msg:1 T msg:2 T');
  t.equal(await ask(first, 'recvmsg'), 'S 6\nhéllo', 'recvmsg: S LENGTH, newline, the bytes (the channel adds the last newline)');
  t.equal(await ask(first, 'recvmsg -t 1'), 'S 0\n');
  t.equal(await ask(first, 'recvmsg -t 0'), 'T', 'nothing queued: T');
  t.equal(await ask(h, 'waitrecv -- msg:1 msg:2'), 'S msg:1 R msg:2 R', 'received: R');
  const later = ask(first, 'recvmsg -t 5');
  t.equal(await ask(h, 'sendmsg -- other 2', 'hi\n'), 'S msg:3', 'a message to a job waiting in recvmsg');
  t.equal(await later, 'S 2\nhi', 'is handed over at once');
  t.ok(p.idle, 'idle again: nobody waits in waitjobs or recvmsg');
  const r5 = ask(first, 'recvmsg -t 50ms');
  t.notOk(p.idle, 'a job in recvmsg is waiting');
  t.equal(await r5, 'T');
  t.ok(p.idle, 'after its timeout, not any more');
  t.equal(await ask(h, 'repeat -i 1h -- ' + NODE), 'S', 'repeat: S');
  t.equal(await ask(h, "repeat -c '*/5 * * * * *' -- " + NODE), 'S', '6-field cron');
  t.equal(await ask(h, "repeat -c '0 3 * * 1-5' -- " + NODE), 'S', '5-field cron');
  p.close();
  t.equal(p.listRepeats().length, 0);
});

t.test('cleanup when jobs end', async (t) => {
  const f = fake();
  const { host, p, h } = f;
  const other = await relative(f, 'other');
  t.equal(await ask(h, `enqueue -- ${NODE}`), 'S j1');
  t.equal(await ask(h, `enqueue -F -- ${NODE}`), 'S j2');
  t.equal(await ask(h, `enqueue -- ${NODE}`), 'S j3');

  // a job that ends while waiting: its wait is gone, and so is its pending recvmsg
  const w = ask(other, 'waitjobs -- j1');
  await new Promise((r) => setImmediate(r));
  p.jobEnded('other', 0);
  t.equal(await w, 'E job ended', 'the wait of an ended job is cancelled (its channel is closed anyway)');
  t.equal(await ask(other, 'recvmsg -t 0'), 'E job has ended', 'an ended job gets no more answers');

  // messages to a job that ends unreceived: N
  await relative(f, 'o2');
  t.equal(await ask(h, 'sendmsg -- o2 1', 'x\n'), 'S msg:1');
  const wr = ask(h, 'waitrecv -- msg:1');
  await new Promise((r) => setImmediate(r));
  p.jobEnded('o2', 0);
  t.equal(await wr, 'S msg:1 N', 'the recipient ended without receiving it: N');
  t.equal(await ask(h, 'sendmsg -- o2 1', 'x\n'), 'E sendmsg: job o2 has ended');

  // -F: state dropped when it ends
  p.jobEnded('j2', 0);
  t.equal(await ask(h, 'waitjobs -- j2'), 'S', 'a -F job is forgotten when it ends');
  p.jobEnded('j1', 1);
  t.equal(await ask(h, 'waitjobs -- j1'), 'S j1 1', 'a normal one is remembered');

  // killed: its live sub-jobs are killed too; merely exiting leaves them
  const c = p.handlerFor({ id: 'j3', tree: path.dirname(process.execPath), owner: ME });
  t.equal(await ask(c, `enqueue -- ${NODE}`), 'S j4');
  const c4 = p.handlerFor({ id: 'j4', tree: path.dirname(process.execPath), owner: ME });
  t.equal(await ask(c4, `enqueue -- ${NODE}`), 'S j5');
  t.same(p.descendants('top').sort(), ['j3', 'j4', 'j5']);
  p.jobEnded('top', null, true);
  t.same(host.killed.sort(), ['j3', 'j4', 'j5'], 'a killed job takes its sub-jobs with it');
  t.equal(await ask(c4, 'waitjobs -t 0 -- j1'), 'S', 'results of a parent\'s children are dropped when the parent ends');
  for (const id of ['j3', 'j4', 'j5']) p.jobEnded(id, null, true);
  t.ok(p.idle, 'idle: nobody waiting, no repeat');
  // kept: the exit codes of the top-level job and of j3–j5, whose parents had ended (bounded by maxResults)
  t.same(p.stats(), { live: 0, results: 4, queuedMessages: 0, queuedBytes: 0, messageResults: 0, repeats: 0 }, 'nothing retained but what must be');
});

t.test('bounds: E beyond the limits, oldest results dropped first', async (t) => {
  const limits: Partial<Limits> = { maxInboxMessages: 3, maxInboxBytes: 10, maxMessageBytes: 8, maxResults: 4, maxRepeats: 2, maxLiveChildren: 7, maxQueuedBytes: 12 };
  const f = fake(limits);
  const { p, h } = f;
  await relative(f, 'r');
  await relative(f, 'r2');
  t.equal(await ask(h, 'sendmsg -- r 9', '123456789\n'), 'E sendmsg: message of 9 bytes is longer than 8', 'message size');
  t.equal(await ask(h, 'sendmsg -- r 4', '1234\n'), 'S msg:1');
  t.equal(await ask(h, 'sendmsg -- r 4', '1234\n'), 'S msg:2');
  t.match(await ask(h, 'sendmsg -- r 4', '1234\n'), /^E sendmsg: job r has 2 messages \(8 bytes\)/, 'inbox bytes');
  t.equal(await ask(h, 'sendmsg -- r 1', '1\n'), 'S msg:3');
  t.match(await ask(h, 'sendmsg -- r 0', '\n'), /^E sendmsg: job r has 3 messages/, 'inbox messages');
  t.equal(await ask(h, 'sendmsg -- r2 3', '123\n'), 'S msg:4');
  t.match(await ask(h, 'sendmsg -- r2 4', '1234\n'), /too many bytes queued for all jobs/, 'all inboxes together');

  for (let i = 1; i <= 5; i++) t.equal(await ask(h, `enqueue -- ${NODE}`), `S j${i}`);
  t.match(await ask(h, `enqueue -- ${NODE}`), /^E enqueue: job has 7 sub-jobs queued or running/, 'live sub-jobs per job');
  for (let i = 1; i <= 5; i++) p.jobEnded(`j${i}`, i);
  t.equal(await ask(h, 'waitjobs -- j1 j2 j3 j4 j5'), 'S j2 2 j3 3 j4 4 j5 5', 'only the newest 4 results are kept');

  t.equal(await ask(h, `repeat -i 1h -- ${NODE}`), 'S');
  t.equal(await ask(h, `repeat -i 1h -- ${NODE}`), 'S');
  t.match(await ask(h, `repeat -i 1h -- ${NODE}`), /^E repeat: 2 repeats registered already/, 'repeats');
  p.close();
});

t.test('messages: one family cannot fill the pool every family shares', async (t) => {
  const f = fake({ maxQueuedBytesPerFamily: 5 });
  await relative(f, 'r');
  t.equal(await ask(f.h, 'sendmsg -- r 4', '1234\n'), 'S msg:1');
  t.match(await ask(f.h, 'sendmsg -- r 2', '12\n'), /^E sendmsg: this job tree has 4 bytes of messages not received yet \(limit 5\)$/, 'its own tree\'s bound');
  // another spool job: a family of its own, with its own bound
  const other = f.p.handlerFor({ id: 'top2', tree: f.tree, owner: ME });
  f.host.names.push('r2');
  t.equal(await ask(other, `enqueue -- ${NODE}`), 'S r2');
  f.p.handlerFor({ id: 'r2', tree: f.tree, owner: ME });
  t.equal(await ask(other, 'sendmsg -- r2 4', '1234\n'), 'S msg:2', 'another family still sends');
  f.p.close();
});

t.test('a host that starts or ends the job inside enqueue', async (t) => {
  const { host, p, h } = fake();
  host.onEnqueue = (id) => { p.handlerFor({ id, tree: '/', owner: ME }); p.jobStarted(id); };
  t.equal(await ask(h, `enqueue -- ${NODE}`), 'S j1');
  t.same(p.descendants('top'), ['j1'], 'started during enqueue: still the caller\'s sub-job');
  host.onEnqueue = (id) => p.jobEnded(id, null);
  t.equal(await ask(h, `enqueue -- ${NODE}`), 'S j2');
  t.equal(await ask(h, 'waitjobs -- j2'), 'S j2 N', 'failed to start during enqueue: ended, not live forever');
  host.onEnqueue = undefined;
  p.jobEnded('j1', 0);
  p.jobEnded('top', 0);
  t.ok(p.idle, 'no zombie entry');
});

t.test('SCRIPT is resolved as the job\'s owner: directories searched as the kernel would, links followed, out of reach = absent', async (t) => {
  const host = new FakeHost();
  const p = new Protocol(host);
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'pmjq-resolve-'));
  t.teardown(() => fs.rmSync(base, { recursive: true, force: true }));
  fs.chmodSync(base, 0o755);
  // open/: a script for all; closed/ (0700, not the owner's): a script inside; links between them
  const open = path.join(base, 'open');
  const closed = path.join(base, 'closed');
  fs.mkdirSync(open, { mode: 0o755 });
  fs.mkdirSync(closed, { mode: 0o700 });
  fs.chmodSync(closed, 0o700);
  for (const d of [open, closed]) {
    fs.writeFileSync(path.join(d, 'run'), '#!/bin/sh\n', { mode: 0o755 });
    fs.chmodSync(path.join(d, 'run'), 0o755);
  }
  fs.writeFileSync(path.join(open, 'mine-only'), '#!/bin/sh\n', { mode: 0o744 });
  fs.chmodSync(path.join(open, 'mine-only'), 0o744);
  fs.symlinkSync('../closed/run', path.join(open, 'into-closed'));
  fs.symlinkSync(path.join(open, 'run'), path.join(open, 'abs-link'));
  fs.symlinkSync('loop', path.join(open, 'loop'));
  // someone else: neither the files' owner nor in their group
  const other = { uid: 4242, gid: 4242, groups: [4242] };
  const h = p.handlerFor({ id: 'top', tree: open, owner: other });
  const absent = (f: string): RegExp => new RegExp(`^E script ${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} does not exist \\(or is out of reach of this job's user\\)$`);
  t.match(await ask(h, 'enqueue -- run'), /^S /, 'a script in an open directory');
  t.match(await ask(h, 'enqueue -- abs-link'), /^S /, 'an absolute symlink to it');
  t.match(await ask(h, `enqueue -- ${path.join(closed, '..', 'open', 'run')}`), /^S /, '.. is resolved lexically, as the path the job runs');
  t.match(await ask(h, `enqueue -- ${path.join(closed, 'run')}`), absent(path.join(closed, 'run')), 'in a directory closed to the owner: as absent');
  t.match(await ask(h, `enqueue -- ${path.join(closed, 'nope')}`), absent(path.join(closed, 'nope')), 'absent: the same words');
  t.match(await ask(h, 'enqueue -- into-closed'), absent(path.join(open, 'into-closed')), 'a link into the closed directory: as absent');
  t.match(await ask(h, 'enqueue -- loop'), absent(path.join(open, 'loop')), 'a symlink loop: as absent');
  t.match(await ask(h, 'enqueue -- mine-only'), /^E script .* is not executable \(for this job's user\)$/, 'executable by its owner only: not for this user');
  t.match(await ask(h, 'enqueue -- .'), /^E script .* is not a regular file$/, 'a directory');
  const me = p.handlerFor({ id: 'me', tree: open, owner: ME });
  t.match(await ask(me, `enqueue -- ${path.join(closed, 'run')}`), /^S /, 'the directory\'s owner reaches it');
  t.match(await ask(me, 'enqueue -- mine-only'), /^S /, '… and runs what only it may run');
  t.match(await ask(h, `repeat -i 1h -- ${path.join(closed, 'run')}`), /^E script .* does not exist \(or is out of reach/, 'repeat resolves the same way');
  t.same(host.enqueued.map((r) => r.owner), [other, other, other, ME, ME], 'each sub-job carries the owner of the job that asked');
  p.close();
});
