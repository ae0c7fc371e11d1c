// The netlink framing the native engine stands on: attributes written by NlWriter (any mix of
// sizes and nesting) read back identically with NlAttrs, and the decoders never throw or loop on
// arbitrary bytes (a short or corrupt datagram ends parsing; it never reads past the buffer).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseLinks } from '../../src/netlink/native/link.js';
import { NlAttrs, NlWriter, splitMessages } from '../../src/netlink/native/nlmsg.js';
import { parseAddrs, parseRoutes, parseRules } from '../../src/netlink/native/route.js';
import { ipBytes, ipText } from '../../src/netlink/native/rtnl.js';

type Tree = { type: number; value: Uint8Array } | { type: number; children: Tree[] };

const leaf = fc.record({
  type: fc.integer({ min: 1, max: 0x3fff }),
  value: fc.uint8Array({ maxLength: 40 }),
});
const tree: fc.Arbitrary<Tree> = fc.letrec<{ t: Tree }>((tie) => ({
  t: fc.oneof(
    { arbitrary: leaf, weight: 3 },
    fc.record({ type: fc.integer({ min: 1, max: 0x3fff }), children: fc.array(tie('t'), { maxLength: 4 }) }),
  ),
})).t;

function write(w: NlWriter, t: Tree): void {
  if ('value' in t) w.attr(t.type, Buffer.from(t.value));
  else {
    w.begin(t.type);
    for (const c of t.children) write(w, c);
    w.end();
  }
}

function read(a: NlAttrs): Array<{ type: number; value: number[] }> {
  return a.all.map((x) => ({ type: x.type, value: [...x.value] }));
}

describe('netlink framing', () => {
  it('reads back every attribute tree it writes (types, values, nesting, alignment)', () => {
    fc.assert(
      fc.property(fc.array(tree, { maxLength: 6 }), fc.integer({ min: 0, max: 0x7fffffff }), (trees, seq) => {
        const w = new NlWriter(16, 5);
        w.struct(Buffer.alloc(16));
        for (const t of trees) write(w, t);
        const msgs = splitMessages(Buffer.from(w.finish(seq)));
        expect(msgs).toHaveLength(1);
        expect(msgs[0]!).toMatchObject({ type: 16, flags: 5, seq });
        const check = (a: NlAttrs, ts: Tree[]) => {
          expect(a.all.map((x) => x.type)).toEqual(ts.map((t) => t.type));
          ts.forEach((t, i) => {
            const got = a.all[i]!.value;
            if ('value' in t) expect([...got]).toEqual([...t.value]);
            else check(new NlAttrs(got), t.children);
          });
        };
        check(new NlAttrs(msgs[0]!.body, 16), trees);
      }),
    );
  });

  it('never throws or reads out of bounds on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 0, max: 64 }), (bytes, cut) => {
        const buf = Buffer.from(bytes);
        const msgs = splitMessages(buf);
        for (const m of msgs) expect(m.body.length).toBeLessThanOrEqual(buf.length);
        read(new NlAttrs(buf, Math.min(cut, buf.length)));
        const asKind = (type: number) => msgs.map((m) => ({ ...m, type }));
        parseLinks(asKind(16));
        parseAddrs(asKind(20), (i) => `if${i}`);
        parseRoutes(asKind(24), 4, 254, () => undefined);
        parseRoutes(asKind(24), 6, 254, () => undefined);
        parseRules(asKind(32), 4);
      }),
    );
  });

  it('converts IPv4 and IPv6 addresses to network-order bytes and back canonically', () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), (ip) => {
        const b = ipBytes(ip);
        expect(b.length).toBe(ip.includes(':') ? 16 : 4);
        expect(ipBytes(ipText(b))).toEqual(b);
      }),
    );
    expect(ipText(ipBytes('10.1.2.3'))).toBe('10.1.2.3');
    expect(ipText(ipBytes('fd00::0:1'))).toBe('fd00::1');
    expect([...ipBytes('192.168.0.1')]).toEqual([192, 168, 0, 1]);
  });
});
