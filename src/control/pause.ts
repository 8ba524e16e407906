// `pmjqctl pause` / `resume` (pmjqctl(1)): flags in .pmjq/control that every
// daemon reads at each --poll, so that every node stops (or starts again)
// claiming within one poll interval; running jobs go on.
//
//   pause SPOOL            .pmjq/control/pause-all
//   pause SPOOL G…         .pmjq/control/paused/G
//   resume SPOOL           removes pause-all and every group's flag
//   resume SPOOL G…        removes the groups' flags (pause-all, if set, still holds them)

import type { Layout } from '../spool/layout.js';
import { CtlError, printable, q } from './errors.js';
import { readControl, setGroupPaused, setPauseAll } from './requests.js';

export interface PauseState {
  /** every group is paused (pause-all) */
  all: boolean;
  /** groups paused one by one */
  groups: string[];
}

/** A group name for a pause flag: a plain file name ("default" is the top level). */
export function checkPauseGroup(g: string): void {
  if (g === '' || g.includes('/') || g.includes('\0') || g.startsWith('.')) {
    throw new CtlError(`group ${q(g)} is not a valid group name (no '/', not starting with '.')`, 2);
  }
}

export function pausedState(layout: Layout): PauseState {
  const c = readControl(layout);
  return { all: c.pauseAll, groups: [...c.paused].sort() };
}

export function pause(layout: Layout, groups: string[]): PauseState {
  groups.forEach(checkPauseGroup);
  if (groups.length === 0) setPauseAll(layout, true);
  for (const g of groups) setGroupPaused(layout, g, true);
  return pausedState(layout);
}

export function resume(layout: Layout, groups: string[]): PauseState {
  groups.forEach(checkPauseGroup);
  if (groups.length === 0) {
    setPauseAll(layout, false);
    for (const g of readControl(layout).paused) setGroupPaused(layout, g, false);
  }
  for (const g of groups) setGroupPaused(layout, g, false);
  return pausedState(layout);
}

export function renderPaused(s: PauseState): string {
  if (s.all) return `paused: all groups${s.groups.length ? ` (and by name: ${s.groups.map(printable).join(', ')})` : ''}\n`;
  if (s.groups.length) return `paused: ${s.groups.map(printable).join(', ')}\n`;
  return 'nothing is paused\n';
}
