import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CachedAttachment, CniRuntime } from 'cni-kit/runtime';
import { buildCniEnv, formatCniArgs, parseCniArgs } from 'cni-kit/spec';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeCacheRecord, encodeCacheRecord, ResultCache } from '../../src/runtime/cache.js';
import { runFence } from '../helpers/bounded-runs.js';

const work = mkdtempSync(join(tmpdir(), `ckdp-${process.pid}-`));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const ident = fc.stringMatching(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,20}$/);
const ifname = fc.stringMatching(/^[a-z][a-z0-9]{0,14}$/);
const argKey = fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,12}$/);
// values may hold '=' (split on the first one) but not ';', the pair separator
const argVal = fc.string({ maxLength: 16 }).filter((s) => !s.includes(';'));
const jsonish = fc.jsonValue({ maxDepth: 2 });
const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((b) => b.join('.'));
const result = fc.record({
  cniVersion: fc.constantFrom('1.0.0', '1.1.0'),
  ips: fc.array(
    fc.record({ address: fc.tuple(ipv4, fc.integer({ min: 1, max: 32 })).map(([a, p]) => `${a}/${p}`) }),
    { minLength: 1, maxLength: 3 },
  ),
});

const attachment: fc.Arbitrary<CachedAttachment> = fc
  .record(
    {
      containerId: ident,
      ifname: ifname,
      networkName: ident,
      config: fc.json({ maxDepth: 2 }),
      netns: fc.stringMatching(/^\/var\/run\/netns\/[a-z0-9]{1,10}$/),
      cniArgs: fc.array(fc.tuple(argKey, argVal), { minLength: 1, maxLength: 4 }),
      capabilityArgs: fc.dictionary(fc.stringMatching(/^[a-zA-Z][a-zA-Z.]{0,10}$/), jsonish, {
        minKeys: 1,
        maxKeys: 3,
      }),
      result,
    },
    { requiredKeys: ['containerId', 'ifname', 'networkName', 'config'] },
  )
  .map((a) => JSON.parse(JSON.stringify(a)) as CachedAttachment);

// The fields, order and encodings of libcni's `cachedInfo` struct, as Go's encoding/json reads and
// writes them: []byte is standard base64 with padding, [][2]string is an array of 2-string arrays.
const GO_FIELDS = [
  'kind',
  'containerId',
  'config',
  'ifName',
  'networkName',
  'netns',
  'cniArgs',
  'capabilityArgs',
  'result',
];

function readAsGo(text: string): Record<string, unknown> {
  const o = JSON.parse(text) as Record<string, unknown>;
  const keys = Object.keys(o);
  for (const k of keys) if (!GO_FIELDS.includes(k)) throw new Error(`field ${k} unknown to libcni`);
  const order = keys.map((k) => GO_FIELDS.indexOf(k));
  expect(order).toEqual([...order].sort((a, b) => a - b));
  expect(o.kind).toBe('cniCacheV1');
  expect(typeof o.config).toBe('string');
  expect(o.config).toMatch(/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/);
  if (o.cniArgs !== undefined) {
    for (const p of o.cniArgs as unknown[]) {
      expect(Array.isArray(p) && p.length === 2 && p.every((s) => typeof s === 'string')).toBe(true);
    }
  }
  return o;
}

describe('result cache record', () => {
  it('round-trips through encode/decode', () => {
    fc.assert(
      fc.property(attachment, (a) => {
        const d = decodeCacheRecord(encodeCacheRecord(a));
        expect(d.ok && d.record).toEqual(a);
      }),
    );
  });

  it('is written in the shape Go decodes: same fields in struct order, base64 config', () => {
    fc.assert(
      fc.property(attachment, (a) => {
        const o = readAsGo(encodeCacheRecord(a));
        expect(Buffer.from(o.config as string, 'base64').toString('utf8')).toBe(a.config);
        expect(o.ifName).toBe(a.ifname);
        expect(o.containerId).toBe(a.containerId);
        expect(o.netns).toBe(a.netns);
        expect(o.cniArgs).toEqual(a.cniArgs);
      }),
    );
  });

  it('reads records written the way Go writes them (HTML-escaped strings, sorted map keys)', () => {
    fc.assert(
      fc.property(attachment, (a) => {
        // Go escapes <, > and & inside strings and sorts map keys; both must read back the same.
        const goText = encodeCacheRecord(a).replace(/[<>&]/g, (c) => `\\u00${c.charCodeAt(0).toString(16)}`);
        const d = decodeCacheRecord(goText);
        expect(d.ok && d.record).toEqual(a);
      }),
    );
  });

  it('a record written by the runtime is a file Go would accept, at libcni’s path', async (ctx) => {
    const cacheDir = join(work, 'rt');
    const cache = new ResultCache(cacheDir);
    const fence = runFence(ctx);
    await fc.assert(
      fc.asyncProperty(attachment, (a) =>
        fence.run(async () => {
          await cache.write(a);
          const file = join(cacheDir, 'results', `${a.networkName}-${a.containerId}-${a.ifname}`);
          readAsGo(readFileSync(file, 'utf8'));
          const back = await cache.read(a);
          expect(back.status === 'ok' && back.record).toEqual(a);
          await cache.remove(a);
        }),
      ),
      { numRuns: 40 },
    );
    // The runtime reads the same place: its cached attachments are the records written above.
    const a = fc.sample(attachment, { numRuns: 1, seed: 7 })[0] as CachedAttachment;
    await cache.write(a);
    expect(await new CniRuntime({ pluginDirs: [], cacheDir }).getCachedAttachments()).toEqual([a]);
    await cache.remove(a);
  });

  it('never throws on arbitrary file content; damage is a reason, not an exception', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.json()), (text) => {
        const d = decodeCacheRecord(text);
        if (!d.ok) expect(d.reason.length).toBeGreaterThan(0);
      }),
    );
  });
});

describe('CNI env building', () => {
  const baseEnv = fc.dictionary(fc.stringMatching(/^[A-Z_][A-Z0-9_]{0,10}$/), fc.string({ maxLength: 10 }), {
    maxKeys: 8,
  });
  const params = fc.record(
    {
      command: fc.constantFrom('ADD', 'DEL', 'CHECK', 'GC', 'STATUS', 'VERSION' as const),
      containerId: ident,
      netns: fc.string({ maxLength: 20 }),
      ifname,
      args: fc.array(fc.tuple(argKey, argVal), { maxLength: 4 }),
      path: fc.array(fc.stringMatching(/^\/[a-z/]{1,12}$/), { maxLength: 3 }),
    },
    { requiredKeys: ['command'] },
  );

  it('inherits the base, sets all six CNI_* variables, and CNI_ARGS parses back', () => {
    fc.assert(
      fc.property(baseEnv, params, (base, p) => {
        const env = buildCniEnv(base, p);
        for (const [k, v] of Object.entries(base)) if (!k.startsWith('CNI_')) expect(env[k]).toBe(v);
        expect(env.CNI_COMMAND).toBe(p.command);
        expect(env.CNI_CONTAINERID).toBe(p.containerId ?? '');
        expect(env.CNI_NETNS).toBe(p.netns ?? '');
        expect(env.CNI_IFNAME).toBe(p.ifname ?? '');
        expect((env.CNI_PATH ?? '').split(':').filter(Boolean)).toEqual(p.path ?? []);
        expect(parseCniArgs(env.CNI_ARGS)).toEqual(p.args ?? []);
        expect(formatCniArgs(p.args)).toBe(env.CNI_ARGS);
        expect(Object.keys(env).length).toBe(
          new Set([
            ...Object.keys(base),
            'CNI_COMMAND',
            'CNI_CONTAINERID',
            'CNI_NETNS',
            'CNI_IFNAME',
            'CNI_ARGS',
            'CNI_PATH',
          ]).size,
        );
      }),
    );
  });
});
