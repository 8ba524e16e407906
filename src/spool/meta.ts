// .job.json: what a claimed (or retrying) job is, stored beside the job file
// so that any node can list, recover or requeue it without asking its owner.

import fs from 'node:fs';
import path from 'node:path';
import { META_FILE } from './layout.js';
import { display, isUtf8, type Name } from './names.js';

export interface JobMeta {
  id: string;
  /** the job's name for people and JSON (exact unless name_b64 is set) */
  name: string;
  /** base64 of the name's bytes when they are not valid UTF-8 */
  name_b64?: string;
  /** file name of the job inside its claimed directory */
  file: string;
  group: string;
  /** spool-relative directory it was dropped into; '' = top level */
  dir: string;
  owner: number;
  created: string;
  claimed: string;
  node: string;
  attempt: number;
  parent: string | null;
  /** why the previous attempt ended, for retries and requeues */
  previous?: string;
  /** attempts cut short by a stopping or dead node: they do not use up --retries */
  interrupted?: number;
  /** a sub-job (enqueued over fd 3): the script it runs, which stays where it is, and its arguments */
  script?: string;
  args?: string[];
  /** where a sub-job's relative scripts resolve; its working directory */
  tree?: string;
  /**
   * set when the job ran to its end but could not be archived yet (full
   * disk): whoever archives it later (a recoverer) uses this outcome and
   * never runs the job again
   */
  ended?: { status: string; exit_code: number | null; signal: string | null; started: string | null; finished: string; error?: string };
}

export function nameFields(name: Name): { name: string; name_b64?: string } {
  return isUtf8(name) ? { name: display(name) } : { name: display(name), name_b64: name.toString('base64') };
}

export function nameBytes(meta: Pick<JobMeta, 'name' | 'name_b64'>): Name {
  return meta.name_b64 !== undefined ? Buffer.from(meta.name_b64, 'base64') : Buffer.from(meta.name);
}

/** Read a job's metadata; throws if it is not what pmjq writes (every path in it is a plain name). */
export function readMeta(jobDir: string): JobMeta {
  const meta = JSON.parse(fs.readFileSync(path.join(jobDir, META_FILE), 'utf8')) as JobMeta;
  const bad = metaProblem(meta);
  if (bad) throw new Error(`${path.join(jobDir, META_FILE)}: ${bad}`);
  return meta;
}

const isPlainName = (s: unknown): boolean => typeof s === 'string' && s !== '' && s !== '.' && s !== '..' && !s.includes('/') && !s.includes('\0');

/** What makes this metadata unusable, or null: names that could lead out of their directory, wrong types. */
export function metaProblem(m: JobMeta): string | null {
  if (typeof m !== 'object' || m === null) return 'not a JSON object';
  if (!isPlainName(m.id)) return 'field "id" is not a plain name';
  if (m.script === undefined ? !isPlainName(m.file) : m.file !== '') return 'field "file" is not a plain file name';
  if (typeof m.dir !== 'string' || (m.dir !== '' && (!isPlainName(m.dir) || m.dir.startsWith('.')))) return 'field "dir" is not a group directory name';
  if (typeof m.group !== 'string') return 'field "group" is not a string';
  if (!Number.isInteger(m.owner) || !Number.isInteger(m.attempt)) return 'fields "owner" and "attempt" must be integers';
  return null;
}

export function writeMeta(jobDir: string, meta: JobMeta): void {
  fs.writeFileSync(path.join(jobDir, META_FILE), JSON.stringify(meta) + '\n');
}
