// Issue 5, the shared-filesystem corner cases that a real cluster hits only
// by chance, reproduced at unit level on the built modules (dist/) with
// node:fs mocked:
// - NFS: a rename whose reply was lost is retransmitted and reports ENOENT
//   although the first transmission succeeded (pmjq(5) "Claim"): the claim
//   must see that the file arrived and keep it, not drop it (the job would
//   then sit in a claimed area with nobody running it).
// - NFS/FUSE: a heartbeat being replaced (renamed over) can fail a stat, or
//   be missed by readdir, for an instant: its node must not be taken for
//   dead because of that (membership falls back to the node's claimed area,
//   whose mtime is old while a long job runs).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import type { Candidate } from '../../src/spool/candidate.js';
import { ROOT } from '../helpers/helpers.js';

const dist = (p: string): string => path.join(ROOT, 'dist', p);

function tmp(t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pmjq-cluster-unit-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const enoent = (p: unknown): NodeJS.ErrnoException =>
  Object.assign(new Error(`ENOENT: no such file or directory, rename '${String(p)}'`), { code: 'ENOENT', errno: -2, syscall: 'rename' });

/** node:fs with renameSync replaced for the renames `lost(src)` picks: done, but reported as ENOENT (a retransmission's answer). */
function lostReplyFs(lost: (src: string) => boolean): { mock: Record<string, unknown>; lostCount: () => number } {
  let n = 0;
  const renameSync = (src: fs.PathLike, dst: fs.PathLike): void => {
    fs.renameSync(src, dst);
    if (lost(String(src))) { n++; throw enoent(src); }
  };
  const patched = { ...fs, renameSync };
  return { mock: { 'node:fs': { ...patched, default: patched } }, lostCount: () => n };
}

/** how the daemon classifies what it claimed: root files allowed (the test's files are root's under CI) */
const CTX = { asRoot: process.getuid?.() === 0, allowRoot: true };

interface ClaimModule {
  claimFromSpool(layout: unknown, node: string, id: string, c: Candidate, now: Date, ctx: typeof CTX): { id: string; dir: string | null; file: string; log: string; meta: { attempt: number } } | null;
  claimFromRetry(layout: unknown, node: string, c: Candidate, now: Date, ctx: typeof CTX): { id: string; dir: string; file: string; meta: { attempt: number; node: string } } | null;
}

async function setup(t: Test, lost: (src: string) => boolean): Promise<{ spool: string; layout: { claimed(n: string): string; retry: string; create(n: string): void }; claim: ClaimModule; lostCount: () => number }> {
  const spool = tmp(t);
  const { Layout } = await import(dist('spool/layout.js')) as { Layout: new (s: string) => { claimed(n: string): string; retry: string; create(n: string): void } };
  const layout = new Layout(spool);
  layout.create('nodeA');
  const { mock, lostCount } = lostReplyFs(lost);
  const claim = await t.mockImport<ClaimModule>(dist('spool/claim.js'), mock);
  return { spool, layout, claim, lostCount };
}

function candidate(spool: string, name: string): Candidate {
  const st = fs.statSync(path.join(spool, name));
  return {
    group: 'default', dir: '', name: Buffer.from(name), key: name, orderMs: st.mtimeMs, mtimeMs: st.mtimeMs, size: st.size, seenUid: st.uid,
    seenAt: Date.now(), gone: false, listed: 0,
  };
}

t.test('claim from the spool: a rename that succeeded but reported ENOENT (NFS retransmission) is a claim', async (t) => {
  const { spool, layout, claim, lostCount } = await setup(t, (src) => src.endsWith('/job1'));
  fs.writeFileSync(path.join(spool, 'job1'), '#!/bin/sh\n', { mode: 0o755 });
  const job = claim.claimFromSpool(layout, 'nodeA', 'ID1', candidate(spool, 'job1'), new Date(), CTX);
  t.equal(lostCount(), 1, 'the rename of the job file did report ENOENT');
  t.ok(job, 'the claim returns the job, not null');
  t.equal(job?.file, path.join(layout.claimed('nodeA'), '@', 'job1'), 'at its place in the claimed area, under its own name');
  t.ok(fs.existsSync(job!.file), 'the job file is there');
  t.equal(job?.log, path.join(layout.claimed('nodeA'), '@', '.job1=ID1.log'), 'with its log, whose name holds its id');
  t.ok(fs.existsSync(job!.log), 'made before the rename');
  t.notOk(fs.existsSync(path.join(spool, 'job1')), 'and gone from the spool');
});

t.test('claim from the spool: a real ENOENT (another node was first) is no claim, and leaves nothing behind', async (t) => {
  const { spool, layout, claim } = await setup(t, () => false);
  fs.writeFileSync(path.join(spool, 'job2'), '#!/bin/sh\n', { mode: 0o755 });
  const c = candidate(spool, 'job2');
  fs.renameSync(path.join(spool, 'job2'), path.join(spool, '.taken-elsewhere'));
  const job = claim.claimFromSpool(layout, 'nodeA', 'ID2', c, new Date(), CTX);
  t.equal(job, null, 'null: not ours');
  t.same(fs.readdirSync(path.join(layout.claimed('nodeA'), '@')), [], 'no log is left behind');
});

t.test('claim from retry/: a rename that succeeded but reported ENOENT is a claim', async (t) => {
  const { spool, layout, claim, lostCount } = await setup(t, (src) => path.basename(src) === '1000.ID3');
  const entry = path.join(layout.retry, '1000.ID3');
  fs.mkdirSync(entry);
  const meta = { id: 'ID3', name: 'job3', file: 'job3', group: 'default', dir: '', owner: 0, created: new Date().toISOString(), claimed: new Date().toISOString(), node: 'dead', attempt: 2, parent: null };
  fs.writeFileSync(path.join(entry, '.job.json'), JSON.stringify(meta));
  fs.writeFileSync(path.join(entry, 'job3'), '#!/bin/sh\n', { mode: 0o755 });
  const c: Candidate = { group: 'default', dir: '', name: Buffer.from('job3'), key: 'job3', orderMs: 1000, mtimeMs: 0, size: 0, seenUid: 0, seenAt: Date.now(), gone: false, listed: 0, retry: { entry: '1000.ID3', meta, dueMs: 1000 } };
  const job = claim.claimFromRetry(layout, 'nodeA', c, new Date(), CTX);
  t.equal(lostCount(), 1, 'the rename of the retry entry did report ENOENT');
  t.ok(job, 'the claim returns the job');
  t.equal(job?.meta.attempt, 2, 'with its attempt');
  t.equal(job?.meta.node, 'nodeA', 'now ours');
  t.ok(fs.existsSync(path.join(layout.claimed('nodeA'), 'ID3', 'job3')), 'the job is in our claimed area');
  t.notOk(fs.existsSync(entry), 'and gone from retry/');
  void spool;
});

interface MembershipModule {
  Membership: new (layout: unknown, me: string, leaseMs: number) => { stale(fsNow: number): string[] };
}

/** A spool where node `other` (another host) runs a long job: its claimed area is an hour old, its heartbeat fresh. */
async function membershipSetup(t: Test, fsMock: (real: typeof fs) => Partial<typeof fs>): Promise<{ stale: () => string[]; beat: string }> {
  const spool = tmp(t);
  const { Layout } = await import(dist('spool/layout.js')) as { Layout: new (s: string) => { claimed(n: string): string; heartbeat(n: string): string; create(n: string): void } };
  const layout = new Layout(spool);
  const other = 'otherhost.4242.1700000000';
  layout.create('me.1.1');
  layout.create(other);
  fs.mkdirSync(path.join(layout.claimed(other), 'JOB'));
  const hourAgo = new Date(Date.now() - 3_600_000);
  fs.utimesSync(layout.claimed(other), hourAgo, hourAgo);
  const beat = layout.heartbeat(other);
  fs.writeFileSync(beat, '{}');
  fs.writeFileSync(layout.heartbeat('me.1.1'), '{}');
  const patched = { ...fs, ...fsMock(fs) };
  const { Membership } = await t.mockImport<MembershipModule>(dist('cluster/membership.js'), { 'node:fs': { ...patched, default: patched } });
  const m = new Membership(layout, 'me.1.1', 60_000);
  return { stale: () => m.stale(fs.statSync(layout.heartbeat('me.1.1')).mtimeMs), beat };
}

t.test('membership: a heartbeat that fails a stat for an instant (being renamed over) does not make its node stale', async (t) => {
  let fail = 1;
  let beatPath = '';
  const { stale, beat } = await membershipSetup(t, (real) => ({
    statSync: ((p: fs.PathLike, o?: fs.StatSyncOptions) => {
      if (String(p) === beatPath && fail-- > 0) throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
      return real.statSync(p, o);
    }) as typeof fs.statSync,
  }));
  beatPath = beat;
  t.same(stale(), [], 'not stale while its heartbeat could not be looked at');
  t.same(stale(), [], 'nor when it can (it is fresh)');
  const hourAgo = new Date(Date.now() - 3_600_000);
  fs.utimesSync(beat, hourAgo, hourAgo);
  t.same(stale(), ['otherhost.4242.1700000000'], 'stale once its heartbeat is really older than the lease');
});

t.test('membership: a heartbeat that readdir misses (being renamed over) is looked up by name', async (t) => {
  let miss = 1;
  let nodesDir = '';
  const { stale, beat } = await membershipSetup(t, (real) => ({
    readdirSync: ((p: fs.PathLike, o?: unknown) => {
      const l = real.readdirSync(p, o as undefined) as string[];
      return String(p) === nodesDir && miss-- > 0 ? l.filter((n) => n.startsWith('me.')) : l;
    }) as typeof fs.readdirSync,
  }));
  nodesDir = path.dirname(beat);
  t.same(stale(), [], 'not stale: its fresh heartbeat is found by name, its hour-old claimed area is not what counts');
});
