// The DHCP packet codec: encode/decode round trips (long options split and joined, RFC 3396), the
// IPv4/UDP framing with its checksums, and garbage that never gets past a clean error.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { classlessRoutes, leaseRoutes } from '../../src/ipam/dhcp/options.js';
import {
  DhcpDecodeError,
  type DhcpMessage,
  decodeDhcp,
  decodeIpUdp,
  encodeDhcp,
  encodeIpUdp,
} from '../../src/ipam/dhcp/packet.js';

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const bytes = (max: number) => fc.uint8Array({ maxLength: max });
const options = fc
  .uniqueArray(fc.tuple(fc.integer({ min: 1, max: 254 }), bytes(600)), {
    selector: ([k]) => k,
    maxLength: 12,
  })
  .map((entries) => new Map(entries));

const message: fc.Arbitrary<DhcpMessage> = fc.record({
  op: fc.constantFrom(1, 2),
  xid: u32,
  secs: fc.integer({ min: 0, max: 0xffff }),
  broadcast: fc.boolean(),
  ciaddr: u32,
  yiaddr: u32,
  siaddr: u32,
  giaddr: u32,
  chaddr: fc.uint8Array({ minLength: 6, maxLength: 6 }),
  options,
});

const plain = (m: DhcpMessage) => ({
  ...m,
  chaddr: [...m.chaddr],
  options: [...m.options].map(([k, v]) => [k, [...v]]),
});

describe('DHCP codec', () => {
  it('decode(encode(m)) is m, options over 255 bytes included', () => {
    fc.assert(
      fc.property(message, (m) => {
        const wire = encodeDhcp(m);
        expect(wire.length).toBeGreaterThanOrEqual(300);
        expect(plain(decodeDhcp(wire))).toEqual(plain(m));
      }),
    );
  });

  it('any bytes: decodeDhcp returns a message or throws DhcpDecodeError, nothing else', () => {
    fc.assert(
      fc.property(bytes(700), (b) => {
        try {
          decodeDhcp(b);
        } catch (e) {
          expect(e).toBeInstanceOf(DhcpDecodeError);
        }
      }),
    );
  });

  it('a valid header with garbage options: only DhcpDecodeError', () => {
    fc.assert(
      fc.property(message, bytes(300), (m, tail) => {
        const wire = Buffer.concat([encodeDhcp({ ...m, options: new Map() }).subarray(0, 240), tail]);
        try {
          const d = decodeDhcp(wire);
          for (const v of d.options.values()) expect(v).toBeInstanceOf(Uint8Array);
        } catch (e) {
          expect(e).toBeInstanceOf(DhcpDecodeError);
        }
      }),
    );
  });

  it('a truncated message is a DhcpDecodeError', () => {
    fc.assert(
      fc.property(message, fc.integer({ min: 0, max: 239 }), (m, n) => {
        expect(() => decodeDhcp(encodeDhcp(m).subarray(0, n))).toThrow(DhcpDecodeError);
      }),
    );
  });
});

describe('IPv4/UDP framing', () => {
  it('decodeIpUdp(encodeIpUdp(p)) is p, and both checksums verify', () => {
    fc.assert(
      fc.property(
        u32,
        u32,
        fc.integer({ min: 0, max: 0xffff }),
        fc.integer({ min: 0, max: 0xffff }),
        bytes(1400),
        (src, dst, srcPort, dstPort, payload) => {
          const wire = encodeIpUdp({ src, dst, srcPort, dstPort, payload });
          const d = decodeIpUdp(wire);
          expect(d).toBeDefined();
          expect({ ...d, payload: [...(d?.payload ?? [])] }).toEqual({
            src,
            dst,
            srcPort,
            dstPort,
            payload: [...payload],
          });
          // The UDP checksum over the pseudo-header sums to 0xffff.
          let sum = (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + 17 + wire.length - 20;
          for (let i = 20; i < wire.length; i += 2) sum += (wire[i] as number) * 256 + (wire[i + 1] ?? 0);
          while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
          expect(sum).toBe(0xffff);
        },
      ),
    );
  });

  it('any bytes: decodeIpUdp returns a datagram or undefined, never throws', () => {
    fc.assert(
      fc.property(bytes(200), (b) => {
        expect(() => decodeIpUdp(b)).not.toThrow();
      }),
    );
  });

  it('a flipped header bit is caught by the IPv4 checksum', () => {
    fc.assert(
      fc.property(u32, u32, fc.integer({ min: 0, max: 159 }), (src, dst, bit) => {
        const wire = encodeIpUdp({ src, dst, srcPort: 67, dstPort: 68, payload: Uint8Array.of(1, 2, 3) });
        const byte = bit >> 3;
        // Bits that change the version or header length are rejected before the checksum.
        wire[byte] = (wire[byte] as number) ^ (1 << (bit & 7));
        expect(decodeIpUdp(wire)).toBeUndefined();
      }),
    );
  });
});

describe('routes from options', () => {
  it('any option 121/33 bytes: routes or a fallback, never a throw', () => {
    fc.assert(
      fc.property(bytes(60), bytes(40), (o121, o33) => {
        expect(() => classlessRoutes(o121)).not.toThrow();
        const m: DhcpMessage = {
          op: 2,
          xid: 0,
          secs: 0,
          broadcast: false,
          ciaddr: 0,
          yiaddr: 0,
          siaddr: 0,
          giaddr: 0,
          chaddr: new Uint8Array(6),
          options: new Map([
            [121, o121],
            [33, o33],
          ]),
        };
        for (const r of leaseRoutes(m, 3)) expect(r.dst).toMatch(/^\d+\.\d+\.\d+\.\d+\/\d+$/);
      }),
    );
  });
});
