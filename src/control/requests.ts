// Requests from pmjqctl to every daemon, through the shared spool (DESIGN §9):
//
//   .pmjq/control/pause-all          no node claims anything
//   .pmjq/control/paused/GROUP       no node claims jobs of GROUP
//   .pmjq/control/kill/ID            the node running job ID kills it
//
// Daemons read them every --poll (two readdirs and a stat), so a request
// reaches every node within one poll interval, wherever it runs.

import fs from 'node:fs';
import path from 'node:path';
import type { Layout } from '../spool/layout.js';

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
