// package.json admits Node from its "engines" minimum up; every installed
// package must admit it too, or `npm ci` warns (EBADENGINE) and the package
// may use what that Node lacks. Found once: fastify → light-my-request →
// cookie@2 declares node >= 22; package.json overrides it with cookie 1.1,
// which has the same stringifySetCookie and admits Node 18 — the second test
// checks light-my-request still encodes cookies with it.

import fs from 'node:fs';
import path from 'node:path';
import semver from 'semver';
import t from 'tap';
import { ROOT, readJson } from '../helpers/helpers.js';

interface Pkg { name?: string; version?: string; engines?: { node?: string } }

/** The lowest Node version of each alternative of a range: '^20.19.0 || ^22.12.0 || >=23' → 20.19.0, 22.12.0, 23.0.0. */
function lowestOfEach(range: string): string[] {
  return range.split('||').map((r) => semver.minVersion(r.trim())?.version).filter((v): v is string => v !== undefined);
}

/** Every package.json under node_modules (nested node_modules too), by path. */
function installed(dir: string, out: Map<string, Pkg> = new Map()): Map<string, Pkg> {
  let entries: fs.Dirent[];
  try { entries = fs.readdirSync(dir, { withFileTypes: true }); } catch { return out; }
  for (const e of entries) {
    if (e.name.startsWith('.') || !(e.isDirectory() || e.isSymbolicLink())) continue;
    const p = path.join(dir, e.name);
    if (e.name.startsWith('@')) { installed(p, out); continue; }
    const pj = path.join(p, 'package.json');
    if (fs.existsSync(pj)) out.set(path.relative(ROOT, p), readJson<Pkg>(pj));
    installed(path.join(p, 'node_modules'), out);
  }
  return out;
}

const project = readJson<Pkg & { overrides?: unknown }>(path.join(ROOT, 'package.json'));

t.test("every installed package admits the lowest Node of each of package.json's engines ranges", async (t) => {
  const range = project.engines?.node;
  if (!t.ok(range, 'package.json declares engines.node')) return;
  const minimums = lowestOfEach(range!);
  t.ok(minimums.includes('20.19.0'), `the minimums are ${minimums.join(', ')}`);
  const pkgs = installed(path.join(ROOT, 'node_modules'));
  t.ok(pkgs.size > 100, `${pkgs.size} installed packages read`);
  const excluding: string[] = [];
  for (const [where, p] of pkgs) {
    const wants = p.engines?.node;
    if (typeof wants !== 'string') continue;
    for (const v of minimums) {
      if (!semver.satisfies(v, wants)) excluding.push(`${where} (${p.name}@${p.version}) wants node ${wants}, which excludes ${v}`);
    }
  }
  t.same(excluding, [], 'no installed package excludes a Node version package.json admits');
});

t.test('light-my-request (fastify.inject) encodes cookies with the cookie version installed', async (t) => {
  const { default: Fastify } = await import('fastify');
  const app = Fastify();
  app.get('/', async (req) => ({ cookie: req.headers.cookie ?? null }));
  const r = await app.inject({ method: 'GET', url: '/', cookies: { a: 'one two', b: '2' } });
  await app.close();
  t.same(r.json(), { cookie: 'a=one%20two; b=2' }, 'both cookies, encoded');
});
