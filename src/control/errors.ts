// Errors of pmjqctl operations. A CtlError is an operation that failed (an
// unknown id, a job in the wrong state): one line, exit status 1. Usage
// errors (exit 2) are the front-end's UsageError.

export class CtlError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
  }
}

/** A name as an operator typed it, quoted for an error line (control characters escaped). */
export function q(s: string): string {
  return `'${printable(s)}'`;
}

/** Control characters (newline, tab, escape…) as visible escapes, so that one value stays on one line. */
export function printable(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\x00-\x1f\x7f\u0085\u2028\u2029]/g, (c) => {
    switch (c) {
      case '\n': return '\\n';
      case '\t': return '\\t';
      case '\r': return '\\r';
      default: return `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`;
    }
  });
}

/** An id or group as typed on the command line: never a path. */
export function checkPlainName(what: string, s: string): void {
  if (s === '' || s === '.' || s === '..' || s.includes('/') || s.includes('\0')) {
    throw new CtlError(`${what} ${q(s)} is not a valid ${what} (no '/', not empty)`, 2);
  }
}
