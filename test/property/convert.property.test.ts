import {
  ALL_VERSIONS,
  CniError,
  convertResult,
  parseResult,
  type Result,
  type Result020,
  type Result040,
  validateResult,
} from 'cni-kit';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { result020, result040, result100 } from './arbitraries.js';

const hasIps = (r: Result) => (r.ips?.length ?? 0) > 0;

describe('convertResult properties', () => {
  it('every output validates against its version schema, or is refused only when no IP is left', () => {
    fc.assert(
      fc.property(result100(), fc.constantFrom(...ALL_VERSIONS), (r, to) => {
        let out: unknown;
        try {
          out = convertResult(r, to);
        } catch (e) {
          expect(e).toBeInstanceOf(CniError);
          expect((e as CniError).code).toBe(1);
          expect(['0.1.0', '0.2.0']).toContain(to);
          expect(hasIps(r)).toBe(false);
          return;
        }
        expect((out as Result).cniVersion).toBe(to);
        expect(() => validateResult(out as Result)).not.toThrow();
        // what we print parses back as the same version
        expect(parseResult(JSON.stringify(out))).toEqual(out);
      }),
    );
  });

  it('1.1.0 -> 1.0.0 -> 1.1.0 is the identity', () => {
    fc.assert(
      fc.property(result100('1.1.0'), (r) => {
        expect(convertResult(convertResult(r, '1.0.0'), '1.1.0')).toEqual(r);
      }),
    );
  });

  it('1.x -> 0.4.0 -> 1.x is the identity without 1.1-only interface fields', () => {
    fc.assert(
      fc.property(result100('1.0.0', false), fc.constantFrom('0.3.0', '0.3.1', '0.4.0'), (r, mid) => {
        expect(convertResult(convertResult(r, mid), '1.0.0')).toEqual(r);
      }),
    );
  });

  it('0.4.0 -> 1.x -> 0.4.0 is the identity when versions match the addresses', () => {
    fc.assert(
      fc.property(result040('0.4.0'), fc.constantFrom('1.0.0', '1.1.0'), (r: Result040, mid) => {
        expect(convertResult(convertResult(r, mid), '0.4.0')).toEqual(r);
      }),
    );
  });

  it('0.2.0 -> 0.4.0 (and 1.x) -> 0.2.0 is the identity', () => {
    fc.assert(
      fc.property(
        result020('0.2.0'),
        fc.constantFrom('0.3.1', '0.4.0', '1.0.0', '1.1.0'),
        (r: Result020, mid) => {
          expect(convertResult(convertResult(r, mid), '0.2.0')).toEqual(r);
        },
      ),
    );
  });

  it('going down to 0.2.0 keeps the first IP of each family and routes of families that have an IP', () => {
    fc.assert(
      fc.property(result100('1.1.0').filter(hasIps), (r) => {
        const out = convertResult(r, '0.2.0') as Result020;
        const first4 = r.ips?.find((ip) => !ip.address.includes(':'));
        const first6 = r.ips?.find((ip) => ip.address.includes(':'));
        expect(out.ip4?.ip).toBe(first4?.address);
        expect(out.ip6?.ip).toBe(first6?.address);
        const routes = [...(out.ip4?.routes ?? []), ...(out.ip6?.routes ?? [])];
        const expected = (r.routes ?? []).filter((rt) => (rt.dst.includes(':') ? first6 : first4));
        expect(routes.length).toBe(expected.length);
        for (const rt of routes) expect(Object.keys(rt).every((k) => k === 'dst' || k === 'gw')).toBe(true);
      }),
    );
  });

  it('never mutates its input', () => {
    fc.assert(
      fc.property(result100(), fc.constantFrom(...ALL_VERSIONS), (r, to) => {
        const before = JSON.stringify(r);
        try {
          convertResult(r, to);
        } catch {
          // refusal is covered above
        }
        expect(JSON.stringify(r)).toBe(before);
      }),
    );
  });
});
