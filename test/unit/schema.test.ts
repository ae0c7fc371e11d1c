// The config-schema builder (`conf`): inferred types, CNI's unset rules (null, "" for optional
// strings), unknown fields kept, every problem collected with its path, value and fix, and
// CniErrors thrown inside a check turned into problems. Properties over arbitrary JSON: parsing
// never throws anything but a code 7 CniError whose message starts with the failing path.
import { CniError, conf, type Infer } from 'cni-kit';
import fc from 'fast-check';
import { describe, expect, expectTypeOf, it } from 'vitest';

function problems(fn: () => unknown): { message: string; details: string | undefined; code: number } {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CniError);
    const err = e as CniError;
    return { message: err.message, details: err.details, code: err.code };
  }
  throw new Error('expected a CniError');
}

const plugin = conf.object({
  bridge: conf.ifname().default('cni0'),
  mtu: conf.int(68, 65535).optional(),
  mode: conf.enum(['bridge', 'vepa']).default('bridge'),
  mac: conf.mac().optional(),
  trunk: conf.array(conf.object({ id: conf.int(1, 4094) })).default([]),
  master: conf.string().fix('set it to the parent interface, e.g. "eth0"'),
});

describe('conf', () => {
  it('infers the parsed type: defaults are required, optional fields optional', () => {
    type C = Infer<typeof plugin>;
    expectTypeOf<C['bridge']>().toEqualTypeOf<string>();
    expectTypeOf<C['mode']>().toEqualTypeOf<'bridge' | 'vepa'>();
    expectTypeOf<C['trunk']>().toEqualTypeOf<Array<{ id: number }>>();
    expectTypeOf<C>().toHaveProperty('mtu');
    expectTypeOf<Pick<C, 'mtu'>>().toEqualTypeOf<{ mtu?: number }>();
  });

  it('applies defaults for absent, null and (for strings) empty values, and keeps unknown fields', () => {
    const c = plugin.parse({ master: 'eth0', bridge: null, mode: '', mtu: null, vendor: { keep: [1] } });
    expect(c).toEqual({ master: 'eth0', bridge: 'cni0', mode: 'bridge', trunk: [], vendor: { keep: [1] } });
    expect('mtu' in c).toBe(false);
    expect(plugin.parse({ master: 'eth0', mac: 'C2:11:22:33:44:55' }).mac).toBe('c2:11:22:33:44:55');
  });

  it('collects every problem with its path, value and fix; the first is the message, the rest details', () => {
    const e = problems(() =>
      plugin.parse({ bridge: 'a-very-long-bridge-name', mtu: 9, mode: 'x', trunk: [{ id: 0 }, 'y'] }),
    );
    expect(e.code).toBe(7);
    expect(e.message).toBe('bridge: "a-very-long-bridge-name" is longer than 15 characters');
    expect(e.details?.split('; ')).toEqual([
      'mtu: 9 must be an integer from 68 to 65535',
      'mode: "x" must be one of "bridge", "vepa"',
      'trunk[0].id: 0 must be an integer from 1 to 4094',
      'trunk[1]: "y" must be an object',
      'master: missing',
      'set it to the parent interface, e.g. "eth0"',
    ]);
    expect(problems(() => conf.object({ a: conf.string() }).parse('x', { path: 'ipam' })).message).toBe(
      'ipam: "x" must be an object',
    );
    expect(problems(() => conf.int().parse(1.5, { label: 'invalid network config' })).message).toBe(
      'invalid network config: (top level): 1.5 must be an integer',
    );
  });

  it('turns a CniError thrown in transform, refine or custom into a problem at that place', () => {
    const s = conf.object({
      pair: conf.object({ lo: conf.int(), hi: conf.int() }).transform((p, path) => {
        if (p.lo > p.hi) throw new CniError(7, `${path}: lo ${p.lo} is above hi ${p.hi}`, 'swap them');
        return [p.lo, p.hi] as const;
      }),
      even: conf.int().refine((n) => (n % 2 ? 'must be even' : undefined), 'use 2, 4, ...'),
    });
    expect(s.parse({ pair: { lo: 1, hi: 2 }, even: 4 })).toEqual({ pair: [1, 2], even: 4 });
    expect(problems(() => s.parse({ pair: { lo: 3, hi: 2 }, even: 4 }))).toEqual({
      code: 7,
      message: 'pair: lo 3 is above hi 2',
      details: 'swap them',
    });
    expect(problems(() => s.parse({ pair: { lo: 1, hi: 2 }, even: 3 })).message).toBe(
      'even: 3 must be even; use 2, 4, ...',
    );
    // A plain Error is a bug in the check, not bad input: it is not swallowed.
    expect(() => conf.custom(() => JSON.parse('{')).parse(1)).toThrow(SyntaxError);
  });

  it('extend adds or replaces fields; unknown takes any set value but still reports it missing', () => {
    const base = conf.object({ a: conf.int(), b: conf.string() });
    const more = base.extend({ b: conf.int(), c: conf.unknown() });
    expect(more.parse({ a: 1, b: 2, c: [{ x: 1 }] })).toEqual({ a: 1, b: 2, c: [{ x: 1 }] });
    expect(problems(() => more.parse({ a: 1, b: 'x' })).message).toBe('b: "x" must be an integer');
    expect(problems(() => more.parse({ a: 1, b: 2 })).message).toBe('c: missing');
    expect(conf.unknown().optional().parse(undefined)).toBeUndefined();
  });

  it('address leaves: ip (by family), cidr, mac and ifname', () => {
    expect(conf.ip().parse('2001:db8::1')).toBe('2001:db8::1');
    expect(problems(() => conf.ip(4).parse('2001:db8::1')).message).toMatch(/is not an IPv4 address/);
    expect(problems(() => conf.ip().parse('10.0.0.1/24')).message).toMatch(/drop the "\/prefix"/);
    expect(conf.cidr().parse('10.0.0.7/24')).toBe('10.0.0.7/24');
    expect(problems(() => conf.cidr().parse('10.0.0.7/33')).message).toMatch(/not in CIDR notation/);
    expect(problems(() => conf.mac().parse('01:00:5e:00:00:01')).message).toMatch(/multicast/);
    expect(problems(() => conf.ifname().parse('a/b')).message).toMatch(/not an interface name/);
  });

  it('property: an object schema returns every field it does not declare unchanged', () => {
    const s = conf.object({ known: conf.int().optional() });
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), (obj) => {
        const { known: _k, ...rest } = obj;
        const out = s.parse({ ...rest, known: 1 });
        expect(out).toEqual({ ...rest, known: 1 });
      }),
    );
  });

  it('property: int(min, max) accepts exactly the integers in range, and names the value otherwise', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -10, max: 10 }),
        fc.integer({ min: 0, max: 10 }),
        fc.jsonValue(),
        (min, span, v) => {
          const s = conf.int(min, min + span);
          const ok = typeof v === 'number' && Number.isInteger(v) && v >= min && v <= min + span;
          const r = s.safeParse(v, 'x');
          if (v === null) expect(r.ok).toBe(false);
          else if (ok) expect(r).toEqual({ ok: true, value: v });
          else {
            expect(r.ok).toBe(false);
            if (!r.ok) expect(r.issues[0]?.message).toMatch(/^x: /);
          }
        },
      ),
    );
  });

  it('property: any JSON fails a schema only with a code 7 CniError whose message starts with a path', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        try {
          plugin.parse(v, { path: 'cfg' });
        } catch (e) {
          expect(e).toBeInstanceOf(CniError);
          expect((e as CniError).code).toBe(7);
          expect((e as CniError).message).toMatch(/^cfg[.[:]/);
        }
      }),
    );
  });
});
