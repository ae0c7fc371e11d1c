// Structured logs: one JSON object per line on stderr, so that a log shipper (or `jq`) can follow a
// call by its id across the daemon's own lines and the plugin's.

/** Log levels, most to least severe. */
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
const ORDER: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

/** One log record: `msg` plus fields such as callId, plugin, command, containerId, durationMs. */
export type LogRecord = { msg: string } & Record<string, unknown>;

/** A logger writing records at or above `level`. */
export interface DaemonLogger {
  level: LogLevel;
  log(level: LogLevel, record: LogRecord): void;
  enabled(level: LogLevel): boolean;
}

/** Writes JSON lines through `write` (default: stderr, synchronously, so nothing is lost at exit). */
export function jsonLogger(level: LogLevel = 'info', write?: (line: string) => void): DaemonLogger {
  const sink = write ?? ((line: string) => process.stderr.write(line));
  return {
    level,
    enabled: (l) => ORDER[l] <= ORDER[level],
    log(l, record) {
      if (ORDER[l] > ORDER[level]) return;
      sink(`${JSON.stringify({ time: new Date().toISOString(), level: l, ...record })}\n`);
    },
  };
}

/** True for the names jsonLogger accepts. */
export const isLogLevel = (v: string): v is LogLevel => v in ORDER;
