// Issue 9, hostile input in the spool (pmjq(5)): thousands of random
// entries dropped into a running daemon — regular files executable or not,
// setuid, group- or world-writable, symlinks, FIFOs, sockets, directories
// inside a group — under random names (any byte 0x01–0xFF but '/', 1 to 255
// bytes, some hidden) and of random sizes. The daemon never crashes, runs
// every acceptable job exactly once, rejects everything else with a record
// and never runs it (each rejected executable writes a marker if it is ever
// run), and leaves non-executables and hidden names alone.
//
// The seed is printed (PMJQ_SEED=N replays it). CI: 2 000 entries; soak: 10 000.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import t from 'tap';
import { BIN, ROOT_ARGS, scratch, start, waitFor } from '../helpers/helpers.js';
import { Ledger, SOAK, prng, seedFor, type Place } from '../helpers/invariants.js';

const ENTRIES = SOAK ? 10_000 : 2_000;
const BATCH = 250;

t.test(`fuzz: ${ENTRIES} random entries of random kinds, names and sizes`, async (t) => {
  const seed = seedFor(t, 'spool fuzz');
  const rnd = prng(seed);
  const { dir, spool, archive } = scratch(t);
  const work = path.join(dir, 'work');
  const markers = path.join(work, 'markers');
  const ran = path.join(work, 'ran');
  fs.mkdirSync(markers, { recursive: true });
  fs.mkdirSync(ran, { recursive: true });
  fs.mkdirSync(path.join(spool, 'g'));
  const l = new Ledger(t, { spool, archive, work });
  const p = start(t, BIN.pmjq, [...ROOT_ARGS, '-j', '4', '--poll', '200ms', '-q', '-o', archive, spool]);
  await waitFor('the daemon up', () => fs.existsSync(path.join(spool, '.pmjq/nodes')) && fs.readdirSync(path.join(spool, '.pmjq/nodes')).length === 1, 30_000);

  const servers: net.Server[] = [];
  t.teardown(() => { for (const s of servers) s.close(); });
  // 'g' is the group directory: a top-level entry of that name would be a rename onto it
  const used = new Set<string>(['g']);
  /** a random name: bytes 0x01–0xFF except '/', 1–255 long; `hidden`: starts with '.' */
  const randomName = (hidden: boolean): Buffer => {
    for (;;) {
      const len = rnd.next() < 0.7 ? rnd.int(1, 24) : rnd.int(25, 255);
      const b = Buffer.alloc(len);
      for (let i = 0; i < len; i++) { let c = rnd.int(1, 255); while (c === 0x2f) c = rnd.int(1, 255); b[i] = c; }
      if (hidden) b[0] = 0x2e; else if (b[0] === 0x2e) b[0] = 0x5f;
      if (b.equals(Buffer.from('.')) || b.equals(Buffer.from('..'))) continue;
      const k = b.toString('latin1');
      if (used.has(k)) continue;
      used.add(k);
      return b;
    }
  };
  const padded = (head: string): string => {
    const size = rnd.next() < 0.8 ? rnd.int(0, 512) : rnd.int(512, 128 * 1024);
    return head + (size > 0 ? `# ${'x'.repeat(size)}\n` : '');
  };
  const counts: Record<string, number> = {};
  let goods = 0;
  let rejects = 0;
  const drop = (i: number): void => {
    const group = rnd.next() < 0.3 ? 'g' : '';
    const where = path.join(spool, group);
    // (runnable jobs are the slow part: one in twelve entries)
    const kind = rnd.pick(['job', 'noexec', 'noexec', 'hidden', 'setuid', 'groupw', 'worldw', 'symlink', 'fifo', 'socket', 'nested'] as const);
    counts[kind] = (counts[kind] ?? 0) + 1;
    const name = kind === 'socket' ? Buffer.from(`sock-${i}`) : randomName(kind === 'hidden');
    const full = Buffer.concat([Buffer.from(where + '/'), name]);
    const bad = `#!/bin/sh\ntouch '${markers}/${i}'\n`;
    const tmp = path.join(where, `.tmp-${i}`);
    const put = (body: string, mode: number, expect: Place): void => {
      fs.writeFileSync(tmp, padded(body), { mode });
      fs.chmodSync(tmp, mode);
      fs.renameSync(tmp, full);
      l.add(group, name, expect);
    };
    switch (kind) {
      case 'job': if (rnd.next() < 0.3) { counts.job!--; counts['empty-exec'] = (counts['empty-exec'] ?? 0) + 1; fs.writeFileSync(tmp, ''); fs.chmodSync(tmp, 0o755); fs.renameSync(tmp, full); l.add(group, name, 'archive'); goods++; return; }
        put(`#!/bin/sh\n${l.recordPid}\necho ran > '${ran}/${i}'\n`, rnd.pick([0o755, 0o700, 0o500, 0o744]), 'archive'); goods++; return;
      case 'noexec': put(bad, rnd.pick([0o644, 0o600, 0o666, 0o400]), 'queued'); return;
      case 'hidden': put(bad, 0o755, 'queued'); return;
      case 'setuid': put(bad, rnd.pick([0o4755, 0o2755, 0o6755]), 'rejected'); rejects++; return;
      case 'groupw': put(bad, 0o775, 'rejected'); rejects++; return;
      case 'worldw': put(bad, rnd.pick([0o757, 0o777]), 'rejected'); rejects++; return;
      case 'symlink': {
        const target = path.join(work, `target-${i}`);
        fs.writeFileSync(target, bad, { mode: 0o755 });
        fs.symlinkSync(target, tmp);
        fs.renameSync(tmp, full);
        l.add(group, name, 'rejected'); rejects++; return;
      }
      case 'fifo': execFileSync('mkfifo', [tmp]); fs.renameSync(tmp, full); l.add(group, name, 'rejected'); rejects++; return;
      case 'socket': {
        const s = net.createServer();
        s.listen(full.toString());
        servers.push(s);
        l.add(group, name, 'rejected'); rejects++; return;
      }
      case 'nested': {
        // a directory inside a group is rejected; at the top level it would be a group
        const d = Buffer.concat([Buffer.from(path.join(spool, 'g') + '/'), name]);
        fs.mkdirSync(d);
        l.add('g', name, 'rejected'); rejects++; return;
      }
    }
  };
  const archivedCount = (): number => fs.readdirSync(archive).filter((f) => f.endsWith('.json')).length;
  const rejectedCount = (): number => fs.readdirSync(path.join(spool, '.pmjq/rejected')).length;
  const t0 = Date.now();
  for (let i = 0; i < ENTRIES; i += BATCH) {
    for (let j = i; j < Math.min(ENTRIES, i + BATCH); j++) drop(j);
    await waitFor(`batch ${i / BATCH + 1}: ${goods} jobs archived, ${rejects} rejected`, () => archivedCount() >= goods && rejectedCount() >= rejects, 300_000);
    if (p.child.exitCode !== null) break;
  }
  t.comment(`${ENTRIES} entries in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  t.equal(p.child.exitCode, null, 'the daemon never crashed');
  t.same(fs.readdirSync(markers), [], 'no rejected or non-executable file was ever run');
  t.equal(fs.readdirSync(ran).length, counts.job ?? 0, 'every acceptable job ran');
  const ms = await l.canary(20_000);
  t.comment(`a fresh job ran ${ms} ms after it was dropped`);
  await waitFor('the canary archived', () => archivedCount() >= goods + 1, 20_000);
  p.kill('SIGTERM');
  t.equal(await p.exited, 0, 'the daemon exits 0');
  t.notMatch(p.stderr(), /level=error/, 'no error logged');
  l.check(t, true);
});
