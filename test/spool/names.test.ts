// Issue 2, names (pmjq(5)): any byte sequence a filesystem allows survives
// claim, run, archive and records intact — spaces, a newline, a leading '-',
// quotes, shell metacharacters, UTF-8, bytes that are not UTF-8, 255 bytes.

import fs from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { BIN, ROOT_ARGS, archivedRaw, dropJob, history, readJson, scratch, start, waitFor } from '../helpers/helpers.js';

type Rec = Record<string, unknown>;

const NAMES: Buffer[] = [
  'with space',
  'new\nline',
  '-leading-dash',
  '--help',
  "it's",
  'say "hi"',
  'back\\slash $(touch pwned) `x` *',
  'ütf-8 ✓ 日本語',
  'report.json',
  'tab\there',
].map((s) => Buffer.from(s))
  .concat([
    Buffer.from([0x6e, 0x6f, 0x6e, 0xff, 0xfe, 0x2d, 0x75, 0x74, 0x66]), // "non\xff\xfe-utf": not UTF-8
    Buffer.from('ü'.repeat(127) + 'x'), // 255 bytes of UTF-8
  ]);

const isUtf8 = (b: Buffer): boolean => Buffer.from(b.toString('utf8')).equals(b);
const show = (b: Buffer): string => JSON.stringify(b.toString('latin1')).slice(0, 40);

function body(out: string): string {
  // the job records that it ran and what $0 it got; output goes to its log
  return `#!/bin/sh\necho "id=$PMJQ_JOB_ID"\nprintf '%s' "$0" > '${out}'/"$PMJQ_JOB_ID"\n`;
}

function check(t: Test, archive: string, spool: string, out: string, node: string): void {
  const entries = archivedRaw(archive);
  t.equal(entries.length, NAMES.length, `${NAMES.length} archive entries`);
  const hist = history(spool);
  t.equal(hist.length, NAMES.length, 'one history record each');
  for (const name of NAMES) {
    const long = name.length > 200;
    // the archive name is TIMESTAMP-NAME; a 255-byte name is cut to fit NAME_MAX (at a character boundary)
    const e = entries.find((x) => long ? x.name.length > 0 && name.subarray(0, x.name.length).equals(x.name) : x.name.equals(name));
    if (!t.ok(e, `${show(name)}: archived under its exact name`)) continue;
    if (long) t.ok(e!.entry.length + '.json'.length <= 255 && isUtf8(e!.name), `${show(name)}: cut to fit NAME_MAX, still valid UTF-8`);
    t.equal(fs.readFileSync(e!.file, 'utf8'), body(out), `${show(name)}: file intact`);
    const rec = readJson<Rec>(e!.json);
    if (isUtf8(name)) {
      t.equal(rec.name, name.toString(), `${show(name)}: record name is exact`);
      t.notOk('name_b64' in rec, 'no name_b64 for a UTF-8 name');
      t.equal(rec.archive, e!.file.toString(), 'record points at the entry');
    } else {
      t.equal(rec.name_b64, name.toString('base64'), `${show(name)}: record keeps the exact bytes in name_b64`);
      t.equal(rec.name, name.toString('utf8'), 'and a readable name');
    }
    t.equal(rec.status, 'done', `${show(name)}: done`);
    t.equal(rec.node, node);
    t.equal(fs.readFileSync(e!.log, 'utf8'), `id=${rec.id as string}\n`, `${show(name)}: log is its output`);
    t.same(hist.find((h) => h.id === rec.id), rec, 'history matches');
    const argv0 = fs.readFileSync(path.join(out, rec.id as string));
    // the job runs from its claimed area under its own name (a non-UTF-8 name under "job")
    t.ok(argv0.subarray(argv0.lastIndexOf('/') + 1).equals(isUtf8(name) ? name : Buffer.from('job')), `${show(name)}: $0 is its name`);
  }
  t.equal(fs.readdirSync(out).length, NAMES.length, 'every job ran once');
  t.notOk(fs.existsSync(path.join(spool, 'pwned')), 'no name was ever interpreted by a shell');
  t.same(fs.readdirSync(spool), ['.pmjq'], 'spool drained');
}

t.test('odd names survive claim, run, archive and records (--once)', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const out = path.join(dir, 'out');
  fs.mkdirSync(out);
  for (const name of NAMES) dropJob(spool, name, body(out));
  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '--once', '-j', '4', '-o', archive, spool]);
  t.equal(await p.exited, 0, 'exit 0');
  const node = /event=start node=(\S+)/.exec(p.stderr())![1]!;
  check(t, archive, spool, out, node);
  const lines = p.stderr().trimEnd().split('\n');
  t.ok(lines.every((l) => /^\d{4}-\d\d-\d\dT\S+ level=\w+ event=\S+/.test(l)), 'a name with a newline never breaks a log line');
  t.ok(lines.some((l) => l.includes(String.raw`name="new\nline"`)), 'names are quoted in log lines');
});

t.test('odd names dropped into a running daemon', async (t) => {
  const { dir, spool, archive } = scratch(t);
  const out = path.join(dir, 'out');
  fs.mkdirSync(out);
  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '--poll', '250ms', '-o', archive, spool]);
  const node = /node=(\S+)/.exec(await p.waitLine(/event=start /))![1]!;
  for (const name of NAMES) dropJob(spool, name, body(out));
  await waitFor('all archived', () => archivedRaw(archive).length === NAMES.length && history(spool).length === NAMES.length, 10_000);
  p.child.kill('SIGTERM');
  t.equal(await p.exited, 0);
  check(t, archive, spool, out, node);
});
