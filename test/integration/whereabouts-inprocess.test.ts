// Many ADDs at once in one process (what the daemon does), through the registry factory that
// shares stores between calls: on the Kubernetes store concurrent claims on one IPPool ride in
// shared PUTs instead of failing with code 11; on a real etcd they spread over free addresses.
// Never a duplicate, and every call succeeds.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createWhereaboutsAllocator,
  SharedStores,
  whereaboutsIpam,
} from '../../src/ipam/whereabouts/index.js';
import { cachedKubeConnect, openKubeApi } from '../../src/k8s/connect.js';
import { hasEtcd, startEtcd, type TestEtcd } from '../helpers/etcd.js';
import { type FakeK8s, startFakeK8s } from '../helpers/fake-k8s.js';

const ENV = {};
const tmp = mkdtempSync(join(tmpdir(), `wbinproc-${process.pid}-`));
let api: FakeK8s;
let etcd: TestEtcd | undefined;
const shared: SharedStores[] = [];
/** A registry factory as the daemon holds one; its stores are closed after the tests. */
function factoryOf(opts: Parameters<typeof whereaboutsIpam>[0] = {}) {
  const sharedStores = new SharedStores();
  shared.push(sharedStores);
  return whereaboutsIpam({ ...opts, sharedStores });
}

beforeAll(async () => {
  api = await startFakeK8s();
  if (hasEtcd()) etcd = await startEtcd('wbinproc');
});
afterAll(async () => {
  await Promise.all(shared.map((s) => s.close()));
  await api?.close();
  await etcd?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

const netconf = (ipam: Record<string, unknown>) => ({
  cniVersion: '1.1.0',
  name: 'wbinproc',
  ipam: { type: 'whereabouts', ...ipam },
});

const k8sStore = (tag: string) => ({
  datastore: 'kubernetes',
  kubernetes: { kubeconfig: api.writeKubeconfig(join(tmp, `kc-${tag}.json`), 'json', tag) },
});

type Entries = Record<string, { id: string; podref: string; ifname: string }>;
const allocationsOf = (ns: string, pool: string): Entries =>
  ((api.objects('ippools').get(`${ns}/${pool}`)?.spec ?? {}) as { allocations?: Entries }).allocations ?? {};
const putsTo = (ns: string, pool: string) =>
  api.requests.filter(
    (r) =>
      r.method === 'PUT' &&
      r.path === `/apis/whereabouts.cni.cncf.io/v1alpha1/namespaces/${ns}/ippools/${pool}`,
  );

/** `n` ADDs started together through one factory; resolves with each call's address or error. */
async function burst(factory: ReturnType<typeof whereaboutsIpam>, conf: object, n: number, tag: string) {
  return Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const a = await factory(conf as never, ENV);
      try {
        const r = await a.allocate({
          containerId: `${tag}${i}`,
          ifname: 'net1',
          podRef: `default/${tag}${i}`,
        });
        return { ok: r.ips![0]!.address };
      } catch (err) {
        return { err: String((err as Error).message) };
      }
    }),
  );
}

describe('whereabouts: concurrent ADDs in one process', () => {
  it('Kubernetes store: 48 ADDs on one IPPool share PUTs, all succeed, no duplicates', async () => {
    const conf = netconf({ range: '10.91.0.0/24', enable_overlapping_ranges: false, ...k8sStore('batch') });
    const factory = factoryOf({ kube: cachedKubeConnect(openKubeApi) });
    const got = await burst(factory, conf, 48, 'b');
    expect(got.filter((g) => g.err)).toEqual([]);
    const addrs = got.map((g) => g.ok);
    expect(new Set(addrs).size).toBe(48);
    const entries = Object.values(allocationsOf('batch', '10.91.0.0-24'));
    expect(entries).toHaveLength(48);
    expect(new Set(entries.map((e) => e.id)).size).toBe(48);
    // One PUT per claim (or more, with lost races) without batching; far fewer with it.
    const puts = putsTo('batch', '10.91.0.0-24');
    expect(puts.filter((p) => p.code === 200).length).toBeLessThanOrEqual(12);
    expect(puts.filter((p) => p.code === 409)).toEqual([]);
  }, 60_000);

  it('Kubernetes store: two processes (two factories) batching against each other, overlapping ranges on', async () => {
    const store = k8sStore('twoproc');
    const conf = netconf({ range: '10.92.0.0/25', ...store });
    const other = netconf({ range: '10.92.0.0/24', ...store }); // overlaps: reservations keep them apart
    const [a, b] = await Promise.all([
      burst(factoryOf({ kube: cachedKubeConnect(openKubeApi) }), conf, 24, 'x'),
      burst(factoryOf({ kube: cachedKubeConnect(openKubeApi) }), other, 24, 'y'),
    ]);
    expect([...a, ...b].filter((g) => g.err)).toEqual([]);
    const addrs = [...a, ...b].map((g) => g.ok!.split('/')[0]);
    expect(new Set(addrs).size).toBe(48);
    expect(Object.keys(allocationsOf('twoproc', '10.92.0.0-25'))).toHaveLength(24);
    expect(Object.keys(allocationsOf('twoproc', '10.92.0.0-24'))).toHaveLength(24);
    expect(api.objects('overlappingrangeipreservations').size).toBeGreaterThanOrEqual(48);
  }, 60_000);

  it('Kubernetes store: DELs batched with ADDs free exactly their own addresses', async () => {
    const conf = netconf({ range: '10.93.0.0/24', ...k8sStore('mixed') });
    const factory = factoryOf({ kube: cachedKubeConnect(openKubeApi) });
    const first = await burst(factory, conf, 16, 'm');
    expect(first.filter((g) => g.err)).toEqual([]);
    const dels = Array.from({ length: 8 }, async (_, i) =>
      (await factory(conf as never, ENV)).release({ containerId: `m${i}`, ifname: 'net1' }),
    );
    const [, more] = await Promise.all([Promise.all(dels), burst(factory, conf, 8, 'n')]);
    expect(more.filter((g) => g.err)).toEqual([]);
    const ids = Object.values(allocationsOf('mixed', '10.93.0.0-24'))
      .map((e) => e.id)
      .sort();
    expect(ids).toEqual(
      [
        ...Array.from({ length: 8 }, (_, i) => `m${i + 8}`),
        ...Array.from({ length: 8 }, (_, i) => `n${i}`),
      ].sort(),
    );
  }, 60_000);

  it('etcd: 64 ADDs at once on one connection, no duplicates, all succeed', async (ctx) => {
    if (!etcd) ctx.skip('no /usr/bin/etcd on this machine');
    const conf = netconf({
      range: '10.94.0.0/16',
      datastore: 'etcd',
      etcd_host: etcd!.url,
      etcd_prefix: '/inproc',
    });
    const factory = factoryOf();
    const got = await burst(factory, conf, 64, 'e');
    expect(got.filter((g) => g.err)).toEqual([]);
    expect(new Set(got.map((g) => g.ok)).size).toBe(64);
    const check = createWhereaboutsAllocator(conf);
    try {
      expect((await check.status()).pools[0]!.used).toBe(64);
    } finally {
      await check.close();
    }
  }, 60_000);
});
