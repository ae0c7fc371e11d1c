// Node-slice arithmetic over its input space: slices tile the range exactly (v4 and v6), and
// assignment keeps every surviving node's slice, never gives a slice to two nodes or a node two
// slices, frees departed nodes' slices, and serves as many new nodes as there are free slices.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  assignSlices,
  divideRange,
  type NodeSliceAllocation,
} from '../../src/ipam/whereabouts/node-slice.js';
import { parseCIDR, subnetBroadcast } from '../../src/spec/addr.js';

describe('node slices (property)', () => {
  it('divideRange tiles the range with 2^(size-prefix) contiguous slices', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('10.0.0.0/16', '192.168.4.0/22', 'fd00:1::/56', '2001:db8::/64'),
        fc.integer({ min: 0, max: 8 }),
        (range, extra) => {
          const { subnet } = parseCIDR(range);
          const size = subnet.prefix + extra;
          const slices = divideRange(subnet, size).map((s) => parseCIDR(s).subnet);
          expect(slices).toHaveLength(2 ** extra);
          expect(slices[0]!.network).toBe(subnet.network);
          expect(subnetBroadcast(slices[slices.length - 1]!).value).toBe(subnetBroadcast(subnet).value);
          for (let i = 1; i < slices.length; i++) {
            expect(slices[i]!.prefix).toBe(size);
            expect(slices[i]!.network).toBe(subnetBroadcast(slices[i - 1]!).value + 1n);
          }
        },
      ),
    );
  });

  it('assignSlices keeps, frees and hands out slices without ever sharing one', () => {
    const names = fc.constantFrom(...Array.from({ length: 12 }, (_, i) => `n${i}`));
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 10 }),
        fc.array(names, { maxLength: 14 }),
        fc.array(names, { maxLength: 14 }),
        (count, first, second) => {
          const empty: NodeSliceAllocation[] = Array.from({ length: count }, (_, i) => ({
            nodeName: '',
            sliceRange: `10.0.${i}.0/24`,
          }));
          const a = assignSlices(empty, first);
          const b = assignSlices(a, second);
          for (const [before, nodes, after] of [
            [empty, first, a],
            [a, second, b],
          ] as const) {
            const live = new Set(nodes);
            expect(after.map((x) => x.sliceRange)).toEqual(before.map((x) => x.sliceRange));
            const held = after.filter((x) => x.nodeName !== '').map((x) => x.nodeName);
            expect(new Set(held).size).toBe(held.length); // no node twice
            for (const n of held) expect(live.has(n)).toBe(true); // only live nodes
            for (let i = 0; i < before.length; i++) {
              const was = before[i]!.nodeName;
              if (was !== '' && live.has(was)) expect(after[i]!.nodeName).toBe(was); // kept
            }
            expect(held.length).toBe(Math.min(live.size, count)); // everyone served while slices last
          }
        },
      ),
    );
  });
});
