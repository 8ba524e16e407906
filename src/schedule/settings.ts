// Group settings (pmjq(1) GROUPS): from SPOOL/GROUP/.group.json (re-read when it
// changes) and from --group NAME:key=value,… on the command line, which wins
// over the file (it is this node's own configuration). Invalid settings are
// reported naming the file and the field; the group keeps its last good ones.

import fs from 'node:fs';
import path from 'node:path';
import { normaliseCpu } from './barrier.js';
import type { GroupSettings } from './groups.js';
import { parseDuration } from '../util/duration.js';
import { OpenDir } from '../util/open-dir.js';

export const SETTINGS_FILE = '.group.json';
const MAX_SETTINGS_BYTES = 64 * 1024;

export class SettingsError extends Error {
  constructor(readonly field: string | null, message: string) {
    super(field ? `${field}: ${message}` : message);
  }
}

/**
 * How a bad value is named in an error: quoted when it comes from the
 * command line (the operator's own words), by its kind only when it comes
 * from a settings file — a settings error reaches the log, `pmjqctl status`
 * and /api/status, and must never carry a file's contents.
 */
type Show = (v: unknown) => string;
const quoted: Show = (v) => JSON.stringify(v);
const kindOnly: Show = (v) => `the ${v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v} given`;

type Check = (v: unknown, field: string, show: Show) => number;

const integer = (min: number): Check => (v, field, show) => {
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > 1_000_000) {
    throw new SettingsError(field, `${show(v)} is not a whole number from ${min} to 1000000`);
  }
  return n;
};

const positive: Check = (v, field, show) => {
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isFinite(n) || n < 0 || n > 1e6) throw new SettingsError(field, `${show(v)} is not a number from 0 to 1000000`);
  return n;
};

/** Durations: a number of seconds, or a string such as "90s", "5m", "1h30m". Stored in ms. */
const durationMs: Check = (v, field, show) => {
  if (typeof v === 'number') {
    if (!Number.isFinite(v) || v < 0 || v > 1e9) throw new SettingsError(field, `${show(v)} is not a duration in seconds`);
    return Math.round(v * 1000);
  }
  if (typeof v !== 'string') throw new SettingsError(field, `${show(v)} is not a duration`);
  try {
    return parseDuration(v);
  } catch (err) {
    throw new SettingsError(field, show === quoted ? (err as Error).message : `${show(v)} is not a duration (examples: 30, 30s, 5m, 1h30m)`);
  }
};

const FIELDS: Record<keyof GroupSettings, Check> = {
  max: integer(0),
  cluster_max: integer(0),
  load: positive,
  cpu: (v, f, show) => {
    const n = positive(v, f, show);
    if (n > 100) throw new SettingsError(f, `${show(v)} is above 100 (percent)`);
    return normaliseCpu(n);
  },
  timeout: durationMs,
  retries: integer(0),
  backoff: durationMs,
};

export const SETTING_NAMES = Object.keys(FIELDS) as (keyof GroupSettings)[];

/**
 * Validate a parsed settings object; throws SettingsError naming the first
 * bad field. `fromFile`: bad values and unknown keys are described, never
 * quoted (see Show).
 */
export function validateSettings(obj: unknown, fromFile = false): GroupSettings {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
    throw new SettingsError(null, 'settings must be a JSON object such as {"max": 2}');
  }
  const show = fromFile ? kindOnly : quoted;
  const out: GroupSettings = {};
  let i = 0;
  for (const [k, v] of Object.entries(obj)) {
    i++;
    const check = Object.hasOwn(FIELDS, k) ? FIELDS[k as keyof GroupSettings] : undefined;
    if (!check) {
      if (fromFile) throw new SettingsError(null, `key number ${i} is not a setting (known: ${SETTING_NAMES.join(', ')})`);
      throw new SettingsError(k, `unknown setting (known: ${SETTING_NAMES.join(', ')})`);
    }
    if (v === null) continue;
    out[k as keyof GroupSettings] = check(v, k, show);
  }
  return out;
}

/** `NAME:key=value,key=value` from --group. */
export function parseGroupFlag(text: string): { group: string; settings: GroupSettings } {
  const colon = text.indexOf(':');
  if (colon <= 0) throw new SettingsError(null, `'${text}' is not NAME:key=value,… (e.g. convert:max=2,load=1.5)`);
  const group = text.slice(0, colon);
  const obj: Record<string, string> = {};
  for (const pair of text.slice(colon + 1).split(',')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new SettingsError(null, `'${pair}' in '${text}' is not key=value`);
    obj[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return { group, settings: validateSettings(obj) };
}

/** An error with the stamp it is reported under (the same failure is reported once, not on every rescan). */
function failed(stamp: string, message: string): Error {
  return Object.assign(new SettingsError(null, message), { stamp });
}

/**
 * Read a settings file if it changed since `previous` (one lstat per group
 * per rescan, not per job). Returns undefined when unchanged, null when
 * absent, else the validated settings.
 *
 * The file is spool input and pmjq may be root, so it is trusted only as a
 * regular file (never a symbolic link: opened with O_NOFOLLOW, inside its
 * group directory held open, which must not be a symlink either), owned by
 * root, by pmjq's user or by the owner of the group directory, and not
 * writable by group or others. A FIFO, device or huge file is refused
 * without being read. Errors never quote the file's contents.
 */
export function readSettingsFile(file: string, previous: string | undefined): { stamp: string; settings: GroupSettings | null } | undefined {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return previous === 'absent' ? undefined : { stamp: 'absent', settings: null };
    throw failed(`error:${code}`, `cannot read: ${code}`);
  }
  const stamp = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
  if (stamp === previous) return undefined;
  if (st.isSymbolicLink()) throw failed(stamp, 'is a symbolic link: never followed (make it a regular file)');
  if (!st.isFile()) throw failed(stamp, 'not a regular file (a FIFO, device or directory is never read)');
  const text = readTrusted(file, stamp);
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (err) {
    const at = /at position (\d+)/.exec((err as Error).message);
    throw failed(stamp, `is not valid JSON${at ? ` (at byte ${at[1]})` : ''}; \`python3 -m json.tool FILE\` shows where`);
  }
  try {
    return { stamp, settings: validateSettings(obj, true) };
  } catch (err) {
    throw Object.assign(err as Error, { stamp });
  }
}

/** The file's text, if it may be trusted (see readSettingsFile). */
function readTrusted(file: string, stamp: string): string {
  let dir: OpenDir;
  try {
    dir = OpenDir.open(path.dirname(file));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw failed(stamp, code === 'ELOOP' || code === 'ENOTDIR' ? 'its group directory is a symbolic link or not a directory: not read' : `cannot open its directory: ${code}`);
  }
  let fd: number;
  try {
    fd = fs.openSync(dir.at(path.basename(file)), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch (err) {
    dir.close();
    const code = (err as NodeJS.ErrnoException).code;
    throw failed(stamp, code === 'ELOOP' ? 'is a symbolic link: never followed (make it a regular file)' : `cannot read: ${code}`);
  }
  try {
    const f = fs.fstatSync(fd);
    if (!f.isFile()) throw failed(stamp, 'not a regular file (a FIFO, device or directory is never read)');
    const trusted = new Set([0, process.getuid?.() ?? 0, dir.st.uid]);
    if (!trusted.has(f.uid)) {
      throw failed(stamp, `is owned by uid ${f.uid}: only root, pmjq's user or the group directory's owner (uid ${dir.st.uid}) may own it`);
    }
    if ((f.mode & 0o022) !== 0) throw failed(stamp, `is writable by group or others (mode ${(f.mode & 0o777).toString(8)}): chmod go-w it`);
    if (f.size > MAX_SETTINGS_BYTES) throw failed(stamp, `${f.size} bytes is too large for a settings file (limit ${MAX_SETTINGS_BYTES})`);
    const buf = Buffer.alloc(MAX_SETTINGS_BYTES + 1);
    let n = 0;
    for (let r: number; n < buf.length && (r = fs.readSync(fd, buf, n, buf.length - n, n)) > 0;) n += r;
    if (n > MAX_SETTINGS_BYTES) throw failed(stamp, `more than ${MAX_SETTINGS_BYTES} bytes: too large for a settings file`);
    return buf.subarray(0, n).toString('utf8');
  } finally {
    fs.closeSync(fd);
    dir.close();
  }
}
