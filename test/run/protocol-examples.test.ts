// The example jobs of man/pmjq-protocol.7 (one per language), extracted
// from the roff source and run as printed, with the real `pmjq --lib` on the
// PATH and `pmjq/job` resolved through the package's exports.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { BIN, ROOT } from '../helpers/helpers.js';
import { setup, writeScript } from '../helpers/protocol-host.js';

// ---- the examples of the man page ----

/** The `.\" example: NAME` blocks of man/pmjq-protocol.7, unescaped. */
function manExamples(): Map<string, string> {
  const roff = fs.readFileSync(path.join(ROOT, 'man/pmjq-protocol.7'), 'utf8');
  const out = new Map<string, string>();
  for (const m of roff.matchAll(/^\.\\" example: (\S+)\n\.EX\n([\s\S]*?)\n\.EE$/gm)) {
    const text = m[2]!.split('\n').map((l) => l.replace(/^\\&/, '')
      .replace(/\\\(aq/g, "'").replace(/\\\(ga/g, '`').replace(/\\-/g, '-').replace(/\\e/g, '\\')).join('\n');
    out.set(m[1]!, text + '\n');
  }
  return out;
}

t.test('the example jobs of pmjq-protocol(7) run as printed', async (t) => {
  const examples = manExamples();
  t.same([...examples.keys()], ['compress', 'squares', 'race', 'scan.mjs'], 'four examples, one per language');
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'pmjq-examples-'));
  t.teardown(() => fs.rmSync(base, { recursive: true, force: true }));
  // `pmjq --lib LANG` on the PATH, as installed
  fs.mkdirSync(path.join(base, 'bin'));
  fs.symlinkSync(BIN.pmjq, path.join(base, 'bin', 'pmjq'));
  const inbox = path.join(base, 'inbox');
  fs.mkdirSync(inbox);
  const { dir, tree, host } = setup(t, {}, { PATH: `${path.join(base, 'bin')}:${process.env.PATH}`, INBOX: inbox });
  // `import … from 'pmjq/job'` resolves through a node_modules above the script
  fs.mkdirSync(path.join(tree, 'node_modules'));
  fs.symlinkSync(ROOT, path.join(tree, 'node_modules', 'pmjq'));
  for (const [name, body] of examples) writeScript(tree, name, body);
  const run = async (name: string, args: string[] = []): Promise<string> => {
    const job = host.startTop(path.join(tree, name), args);
    const t0 = Date.now();
    const ended = await host.ended(job.id, 60_000);
    t.comment(`${name}: ${Date.now() - t0} ms`);
    const log = host.jobLog(job.id);
    t.equal(ended.end?.exitCode, 0, `${name} ${args.join(' ')}: exit 0`, { log });
    return log;
  };

  const data = path.join(dir, 'data');
  fs.mkdirSync(data);
  const files = ['a.txt', 'b c.txt', "it's €.txt"].map((f) => path.join(data, f));
  for (const f of files) fs.writeFileSync(f, `content of ${f}\n`.repeat(100));
  t.match(await run('compress', files), /I\x1f3 files compressed, 0 failed/);
  t.ok(files.every((f) => fs.existsSync(`${f}.gz`)), 'sh: every file was compressed by a sub-job');

  const squares = await run('squares');
  t.match(squares, /^total 14$/m, 'Python: 1 + 4 + 9 came back as messages');
  t.match(squares, /I\x1f3 squared is 9/);

  const race = await run('race');
  t.match(race, /I\x1fgot: data from near/, 'Perl: the near mirror answered first');
  t.match(race, /I\x1f\S+ killed by signal 15$/m, '… and the far one was killed (exit code -15, as chaqum 0.16 answers)');

  writeScript(tree, 'convert', '#!/bin/sh\ntouch "$1.done"\n');
  for (const f of ['one.wav', 'two.wav', 'notes.txt']) fs.writeFileSync(path.join(inbox, f), '');
  await run('scan.mjs', ['--init']);
  t.same(host.protocol.listRepeats().map((r) => [path.basename(r.script), r.schedule]), [['scan.mjs', 'every 30s0m0h0d0w']], 'JavaScript: --init registered a repeat every 30 s');
  t.match(await run('scan.mjs'), /I\x1f2 files converted/);
  t.same(fs.readdirSync(inbox).filter((f) => f.endsWith('.done')).sort(), ['one.wav.done', 'two.wav.done'], 'each .wav was converted in a sub-job');
});
