// Calls to etcd per whereabouts ADD, counted by etcd itself (its gRPC metrics): each call costs the
// client and etcd about as much CPU as the reads it carries, so an ADD's first three reads (owner
// index, pod index, cursor) go in one transaction. And the batched read answers exactly what the
// three separate reads answer, for held, adopted-away and unknown attachments; and ADDs in flight
// together read the addresses around the cursor with those reads, not in a call of their own.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseWhereaboutsConfig } from '../../src/ipam/whereabouts/config.js';
import {
  createWhereaboutsAllocator,
  openWhereaboutsStore,
  whereaboutsIpam,
} from '../../src/ipam/whereabouts/index.js';
import { hasEtcd, startEtcd, type TestEtcd } from '../helpers/etcd.js';

let etcd: TestEtcd | undefined;

beforeAll(async () => {
  if (hasEtcd()) etcd = await startEtcd('wbrt');
}, 30_000);

afterAll(async () => {
  await etcd?.stop();
});

/** gRPC calls etcd has answered on its KV service so far. */
async function kvCalls(): Promise<number> {
  const text = await (await fetch(`${etcd!.url}/metrics`)).text();
  let n = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('grpc_server_handled_total{') && line.includes('grpc_service="etcdserverpb.KV"'))
      n += Number(line.split(' ').at(-1));
  }
  return n;
}

const conf = (prefix: string) => ({
  cniVersion: '1.1.0',
  name: 'rt',
  ipam: {
    type: 'whereabouts',
    range: '10.77.0.0/22',
    datastore: 'etcd',
    etcd_host: etcd!.url,
    etcd_prefix: `/rt/${prefix}`,
  },
});

describe('whereabouts on etcd: calls per ADD', () => {
  it('a lone ADD with a pod reference makes 2 calls (batched reads, claim), not 4', async (ctx) => {
    if (!etcd) ctx.skip();
    const a = createWhereaboutsAllocator(conf('lone'));
    try {
      await a.allocate({ containerId: 'warm', ifname: 'eth0', podRef: 'default/warm' });
      const before = await kvCalls();
      const got: string[] = [];
      for (let i = 0; i < 10; i++) {
        const r = await a.allocate({ containerId: `c${i}`, ifname: 'eth0', podRef: `default/p${i}` });
        got.push(r.ips![0]!.address);
      }
      expect((await kvCalls()) - before).toBe(20);
      expect(new Set(got).size).toBe(10);
      // A repeated ADD finds its address: the batched read and one read of the record.
      const b0 = await kvCalls();
      const again = await a.allocate({ containerId: 'c3', ifname: 'eth0', podRef: 'default/p3' });
      expect(again.ips![0]!.address).toBe(got[3]);
      expect((await kvCalls()) - b0).toBe(2);
    } finally {
      await a.close();
    }
  });

  it('16 ADDs at once through one factory mostly read their free list with their first reads', async (ctx) => {
    if (!etcd) ctx.skip();
    const factory = whereaboutsIpam({});
    const c = conf('crowded');
    const add = async (id: string) =>
      (await factory(c as never, {})).allocate({ containerId: id, ifname: 'eth0', podRef: `default/${id}` });
    await Promise.all(Array.from({ length: 16 }, (_, i) => add(`warm${i}`)));
    const before = await kvCalls();
    const got: string[] = [];
    await Promise.all(
      Array.from({ length: 16 }, async (_, i) => {
        for (let j = 0; j < 12; j++) got.push((await add(`c${i}-${j}`)).ips![0]!.address);
      }),
    );
    expect(new Set(got).size).toBe(192);
    // Batched reads, free-list read, claim: 3 calls each (and more after lost claims) when the
    // free list is a call of its own; with it in the first read, most ADDs make 2.
    const perAdd = ((await kvCalls()) - before) / 192;
    expect(perAdd).toBeLessThan(2.6);
  });

  it('the batched read answers what byOwner, byPod and cursor answer', async (ctx) => {
    if (!etcd) ctx.skip();
    const cfg = parseWhereaboutsConfig(conf('same').ipam);
    const r = cfg.ranges[0]!;
    const a = createWhereaboutsAllocator(conf('same'));
    const store = await openWhereaboutsStore(cfg.datastore);
    try {
      await a.allocate({ containerId: 'held', ifname: 'eth0', podRef: 'ns/pod-a' });
      await a.allocate({ containerId: 'other', ifname: 'net1', podRef: 'ns/pod-b' });
      // pod-b's container is replaced: the pod index still names the address, held by "other".
      const cases: Array<[string, string, string | undefined]> = [
        ['held', 'eth0', 'ns/pod-a'],
        ['held', 'eth0', undefined],
        ['held', 'net1', 'ns/pod-a'],
        ['new', 'net1', 'ns/pod-b'],
        ['nobody', 'eth0', 'ns/none'],
        ['nobody', 'eth0', undefined],
      ];
      await store.session(r.ref, async (s) => {
        expect(s.readForAdd).toBeTypeOf('function');
        for (const [id, ifname, pod] of cases) {
          const batched = await s.readForAdd!(id, ifname, pod);
          expect(batched).toEqual({
            mine: await s.byOwner(id, ifname),
            prev: pod === undefined ? undefined : await s.byPod(pod, ifname),
            cursor: await s.cursor(),
          });
        }
        expect((await s.readForAdd!('held', 'eth0', 'ns/pod-a')).mine?.containerId).toBe('held');
        expect((await s.readForAdd!('new', 'net1', 'ns/pod-b')).prev?.containerId).toBe('other');
      });
    } finally {
      await a.close();
      await store.close();
    }
  });
});
