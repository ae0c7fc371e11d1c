import { CniError } from 'cni-kit';
import { parseNetConf, parseNetConfList } from 'cni-kit/spec';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

const validConf = {
  cniVersion: '1.0.0',
  name: 'mynet',
  type: 'bridge',
  bridge: 'cni0',
  capabilities: { portMappings: true },
  ipam: { type: 'host-local', ranges: [[{ subnet: '10.1.0.0/16' }]] },
  dns: { nameservers: ['10.1.0.1'], search: ['svc.local'] },
  args: { cni: { ips: ['10.1.0.9'] } },
  prevResult: { cniVersion: '1.0.0', ips: [{ address: '10.1.0.9/16' }], routes: [{ dst: '0.0.0.0/0' }] },
};
const validList = {
  cniVersion: '1.0.0',
  cniVersions: ['0.4.0', '1.0.0'],
  name: 'mynet',
  disableCheck: false,
  plugins: [validConf, { type: 'portmap', capabilities: { portMappings: true } }],
};

type Json = unknown;
/** Replaces or deletes the value at a random path of a JSON document. */
function mutate(doc: Json, path: number[], replacement: Json, del: boolean): Json {
  if (path.length === 0 || doc === null || typeof doc !== 'object') return replacement;
  const keys = Object.keys(doc as object);
  if (keys.length === 0) return replacement;
  const [head, ...rest] = path;
  const key = keys[(head ?? 0) % keys.length] as string;
  const copy: Record<string, Json> | Json[] = Array.isArray(doc) ? [...doc] : { ...(doc as object) };
  if (rest.length === 0 && del && !Array.isArray(copy)) {
    delete (copy as Record<string, Json>)[key];
    return copy;
  }
  (copy as Record<string, Json>)[key] = mutate((doc as Record<string, Json>)[key], rest, replacement, del);
  return copy;
}

const mutation = fc.record({
  path: fc.array(fc.nat(20), { minLength: 0, maxLength: 5 }),
  replacement: fc.jsonValue({ maxDepth: 2 }),
  del: fc.boolean(),
  truncate: fc.option(fc.nat(400), { nil: undefined }),
});

function expectCniErrorOrOk(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CniError);
    const err = e as CniError;
    expect([6, 7]).toContain(err.code);
    // names where: "<path>: ..." or the decoding stage
    expect(err.message).toMatch(
      /^(error decoding [a-z ]+: |invalid network (config|configuration list): \S+)/,
    );
    expect(err.message).not.toMatch(/\n/);
  }
}

describe('config parsing under random mutations', () => {
  it('never crashes on a mutated single config and always names a path', () => {
    fc.assert(
      fc.property(mutation, ({ path, replacement, del, truncate }) => {
        let text = JSON.stringify(mutate(validConf, path, replacement, del));
        if (truncate !== undefined) text = text.slice(0, truncate);
        expectCniErrorOrOk(() => parseNetConf(text));
      }),
      { numRuns: 500 },
    );
  });

  it('never crashes on a mutated conflist and always names a path', () => {
    fc.assert(
      fc.property(mutation, ({ path, replacement, del, truncate }) => {
        let text = JSON.stringify(mutate(validList, path, replacement, del));
        if (truncate !== undefined) text = text.slice(0, truncate);
        expectCniErrorOrOk(() => parseNetConfList(text));
      }),
      { numRuns: 500 },
    );
  });

  it('parses the valid documents unchanged', () => {
    expect(parseNetConf(JSON.stringify(validConf)).bridge).toBe('cni0');
    expect(parseNetConfList(JSON.stringify(validList)).plugins).toHaveLength(2);
  });
});
