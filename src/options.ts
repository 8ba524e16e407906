// The daemon's settings after the command line has been parsed and checked.

import type { HookSpec } from './schedule/hooks.js';
import type { GroupSettings } from './schedule/groups.js';
import type { WatchMode } from './spool/watch.js';

export interface DaemonOptions {
  spool: string;
  archive?: string;
  errors?: string;
  /** -C: load-average barrier */
  load?: number;
  /** -c: CPU barrier, 0–1 */
  cpu?: number;
  /** -j: jobs of this node at once; 0 = unlimited */
  jobs: number;
  pollMs: number;
  watch: WatchMode | 'auto';
  /** undefined: automatic (0 on local filesystems, 2 s on shared ones) */
  settleMs?: number;
  timeoutMs?: number;
  graceMs: number;
  killGraceMs: number;
  once: boolean;
  allowRoot: boolean;
  keep: number;
  keepAgeMs: number;
  logFormat: 'text' | 'json';
  verbosity: number;
  /** --retries / --backoff: defaults for every group */
  retries: number;
  backoffMs: number;
  /** --group NAME:key=value,…: this node's settings per group, over the group's .group.json */
  groupSettings: Map<string, GroupSettings>;
  /** --groups a,b: serve only these groups (undefined = all) */
  groups?: string[];
  /** a node whose heartbeat is older than this is stale (pmjq(1) RUNNING A CLUSTER) */
  leaseMs: number;
  /** --init SCRIPT [ARGS]: a job started once at start-up (chaqum's init/entry) */
  init?: { script: string; args: string[] };
  /** --tree DIR: where relative SCRIPT paths of `enqueue` resolve (default: the enqueuing job's directory) */
  tree?: string;
  /** chaqum mode: exit once nothing is queued or running and no repeat is registered */
  untilIdle?: boolean;
  /** chaqum mode: job output goes to the daemon's log, line by line, with its level; SIGHUP stops */
  chaqum?: boolean;
  /** --env NAME[=VALUE]: variables every job gets (its environment is otherwise built from scratch) */
  env: Record<string, string>;
  onIdle?: HookSpec;
  onSaturated?: HookSpec;
}
