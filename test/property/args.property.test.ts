import { ALL_VERSIONS, CniError, cniArgsGet } from 'cni-kit';
import {
  compareVersions,
  formatCniArgs,
  injectRuntimeConfig,
  isValidIfName,
  parseCniArgs,
  parseVersion,
  pickVersion,
  validateContainerId,
} from 'cni-kit/spec';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

const key = fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,15}$/);
// values may contain '=' (the Go parser cannot), never ';'
const value = fc.string({ maxLength: 20 }).filter((s) => !s.includes(';'));

describe('CNI_ARGS', () => {
  it('format then parse is the identity, values with "=" included', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(key, value), { maxLength: 8 }), (pairs) => {
        expect(parseCniArgs(formatCniArgs(pairs))).toEqual(pairs);
      }),
    );
  });

  it('the last value of a repeated key wins and trailing ";" is tolerated', () => {
    expect(cniArgsGet('IgnoreUnknown=1;K8S_POD_NAME=a;K8S_POD_NAME=b;', 'K8S_POD_NAME')).toBe('b');
    expect(parseCniArgs('IP=10.0.0.2;')).toEqual([['IP', '10.0.0.2']]);
    expect(parseCniArgs('A=b=c')).toEqual([['A', 'b=c']]);
  });

  it('a segment without "=" is code 4 and says how to fix it', () => {
    expect(() => parseCniArgs('FOO')).toThrow(/CNI_ARGS: "FOO" is not KEY=VALUE/);
    expect(() => parseCniArgs('=x')).toThrow(CniError);
    expect(() => formatCniArgs([['A', 'x;y']])).toThrow(/must not contain ';'/);
  });
});

describe('identifiers', () => {
  const idChars = fc.stringMatching(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,40}$/);
  it('accepts every ID of the spec grammar and rejects anything with another character', () => {
    fc.assert(
      fc.property(idChars, (id) => {
        expect(() => validateContainerId(id)).not.toThrow();
      }),
    );
    fc.assert(
      fc.property(idChars, fc.constantFrom(' ', '/', ':', '@', '$', 'é'), fc.nat(), (id, bad, at) => {
        const i = at % (id.length + 1);
        const s = id.slice(0, i) + bad + id.slice(i);
        expect(() => validateContainerId(s)).toThrow(CniError);
      }),
    );
  });

  it('empty container ID is code 3, bad characters code 4', () => {
    try {
      validateContainerId('');
    } catch (e) {
      expect((e as CniError).code).toBe(3);
    }
    try {
      validateContainerId('a b');
    } catch (e) {
      expect((e as CniError).code).toBe(4);
    }
    expect.assertions(2);
  });

  it('interface names: 1..15 bytes, not . or .., no / : or whitespace', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 0, maxLength: 20 }), (name) => {
        const expected =
          name.length > 0 &&
          Buffer.byteLength(name) <= 15 &&
          name !== '.' &&
          name !== '..' &&
          !/[/:\s]/u.test(name);
        expect(isValidIfName(name)).toBe(expected);
      }),
    );
    expect(isValidIfName('eth0')).toBe(true);
    expect(isValidIfName('a'.repeat(16))).toBe(false);
    expect(isValidIfName('ééééééééé')).toBe(false); // 18 bytes
  });
});

describe('versions', () => {
  it('parses like Go: "" is 0.1.0, short forms pad, junk is refused', () => {
    expect(parseVersion('')).toEqual({ major: 0, minor: 1, micro: 0 });
    expect(parseVersion('1')).toEqual({ major: 1, minor: 0, micro: 0 });
    expect(parseVersion('1.1')).toEqual({ major: 1, minor: 1, micro: 0 });
    expect(() => parseVersion('1.0.0-rc1')).toThrow(/is not a number/);
    expect(() => parseVersion('1.0.0.0')).toThrow(/too many parts/);
  });

  it('compare is a total order consistent with numeric triples', () => {
    const v = fc.tuple(fc.nat(20), fc.nat(20), fc.nat(20)).map((t) => t.join('.'));
    fc.assert(
      fc.property(v, v, (a, b) => {
        const [x, y] = [a.split('.').map(Number), b.split('.').map(Number)];
        const exp = Math.sign(x[0]! - y[0]! || x[1]! - y[1]! || x[2]! - y[2]!);
        // `+ 0` folds -0 into 0: Object.is tells them apart and equal versions give exp = 0.
        expect(Math.sign(compareVersions(a, b)) + 0).toBe(exp + 0);
        expect(Math.sign(compareVersions(b, a)) + 0).toBe(-exp + 0);
      }),
    );
  });

  it('pickVersion chooses the highest version both sides support', () => {
    fc.assert(
      fc.property(fc.subarray([...ALL_VERSIONS]), fc.subarray([...ALL_VERSIONS]), (offered, supported) => {
        const got = pickVersion(offered, supported);
        const common = offered.filter((v) => supported.includes(v));
        if (common.length === 0) expect(got).toBeUndefined();
        else {
          expect(common).toContain(got);
          for (const c of common) expect(compareVersions(c, got!)).toBeLessThanOrEqual(0);
        }
      }),
    );
  });
});

describe('capability injection', () => {
  it('injects exactly the declared capabilities the runtime supplied', () => {
    const caps = fc.dictionary(fc.constantFrom('portMappings', 'ips', 'mac', 'bandwidth', 'x'), fc.boolean());
    const args = fc.dictionary(fc.constantFrom('portMappings', 'ips', 'mac', 'dns', 'x'), fc.jsonValue());
    fc.assert(
      fc.property(caps, args, (capabilities, capabilityArgs) => {
        const out = injectRuntimeConfig(
          { type: 't', capabilities, runtimeConfig: { old: 1 } },
          capabilityArgs,
        );
        const expected = Object.keys(capabilities).filter(
          (c) => capabilities[c] && c in capabilityArgs && capabilityArgs[c] !== null,
        );
        if (expected.length === 0) expect(out.runtimeConfig).toEqual({ old: 1 });
        else expect(Object.keys(out.runtimeConfig as object).sort()).toEqual(expected.sort());
      }),
    );
  });
});
