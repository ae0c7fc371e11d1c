// Properties of the netlink input layer: IP canonical forms agree with an independent library, network
// math is consistent, and nothing that could break an `ip -batch` line or a shell script gets through.

import fc from 'fast-check';
import { Address4, Address6 } from 'ip-address';
import { describe, expect, it } from 'vitest';
import { memoryNetlink, NetlinkError } from '../../src/netlink/index.js';
import { ipLines } from '../../src/netlink/linux/commands.js';
import { checkSpec } from '../../src/netlink/normalize.js';
import type { LinkSpec } from '../../src/netlink/types.js';
import {
  checkIfName,
  cidrContains,
  networkOf,
  parseCidr,
  parseIp,
  parseRouteDst,
  sysctlPath,
} from '../../src/netlink/validate.js';
import { CniError } from '../../src/spec/errors.js';

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

  it('tap, tun and vrf specs: code 7 for anything the device cannot take, else safe batch lines the model accepts', async () => {
    const anyValue = fc.oneof(
      fc.integer({ min: -2, max: 2 ** 33 }),
      fc.boolean(),
      fc.string({ maxLength: 8 }),
    );
    const spec = fc.record(
      {
        kind: fc.constantFrom('tap', 'tun', 'vrf'),
        name: fc.oneof(fc.constantFrom('t0', 'tap-1', 'x'), fc.string({ maxLength: 17 })),
        mtu: fc.oneof(fc.integer({ min: 0, max: 70000 }), anyValue),
        mac: fc.constantFrom('02:00:00:00:00:01', '01:00:00:00:00:01', 'zz'),
        netns: fc.constantFrom('/var/run/netns/x', 'rel'),
        multiQueue: anyValue,
        vnetHdr: anyValue,
        owner: anyValue,
        group: anyValue,
        table: anyValue,
      },
      { requiredKeys: ['kind', 'name'] },
    );
    await fc.assert(
      fc.asyncProperty(spec, async (raw) => {
        let s: LinkSpec;
        try {
          s = checkSpec(raw as unknown as LinkSpec);
        } catch (e) {
          expect(e).toBeInstanceOf(CniError);
          expect((e as CniError).code).toBe(7);
          return;
        }
        // What got through is what the device takes.
        if (s.kind === 'vrf') expect(Number.isInteger(s.table) && s.table >= 1).toBe(true);
        else {
          expect(s.netns).toBeUndefined();
          if (s.mtu !== undefined) expect(s.mtu).toBeLessThanOrEqual(s.kind === 'tap' ? 65521 : 65535);
          if (s.kind === 'tun') expect(s.mac).toBeUndefined();
        }
        const lines = ipLines({ t: 'link-add', spec: s });
        expect(lines.length).toBeLessThanOrEqual(2);
        // One batch line each: no line breaks, quotes, comments or empty words.
        for (const l of lines) {
          expect(l).not.toMatch(/[\n\r"'\\#]/);
          expect(l.split(' ').every((w) => w.length > 0)).toBe(true);
        }
        // The model creates it (or, for a spec naming another netns, says which is missing).
        const nl = memoryNetlink({ hostLinks: [] });
        const ns = nl.open();
        ns.createLink(s);
        await ns.flush().catch((e) => expect(e).toBeInstanceOf(NetlinkError));
      }),
      { numRuns: 300 },
    );
  });
});
