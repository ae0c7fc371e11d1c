// Properties of the shared plugin building blocks: chain names, MAC parsing and precedence, route
// gateway defaulting, and tuning's sysctl key mapping.
import { createHash } from 'node:crypto';
import { CniError, conf } from 'cni-kit';
import { masqChainName, masqComment, requestedMac, routeSpec } from 'cni-kit/netsetup';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { sysctlKeyPath } from '../../examples/tuning/plugin.js';

const hexByte = fc.integer({ min: 0, max: 255 }).map((n) => n.toString(16).padStart(2, '0'));
const unicastMac = fc
  .tuple(hexByte, hexByte, hexByte, hexByte, hexByte, hexByte)
  .map(([a, ...rest]) => [(Number.parseInt(a, 16) & 0xfe).toString(16).padStart(2, '0'), ...rest].join(':'));
const ifname = fc.stringMatching(/^[a-z][a-z0-9.]{0,14}$/);

describe('netsetup properties', () => {
  it('chain names are CNI- plus 24 hex digits of sha512(name+id), ≤ 28 chars, and differ per container', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), fc.string(), (name, a, b) => {
        const ca = masqChainName(name, a);
        expect(ca).toMatch(/^CNI-[0-9a-f]{24}$/);
        expect(ca.slice(4)).toBe(
          createHash('sha512')
            .update(name + a)
            .digest('hex')
            .slice(0, 24),
        );
        if (a !== b) expect(masqChainName(name, b)).not.toBe(ca);
        expect(masqComment(name, a)).toBe(`name: "${name}" id: "${a}"`);
      }),
    );
  });

  it('conf.mac() accepts unicast MACs in any case and rejects multicast and malformed ones', () => {
    const parseMac = (v: string) => conf.mac().parse(v, { path: 'mac' });
    fc.assert(
      fc.property(unicastMac, fc.boolean(), (mac, upper) => {
        expect(parseMac(upper ? mac.toUpperCase() : mac)).toBe(mac);
        const multicast = `${(Number.parseInt(mac.slice(0, 2), 16) | 1).toString(16).padStart(2, '0')}${mac.slice(2)}`;
        expect(() => parseMac(multicast)).toThrow(/^mac: ".*" is a multicast MAC/);
        expect(() => parseMac(`${mac}:00`)).toThrow(CniError);
      }),
    );
  });

  it('requestedMac precedence: CNI_ARGS MAC > args.cni.mac > runtimeConfig.mac > own field', () => {
    fc.assert(
      fc.property(
        fc.array(fc.option(unicastMac, { nil: undefined }), { minLength: 4, maxLength: 4 }),
        ([env, cni, rc, own]) => {
          const conf: Record<string, unknown> = {};
          if (cni) conf.args = { cni: { mac: cni } };
          if (rc) conf.runtimeConfig = { mac: rc };
          if (own) conf.mac = own;
          const args: Array<[string, string]> = env ? [['MAC', env]] : [];
          expect(requestedMac(conf, args)).toBe(env ?? cni ?? rc ?? own);
        },
      ),
    );
  });

  it('routeSpec takes the gateway of the route family from the IPs when the route has none', () => {
    fc.assert(
      fc.property(
        fc.ipV4(),
        fc.ipV6(),
        fc.boolean(),
        fc.option(fc.ipV4(), { nil: undefined }),
        (gw4, gw6, six, own) => {
          const ips = [
            { address: '10.0.0.2/24', gateway: gw4 },
            { address: 'fd00::2/64', gateway: gw6 },
          ];
          const dst = six ? '::/0' : '0.0.0.0/0';
          const r = routeSpec({ dst, ...(own && !six ? { gw: own } : {}) }, 'eth0', ips);
          expect(r.gw).toBe(six ? gw6 : (own ?? gw4));
          expect(r.dev).toBe('eth0');
        },
      ),
    );
  });

  it('tuning maps keys under net. to /proc/sys paths with IFNAME substituted, and rejects others', () => {
    const seg = fc.stringMatching(/^[a-z_][a-z0-9_]{0,10}$/);
    fc.assert(
      fc.property(fc.array(seg, { minLength: 1, maxLength: 4 }), ifname, fc.boolean(), (rest, ifn, slash) => {
        const parts = ['net', ...rest.slice(0, 1), 'IFNAME', ...rest.slice(1)];
        const key = slash ? parts.join('/') : parts.join('.');
        const path = sysctlKeyPath(key, ifn);
        expect(path).toBe(parts.map((p) => (p === 'IFNAME' ? ifn : p)).join('/'));
        const other = [rest[0] === 'net' ? 'kernel' : (rest[0] ?? 'x'), ...rest.slice(1)].join('.');
        if (!other.startsWith('net')) expect(() => sysctlKeyPath(other, ifn)).toThrow(/not under net/);
      }),
    );
  });
});
