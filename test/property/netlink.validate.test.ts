// Properties of the netlink input layer: IP canonical forms agree with an independent library, network
// math is consistent, and nothing that could break an `ip -batch` line or a shell script gets through.

import fc from 'fast-check';
import { Address4, Address6 } from 'ip-address';
import { describe, expect, it } from 'vitest';
import {
  checkIfName,
  cidrContains,
  networkOf,
  parseCidr,
  parseIp,
  parseRouteDst,
  sysctlPath,
} from '../../src/netlink/validate.js';

const v6 = fc.ipV6();
const v4 = fc.ipV4();

describe('netlink input validation', () => {
  it('canonicalizes IPv6 exactly like ip-address (RFC 5952) and is idempotent', () => {
    fc.assert(
      fc.property(v6, (ip) => {
        const { ip: canon, family } = parseIp(ip);
        expect(family).toBe(6);
        expect(canon).toBe(new Address6(ip).correctForm());
        expect(parseIp(canon).ip).toBe(canon);
      }),
    );
  });

  it('computes networks that contain their address and have no host bits', () => {
    fc.assert(
      fc.property(fc.oneof(v4, v6), fc.nat(128), (ip, n) => {
        const fam = ip.includes(':') ? 6 : 4;
        const prefix = n % ((fam === 4 ? 32 : 128) + 1);
        const c = parseCidr(`${ip}/${prefix}`);
        const net = networkOf(c);
        expect(cidrContains(c, c.ip, c.family)).toBe(true);
        expect(parseRouteDst(net, undefined).dst).toBe(net);
        const ref = fam === 4 ? new Address4(`${ip}/${prefix}`) : new Address6(`${ip}/${prefix}`);
        expect(net.split('/')[0]).toBe(
          fam === 4 ? ref.startAddress().correctForm() : (ref as Address6).startAddress().correctForm(),
        );
      }),
    );
  });

  it('masks host bits off route destinations, as the Go plugins do', () => {
    fc.assert(
      fc.property(v4, fc.integer({ min: 0, max: 32 }), (ip, prefix) => {
        const net = networkOf(parseCidr(`${ip}/${prefix}`));
        expect(parseRouteDst(`${ip}/${prefix}`, undefined).dst).toBe(net);
      }),
    );
  });

  it('accepts an interface name only when it is safe for a batch line', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 20 }), (name) => {
        let ok = true;
        try {
          checkIfName(name);
        } catch {
          ok = false;
        }
        const safe =
          name.length > 0 &&
          Buffer.byteLength(name) <= 15 &&
          name !== '.' &&
          name !== '..' &&
          !/[\s/:"'\\#]/.test(name);
        expect(ok).toBe(safe);
      }),
    );
  });

  it('keeps sysctl paths under /proc/sys/net', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), (key) => {
        let p: string | undefined;
        try {
          p = sysctlPath(key);
        } catch {
          return;
        }
        expect(p.startsWith('net/')).toBe(true);
        expect(p.split('/')).not.toContain('..');
        expect(p).toMatch(/^[A-Za-z0-9_./-]+$/);
      }),
    );
  });
});
