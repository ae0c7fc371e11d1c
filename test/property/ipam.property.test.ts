// Model-based properties of host-local (real files, real flock) and static: random v4/v6 configs with
// range sets, split ranges and gateways, then random ADD / re-ADD / DEL / GC sequences checked
// against a plain model after every step.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HostLocalAllocator, type IpamNetConf, StaticAllocator } from 'cni-kit/ipam';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { runFence } from '../helpers/bounded-runs.js';

const root = mkdtempSync(join(tmpdir(), `cnikit-ipam-prop-${process.pid}-`));
afterAll(() => rmSync(root, { recursive: true, force: true }));

interface GenRange {
  subnet: string;
  rangeStart?: string;
  rangeEnd?: string;
  gateway?: string;
}

// Independent address helpers, so the model does not reuse the code under test.
const v4 = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
const canon6 = (a: string) => new URL(`http://[${a}]/`).hostname.slice(1, -1);

interface ModelRange {
  subnet: string;
  addrs: string[]; // allocatable, in order
  all: { network: string; broadcast?: string; gateway?: string };
}

/** One generated range: its config and the addresses the reference would hand out from it. */
function genRange(family: 4 | 6, setIdx: number, rIdx: number) {
  const prefixes = family === 4 ? [27, 28, 29, 30] : [123, 124, 125, 126];
  return fc
    .record({
      prefix: fc.constantFrom(...prefixes),
      start: fc.option(fc.nat(6), { nil: undefined }),
      endBack: fc.option(fc.nat(6), { nil: undefined }),
      gw: fc.option(fc.nat(8), { nil: undefined }),
    })
    .map(({ prefix, start, endBack, gw }) => {
      const size = 2 ** ((family === 4 ? 32 : 128) - prefix);
      const hostLast = family === 4 ? size - 2 : size - 1; // default end offset
      const s = start === undefined ? 1 : Math.min(1 + start, hostLast);
      const e = endBack === undefined ? hostLast : Math.max(s, hostLast - endBack);
      const g = gw === undefined ? 1 : Math.min(1 + gw, size - 2);
      const base = family === 4 ? (10 << 24) + (setIdx << 16) + (rIdx << 8) : 0;
      const fmt = (off: number) =>
        family === 4 ? v4(base + off) : canon6(`fd00:${setIdx}:${rIdx}::${off.toString(16)}`);
      const cfg: GenRange = { subnet: `${fmt(0)}/${prefix}` };
      if (start !== undefined) cfg.rangeStart = fmt(s);
      if (endBack !== undefined) cfg.rangeEnd = fmt(e);
      if (gw !== undefined) cfg.gateway = fmt(g);
      const addrs: string[] = [];
      for (let o = s; o <= e; o++) if (o !== g) addrs.push(fmt(o));
      const m: ModelRange = {
        subnet: cfg.subnet,
        addrs,
        all: { network: fmt(0), gateway: fmt(g), ...(family === 4 ? { broadcast: fmt(size - 1) } : {}) },
      };
      return { cfg, model: m };
    });
}

const configArb = fc
  .array(fc.constantFrom<4 | 6>(4, 6), { minLength: 1, maxLength: 2 })
  .chain((families) =>
    fc.tuple(
      ...families.map((f, si) =>
        fc
          .integer({ min: 1, max: 2 })
          .chain((n) => fc.tuple(...Array.from({ length: n }, (_, ri) => genRange(f, si, ri)))),
      ),
    ),
  );

type Op =
  | { kind: 'add'; id: number; ifname: string }
  | { kind: 'del'; id: number; ifname: string }
  | { kind: 'gc'; keep: number[] };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('add' as const),
      id: fc.nat(12),
      ifname: fc.constantFrom('eth0', 'net1'),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('del' as const),
      id: fc.nat(12),
      ifname: fc.constantFrom('eth0', 'net1'),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('gc' as const), keep: fc.array(fc.nat(12), { maxLength: 6 }) }),
  },
);

let netSeq = 0;

describe('host-local properties', () => {
  it('never hands out an address twice, stays in range, exhausts exactly when full, DEL and GC free', async (ctx) => {
    const fence = runFence(ctx);
    await fc.assert(
      fc.asyncProperty(configArb, fc.array(opArb, { minLength: 1, maxLength: 30 }), (sets, ops) =>
        fence.run(async () => {
          const name = `p${netSeq++}`;
          const conf: IpamNetConf = {
            cniVersion: '1.0.0',
            name,
            ipam: { type: 'host-local', dataDir: root, ranges: sets.map((s) => s.map((r) => r.cfg)) },
          };
          const alloc = new HostLocalAllocator(conf, { fsync: false });
          const setAddrs = sets.map((s) => s.flatMap((r) => r.model.addrs));
          const forbidden = new Set(
            sets.flatMap((s) =>
              s.flatMap((r) => [r.model.all.network, r.model.all.broadcast, r.model.all.gateway]),
            ),
          );
          for (const s of sets) for (const r of s) for (const a of r.model.addrs) forbidden.delete(a);
          const model = new Map<string, string[]>(); // "id/ifname" -> ips
          const held = () => new Set([...model.values()].flat());
          for (const op of ops) {
            if (op.kind === 'add') {
              const key = `c${op.id}/${op.ifname}`;
              const before = model.get(key);
              const used = held();
              const full = setAddrs.some((addrs) => addrs.every((a) => used.has(a)));
              let result: string[] | undefined;
              try {
                const r = await alloc.allocate({ containerId: `c${op.id}`, ifname: op.ifname });
                result = r.ips!.map((i) => i.address.split('/')[0]!);
              } catch (e) {
                expect(before, `re-ADD of ${key} must not fail`).toBeUndefined();
                expect(full, `ADD failed without a full set: ${(e as Error).message}`).toBe(true);
                continue;
              }
              if (before) {
                expect(result).toEqual(before);
                continue;
              }
              expect(full, 'ADD succeeded although a set was full').toBe(false);
              expect(result.length).toBe(sets.length);
              result.forEach((ip, i) => {
                expect(setAddrs[i]).toContain(ip);
                expect(used.has(ip), `${ip} handed out twice`).toBe(false);
                expect(forbidden.has(ip)).toBe(false);
              });
              model.set(key, result);
            } else if (op.kind === 'del') {
              await alloc.release({ containerId: `c${op.id}`, ifname: op.ifname });
              model.delete(`c${op.id}/${op.ifname}`);
            } else {
              const valid = op.keep.flatMap((id) => [
                { containerId: `c${id}`, ifname: 'eth0' },
                { containerId: `c${id}`, ifname: 'net1' },
              ]);
              await alloc.gc(valid);
              for (const k of [...model.keys()])
                if (!op.keep.includes(Number(k.slice(1, k.indexOf('/'))))) model.delete(k);
            }
            // The directory holds exactly the model, in the reference's format.
            const dir = join(root, name);
            const onDisk = readdirSync(dir)
              .filter((f) => f !== 'lock' && f !== '.cni-kit' && !f.startsWith('last_reserved_ip.'))
              .map((f) => `${f}=${readFileSync(join(dir, f), 'utf8')}`)
              .sort();
            const expected = [...model.entries()]
              .flatMap(([k, ips]) => ips.map((ip) => `${ip}=${k.replace('/', '\r\n')}`))
              .sort();
            expect(onDisk).toEqual(expected);
          }
        }),
      ),
      { numRuns: 40 },
    );
  }, 120_000);
});

describe('static properties', () => {
  const cidr = fc
    .tuple(fc.nat(255), fc.nat(255), fc.integer({ min: 8, max: 30 }))
    .map(([a, b, p]) => `10.${a}.${b}.7/${p}`);
  it('the highest-priority source wins: runtimeConfig.ips > args.cni.ips > config + CNI_ARGS', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(cidr, { maxLength: 3 }),
        fc.array(cidr, { maxLength: 2 }),
        fc.option(fc.array(cidr, { maxLength: 2 }), { nil: undefined }),
        fc.option(fc.array(cidr, { maxLength: 2 }), { nil: undefined }),
        async (cfgAddrs, argIPs, cniIps, rcIps) => {
          const conf: IpamNetConf = {
            cniVersion: '1.0.0',
            name: 's',
            ipam: { type: 'static', addresses: cfgAddrs.map((address) => ({ address })) },
            ...(cniIps ? { args: { cni: { ips: cniIps } } } : {}),
            ...(rcIps ? { runtimeConfig: { ips: rcIps } } : {}),
          };
          const args: Array<[string, string]> = argIPs.length ? [['IP', argIPs.join(',')]] : [];
          const r = await new StaticAllocator(conf).allocate({ containerId: 'c', ifname: 'e', args });
          const want = rcIps ?? cniIps ?? [...cfgAddrs, ...argIPs];
          expect(r.ips!.map((i) => i.address)).toEqual(want);
        },
      ),
      { numRuns: 200 },
    );
  });
});
