// The benches' paired comparison (bench/lib.ts): per-round ratios summarised by median and IQR.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { median, pairedRatio, quantile } from '../../bench/lib.js';

const sample = fc.array(fc.double({ min: 1, max: 1e4, noNaN: true }), { minLength: 1, maxLength: 40 });

describe('bench statistics', () => {
  it('quantile: 0 is the minimum, 1 the maximum, 0.5 the median, and q1 <= median <= q3', () => {
    fc.assert(
      fc.property(sample, (xs) => {
        expect(quantile(xs, 0)).toBe(Math.min(...xs));
        expect(quantile(xs, 1)).toBe(Math.max(...xs));
        expect(quantile(xs, 0.5)).toBeCloseTo(median(xs), 9);
        expect(quantile(xs, 0.25)).toBeLessThanOrEqual(median(xs));
        expect(quantile(xs, 0.75)).toBeGreaterThanOrEqual(median(xs));
      }),
    );
    expect(quantile([1, 2, 3, 4], 0.25)).toBe(1.75);
  });

  it('pairedRatio compares each round with its own pair: a constant factor survives any drift of the load', () => {
    fc.assert(
      fc.property(sample, fc.double({ min: 0.5, max: 2, noNaN: true }), (base, k) => {
        const r = pairedRatio(
          base.map((x) => x * k),
          base,
        );
        expect(r.median).toBeCloseTo(k, 9);
        expect(r.q1).toBeCloseTo(k, 9);
        expect(r.q3).toBeCloseTo(k, 9);
      }),
    );
    // Medians taken apart mislead when the load moves between the pairs; the pairs do not.
    const direct = [100, 300, 100, 300, 300];
    const daemon = [105, 315, 105, 315, 105];
    expect(pairedRatio(daemon, direct).median).toBeCloseTo(1.05, 9);
  });
});
