// `pmjqctl logs`: a job's output wherever it is — in the claimed area of
// the node running it, in the retry area, or where its record says after it
// finished (the archive, or .pmjq/done). `-f` follows a running job by
// polling the file (re-opened every time: on NFS a file another node
// appends to is only seen fresh on open), and when the job ends, reads the
// rest from where the log was moved.

import fs from 'node:fs';
import path from 'node:path';
import { LOG_FILE, type Layout } from '../spool/layout.js';
import { recordPath, type JobRecord } from '../spool/record.js';
import { CtlError, q } from './errors.js';
import { describe, locate } from './find.js';
import { paint, type Style } from './format.js';
import { recordsOf } from './history.js';

export interface Sink {
  write(data: string | Buffer): Promise<void>;
}

/** A sink on a stream that waits when the reader is slow (a pager). */
export function streamSink(stream: NodeJS.WritableStream): Sink {
  return {
    write: (data) => new Promise((resolve, reject) => {
      if (data.length === 0) { resolve(); return; }
      stream.write(data, (err) => (err ? reject(err) : resolve()));
    }),
  };
}

const LEVELS: Record<string, { name: string; colour?: 'red' | 'yellow' | 'dim' }> = {
  C: { name: 'critical', colour: 'red' },
  D: { name: 'debug', colour: 'dim' },
  E: { name: 'error', colour: 'red' },
  I: { name: 'info' },
  W: { name: 'warning', colour: 'yellow' },
};
const US = 0x1f;

/**
 * Log levels for people: a line `X<0x1F>text` with X one of C D E I W
 * becomes `[critical] text` (`[debug]`, `[error]`, `[info]`, `[warning]`).
 * Lines are rendered whole; a partial last line waits for its end (or end()).
 */
export class LevelRenderer {
  private pending: Buffer = Buffer.alloc(0);

  constructor(private readonly sink: Sink, private readonly style: Style, private readonly raw = false) {}

  async push(chunk: Buffer): Promise<void> {
    if (this.raw) return this.sink.write(chunk);
    const buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    const last = buf.lastIndexOf(0x0a);
    if (last < 0) { this.pending = buf; return; }
    this.pending = Buffer.from(buf.subarray(last + 1));
    await this.sink.write(this.render(buf.subarray(0, last + 1)));
  }

  async end(): Promise<void> {
    if (this.pending.length) await this.sink.write(this.render(this.pending));
    this.pending = Buffer.alloc(0);
  }

  private render(lines: Buffer): Buffer {
    // fast path: no unit separator at all
    if (lines.indexOf(US) < 0) return lines;
    const parts: Buffer[] = [];
    let start = 0;
    while (start < lines.length) {
      let end = lines.indexOf(0x0a, start);
      end = end < 0 ? lines.length : end + 1;
      const line = lines.subarray(start, end);
      const lv = line.length >= 2 && line[1] === US ? LEVELS[String.fromCharCode(line[0]!)] : undefined;
      if (lv) {
        parts.push(Buffer.from(paint(this.style, lv.colour, `[${lv.name}]`) + ' '), line.subarray(2));
      } else {
        parts.push(line);
      }
      start = end;
    }
    return Buffer.concat(parts);
  }
}

const CHUNK = 256 * 1024;

/** Append what `file` holds beyond `offset`; returns the new offset (unchanged when the file is missing). */
export async function readFrom(file: string | Buffer, offset: number, r: LevelRenderer): Promise<number> {
  let fd: number;
  try { fd = fs.openSync(file, 'r'); } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return offset;
    throw err;
  }
  try {
    const buf = Buffer.allocUnsafe(CHUNK);
    for (;;) {
      const n = fs.readSync(fd, buf, 0, CHUNK, offset);
      if (n <= 0) return offset;
      offset += n;
      await r.push(Buffer.from(buf.subarray(0, n)));
    }
  } finally {
    fs.closeSync(fd);
  }
}

export interface LogsOptions {
  follow?: boolean;
  raw?: boolean;
  /** how often a followed log is polled */
  pollMs?: number;
  style: Style;
  sink: Sink;
  /** for -f: stop waiting when this resolves (SIGINT) */
  stop?: Promise<void>;
}

const sleep = (ms: number, stop?: Promise<void>): Promise<void> =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    void stop?.then(() => { clearTimeout(t); resolve(); });
  });

export async function logs(layout: Layout, id: string, o: LogsOptions): Promise<{ state: string; record: JobRecord | null }> {
  const where = locate(layout, id);
  if (!where) throw new CtlError(`no job ${q(id)} in ${q(layout.spool)} (not running, not waiting for a retry, not in the history)`);
  const r = new LevelRenderer(o.sink, o.style, o.raw);
  switch (where.state) {
    case 'rejected':
      throw new CtlError(`job ${q(id)} in ${q(layout.spool)} was ${describe(where)}: it never ran and has no output`);
    case 'finished': {
      const log = recordPath(where.record, 'log');
      if (log === null) throw new CtlError(`job ${q(id)} in ${q(layout.spool)} has no log (${describe(where)}; it wrote nothing or never started)`);
      if (!fs.existsSync(log)) throw new CtlError(`the log of job ${q(id)}, ${q(where.record.log!)}, no longer exists (removed by the --keep retention, or by hand)`);
      await readFrom(log, 0, r);
      await r.end();
      return { state: where.record.status, record: where.record };
    }
    case 'retrying':
      await readFrom(path.join(where.dir, LOG_FILE), 0, r);
      await r.end();
      return { state: 'retrying', record: null };
    case 'running': {
      const logPath = where.log;
      let offset = await readFrom(logPath, 0, r);
      if (!o.follow) { await r.end(); return { state: 'running', record: null }; }
      const attempt = where.meta?.attempt;
      let stopped = false;
      void o.stop?.then(() => { stopped = true; });
      const poll = o.pollMs ?? 250;
      while (!stopped) {
        await sleep(poll, o.stop);
        offset = await readFrom(logPath, offset, r);
        if (fs.existsSync(where.dir)) continue;
        // it ended (or was put back for a retry): the rest is where its record says
        const rec = await recordOfAttempt(layout, id, attempt, o.stop);
        const log = rec && recordPath(rec, 'log');
        if (log) offset = await readFrom(log, offset, r);
        await r.end();
        return { state: rec?.status ?? 'ended', record: rec };
      }
      await r.end();
      return { state: 'running', record: null };
    }
  }
}

/** The record of the attempt that just ended: written before its claimed directory is removed, so at most a moment away. */
async function recordOfAttempt(layout: Layout, id: string, attempt: number | undefined, stop?: Promise<void>): Promise<JobRecord | null> {
  const end = Date.now() + 5000;
  for (;;) {
    const recs = recordsOf(layout, id).filter((x) => attempt === undefined || x.attempt === attempt);
    if (recs.length) return recs[recs.length - 1]!;
    if (Date.now() > end) return null;
    await sleep(100, stop);
  }
}
