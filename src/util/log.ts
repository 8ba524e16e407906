// The daemon's log: one line per event on stderr, `key=value` text by default
// or one JSON object per line (--log-format json) for log shippers.

export type Level = 'debug' | 'info' | 'warn' | 'error';
const RANK: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };

export type Fields = Record<string, string | number | boolean | null | undefined>;

export interface LoggerOptions {
  format?: 'text' | 'json';
  /** 0 = info (default), 1+ = debug, -1 = warnings and errors only, -2 = errors only */
  verbosity?: number;
  write?: (line: string) => void;
}

export class Logger {
  private readonly min: number;
  private readonly format: 'text' | 'json';
  private readonly write: (line: string) => void;

  constructor(opts: LoggerOptions = {}) {
    this.format = opts.format ?? 'text';
    const v = opts.verbosity ?? 0;
    this.min = v > 0 ? 0 : v === 0 ? 1 : v === -1 ? 2 : 3;
    this.write = opts.write ?? ((line) => process.stderr.write(line));
  }

  enabled(level: Level): boolean {
    return RANK[level] >= this.min;
  }

  log(level: Level, event: string, fields: Fields = {}): void {
    if (RANK[level] < this.min) return;
    const time = new Date().toISOString();
    if (this.format === 'json') {
      const obj: Record<string, unknown> = { time, level, event };
      for (const [k, v] of Object.entries(fields)) if (v !== undefined) obj[k] = v;
      this.write(JSON.stringify(obj) + '\n');
      return;
    }
    let line = `${time} level=${level} event=${event}`;
    for (const [k, v] of Object.entries(fields)) {
      if (v === undefined) continue;
      line += ` ${k}=${quote(v)}`;
    }
    this.write(line + '\n');
  }

  debug(event: string, fields?: Fields): void { this.log('debug', event, fields); }
  info(event: string, fields?: Fields): void { this.log('info', event, fields); }
  warn(event: string, fields?: Fields): void { this.log('warn', event, fields); }
  error(event: string, fields?: Fields): void { this.log('error', event, fields); }
}

/** Values with spaces, quotes, '=' or control characters are JSON-quoted so a line stays one line. */
function quote(v: string | number | boolean | null): string {
  const s = String(v);
  return s !== '' && /^[^\s"=\\\x00-\x1f\x7f]+$/.test(s) ? s : JSON.stringify(s);
}
