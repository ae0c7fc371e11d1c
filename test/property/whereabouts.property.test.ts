// Properties of the whereabouts-style allocator, run against every real store (file in a temp dir,
// etcd started by this file). The oracle is computed from the raw config, not from the parsed
// ranges, so a bug in range parsing cannot hide itself.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWhereaboutsAllocator } from '../../src/ipam/whereabouts/index.js';
import { openKubeApi } from '../../src/k8s/connect.js';
import { formatIP, parseIP } from '../../src/spec/addr.js';
import type { CniError } from '../../src/spec/errors.js';
import { runFence } from '../helpers/bounded-runs.js';
import { hasEtcd, startEtcd, type TestEtcd } from '../helpers/etcd.js';
import { type FakeK8s, startFakeK8s } from '../helpers/fake-k8s.js';

interface Gen {
  family: 4 | 6;
  prefix: number;
  base: bigint;
  start?: number;
  end?: number;
  gateway?: number;
  exclude: Array<{ off: number; prefix?: number | undefined }>;
}

const genConfig: fc.Arbitrary<Gen> = fc
  .record({
    family: fc.constantFrom<4 | 6>(4, 6),
    hostBits: fc.integer({ min: 2, max: 6 }),
    net: fc.bigInt({ min: 0n, max: 0xffffn }),
    start: fc.option(fc.integer({ min: 0, max: 63 }), { nil: undefined }),
    end: fc.option(fc.integer({ min: 0, max: 63 }), { nil: undefined }),
    gateway: fc.option(fc.integer({ min: 0, max: 63 }), { nil: undefined }),
    exclude: fc.array(
      fc.record({
        off: fc.integer({ min: 0, max: 63 }),
        prefix: fc.option(fc.integer({ min: 0, max: 3 }), { nil: undefined }),
      }),
      { maxLength: 3 },
    ),
  })
  .map(({ family, hostBits, net, start, end, gateway, exclude }) => {
    const bits = family === 4 ? 32 : 128;
    const size = 1 << hostBits;
    const top = family === 4 ? 0x0a000000n : 0x20010db8n << 96n;
    const base = top | (net << BigInt(hostBits));
    const clamp = (x: number | undefined) => (x === undefined ? undefined : x % size);
    // A start on the broadcast or an end on the network address is a config error (unit-tested).
    let s = start === undefined ? undefined : start % (size - 1);
    let e = end === undefined ? undefined : 1 + (end % (size - 1));
    if (s !== undefined && e !== undefined && e < s) [s, e] = [e, s];
    const g: Gen = {
      family,
      prefix: bits - hostBits,
      base,
      exclude: exclude.map((x) => ({
        off: x.off % size,
        prefix: x.prefix === undefined ? undefined : bits - x.prefix,
      })),
    };
    if (s !== undefined) g.start = s;
    if (e !== undefined) g.end = e;
    const gw = clamp(gateway);
    if (gw !== undefined) g.gateway = gw;
    return g;
  });

const ipOf = (g: Gen, off: number | bigint) => formatIP({ family: g.family, value: g.base + BigInt(off) });

function ipamOf(g: Gen): Record<string, unknown> {
  const ipam: Record<string, unknown> = {
    type: 'whereabouts',
    range: `${ipOf(g, 0)}/${g.prefix}`,
    exclude: g.exclude.map((x) =>
      x.prefix === undefined ? ipOf(g, x.off) : `${ipOf(g, x.off)}/${x.prefix}`,
    ),
  };
  if (g.start !== undefined) ipam.range_start = ipOf(g, g.start);
  if (g.end !== undefined) ipam.range_end = ipOf(g, g.end);
  if (g.gateway !== undefined) ipam.gateway = ipOf(g, g.gateway);
  return ipam;
}

/** Independent oracle: may this offset ever be handed out? */
function allowed(g: Gen, off: bigint): boolean {
  const size = 1n << BigInt((g.family === 4 ? 32 : 128) - g.prefix);
  if (off <= 0n || off >= size - 1n) return false; // network and last address
  if (g.start !== undefined && g.start > 0 && off < BigInt(g.start)) return false;
  if (g.end !== undefined && g.end < Number(size) - 1 && off > BigInt(g.end)) return false;
  if (g.gateway !== undefined && off === BigInt(g.gateway)) return false;
  for (const x of g.exclude) {
    const span = x.prefix === undefined ? 1n : 1n << BigInt((g.family === 4 ? 32 : 128) - x.prefix);
    const lo = (BigInt(x.off) / span) * span;
    if (off >= lo && off < lo + span) return false;
  }
  return true;
}

function capacity(g: Gen): number {
  const size = 1n << BigInt((g.family === 4 ? 32 : 128) - g.prefix);
  let n = 0;
  for (let o = 0n; o < size; o++) if (allowed(g, o)) n++;
  return n;
}

type Op =
  | { k: 'add'; c: number; i: number; pod?: number | undefined }
  | { k: 'del'; c: number; i: number }
  | { k: 'gc'; keep: number[] };

const genOps: fc.Arbitrary<Op[]> = fc.array(
  fc.oneof(
    {
      weight: 6,
      arbitrary: fc.record({
        k: fc.constant('add' as const),
        c: fc.nat(24),
        i: fc.nat(1),
        pod: fc.option(fc.nat(8), { nil: undefined }),
      }),
    },
    { weight: 3, arbitrary: fc.record({ k: fc.constant('del' as const), c: fc.nat(24), i: fc.nat(1) }) },
    {
      weight: 1,
      arbitrary: fc.record({ k: fc.constant('gc' as const), keep: fc.array(fc.nat(24), { maxLength: 12 }) }),
    },
  ),
  { minLength: 1, maxLength: 40 },
);

type Holder = { addr: string; pod?: number };

async function runModel(g: Gen, ops: Op[], store: Record<string, unknown>): Promise<void> {
  const alloc = createWhereaboutsAllocator(
    { cniVersion: '1.1.0', name: 'wbprop', ipam: { type: 'whereabouts', ...ipamOf(g), ...store } },
    { fsync: false, kube: openKubeApi },
  );
  const cap = capacity(g);
  const held = new Map<string, Holder>(); // "c/ifname" -> address
  const key = (c: number, i: number) => `ctr${c}/eth${i}`;
  try {
    for (const op of ops) {
      if (op.k === 'add') {
        const k = key(op.c, op.i);
        const podRef = op.pod === undefined ? undefined : `ns/pod${op.pod}`;
        const req = { containerId: `ctr${op.c}`, ifname: `eth${op.i}`, ...(podRef ? { podRef } : {}) };
        const mine = held.get(k);
        const sibling =
          podRef === undefined
            ? undefined
            : [...held.entries()].find(
                ([hk, h]) => h.pod === op.pod && hk.endsWith(`/eth${op.i}`) && hk !== k,
              );
        if (!mine && !sibling && held.size >= cap) {
          await expect(alloc.allocate(req)).rejects.toThrow(/no free address/);
          continue;
        }
        const res = await alloc.allocate(req);
        expect(res.ips).toHaveLength(1);
        const addr = res.ips![0]!.address;
        expect(addr.endsWith(`/${g.prefix}`)).toBe(true);
        const off = parseIP(addr.split('/')[0]).value - g.base;
        expect(allowed(g, off)).toBe(true);
        if (mine)
          expect(addr).toBe(mine.addr); // idempotent per (containerId, ifname)
        else if (sibling) {
          expect(addr).toBe(sibling[1].addr); // idempotent per (pod, ifname): adopted
          held.delete(sibling[0]);
        } else {
          for (const h of held.values()) expect(h.addr).not.toBe(addr); // never twice
        }
        if (g.gateway !== undefined) expect(res.ips![0]!.gateway).toBe(ipOf(g, g.gateway));
        if (!mine) held.set(k, podRef === undefined ? { addr } : { addr, pod: op.pod! });
      } else if (op.k === 'del') {
        await alloc.release({ containerId: `ctr${op.c}`, ifname: `eth${op.i}` });
        held.delete(key(op.c, op.i));
      } else {
        const keep = op.keep.map((c) => ({ containerId: `ctr${c}`, ifname: 'eth0' }));
        await alloc.gc(keep);
        for (const k of [...held.keys()])
          if (!keep.some((v) => `${v.containerId}/${v.ifname}` === k)) held.delete(k);
      }
    }
    // The store agrees with the model: nothing leaked, nothing lost.
    const status = await alloc.status().catch((e: unknown) => e);
    if (held.size < cap)
      expect((status as { pools: Array<{ used: number }> }).pools[0]!.used).toBe(held.size);
    else expect((status as CniError).code).toBe(50);
    await alloc.gc(
      [...held.keys()].map((k) => ({ containerId: k.split('/')[0]!, ifname: k.split('/')[1]! })),
    );
    for (const [k, h] of held) {
      const again = await alloc.allocate({ containerId: k.split('/')[0]!, ifname: k.split('/')[1]! });
      expect(again.ips![0]!.address).toBe(h.addr);
    }
  } finally {
    await alloc.close();
  }
}

const tmp = mkdtempSync(join(tmpdir(), `wbprop-${process.pid}-`));
let etcd: TestEtcd | undefined;
let kube: FakeK8s | undefined;
let run = 0;

beforeAll(async () => {
  if (hasEtcd()) etcd = await startEtcd('wbprop');
  // Plain HTTP: the client opens a connection per request, and a TLS handshake for each would
  // dominate these many-request runs (TLS is covered in k8s-whereabouts-store.test.ts).
  kube = await startFakeK8s({ tls: false });
});
afterAll(async () => {
  await etcd?.stop();
  await kube?.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe('whereabouts allocator properties', () => {
  it('file store: unique, in range, never excluded or gateway, exhausts exactly when full, DEL/GC free', async (ctx) => {
    const fence = runFence(ctx);
    await fc.assert(
      fc.asyncProperty(genConfig, genOps, (g, ops) =>
        fence.run(() => runModel(g, ops, { datastore: 'file', data_dir: join(tmp, `run${run++}`) })),
      ),
      { numRuns: 60 },
    );
  });

  it('etcd store: the same properties against a real etcd', async (ctx) => {
    if (!etcd) ctx.skip('no /usr/bin/etcd on this machine');
    const fence = runFence(ctx);
    await fc.assert(
      fc.asyncProperty(genConfig, genOps, (g, ops) =>
        fence.run(() =>
          runModel(g, ops, { datastore: 'etcd', etcd_host: etcd!.url, etcd_prefix: `/wbprop/${run++}` }),
        ),
      ),
      { numRuns: 40 },
    );
  });

  it('kubernetes store (IPPool CRs on an in-process API server): the same properties', async (ctx) => {
    const fence = runFence(ctx);
    await fc.assert(
      fc.asyncProperty(genConfig, genOps, (g, ops) =>
        fence.run(async () => {
          // One namespace per run keeps runs apart, as distinct clusters would be.
          const ns = `wbprop${run++}`;
          const kubeconfig = kube!.writeKubeconfig(join(tmp, `kc-${ns}.json`), 'json', ns);
          await runModel(g, ops, { datastore: 'kubernetes', kubernetes: { kubeconfig } });
        }),
      ),
      { numRuns: 30 },
    );
  });
});
