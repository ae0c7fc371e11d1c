import { CniError, convertResult, parseResult, type Result, toCurrentResult } from 'cni-kit';
import { isIPv4Address } from 'cni-kit/spec';
import { describe, expect, it } from 'vitest';

// The vector the reference library's own pkg/types/100 tests use.
const v110: Result = {
  cniVersion: '1.1.0',
  interfaces: [
    {
      name: 'eth0',
      mac: '00:11:22:33:44:55',
      mtu: 1500,
      sandbox: '/proc/3553/ns/net',
      pciID: '8086:9a01',
      socketPath: '/path/to/vhost/fd',
    },
  ],
  ips: [
    { interface: 0, address: '1.2.3.30/24', gateway: '1.2.3.1' },
    { interface: 0, address: 'abcd:1234:ffff::cdde/64', gateway: 'abcd:1234:ffff::1' },
  ],
  routes: [
    { dst: '15.5.6.0/24', gw: '15.5.6.8' },
    { dst: '1111:dddd::/80', gw: '1111:dddd::aaaa' },
  ],
  dns: {
    nameservers: ['1.2.3.4', '1::cafe'],
    domain: 'acompany.com',
    search: ['somedomain.com', 'otherdomain.net'],
    options: ['foo', 'bar'],
  },
};

describe('convertResult', () => {
  it('1.1.0 -> 0.4.0 reduces interfaces and adds ip versions', () => {
    expect(convertResult(v110, '0.4.0')).toEqual({
      cniVersion: '0.4.0',
      interfaces: [{ name: 'eth0', mac: '00:11:22:33:44:55', sandbox: '/proc/3553/ns/net' }],
      ips: [
        { version: '4', interface: 0, address: '1.2.3.30/24', gateway: '1.2.3.1' },
        { version: '6', interface: 0, address: 'abcd:1234:ffff::cdde/64', gateway: 'abcd:1234:ffff::1' },
      ],
      routes: v110.routes,
      dns: v110.dns,
    });
  });

  it('1.1.0 -> 0.1.0 splits IPs and routes by family', () => {
    expect(convertResult(v110, '0.1.0')).toEqual({
      cniVersion: '0.1.0',
      ip4: { ip: '1.2.3.30/24', gateway: '1.2.3.1', routes: [{ dst: '15.5.6.0/24', gw: '15.5.6.8' }] },
      ip6: {
        ip: 'abcd:1234:ffff::cdde/64',
        gateway: 'abcd:1234:ffff::1',
        routes: [{ dst: '1111:dddd::/80', gw: '1111:dddd::aaaa' }],
      },
      dns: v110.dns,
    });
  });

  it('"" means 0.1.0 and unknown versions are refused with code 1', () => {
    expect(convertResult(v110, '').cniVersion).toBe('0.1.0');
    expect(() => convertResult(v110, '9.9.9')).toThrow(/unsupported CNI result version "9.9.9"/);
  });

  it('refuses to go to 0.2.0 without IPs, naming the reason', () => {
    try {
      convertResult({ cniVersion: '0.4.0', dns: {} } as never, '0.2.0');
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(CniError);
      expect((e as CniError).code).toBe(1);
      expect((e as CniError).message).toMatch(/no valid IP addresses/);
    }
  });

  it('1.x results omit an empty dns block; 0.x results always carry one', () => {
    const r = { cniVersion: '0.4.0', ips: [{ version: '4' as const, address: '10.0.0.2/24' }], dns: {} };
    expect(convertResult(r, '1.0.0')).not.toHaveProperty('dns');
    expect(convertResult({ cniVersion: '1.0.0' }, '0.4.0')).toHaveProperty('dns', {});
  });

  it('v4-mapped IPv6 counts as IPv4 like Go To4()', () => {
    expect(isIPv4Address('::ffff:10.1.2.3/120')).toBe(true);
    expect(isIPv4Address('::ffff:a01:203')).toBe(true);
    expect(isIPv4Address('::1')).toBe(false);
    expect(isIPv4Address('10.0.0.1')).toBe(true);
    expect(isIPv4Address('fe80::ffff:1.2.3.4')).toBe(false);
  });
});

describe('parseResult', () => {
  it('takes the fallback version when cniVersion is missing (libcni fixup) and null as {}', () => {
    expect(parseResult('{"ips":[{"address":"10.0.0.2/24"}]}', '1.0.0').cniVersion).toBe('1.0.0');
    expect(parseResult('null', '1.0.0')).toEqual({ cniVersion: '1.0.0' });
    expect(parseResult('{}').cniVersion).toBe('0.1.0');
  });

  it('names the bad field of an invalid result', () => {
    expect(() => parseResult({ cniVersion: '1.0.0', ips: [{ address: 5 }] })).toThrow(
      /result\.ips\[0\]\.address: 5 must be a string/,
    );
    expect(() => parseResult('{"cniVersion":')).toThrow(/not valid JSON/);
  });

  it('toCurrentResult lifts a 0.2.0 result to 1.1.0', () => {
    const cur = toCurrentResult({
      cniVersion: '0.2.0',
      ip4: { ip: '10.0.0.2/24', gateway: '10.0.0.1' },
      dns: {},
    });
    expect(cur).toEqual({ cniVersion: '1.1.0', ips: [{ address: '10.0.0.2/24', gateway: '10.0.0.1' }] });
  });
});
