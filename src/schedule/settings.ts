// Group settings (DESIGN §5.3): from SPOOL/GROUP/.group.json (re-read when it
// changes) and from --group NAME:key=value,… on the command line, which wins
// over the file (it is this node's own configuration). Invalid settings are
// reported naming the file and the field; the group keeps its last good ones.

import fs from 'node:fs';
import { normaliseCpu } from './barrier.js';
import type { GroupSettings } from './groups.js';
import { parseDuration } from '../util/duration.js';

export const SETTINGS_FILE = '.group.json';
const MAX_SETTINGS_BYTES = 64 * 1024;

export class SettingsError extends Error {
  constructor(readonly field: string | null, message: string) {
    super(field ? `${field}: ${message}` : message);
  }
}

type Check = (v: unknown, field: string) => number;

const integer = (min: number): Check => (v, field) => {
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > 1_000_000) {
    throw new SettingsError(field, `${JSON.stringify(v)} is not a whole number from ${min} to 1000000`);
  }
  return n;
};

const positive: Check = (v, field) => {
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isFinite(n) || n < 0 || n > 1e6) throw new SettingsError(field, `${JSON.stringify(v)} is not a number from 0 to 1000000`);
  return n;
};

/** Durations: a number of seconds, or a string such as "90s", "5m", "1h30m". Stored in ms. */
const durationMs: Check = (v, field) => {
  if (typeof v === 'number') {
    if (!Number.isFinite(v) || v < 0 || v > 1e9) throw new SettingsError(field, `${v} is not a duration in seconds`);
    return Math.round(v * 1000);
  }
  if (typeof v !== 'string') throw new SettingsError(field, `${JSON.stringify(v)} is not a duration`);
  try {
    return parseDuration(v);
  } catch (err) {
    throw new SettingsError(field, (err as Error).message);
  }
};

const FIELDS: Record<keyof GroupSettings, Check> = {
  max: integer(0),
  cluster_max: integer(0),
  load: positive,
  cpu: (v, f) => {
    const n = positive(v, f);
    if (n > 100) throw new SettingsError(f, `${n} is above 100 (percent)`);
    return normaliseCpu(n);
  },
  timeout: durationMs,
  retries: integer(0),
  backoff: durationMs,
};

export const SETTING_NAMES = Object.keys(FIELDS) as (keyof GroupSettings)[];

/** Validate a parsed settings object; throws SettingsError naming the first bad field. */
export function validateSettings(obj: unknown): GroupSettings {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
    throw new SettingsError(null, 'settings must be a JSON object such as {"max": 2}');
  }
  const out: GroupSettings = {};
  for (const [k, v] of Object.entries(obj)) {
    const check = FIELDS[k as keyof GroupSettings];
    if (!check) throw new SettingsError(k, `unknown setting (known: ${SETTING_NAMES.join(', ')})`);
    if (v === null) continue;
    out[k as keyof GroupSettings] = check(v, k);
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

export interface SettingsFileState {
  /** identity of the file last read: a change of any of these means "read it again" */
  stamp: string;
}

/**
 * Read a settings file if it changed since `previous` (one stat per group per
 * rescan, not per job). Returns undefined when unchanged, null when absent,
 * else the validated settings. A FIFO, device or huge file is refused
 * without being opened (reading /dev/zero or a FIFO would never end).
 */
export function readSettingsFile(file: string, previous: string | undefined): { stamp: string; settings: GroupSettings | null } | undefined {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return previous === 'absent' ? undefined : { stamp: 'absent', settings: null };
    // stamped with the error, so that the same failure is reported once, not on every rescan
    const code = (err as NodeJS.ErrnoException).code;
    throw Object.assign(new SettingsError(null, `cannot read: ${code}`), { stamp: `error:${code}` });
  }
  const stamp = `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
  if (stamp === previous) return undefined;
  if (!st.isFile()) throw Object.assign(new SettingsError(null, 'not a regular file (a FIFO, device or directory is never read)'), { stamp });
  if (st.size > MAX_SETTINGS_BYTES) throw Object.assign(new SettingsError(null, `${st.size} bytes is too large for a settings file (limit ${MAX_SETTINGS_BYTES})`), { stamp });
  let obj: unknown;
  try {
    obj = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw Object.assign(new SettingsError(null, `invalid JSON: ${(err as Error).message}`), { stamp });
  }
  try {
    return { stamp, settings: validateSettings(obj) };
  } catch (err) {
    throw Object.assign(err as Error, { stamp });
  }
}
