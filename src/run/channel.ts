// The command channel of a job process: lines from the job on fd 3, answers
// to it on fd 4 (pmjq-protocol(7)). One command is handled at a time, in order, and
// fd 3 is not read while a command is being answered, so a job that floods
// fd 3 is held back by the pipe rather than by our memory. Every buffer here
// has a bound.

import type { Readable, Writable } from 'node:stream';
import type { Logger } from '../util/log.js';

/** Longest command line accepted; longer lines are discarded and answered with E. */
export const MAX_LINE = 64 * 1024;
/** Answers a job has not read yet, before we stop answering it. */
export const MAX_UNREAD = 1024 * 1024;

export interface ChannelIO {
  /** read exactly n bytes that follow the current line (sendmsg payloads); null at end of input */
  readBytes(n: number): Promise<Buffer | null>;
  /** discard input up to and including the next newline (resynchronising after a bad payload); false at end of input */
  discardLine(): Promise<boolean>;
}

/** Turns one command line into one answer line (without the newline). */
export type CommandHandler = (line: string, io: ChannelIO) => Promise<string | Buffer> | string | Buffer;

export class CommandChannel implements ChannelIO {
  private buf: Buffer = Buffer.alloc(0);
  private readonly chunks: AsyncIterator<Buffer>;
  private closed = false;

  constructor(
    private readonly input: Readable,
    private readonly output: Writable,
    private readonly handler: CommandHandler,
    private readonly log: Logger,
    private readonly jobId: string,
  ) {
    this.chunks = input[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    // errors (EPIPE when the job closed fd 4, ECONNRESET) end the channel, never the daemon
    input.on('error', () => this.close());
    output.on('error', () => this.close());
    void this.loop();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.input.destroy();
    this.output.destroy();
  }

  private async loop(): Promise<void> {
    try {
      for (;;) {
        const line = await this.readLine();
        if (line === null) break;
        let answer: string | Buffer;
        if (line === 'too-long') {
          this.log.warn('protocol-error', { id: this.jobId, error: `command line longer than ${MAX_LINE} bytes discarded` });
          answer = 'E line too long';
        } else {
          try {
            answer = await this.handler(line.toString('utf8'), this);
          } catch (err) {
            this.log.warn('protocol-error', { id: this.jobId, error: (err as Error).message });
            answer = `E ${(err as Error).message.replace(/\n/g, ' ')}`;
          }
        }
        if (!this.answer(answer)) break;
      }
    } catch {
      /* the job went away mid-line: nothing to answer */
    }
    this.close();
  }

  private answer(answer: string | Buffer): boolean {
    if (this.closed) return false;
    if (this.output.writableLength > MAX_UNREAD) {
      this.log.warn('protocol-error', { id: this.jobId, error: `job does not read its answers on fd 4 (${MAX_UNREAD} bytes unread); channel closed` });
      return false;
    }
    this.output.write(typeof answer === 'string' ? answer + '\n' : Buffer.concat([answer, NL]));
    return true;
  }

  private async more(): Promise<boolean> {
    if (this.closed) return false;
    const r = await this.chunks.next();
    if (r.done) return false;
    this.buf = this.buf.length === 0 ? r.value : Buffer.concat([this.buf, r.value]);
    return true;
  }

  private async readLine(): Promise<Buffer | 'too-long' | null> {
    let from = 0;
    for (;;) {
      const nl = this.buf.indexOf(10, from);
      if (nl >= 0) {
        if (nl > MAX_LINE) { this.buf = this.buf.subarray(nl + 1); return 'too-long'; }
        const line = this.buf.subarray(0, nl);
        this.buf = this.buf.subarray(nl + 1);
        return line;
      }
      if (this.buf.length > MAX_LINE) {
        // discard the rest of an overlong line as it arrives, keeping nothing
        for (;;) {
          this.buf = Buffer.alloc(0);
          if (!(await this.more())) return null;
          const end = this.buf.indexOf(10);
          if (end >= 0) { this.buf = this.buf.subarray(end + 1); return 'too-long'; }
        }
      }
      from = this.buf.length;
      if (!(await this.more())) return null; // a partial last line is dropped
    }
  }

  async readBytes(n: number): Promise<Buffer | null> {
    while (this.buf.length < n) if (!(await this.more())) return null;
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  async discardLine(): Promise<boolean> {
    for (;;) {
      const nl = this.buf.indexOf(10);
      if (nl >= 0) { this.buf = this.buf.subarray(nl + 1); return true; }
      this.buf = Buffer.alloc(0);
      if (!(await this.more())) return false;
    }
  }
}

const NL = Buffer.from('\n');
