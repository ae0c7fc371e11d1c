// The reconciler's rule on the file store and on real etcd: after a node crash (pods gone, no
// DEL), exactly the deleted pods' addresses are freed; a pod re-created under its old name keeps
// its address; an address without a podRef is never judged.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseWhereaboutsConfig } from '../../src/ipam/whereabouts/config.js';
import { createWhereaboutsAllocator, openWhereaboutsStore } from '../../src/ipam/whereabouts/index.js';
import type { PodLookup } from '../../src/ipam/whereabouts/reconciler.js';
import { reconcileWhereaboutsStore } from '../../src/ipam/whereabouts/reconciler-store.js';
import { hasEtcd, startEtcd, type TestEtcd } from '../helpers/etcd.js';

const tmp = mkdtempSync(join(tmpdir(), `wbrecs-${process.pid}-`));
let etcd: TestEtcd | undefined;
beforeAll(async () => {
  if (hasEtcd()) etcd = await startEtcd('wbrec');
}, 60_000);
afterAll(async () => {
  await etcd?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

const stores: Array<[string, () => Record<string, unknown> | undefined]> = [
  ['file', () => ({ datastore: 'file', data_dir: join(tmp, 'file') })],
  ['etcd', () => (etcd ? { datastore: 'etcd', etcd_host: etcd.url, etcd_prefix: '/wbrec' } : undefined)],
];

describe.each(stores)('whereabouts reconciler on the %s store', (_kind, settings) => {
  it('frees exactly the deleted pods’ addresses; a re-created pod keeps its own', async (ctx) => {
    const ds = settings();
    if (!ds) return ctx.skip();
    const ipam = { type: 'whereabouts', range: '10.50.0.0/24', ...ds };
    const a = createWhereaboutsAllocator({ cniVersion: '1.0.0', name: 'nad', ipam });
    const pods = new Set<string>();
    const ips = new Map<string, string>();
    try {
      for (let i = 0; i < 5; i++) {
        pods.add(`app/p${i}`);
        const r = await a.allocate({ containerId: `c${i}`, ifname: 'net1', podRef: `app/p${i}` });
        ips.set(`p${i}`, r.ips![0]!.address.split('/')[0]!);
      }
      await a.allocate({ containerId: 'bare', ifname: 'net1' });
      // Node crash: p1 and p3 are gone; p2 was deleted and re-created under its name.
      pods.delete('app/p1');
      pods.delete('app/p3');
      const getPod: PodLookup = async (ns, name) =>
        pods.has(`${ns}/${name}`) ? { metadata: { name, namespace: ns } } : undefined;
      const cfg = parseWhereaboutsConfig(ipam);
      const store = await openWhereaboutsStore(cfg.datastore);
      try {
        const r = await reconcileWhereaboutsStore({ store, ipam: [ipam], getPod });
        expect(r.errors).toEqual([]);
        expect(r.freed.map((f) => f.offset).sort()).toEqual([ips.get('p1'), ips.get('p3')].sort());
        expect(r.alive).toBe(3);
        const again = await reconcileWhereaboutsStore({ store, ipam: [ipam], getPod });
        expect(again.freed).toEqual([]);
      } finally {
        await store.close();
      }
      const p2 = await a.allocate({ containerId: 'c2-new', ifname: 'net1', podRef: 'app/p2' });
      expect(p2.ips![0]!.address).toBe(`${ips.get('p2')}/24`);
      // The freed addresses are held by nobody: GC with every remaining attachment frees nothing more.
      const gc = await a.gc([
        { containerId: 'c0', ifname: 'net1' },
        { containerId: 'c2-new', ifname: 'net1' },
        { containerId: 'c4', ifname: 'net1' },
        { containerId: 'bare', ifname: 'net1' },
      ]);
      expect(gc.released).toEqual([]);
    } finally {
      await a.gc([]).catch(() => undefined);
      await (a as { close?: () => Promise<void> }).close?.();
    }
  }, 60_000);
});
