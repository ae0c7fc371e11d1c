// The reconciler's cron schedule: the next firing time agrees with a minute-by-minute scan (the
// definition of a cron schedule), for random expressions and random start times.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { cronMatches, cronNext, parseCron } from '../../src/ipam/whereabouts/reconciler-cron.js';

/** One field: `*`, a value, a range, a step, or a list of those. */
function fieldArb(min: number, max: number): fc.Arbitrary<string> {
  const v = fc.integer({ min, max });
  const one = fc.oneof(
    v.map(String),
    fc.tuple(v, v).map(([a, b]) => `${Math.min(a, b)}-${Math.max(a, b)}`),
    fc.tuple(v, fc.integer({ min: 1, max: 20 })).map(([a, s]) => `${a}/${s}`),
    fc.integer({ min: 1, max: 20 }).map((s) => `*/${s}`),
  );
  return fc.oneof(
    { weight: 2, arbitrary: fc.constant('*') },
    { weight: 3, arbitrary: fc.array(one, { minLength: 1, maxLength: 3 }).map((p) => p.join(',')) },
  );
}

const exprArb = fc
  .tuple(fieldArb(0, 59), fieldArb(0, 23), fieldArb(1, 31), fieldArb(1, 12), fieldArb(0, 7))
  .map((f) => f.join(' '));
const dateArb = fc.integer({ min: Date.UTC(2020, 0, 1), max: Date.UTC(2040, 0, 1) }).map((t) => new Date(t));

describe('reconciler_cron_expression', () => {
  it('next() is the first matching minute after the start (checked by scanning up to 20 days)', () => {
    fc.assert(
      fc.property(exprArb, dateArb, (expr, after) => {
        const s = parseCron(expr);
        const next = cronNext(s, after);
        const MIN = 60_000;
        let t = Math.floor(after.getTime() / MIN) * MIN + MIN;
        const end = Math.min(next?.getTime() ?? Number.POSITIVE_INFINITY, t + 20 * 24 * 60 * MIN);
        let early: string | undefined;
        for (; t < end && !early; t += MIN)
          if (cronMatches(s, new Date(t))) early = new Date(t).toISOString();
        expect(early, `${expr} fires at ${early} before ${next?.toISOString()}`).toBeUndefined();
        if (next) {
          expect(next.getTime()).toBeGreaterThan(after.getTime());
          expect(cronMatches(s, next)).toBe(true);
          expect(next.getUTCSeconds()).toBe(0);
        }
      }),
      { numRuns: 100 },
    );
  });

  it('reads the installer default, names, descriptors, and cron’s day-of-month OR day-of-week rule', () => {
    const at = new Date('2026-11-27T16:00:00Z'); // a Friday
    expect(cronNext(parseCron('30 4 * * *'), at)?.toISOString()).toBe('2026-11-28T04:30:00.000Z');
    expect(cronNext(parseCron('*/5 * * * *'), at)?.toISOString()).toBe('2026-11-27T16:05:00.000Z');
    expect(cronNext(parseCron('0 0 * * sun'), at)?.toISOString()).toBe('2026-11-29T00:00:00.000Z');
    expect(cronNext(parseCron('0 0 * * 7'), at)?.toISOString()).toBe('2026-11-29T00:00:00.000Z');
    expect(cronNext(parseCron('0 12 1 jan-mar *'), at)?.toISOString()).toBe('2027-01-01T12:00:00.000Z');
    expect(cronNext(parseCron('@hourly'), at)?.toISOString()).toBe('2026-11-27T17:00:00.000Z');
    // Both restricted: the 1st of the month OR a Monday, whichever comes first.
    expect(cronNext(parseCron('0 0 1 * mon'), at)?.toISOString()).toBe('2026-11-30T00:00:00.000Z');
    // Never fires: no 30th of February.
    expect(cronNext(parseCron('0 0 30 2 *'), at)).toBeUndefined();
  });

  it('refuses malformed expressions with a message naming the field and the fix', () => {
    for (const [expr, what] of [
      ['* * * *', '4 fields'],
      ['60 * * * *', 'minute 60 is outside 0-59'],
      ['* 5-2 * * *', 'hour range 5-2 runs backwards'],
      ['*/0 * * * *', 'minute step "0"'],
      ['* * * foo *', 'month "foo" is not a number'],
      ['', '1 fields'],
    ] as const) {
      expect(() => parseCron(expr)).toThrow(what);
      try {
        parseCron(expr);
      } catch (err) {
        expect((err as { code: number }).code).toBe(7);
        expect((err as Error).message).toContain('reconciler_cron_expression');
        expect((err as Error).message).toContain('"30 4 * * *"');
      }
    }
  });
});
