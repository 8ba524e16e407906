// Bundles each command (dist/cli/NAME.js, tsc's output) into one CommonJS
// file, dist/cli/NAME.cjs, the pmjq, pmjqctl and chaqum that package.json
// installs. Start-up is paid by every submit from a loop or a Makefile and by
// every `pmjq --once`: as ES modules, resolving, reading and linking them
// took most of it (a plain `pmjqctl submit` 36 ms over Node's own start,
// `pmjq --version` 85); as one CommonJS file, 12 and 57 (`npm run bench`,
// figures 1 and 8).
//
// Packages stay outside, loaded when needed (execa by hooks, cron-parser by
// `repeat -c`, fastify and prom-client by `pmjqctl serve`, yargs by pmjqctl's verbs but a
// plain submit), except yargs in pmjq and chaqum, which parse their command
// line with it every time. The worker threads' modules stay files of their
// own in dist/.
//
// Each file's first lines are a shell script that execs Node on it with
// NODE_EXTRA_CA_CERTS moved aside: Node reads and parses that bundle of
// certificates at every start, before any code runs (40 ms for a system's
// whole bundle, which proxies make people set), and these commands open no
// TLS connection. Node reads the shell line as a string and a comment: the
// file is both. The first thing the JavaScript does is put the variable back,
// for what the commands start (jobs given it by --env, hooks).
// Run after tsc: `npm run build`, `npm test`, and npm's prepare do.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(root, 'dist/cli');

const SAVED = 'PMJQ_NODE_EXTRA_CA_CERTS';
const HEADER = [
  '#!/bin/sh',
  // (a ${SAVED} of the caller's own is dropped: only what was moved aside comes back)
  `':' //; unset ${SAVED}; if [ "\${NODE_EXTRA_CA_CERTS+set}" ]; then export ${SAVED}="$NODE_EXTRA_CA_CERTS"; unset NODE_EXTRA_CA_CERTS; fi; exec node "$0" "$@"`,
  "'use strict';", // (still the directive prologue: the line above is a string too)
  `if (process.env.${SAVED} !== undefined) { process.env.NODE_EXTRA_CA_CERTS = process.env.${SAVED}; delete process.env.${SAVED}; }`,
  "const __bundleUrl = require('node:url').pathToFileURL(__filename).href;",
  '',
].join('\n');

// import.meta.url, which CommonJS lacks, becomes the URL each module had,
// made from the bundle's own: the paths modules make from it
// (../package.json, ../../libexec/pmjq-spawn, ./hang-guard-worker.js) and the
// packages they require lead where they did
const moduleUrls = (out) => ({
  name: 'module-urls',
  setup(b) {
    b.onLoad({ filter: /\.m?js$/ }, async (args) => {
      const rel = path.relative(path.dirname(out), args.path);
      const src = await fs.promises.readFile(args.path, 'utf8');
      return { contents: src.replaceAll('import.meta.url', `new URL(${JSON.stringify(rel)}, __bundleUrl).href`), loader: 'js' };
    });
  },
});

const LAZY = ['execa', 'cron-parser', 'fastify', 'prom-client'];
const COMMANDS = { pmjq: LAZY, pmjqctl: [...LAZY, 'yargs', 'yargs/*'], chaqum: LAZY };

for (const [name, external] of Object.entries(COMMANDS)) {
  const out = path.join(cli, `${name}.cjs`);
  const { outputFiles } = await build({
    entryPoints: [path.join(cli, `${name}.js`)],
    outfile: out,
    write: false,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    external,
    plugins: [moduleUrls(out)],
    logLevel: 'warning',
  });
  const code = outputFiles[0].text.replace(/^#!.*\n/, '');
  // written beside, then renamed: a command running now keeps the file it started
  fs.writeFileSync(`${out}.new`, HEADER + code, { mode: 0o755 });
  fs.renameSync(`${out}.new`, out);
}
