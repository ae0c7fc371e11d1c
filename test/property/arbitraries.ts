// fast-check generators for CNI data shared by the property suites.

import type { DNS, Interface, IPConfig, Result, Result020, Result040, Route } from 'cni-kit';
import fc from 'fast-check';

/** A dotted-quad IPv4 address. */
export const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((b) => b.join('.'));
/** A fully written IPv6 address (eight groups). */
export const ipv6 = fc
  .array(fc.nat(0xffff), { minLength: 8, maxLength: 8 })
  .map((g) => g.map((x) => x.toString(16)).join(':'));
export const cidr4 = fc.tuple(ipv4, fc.integer({ min: 0, max: 32 })).map(([a, p]) => `${a}/${p}`);
export const cidr6 = fc.tuple(ipv6, fc.integer({ min: 0, max: 128 })).map(([a, p]) => `${a}/${p}`);
const word = fc.stringMatching(/^[a-z][a-z0-9-]{0,10}$/);

export const dns: fc.Arbitrary<DNS> = fc.record(
  {
    nameservers: fc.array(fc.oneof(ipv4, ipv6), { minLength: 1, maxLength: 3 }),
    domain: word,
    search: fc.array(word, { minLength: 1, maxLength: 3 }),
    options: fc.array(word, { minLength: 1, maxLength: 2 }),
  },
  { requiredKeys: [] },
);

type Model = Record<string, fc.Arbitrary<unknown>>;

const route = (dst: fc.Arbitrary<string>, gw: fc.Arbitrary<string>, extra: boolean): fc.Arbitrary<Route> =>
  fc.record(
    (extra
      ? {
          dst,
          gw,
          mtu: fc.integer({ min: 1, max: 9000 }),
          advmss: fc.integer({ min: 1, max: 9000 }),
          priority: fc.integer({ min: 1, max: 1000 }),
          table: fc.nat(255),
          scope: fc.nat(255),
        }
      : { dst, gw }) as Model,
    { requiredKeys: ['dst'] },
  ) as unknown as fc.Arbitrary<Route>;

/** A current (1.x) result; `with11` adds the 1.1-only interface and route fields. */
export function result100(version: '1.0.0' | '1.1.0' = '1.1.0', with11 = true): fc.Arbitrary<Result> {
  const iface: fc.Arbitrary<Interface> = fc.record(
    (with11
      ? {
          name: word,
          mac: fc.constant('0a:58:0a:f4:00:05'),
          sandbox: fc.constant('/var/run/netns/x'),
          mtu: fc.integer({ min: 68, max: 9000 }),
          socketPath: fc.constant('/run/vhost.sock'),
          pciID: fc.constant('0000:04:00.5'),
        }
      : {
          name: word,
          mac: fc.constant('0a:58:0a:f4:00:05'),
          sandbox: fc.constant('/var/run/netns/x'),
        }) as Model,
    { requiredKeys: ['name'] },
  ) as unknown as fc.Arbitrary<Interface>;
  const ip = (addr: fc.Arbitrary<string>, gw: fc.Arbitrary<string>): fc.Arbitrary<IPConfig> =>
    fc.record({ interface: fc.nat(3), address: addr, gateway: gw }, { requiredKeys: ['address'] });
  return fc
    .record(
      {
        interfaces: fc.array(iface, { maxLength: 3 }),
        ips: fc.array(fc.oneof(ip(cidr4, ipv4), ip(cidr6, ipv6)), { maxLength: 4 }),
        routes: fc.array(fc.oneof(route(cidr4, ipv4, with11), route(cidr6, ipv6, with11)), { maxLength: 4 }),
        dns,
      },
      { requiredKeys: [] },
    )
    .map((r) => {
      const out: Result = { cniVersion: version, ...r };
      if (out.dns && Object.keys(out.dns).length === 0) delete out.dns;
      // `ips[].interface` indexes `interfaces` (validateResult checks it): fold it into range.
      const count = out.interfaces?.length ?? 0;
      if (out.ips) {
        out.ips = out.ips.map(({ interface: i, ...rest }) =>
          i === undefined || count === 0 ? rest : { interface: i % count, ...rest },
        );
      }
      return out;
    });
}

/** A 0.3.x/0.4.0 result whose `version` fields agree with the addresses. */
export function result040(version: '0.3.0' | '0.3.1' | '0.4.0' = '0.4.0'): fc.Arbitrary<Result040> {
  return result100('1.0.0', false).map((r) => {
    const out: Result040 = { cniVersion: version, dns: r.dns ?? {} };
    if (r.interfaces) out.interfaces = r.interfaces;
    if (r.ips) {
      out.ips = r.ips.map((ip) => ({ version: ip.address.includes(':') ? '6' : '4', ...ip }));
    }
    if (r.routes) out.routes = r.routes;
    return out;
  });
}

/** A 0.1.0/0.2.0 result with at least one of ip4/ip6 and routes of the matching family. */
export function result020(version: '0.1.0' | '0.2.0' = '0.2.0'): fc.Arbitrary<Result020> {
  const block = (addr: fc.Arbitrary<string>, gw: fc.Arbitrary<string>, dst: fc.Arbitrary<string>) =>
    fc.record(
      { ip: addr, gateway: gw, routes: fc.array(route(dst, gw, false), { minLength: 1, maxLength: 3 }) },
      { requiredKeys: ['ip'] },
    );
  return fc
    .record(
      { ip4: block(cidr4, ipv4, cidr4), ip6: block(cidr6, ipv6, cidr6), dns },
      { requiredKeys: ['dns'] },
    )
    .filter((r) => r.ip4 !== undefined || r.ip6 !== undefined)
    .map((r) => ({ cniVersion: version, ...r }));
}
