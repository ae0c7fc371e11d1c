// whereabouts config parsing: the keys users already have keep their meaning, and bad input fails
// with code 7 naming the field, the value and the fix.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { isAllowed, nextAllowed } from '../../src/ipam/whereabouts/allocator.js';
import { mergeIntervals, parseWhereaboutsConfig, subtract } from '../../src/ipam/whereabouts/config.js';
import { createWhereaboutsAllocator } from '../../src/ipam/whereabouts/index.js';
import { formatIP } from '../../src/spec/addr.js';
import type { CniError } from '../../src/spec/errors.js';
import { cniErrorOf } from '../helpers/errors.js';

const tmp = mkdtempSync(join(tmpdir(), `wbunit-${process.pid}-`));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const ip4 = (v: bigint) => formatIP({ family: 4, value: v });
const parse = (ipam: Record<string, unknown>) => parseWhereaboutsConfig({ type: 'whereabouts', ...ipam });

function code7(fn: () => unknown, ...parts: RegExp[]): void {
  const err = cniErrorOf(fn);
  expect(err.code).toBe(7);
  for (const p of parts) expect(err.message).toMatch(p);
}

describe('whereabouts config', () => {
  it('ignores host bits in range and hands out network+1 .. broadcast-1', () => {
    const r = parse({ range: '192.168.2.225/28' }).ranges[0]!;
    expect(r.ref.range).toBe('192.168.2.224/28');
    expect(ip4(r.first)).toBe('192.168.2.225');
    expect(ip4(r.last)).toBe('192.168.2.238');
    expect(r.capacity).toBe(14n);
    expect(r.ref.pool).toBe('192.168.2.224-28');
  });

  it('reads "A-B/nn" as start A, end B in B/nn', () => {
    const r = parse({ range: '10.0.0.10-10.0.0.20/24' }).ranges[0]!;
    expect([ip4(r.first), ip4(r.last), r.ref.range]).toEqual(['10.0.0.10', '10.0.0.20', '10.0.0.0/24']);
    code7(
      () => parse({ range: '10.1.0.10-10.0.0.20/24' }),
      /ipam\.range/,
      /10\.1\.0\.10/,
      /not in 10\.0\.0\.0\/24/,
    );
  });

  it('range_start / range_end bound the range; outside the subnet is an error naming the field', () => {
    const r = parse({ range: '10.0.0.0/24', range_start: '10.0.0.100', range_end: '10.0.0.110' }).ranges[0]!;
    expect([ip4(r.first), ip4(r.last)]).toEqual(['10.0.0.100', '10.0.0.110']);
    const c = parse({ range: '10.0.0.0/24', range_start: '10.0.0.0', range_end: '10.0.0.255' }).ranges[0]!;
    expect([ip4(c.first), ip4(c.last)]).toEqual(['10.0.0.1', '10.0.0.254']);
    code7(() => parse({ range: '10.0.0.0/24', range_start: '10.0.1.5' }), /ipam\.range_start/, /10\.0\.1\.5/);
    code7(
      () => parse({ range: '10.0.0.0/24', range_end: '10.0.0.0' }),
      /ipam\.range_end/,
      /no usable address/,
    );
    code7(() => parse({ range: '10.0.0.0/24', range_start: '10.0.0.9', range_end: '10.0.0.5' }), /swap/);
  });

  it('excludes CIDRs, bare IPs and the gateway', () => {
    const r = parse({
      range: '10.0.0.0/28',
      gateway: '10.0.0.1',
      exclude: ['10.0.0.4/30', '10.0.0.9', 'fd00::/64'],
    }).ranges[0]!;
    const allowed = [];
    for (let v = 0n; v < 16n; v++) if (isAllowed(r, 0x0a000000n + v)) allowed.push(Number(v));
    expect(allowed).toEqual([2, 3, 8, 10, 11, 12, 13, 14]);
    code7(() => parse({ range: '10.0.0.0/28', exclude: ['10.0.0/8'] }), /ipam\.exclude\[0\]/, /10\.0\.0\/8/);
  });

  it('ipRanges give one range each (dual stack), after the legacy range', () => {
    const cfg = parse({
      range: '10.0.0.0/24',
      ipRanges: [{ range: 'fd00:1::/64', exclude: ['fd00:1::1'] }],
      network_name: 'blue',
    });
    expect(cfg.ranges.map((r) => [r.field, r.ref.pool, r.ref.space, r.ref.family])).toEqual([
      ['ipam', 'blue-10.0.0.0-24', 'net.blue', 4],
      ['ipam.ipRanges[0]', 'blue-fd00-1---64', 'net.blue', 6],
    ]);
    expect(cfg.ranges[1]!.capacity).toBe((1n << 64n) - 3n);
    const sep = parse({ range: '10.0.0.0/24', enable_overlapping_ranges: false });
    expect(sep.ranges[0]!.ref.space).toBe('pool.10.0.0.0-24');
  });

  it('refuses ranges without usable addresses, bad datastores and missing etcd hosts', () => {
    code7(() => parse({ range: '10.0.0.0/31' }), /ipam\.range/, /\/30 or larger/);
    code7(() => parse({ range: 'fd00::/127' }), /\/126 or larger/);
    code7(() => parse({}), /ipam\.range: missing/);
    code7(() => parse({ range: '10.0.0.0/24', datastore: 'redis' }), /ipam\.datastore/, /"redis"/, /"etcd"/);
    code7(() => parse({ range: '10.0.0.0/24', datastore: 'etcd' }), /ipam\.etcd_host: missing/);
    // Without a kubeconfig the Kubernetes store does not resolve: ADD fails (whereabouts-flatfile.test.ts).
    expect(parse({ range: '10.0.0.0/24', datastore: 'kubernetes' }).datastore.kind).toBe('none');
    code7(
      () => parse({ range: '10.0.0.0/24', enable_overlapping_ranges: 'yes' }),
      /enable_overlapping_ranges/,
    );
    code7(() => parse({ range: '10.0.0.0/24', ipRanges: [{ range: '10.0.0.0/24' }] }), /repeats/);
  });

  it('a wrong ipam.type is refused with the type named', () => {
    code7(
      () =>
        createWhereaboutsAllocator({
          cniVersion: '1.0.0',
          name: 'n',
          ipam: { type: 'host-local', range: '10.0.0.0/24' },
        }),
      /"host-local"/,
    );
  });

  it('subtract and nextAllowed agree with brute force', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 40 }),
        fc.integer({ min: 0, max: 40 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 50 }), fc.integer({ min: 0, max: 6 })), { maxLength: 5 }),
        fc.integer({ min: 0, max: 60 }),
        (a, b, holes, probe) => {
          const [lo, hi] = a <= b ? [a, b] : [b, a];
          const hs = holes.map(([s, l]) => ({ lo: BigInt(s), hi: BigInt(s + l) }));
          const segs = subtract(BigInt(lo), BigInt(hi), hs);
          const inHole = (x: number) => hs.some((h) => BigInt(x) >= h.lo && BigInt(x) <= h.hi);
          const want: number[] = [];
          for (let x = lo; x <= hi; x++) if (!inHole(x)) want.push(x);
          const got: number[] = [];
          for (const s of segs) for (let x = s.lo; x <= s.hi; x++) got.push(Number(x));
          expect(got).toEqual(want);
          expect(mergeIntervals(segs)).toEqual(segs);
          if (want.length > 0) {
            const r = { segments: segs } as Parameters<typeof nextAllowed>[0];
            const expected = want.find((x) => x >= probe) ?? want[0]!;
            expect(Number(nextAllowed(r, BigInt(probe)))).toBe(expected);
          }
        },
      ),
    );
  });
});

describe('whereabouts allocator on the file store', () => {
  const conf = (ipam: Record<string, unknown>) => ({
    cniVersion: '1.0.0',
    name: 'wbunit',
    ipam: { type: 'whereabouts', datastore: 'file', data_dir: join(tmp, String(Math.random())), ...ipam },
  });

  it('dual stack: one address per range, gateway only on its family, static extras appended', async () => {
    const a = createWhereaboutsAllocator(
      conf({
        range: '10.5.0.0/24',
        gateway: '10.5.0.1',
        ipRanges: [{ range: 'fd00:5::/64' }],
        addresses: [{ address: '192.168.9.9/24', gateway: '192.168.9.1' }],
        routes: [{ dst: '0.0.0.0/0' }],
      }),
    );
    const r = await a.allocate({ containerId: 'c1', ifname: 'net1', args: [['IP', '172.16.0.5/16']] });
    expect(r.ips).toEqual([
      { address: '10.5.0.2/24', gateway: '10.5.0.1' },
      { address: 'fd00:5::1/64' },
      { address: '192.168.9.9/24', gateway: '192.168.9.1' },
      { address: '172.16.0.5/16' },
    ]);
    expect(r.routes).toEqual([{ dst: '0.0.0.0/0' }]);
    expect(r.cniVersion).toBe('1.0.0');
  });

  it('a StatefulSet pod re-created under the same name gets its address back; DEL of the old id is a no-op', async () => {
    const a = createWhereaboutsAllocator(conf({ range: '10.6.0.0/24' }));
    const args: Array<[string, string]> = [
      ['K8S_POD_NAMESPACE', 'db'],
      ['K8S_POD_NAME', 'web-0'],
    ];
    const first = await a.allocate({ containerId: 'old', ifname: 'net1', args });
    await a.allocate({ containerId: 'other', ifname: 'net1' });
    const again = await a.allocate({ containerId: 'new', ifname: 'net1', args });
    expect(again.ips![0]!.address).toBe(first.ips![0]!.address);
    await a.release({ containerId: 'old', ifname: 'net1' }); // the old sandbox's late DEL
    await expect(a.check({ containerId: 'new', ifname: 'net1', prevResult: again })).resolves.toBeUndefined();
    await a.release({ containerId: 'never-seen', ifname: 'net1' });
    await a.release({ containerId: 'new', ifname: 'net1' });
    await expect(a.check({ containerId: 'new', ifname: 'net1' })).rejects.toThrow(/holds no address/);
  });

  it('rolls back earlier ranges when a later one is exhausted', async () => {
    const a = createWhereaboutsAllocator(
      conf({ range: '10.7.0.0/24', ipRanges: [{ range: '10.8.0.0/30' }] }),
    );
    await a.allocate({ containerId: 'a', ifname: 'eth0' });
    await a.allocate({ containerId: 'b', ifname: 'eth0' });
    await expect(a.allocate({ containerId: 'c', ifname: 'eth0' })).rejects.toThrow(
      /ipam\.ipRanges\[0\]: no free address in 10\.8\.0\.0\/30/,
    );
    const st = await a.status().catch((e: CniError) => e);
    expect((st as CniError).code).toBe(50);
    await a.release({ containerId: 'a', ifname: 'eth0' });
    const s2 = await a.status();
    expect(s2.pools.map((p) => p.used)).toEqual([1, 1]);
  });

  it('works past the first half of an IPv6 /64 (whereabouts cannot use offsets >= 2^63)', async () => {
    const c = conf({ range: 'fd00:7::/64', range_start: 'fd00:7::ffff:ffff:ffff:fff0' });
    const a = createWhereaboutsAllocator(c);
    const got = [];
    for (let i = 0; i < 15; i++)
      got.push((await a.allocate({ containerId: `v${i}`, ifname: 'eth0' })).ips![0]!.address);
    expect(got[0]).toBe('fd00:7::ffff:ffff:ffff:fff0/64');
    expect(got[14]).toBe('fd00:7::ffff:ffff:ffff:fffe/64');
    await expect(a.allocate({ containerId: 'x', ifname: 'eth0' })).rejects.toThrow(/no free address/);
  });
});
