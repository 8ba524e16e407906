// Bundles pmjqctl (dist/cli/pmjqctl.js, tsc's output) into one CommonJS file,
// dist/cli/pmjqctl.cjs, the `pmjqctl` that package.json installs. A submit
// from a loop or a Makefile pays pmjqctl's start-up every time: as ES
// modules, resolving, reading and linking its dozen modules took 15 ms over
// Node's own start; as one CommonJS file, 3 ms (`npm run bench`, figure 8).
// Packages stay outside (yargs and fastify are loaded by the verbs that need
// them), and so do the worker threads' modules (files of their own in dist/).
//
// Its first lines are a shell script that execs Node on the file without
// NODE_EXTRA_CA_CERTS: Node parses that bundle of certificates at every
// start, before any code runs (40 ms for a system's whole bundle, where a
// proxy makes it set), and pmjqctl opens no TLS connection. Node reads the
// shell line as a string and a comment: the file is both.
// Run after tsc: `npm run build`, `npm test`, and npm's prepare do.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const out = path.join(root, 'dist/cli/pmjqctl.cjs');

// import.meta.url, which CommonJS lacks, becomes the URL each module had in
// dist/, made from the bundle's own: the paths modules make from it
// (../package.json, ../../libexec/pmjq-spawn, ./hang-guard-worker.js) lead
// where they did
const moduleUrls = {
  name: 'module-urls',
  setup(b) {
    b.onLoad({ filter: /\.js$/ }, async (args) => {
      const rel = path.relative(path.dirname(out), args.path);
      const src = await fs.promises.readFile(args.path, 'utf8');
      return { contents: src.replaceAll('import.meta.url', `new URL(${JSON.stringify(rel)}, __bundleUrl).href`), loader: 'js' };
    });
  },
};
const { outputFiles } = await build({
  entryPoints: [path.join(root, 'dist/cli/pmjqctl.js')],
  outfile: out,
  write: false,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  packages: 'external',
  plugins: [moduleUrls],
  banner: { js: "const __bundleUrl = require('node:url').pathToFileURL(__filename).href;" },
  logLevel: 'warning',
});

const HEADER = [
  '#!/bin/sh',
  `':' //; unset NODE_EXTRA_CA_CERTS; exec node "$0" "$@"`,
  "'use strict';", // (still the directive prologue: the line above is a string too)
  '',
].join('\n');
const code = outputFiles[0].text.replace(/^#!.*\n/, '');
// written beside, then renamed: a pmjqctl running now keeps the file it started
fs.writeFileSync(`${out}.new`, HEADER + code, { mode: 0o755 });
fs.renameSync(`${out}.new`, out);
