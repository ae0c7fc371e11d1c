// The schedule of the whereabouts reconciler's periodic pass: `reconciler_cron_expression`, a
// standard five-field cron expression (minute hour day-of-month month day-of-week), evaluated in
// UTC as the reconciler's container runs. Written here rather than taken from npm: the grammar is
// small (lists, ranges, steps, `*`/`?`, month and weekday names, the @-descriptors) and a package
// would be one more dependency of the daemon for forty lines.
import { CniError, ErrorCode } from '../../spec/errors.js';

/** A parsed schedule: the allowed values of each field. */
export interface CronSchedule {
  readonly source: string;
  readonly minutes: ReadonlySet<number>;
  readonly hours: ReadonlySet<number>;
  readonly days: ReadonlySet<number>;
  readonly months: ReadonlySet<number>;
  /** 0 = Sunday (7 is read as 0). */
  readonly weekdays: ReadonlySet<number>;
  /** Day-of-month or day-of-week was `*`: the other alone decides (else either may match). */
  readonly anyDay: boolean;
  readonly anyWeekday: boolean;
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

const DESCRIPTORS: Record<string, string> = {
  '@yearly': '0 0 1 1 *',
  '@annually': '0 0 1 1 *',
  '@monthly': '0 0 1 * *',
  '@weekly': '0 0 * * 0',
  '@daily': '0 0 * * *',
  '@midnight': '0 0 * * *',
  '@hourly': '0 * * * *',
};

interface Field {
  name: string;
  min: number;
  max: number;
  names?: string[];
  /** Value of the first name (1 for months, 0 for weekdays). */
  base?: number;
}

const FIELDS: Field[] = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12, names: MONTHS, base: 1 },
  { name: 'day of week', min: 0, max: 7, names: WEEKDAYS, base: 0 },
];

function bad(expr: string, why: string): CniError {
  return new CniError(
    ErrorCode.InvalidNetworkConfig,
    `reconciler_cron_expression ${JSON.stringify(expr)}: ${why}; use five fields "minute hour day-of-month month day-of-week", e.g. "30 4 * * *"`,
  );
}

function parseField(expr: string, text: string, f: Field): Set<number> {
  const out = new Set<number>();
  const value = (s: string): number => {
    const i = f.names?.indexOf(s.toLowerCase()) ?? -1;
    if (i >= 0) return i + (f.base ?? 0);
    if (!/^\d+$/.test(s)) throw bad(expr, `${f.name} ${JSON.stringify(s)} is not a number`);
    const n = Number(s);
    if (n < f.min || n > f.max) throw bad(expr, `${f.name} ${n} is outside ${f.min}-${f.max}`);
    return n;
  };
  for (const part of text.split(',')) {
    const [span = '', stepText, extra] = part.split('/');
    if (extra !== undefined || span === '') throw bad(expr, `${f.name} ${JSON.stringify(part)} is malformed`);
    let step = 1;
    if (stepText !== undefined) {
      if (!/^\d+$/.test(stepText) || Number(stepText) === 0)
        throw bad(expr, `${f.name} step ${JSON.stringify(stepText)} must be a positive number`);
      step = Number(stepText);
    }
    let lo: number;
    let hi: number;
    if (span === '*' || span === '?') [lo, hi] = [f.min, f.max];
    else if (span.includes('-')) {
      const [a = '', b = '', more] = span.split('-');
      if (more !== undefined) throw bad(expr, `${f.name} ${JSON.stringify(span)} is malformed`);
      [lo, hi] = [value(a), value(b)];
      if (lo > hi) throw bad(expr, `${f.name} range ${span} runs backwards`);
    } else {
      lo = value(span);
      // "5/15" means from 5 to the end, every 15.
      hi = stepText !== undefined ? f.max : lo;
    }
    for (let v = lo; v <= hi; v += step) out.add(v);
  }
  return out;
}

/** Parses a five-field cron expression or an @-descriptor; throws a code-7 CniError naming the problem. */
export function parseCron(expression: string): CronSchedule {
  const text = expression.trim();
  const fields = (DESCRIPTORS[text.toLowerCase()] ?? text).split(/\s+/);
  if (fields.length !== 5 || fields[0] === '') throw bad(expression, `${fields.length} fields`);
  const sets = fields.map((t, i) => parseField(expression, t, FIELDS[i]!));
  const weekdays = sets[4]!;
  if (weekdays.delete(7)) weekdays.add(0);
  return {
    source: expression,
    minutes: sets[0]!,
    hours: sets[1]!,
    days: sets[2]!,
    months: sets[3]!,
    weekdays,
    anyDay: fields[2]!.startsWith('*') || fields[2] === '?',
    anyWeekday: fields[4]!.startsWith('*') || fields[4] === '?',
  };
}

/** Whether the schedule fires in the (UTC) minute of `d`. */
export function cronMatches(s: CronSchedule, d: Date): boolean {
  if (!s.minutes.has(d.getUTCMinutes()) || !s.hours.has(d.getUTCHours())) return false;
  if (!s.months.has(d.getUTCMonth() + 1)) return false;
  return dayMatches(s, d);
}

function dayMatches(s: CronSchedule, d: Date): boolean {
  const dom = s.days.has(d.getUTCDate());
  const dow = s.weekdays.has(d.getUTCDay());
  // As cron: with both fields restricted, either one matching is enough.
  if (s.anyDay || s.anyWeekday) return dom && dow;
  return dom || dow;
}

/** The first minute strictly after `after` at which the schedule fires; undefined if none within 5 years (e.g. "0 0 30 2 *"). */
export function cronNext(s: CronSchedule, after: Date): Date | undefined {
  const MIN = 60_000;
  let t = Math.floor(after.getTime() / MIN) * MIN + MIN;
  const limit = after.getTime() + 5 * 366 * 24 * 60 * MIN;
  while (t <= limit) {
    const d = new Date(t);
    if (!s.months.has(d.getUTCMonth() + 1)) {
      t = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
      continue;
    }
    if (!dayMatches(s, d)) {
      t = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1);
      continue;
    }
    if (!s.hours.has(d.getUTCHours())) {
      t = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate(), d.getUTCHours() + 1);
      continue;
    }
    if (!s.minutes.has(d.getUTCMinutes())) {
      t += MIN;
      continue;
    }
    return d;
  }
  return undefined;
}
