#!/usr/bin/env node
// chaqum(1): the job-tree front-end arrives with the protocol issue; until
// then it says so plainly.

import { VERSION } from '../version.js';
import { EXIT_USAGE } from './common.js';

const arg = process.argv[2];
if (arg === '--version' || arg === '-V') {
  process.stdout.write(`${VERSION}\n`);
  process.exit(0);
}
const usage = 'Usage: chaqum [-e ENTRY] [-l console|syslog] [-v] DIR [ARG...]\n';
if (arg === '--help' || arg === '-h') {
  process.stdout.write(usage + 'Not implemented in this version yet; see chaqum(1).\n');
  process.exit(0);
}
process.stderr.write(`chaqum: not implemented in version ${VERSION} yet\n${usage}`);
process.exit(EXIT_USAGE);
