// Where the client libraries for jobs are installed (pmjq --lib LANG).

import path from 'node:path';
import { fileURLToPath } from 'node:url';

const PKG = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export const LIBS: Record<string, string> = {
  sh: path.join(PKG, 'lib', 'pmjq.sh'),
  python: path.join(PKG, 'lib', 'pmjq.py'),
  perl: path.join(PKG, 'lib', 'Pmjq.pm'),
  js: path.join(PKG, 'dist', 'lib', 'job.js'),
};
