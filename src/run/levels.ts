// Log levels in job output, as chaqum jobs write them: a line beginning with
// C, D, E, I or W followed by the ASCII unit separator (0x1F) carries that
// level (critical, debug, error, info, warning). Log files keep the raw
// bytes; readers (chaqum's console, pmjqctl logs) parse them with this.

export type JobLevel = 'critical' | 'error' | 'warning' | 'info' | 'debug';

const LEVELS: Record<string, JobLevel> = { C: 'critical', D: 'debug', E: 'error', I: 'info', W: 'warning' };

export function parseLevel(line: string): { level: JobLevel | null; text: string } {
  if (line.length >= 2 && line.charCodeAt(1) === 0x1f) {
    const level = LEVELS[line[0]!];
    if (level) return { level, text: line.slice(2) };
  }
  return { level: null, text: line };
}

/** The daemon logger's level for a job's line. */
export function loggerLevel(level: JobLevel | null): 'debug' | 'info' | 'warn' | 'error' {
  switch (level) {
    case 'critical':
    case 'error': return 'error';
    case 'warning': return 'warn';
    case 'debug': return 'debug';
    default: return 'info';
  }
}
