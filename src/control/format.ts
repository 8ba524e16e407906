// Output for people: aligned tables, human durations, colours only on a
// terminal (and never with NO_COLOR set, https://no-color.org).

import { formatDuration } from '../util/duration.js';
import { printable } from './errors.js';

export type Colour = 'red' | 'green' | 'yellow' | 'blue' | 'magenta' | 'cyan' | 'dim' | 'bold';

const CODES: Record<Colour, [number, number]> = {
  red: [31, 39], green: [32, 39], yellow: [33, 39], blue: [34, 39], magenta: [35, 39], cyan: [36, 39], dim: [2, 22], bold: [1, 22],
};

export interface Style {
  colour: boolean;
}

/** Colours when `stream` is a terminal and NO_COLOR is unset or empty. */
export function styleFor(stream: { isTTY?: boolean }): Style {
  const noColor = process.env.NO_COLOR;
  return { colour: Boolean(stream.isTTY) && (noColor === undefined || noColor === '') };
}

export function paint(style: Style, colour: Colour | undefined, text: string): string {
  if (!style.colour || colour === undefined || text === '') return text;
  const [on, off] = CODES[colour];
  return `\x1b[${on}m${text}\x1b[${off}m`;
}

export interface Cell {
  text: string;
  colour?: Colour;
}

export type CellLike = Cell | string | number | null | undefined;

function cell(c: CellLike): Cell {
  if (c === null || c === undefined) return { text: '-' };
  if (typeof c === 'object') return { ...c, text: printable(c.text) };
  return { text: printable(String(c)) };
}

/** Display width: code points (wide characters count one; good enough for names). */
function width(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/**
 * An aligned table: a header line and one line per row, columns separated by
 * two spaces; columns named in `right` are right-aligned (numbers). The last
 * column is not padded.
 */
export function table(style: Style, headers: string[], rows: CellLike[][], right: string[] = []): string {
  const cells = rows.map((r) => r.map(cell));
  const widths = headers.map((h, i) => Math.max(width(h), ...cells.map((r) => width(r[i]?.text ?? ''))));
  const line = (cols: Cell[], header: boolean): string => cols.map((c, i) => {
    const pad = ' '.repeat(Math.max(0, widths[i]! - width(c.text)));
    const last = i === cols.length - 1;
    const text = header ? paint(style, 'bold', c.text) : paint(style, c.colour, c.text);
    if (right.includes(headers[i]!)) return pad + text;
    return last ? text : text + pad;
  }).join('  ').replace(/\s+$/, '');
  return [line(headers.map((h) => ({ text: h })), true), ...cells.map((r) => line(r, false))].join('\n') + '\n';
}

/** "1.5s", "3m12s", "2h5m"; null → "-". */
export function human(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '-';
  return formatDuration(Math.max(0, ms));
}

/** "3m12s ago". */
export function ago(ms: number | null | undefined): string {
  return ms === null || ms === undefined ? '-' : `${human(ms)} ago`;
}
