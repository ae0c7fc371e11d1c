// IP math, ranges and range sets: host-local's defaults, checks and error messages.

import { formatIP, parseCIDR, parseIP, parseSubnet, subnetContains, tryParseIP } from 'cni-kit/spec';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { roundRobin } from '../../src/ipam/host-local/allocator.js';
import {
  canonicalizeRange,
  canonicalizeRangeSet,
  checkRangeSetsDisjoint,
  formatRangeSet,
  rangeSetCapacity,
} from '../../src/ipam/range.js';
import { cniErrorOf } from '../helpers/errors.js';

describe('parseIP / formatIP', () => {
  it('parses v4 strictly, like Go (no leading zeros, no prefix, no zone)', () => {
    expect(parseIP('10.1.2.3')).toEqual({ family: 4, value: 0x0a010203n });
    for (const bad of [
      '010.1.2.3',
      '10.1.2',
      '10.1.2.256',
      '10.1.2.3/24',
      'fe80::1%eth0',
      '',
      ' ',
      '1.2.3.4.5',
      '::g',
    ]) {
      expect(tryParseIP(bad), bad).toBeUndefined();
    }
    const e = cniErrorOf(() => parseIP('10.1.2.3/24', 'ipam.gateway'));
    expect(e.code).toBe(7);
    expect(e.message).toContain('ipam.gateway');
    expect(e.message).toContain('10.1.2.3/24');
    expect(e.message).toContain('drop the "/prefix"');
  });

  it('treats IPv4-mapped IPv6 as IPv4, as Go does', () => {
    expect(parseIP('::ffff:10.0.0.1')).toEqual({ family: 4, value: 0x0a000001n });
    expect(formatIP(parseIP('::ffff:10.0.0.1'))).toBe('10.0.0.1');
  });

  it('formats v6 per RFC 5952 like Go (longest zero run, first on a tie, no single-group ::)', () => {
    expect(formatIP(parseIP('2001:0db8:0000:0000:0001:0000:0000:0001'))).toBe('2001:db8::1:0:0:1');
    expect(formatIP(parseIP('2001:db8:0:1:1:1:1:1'))).toBe('2001:db8:0:1:1:1:1:1');
    expect(formatIP(parseIP('::'))).toBe('::');
    expect(formatIP(parseIP('::1'))).toBe('::1');
    expect(formatIP(parseIP('fd00::'))).toBe('fd00::');
    expect(formatIP(parseIP('1:0:0:2:0:0:0:3'))).toBe('1:0:0:2::3');
  });

  it('property: v6 formatting agrees with the WHATWG URL serializer (RFC 5952) and round-trips', () => {
    const groups = fc.array(fc.oneof(fc.constant(0), fc.nat(0xffff)), { minLength: 8, maxLength: 8 });
    fc.assert(
      fc.property(groups, (g) => {
        const text = g.map((x) => x.toString(16)).join(':');
        const ip = parseIP(text);
        fc.pre(ip.family === 6);
        const out = formatIP(ip);
        expect(out).toBe(new URL(`http://[${text}]/`).hostname.slice(1, -1));
        expect(parseIP(out)).toEqual(ip);
      }),
      { numRuns: 500 },
    );
  });

  it('property: v4 round-trips through format and parse', () => {
    fc.assert(
      fc.property(fc.nat(0xffffffff), (n) => {
        const ip = { family: 4 as const, value: BigInt(n) };
        expect(parseIP(formatIP(ip))).toEqual(ip);
      }),
    );
  });
});

describe('CIDR and subnets', () => {
  it('keeps host bits in the address and masks the subnet', () => {
    const c = parseCIDR('10.1.2.3/24');
    expect(formatIP(c.ip)).toBe('10.1.2.3');
    expect(c.subnet).toEqual({ family: 4, network: 0x0a010200n, prefix: 24 });
    expect(parseCIDR('2001:db8::5/64').subnet.prefix).toBe(64);
  });

  it('refuses host bits in a subnet and names the network to use', () => {
    const e = cniErrorOf(() => parseSubnet('10.0.0.1/24', 'ipam.ranges[0][0].subnet'));
    expect(e.code).toBe(7);
    expect(e.message).toBe(
      'ipam.ranges[0][0].subnet: "10.0.0.1/24" has host bits set; for a /24 the network address is 10.0.0.0, use 10.0.0.0/24',
    );
  });

  it('refuses non-CIDR text with the expected form', () => {
    for (const bad of ['10.0.0.0', '10.0.0.0/33', '10.0.0.0/-1', 'x/8', '2001:db8::/129', '10.0.0.0/08']) {
      expect(cniErrorOf(() => parseCIDR(bad, 'f')).message).toContain('CIDR');
    }
  });

  it('property: an address is in its own subnet and not in the next one', () => {
    fc.assert(
      fc.property(fc.nat(0xffffffff), fc.integer({ min: 1, max: 32 }), (n, p) => {
        const { ip, subnet } = parseCIDR(`${formatIP({ family: 4, value: BigInt(n) })}/${p}`);
        expect(subnetContains(subnet, ip)).toBe(true);
        const size = 1n << BigInt(32 - p);
        const other = { family: 4 as const, value: (subnet.network + size) % (1n << 32n) };
        expect(subnetContains(subnet, other)).toBe(false);
      }),
    );
  });
});

describe('ranges (host-local defaults)', () => {
  it('defaults: gateway .1, start .1 (gateway skipped), end broadcast-1 for v4', () => {
    const r = canonicalizeRange({ subnet: '10.0.0.0/24' }, 'r');
    expect(formatIP(r.gateway!)).toBe('10.0.0.1');
    expect(formatIP(r.start)).toBe('10.0.0.1');
    expect(formatIP(r.end)).toBe('10.0.0.254');
    const first = roundRobin([r], undefined).next().value!;
    expect(formatIP(first.ip)).toBe('10.0.0.2');
    expect(formatIP(canonicalizeRange({ subnet: '10.0.0.0/25' }, 'r').end)).toBe('10.0.0.126');
  });

  it('v6 end is the all-ones host address', () => {
    const r = canonicalizeRange({ subnet: '2001:db8:1::/64' }, 'r');
    expect(formatIP(r.end)).toBe('2001:db8:1:0:ffff:ffff:ffff:ffff');
    expect(formatIP(r.gateway!)).toBe('2001:db8:1::1');
  });

  it('refuses /31, /32, /127 and /128 with the smallest size that works', () => {
    for (const s of ['10.0.0.0/31', '10.0.0.1/32', '2001:db8::/127', '2001:db8::1/128']) {
      const e = cniErrorOf(() => canonicalizeRange({ subnet: s }, 'ipam.ranges[0][0]'));
      expect(e.message).toContain('too small to allocate from');
      expect(e.message).toMatch(/use a \/(30|126) or larger/);
    }
    expect(() => canonicalizeRange({ subnet: '10.0.0.0/30' }, 'r')).not.toThrow();
  });

  it('refuses start, end and gateway outside the subnet, and start after end', () => {
    const e1 = cniErrorOf(() =>
      canonicalizeRange({ subnet: '10.0.0.0/24', rangeStart: '10.0.1.5' }, 'ipam.ranges[0][0]'),
    );
    expect(e1.message).toBe(
      'ipam.ranges[0][0].rangeStart: "10.0.1.5" is not in subnet 10.0.0.0/24; pick an address inside it',
    );
    expect(
      cniErrorOf(() => canonicalizeRange({ subnet: '10.0.0.0/24', gateway: '10.9.0.1' }, 'r')).message,
    ).toContain('r.gateway');
    expect(
      cniErrorOf(() =>
        canonicalizeRange({ subnet: '10.0.0.0/24', rangeStart: '10.0.0.9', rangeEnd: '10.0.0.3' }, 'r'),
      ).message,
    ).toContain('rangeStart 10.0.0.9 is after rangeEnd 10.0.0.3');
    expect(
      cniErrorOf(() => canonicalizeRange({ subnet: '10.0.0.0/24', rangeEnd: 'fd00::1' }, 'r')).message,
    ).toContain('r.rangeEnd');
  });

  it('overlap is judged on start-end intervals, not subnets', () => {
    const ok = canonicalizeRangeSet(
      [
        { subnet: '10.0.0.0/24', rangeStart: '10.0.0.10', rangeEnd: '10.0.0.20' },
        { subnet: '10.0.0.0/24', rangeStart: '10.0.0.21', rangeEnd: '10.0.0.30' },
      ],
      's',
    );
    expect(formatRangeSet(ok)).toBe('10.0.0.10-10.0.0.20,10.0.0.21-10.0.0.30');
    const e = cniErrorOf(() =>
      canonicalizeRangeSet(
        [
          { subnet: '10.0.0.0/24', rangeStart: '10.0.0.10', rangeEnd: '10.0.0.20' },
          { subnet: '10.0.0.0/24', rangeStart: '10.0.0.20', rangeEnd: '10.0.0.30' },
        ],
        'ipam.ranges[0]',
      ),
    );
    expect(e.message).toContain('ipam.ranges[0][1]: range 10.0.0.20-10.0.0.30 overlaps ipam.ranges[0][0]');
    const a = canonicalizeRangeSet([{ subnet: '10.0.0.0/16' }], 'a');
    const b = canonicalizeRangeSet([{ subnet: '10.0.5.0/24' }], 'b');
    expect(cniErrorOf(() => checkRangeSetsDisjoint([a, b], 'ranges')).message).toContain(
      'range set 1 overlaps with range set 0',
    );
  });

  it('refuses empty and mixed-family sets', () => {
    expect(cniErrorOf(() => canonicalizeRangeSet([], 'ipam.ranges[2]')).message).toContain(
      'ipam.ranges[2]: empty range set',
    );
    expect(
      cniErrorOf(() => canonicalizeRangeSet([{ subnet: '10.0.0.0/24' }, { subnet: 'fd00::/64' }], 's'))
        .message,
    ).toContain('mixed address families');
  });

  it('capacity excludes the gateway', () => {
    expect(rangeSetCapacity(canonicalizeRangeSet([{ subnet: '10.0.0.0/24' }], 's'))).toBe(253n);
    expect(rangeSetCapacity(canonicalizeRangeSet([{ subnet: 'fd00::/64' }], 's'))).toBe((1n << 64n) - 2n);
  });

  it('round-robin follows the reference: after last, wrap across ranges, skip gateways, stop at the start', () => {
    const set = canonicalizeRangeSet(
      [{ subnet: '10.0.0.0/29' }, { subnet: '10.0.1.0/29', rangeStart: '10.0.1.4' }],
      's',
    );
    const seq = (last?: string) =>
      [...roundRobin(set, last ? parseIP(last) : undefined)].map((c) => formatIP(c.ip));
    expect(seq()).toEqual([
      '10.0.0.2',
      '10.0.0.3',
      '10.0.0.4',
      '10.0.0.5',
      '10.0.0.6',
      '10.0.1.4',
      '10.0.1.5',
      '10.0.1.6',
    ]);
    expect(seq('10.0.0.5')).toEqual([
      '10.0.0.6',
      '10.0.1.4',
      '10.0.1.5',
      '10.0.1.6',
      '10.0.0.2',
      '10.0.0.3',
      '10.0.0.4',
      '10.0.0.5',
    ]);
    // A cursor outside the set restarts at the first range's start.
    expect(seq('192.168.0.1')[0]).toBe('10.0.0.2');
  });
});
