#!/usr/bin/env node
// pmjqctl(1): management of a spool. The verbs arrive with the pmjqctl issue;
// until then this front-end says so plainly instead of pretending.

import { VERSION } from '../version.js';
import { EXIT_USAGE } from './common.js';

const verbs = ['submit', 'status', 'ls', 'logs', 'pause', 'resume', 'kill', 'retry', 'run', 'serve'];
const arg = process.argv[2];
if (arg === '--version' || arg === '-V') {
  process.stdout.write(`${VERSION}\n`);
  process.exit(0);
}
const usage = `Usage: pmjqctl <verb> SPOOL ...\nVerbs: ${verbs.join(', ')}\n`;
if (arg === undefined || arg === '--help' || arg === '-h') {
  process.stdout.write(usage + 'No verb is implemented in this version yet; see pmjqctl(1).\n');
  process.exit(arg === undefined ? EXIT_USAGE : 0);
}
process.stderr.write(verbs.includes(arg)
  ? `pmjqctl: '${arg}' is not implemented in version ${VERSION} yet\n`
  : `pmjqctl: unknown verb '${arg}'\n${usage}`);
process.exit(EXIT_USAGE);
