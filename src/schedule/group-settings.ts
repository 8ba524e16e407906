// Where a spool group's settings come from: its directory's .group.json,
// read when the group is first seen and again whenever the file changed
// (one stat per group per rescan). A file that is not valid keeps the last
// good settings, and says so once.

import path from 'node:path';
import { groupOf, type Layout } from '../spool/layout.js';
import type { Logger } from '../util/log.js';
import type { Group, Groups } from './groups.js';
import { SETTINGS_FILE, readSettingsFile } from './settings.js';

export class GroupSettingsFiles {
  constructor(private readonly groups: Groups, private readonly layout: Layout, private readonly log: Logger) {}

  /** The group of a spool directory, remembering where its settings file is. */
  groupFor(dir: string): Group {
    const g = this.groups.get(groupOf(dir));
    if (g.dir === undefined) {
      g.dir = dir;
      // a spool group's settings are the operator's: none left from `enqueue -g NAME -m/-c`
      g.protocolSettings = {};
      // a group seen for the first time: its settings apply to its first job already
      this.read(g);
    }
    return g;
  }

  /** Re-read each group's .group.json (of these directories only) if it changed: one stat per group. */
  refresh(dirs?: Set<string>): void {
    this.groupFor('');
    for (const g of this.groups.all()) if (!dirs || (g.dir !== undefined && dirs.has(g.dir))) this.read(g);
  }

  /** SIGHUP: read every settings file again, changed or not. */
  forget(): void {
    for (const g of this.groups.all()) g.settingsStamp = undefined;
  }

  private read(g: Group): void {
    if (g.dir === undefined) return;
    const file = path.join(this.layout.groupDir(g.dir), SETTINGS_FILE);
    try {
      const r = readSettingsFile(file, g.settingsStamp);
      if (r === undefined) return;
      g.settingsStamp = r.stamp;
      g.fileSettings = r.settings ?? {};
      if (r.settings !== null) this.log.info('settings', { group: g.name, file, ...g.settings });
    } catch (err) {
      const stamp = (err as { stamp?: string }).stamp;
      if (stamp !== undefined && stamp === g.settingsStamp) return;
      g.settingsStamp = stamp;
      this.log.warn('settings-invalid', { group: g.name, file, error: (err as Error).message, keeping: 'the last good settings' });
    }
  }
}
