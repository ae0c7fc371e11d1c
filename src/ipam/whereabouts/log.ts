// whereabouts' logging, as its IPAM binary does it: `log_file` is appended to, one line per message,
// `<RFC 3339 time> [<level>] <message>`, and `log_level` (panic < error < verbose < debug, default
// debug) filters what is written. Unlike whereabouts, which also copies every line to stderr, only
// errors go to stderr here: the runtime keeps a plugin's stderr, and a debug line per call would
// flood it. A log file that cannot be opened is reported on stderr once and the call goes on (as in
// whereabouts): logging never fails an ADD or a DEL.
import { appendFileSync } from 'node:fs';
import { WHEREABOUTS_LOG_LEVELS, type WhereaboutsConfig, type WhereaboutsLogLevel } from './config.js';

const rank = (l: WhereaboutsLogLevel): number => WHEREABOUTS_LOG_LEVELS.indexOf(l);

/** A whereabouts-format logger for one call. */
export class WhereaboutsLog {
  private failed = false;

  constructor(
    private readonly opts: WhereaboutsConfig['log'],
    private readonly stderr: (line: string) => void = (l) => process.stderr.write(l),
  ) {
    if (opts.badLevel !== undefined) {
      this.warn(
        `whereabouts logging: log_level ${JSON.stringify(opts.badLevel)} is not one of ${WHEREABOUTS_LOG_LEVELS.join(', ')}; keeping ${opts.level}`,
      );
    }
  }

  private warn(message: string): void {
    this.stderr(`${message}\n`);
  }

  /** Writes `message` at `level` when the configured level lets it through. */
  write(level: WhereaboutsLogLevel, message: string): void {
    const line = `${new Date().toISOString().replace(/\.\d{3}Z$/, 'Z')} [${level}] ${message}\n`;
    if (level === 'error' || level === 'panic') this.stderr(line);
    if (!this.opts.file || this.failed || rank(level) > rank(this.opts.level)) return;
    try {
      appendFileSync(this.opts.file, line, { mode: 0o644 });
    } catch (err) {
      this.failed = true;
      this.warn(
        `whereabouts logging: cannot open log_file ${this.opts.file} (${(err as NodeJS.ErrnoException).code ?? String(err)}); logging to stderr only`,
      );
    }
  }

  debug(message: string): void {
    this.write('debug', message);
  }
  verbose(message: string): void {
    this.write('verbose', message);
  }
  error(message: string): void {
    this.write('error', message);
  }
}
