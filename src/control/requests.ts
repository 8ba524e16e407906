// Requests from pmjqctl to every daemon, through the shared spool (pmjqctl(1)):
//
//   .pmjq/control/pause-all          no node claims anything
//   .pmjq/control/paused/GROUP       no node claims jobs of GROUP
//   .pmjq/control/kill/ID            the node running job ID kills it
//
// Each request rings the spool's doorbell (doorbell.ts): daemons then read
// them at their next --poll (two readdirs and a stat), so a request reaches
// every node within one poll interval, wherever it runs; without the bell,
// at the idle pace (pmjq(1), PERFORMANCE).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Layout } from '../spool/layout.js';
import { ringDoorbell } from '../spool/doorbell.js';
import { writeFileAtomic } from '../util/fsx.js';

export interface ControlState {
  pauseAll: boolean;
  paused: Set<string>;
  kills: string[];
}

export function controlPaths(layout: Layout): { pauseAll: string; paused: string; kill: string } {
  return {
    pauseAll: path.join(layout.control, 'pause-all'),
    paused: path.join(layout.control, 'paused'),
    kill: path.join(layout.control, 'kill'),
  };
}

export function readControl(layout: Layout): ControlState {
  const p = controlPaths(layout);
  return {
    pauseAll: fs.existsSync(p.pauseAll),
    paused: new Set(list(p.paused)),
    kills: list(p.kill),
  };
}

/** The node that acted on a kill request removes it. */
export function doneKill(layout: Layout, id: string): void {
  try { fs.unlinkSync(path.join(controlPaths(layout).kill, id)); } catch { /* already removed */ }
}

function list(dir: string): string[] {
  try { return fs.readdirSync(dir).filter((n) => !n.startsWith('.')); } catch { return []; }
}

// ---- the writing side, for pmjqctl (added with the pmjqctl issue) ----

/** What a request file holds: who asked, and when (for people; daemons only look at the name). */
function requestBody(): string {
  let user = String(process.getuid?.() ?? '');
  try { user = os.userInfo().username; } catch { /* no passwd entry */ }
  return JSON.stringify({ requested: new Date().toISOString(), by: `${user}@${os.hostname()}`, pid: process.pid }) + '\n';
}

/** Ask the node running job `id` to kill it (written atomically; idempotent). */
export function requestKill(layout: Layout, id: string): string {
  const dir = controlPaths(layout).kill;
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, id);
  writeFileAtomic(file, requestBody());
  ringDoorbell(layout.spool);
  return file;
}

/** Withdraw a kill request (the job ended by itself, or is being retried). Returns true if there was one. */
export function cancelKill(layout: Layout, id: string): boolean {
  try {
    fs.unlinkSync(path.join(controlPaths(layout).kill, id));
    return true;
  } catch {
    return false;
  }
}

export function killRequested(layout: Layout, id: string): boolean {
  return fs.existsSync(path.join(controlPaths(layout).kill, id));
}

/** Set or clear the cluster-wide pause (written atomically). */
export function setPauseAll(layout: Layout, on: boolean): void {
  const file = controlPaths(layout).pauseAll;
  if (on) {
    fs.mkdirSync(layout.control, { recursive: true });
    writeFileAtomic(file, requestBody());
  } else {
    try { fs.unlinkSync(file); } catch { /* not paused */ }
  }
  ringDoorbell(layout.spool);
}

/** Pause or resume one group on every node. */
export function setGroupPaused(layout: Layout, group: string, on: boolean): void {
  const dir = controlPaths(layout).paused;
  if (on) {
    fs.mkdirSync(dir, { recursive: true });
    writeFileAtomic(path.join(dir, group), requestBody());
  } else {
    try { fs.unlinkSync(path.join(dir, group)); } catch { /* not paused */ }
  }
  ringDoorbell(layout.spool);
}
