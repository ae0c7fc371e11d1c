// The whereabouts-style allocator on its Kubernetes datastore, against the in-process API server:
// IPPool objects in whereabouts' shape, idempotent ADD, DEL, racing allocators without duplicates,
// reservations across overlapping ranges of one network, and the bundled binary doing the same.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createWhereaboutsAllocator } from 'cni-kit/ipam';
import { openKubeApi } from 'cni-kit/k8s';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FakeK8s, startFakeK8s } from '../helpers/fake-k8s.js';
import { pluginDir } from '../helpers/mode.js';
import { BIN_DIR } from '../helpers/plugin.js';

let api: FakeK8s;
let work = '';
let kubeconfig = '';

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), `k8swb${process.pid}-`));
  api = await startFakeK8s();
  kubeconfig = api.writeKubeconfig(join(work, 'kc.json'));
});
afterAll(async () => {
  await api.close();
  rmSync(work, { recursive: true, force: true });
});

const allocationsOf = (pool: string) =>
  (
    (api.objects('ippools').get(`kube-system/${pool}`)?.spec ?? {}) as {
      allocations?: Record<string, { id: string }>;
    }
  ).allocations ?? {};

const conf = (ipam: Record<string, unknown>) => ({
  cniVersion: '1.0.0',
  name: 'wbnet',
  type: 'macvlan',
  ipam: { type: 'whereabouts', datastore: 'kubernetes', kubernetes: { kubeconfig }, ...ipam },
});

describe('whereabouts Kubernetes datastore', () => {
  it('stores allocations in an IPPool keyed by offset, ADD is idempotent, DEL frees', async () => {
    const alloc = createWhereaboutsAllocator(conf({ range: '10.60.0.0/28' }), {
      closeAfterEachCall: true,
      kube: openKubeApi,
    });
    const req = { containerId: 'c1', ifname: 'net1', podRef: 'default/p1' };
    const r1 = await alloc.allocate(req);
    const r2 = await alloc.allocate(req);
    expect(r1.ips?.[0]?.address).toBe('10.60.0.1/28');
    expect(r2.ips).toEqual(r1.ips);
    const pool = api.objects('ippools').get('kube-system/10.60.0.0-28');
    expect(pool?.spec).toEqual({
      range: '10.60.0.0/28',
      allocations: { '1': { id: 'c1', podref: 'default/p1', ifname: 'net1' } },
    });
    await alloc.release(req);
    expect(allocationsOf('10.60.0.0-28')).toEqual({});
    await alloc.release(req);
  });

  it('racing allocators never hand out one address twice', async () => {
    const c = conf({ range: '10.60.1.0/27' });
    const reqs = Array.from({ length: 12 }, (_, i) => ({
      containerId: `r${i}`,
      ifname: 'net1',
      podRef: `default/r${i}`,
    }));
    const results = await Promise.all(
      reqs.map((r) =>
        createWhereaboutsAllocator(c, { closeAfterEachCall: true, kube: openKubeApi }).allocate(r),
      ),
    );
    const ips = results.map((r) => r.ips?.[0]?.address);
    expect(new Set(ips).size).toBe(12);
    const allocations = allocationsOf('10.60.1.0-27');
    expect(
      Object.values(allocations)
        .map((e) => e.id)
        .sort(),
    ).toEqual(reqs.map((r) => r.containerId).sort());
  });

  it('overlapping ranges of one network never share an address (reservations)', async () => {
    const a = createWhereaboutsAllocator(conf({ range: '10.60.2.0/29', network_name: 'ov' }), {
      closeAfterEachCall: true,
      kube: openKubeApi,
    });
    const b = createWhereaboutsAllocator(conf({ range: '10.60.2.0/30', network_name: 'ov' }), {
      closeAfterEachCall: true,
      kube: openKubeApi,
    });
    const ra = await a.allocate({ containerId: 'a1', ifname: 'net1', podRef: 'default/a' });
    const rb = await b.allocate({ containerId: 'b1', ifname: 'net1', podRef: 'default/b' });
    expect(ra.ips?.[0]?.address).toBe('10.60.2.1/29');
    expect(rb.ips?.[0]?.address).toBe('10.60.2.2/30');
    const names = [...api.objects('overlappingrangeipreservations').values()]
      .filter((o) => o.metadata.namespace === 'kube-system')
      .map((o) => o.metadata.name)
      .filter((n) => n.startsWith('ov-'))
      .sort();
    expect(names).toEqual(['ov-10.60.2.1', 'ov-10.60.2.2']);
    await a.release({ containerId: 'a1', ifname: 'net1' });
    expect(api.objects('overlappingrangeipreservations').get('kube-system/ov-10.60.2.1')).toBeUndefined();
  });
});

describe('bundled whereabouts binary, Kubernetes datastore', () => {
  // spawn, not spawnSync: the API server runs in this process and must keep answering.
  const run = (command: string, stdin: string) =>
    new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(join(pluginDir(), 'whereabouts'), [], {
        env: {
          PATH: process.env.PATH ?? '',
          CNI_COMMAND: command,
          CNI_CONTAINERID: `k8swb${process.pid}`,
          CNI_NETNS: '/var/run/netns/none',
          CNI_IFNAME: 'net1',
          CNI_PATH: pluginDir(),
          CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=bin',
        },
      });
      let out = '';
      child.stdout.on('data', (b: Buffer) => {
        out += b;
      });
      child.on('close', (code) => resolve({ code, out }));
      child.stdin.on('error', () => {}); // a plugin killed before it read its config
      child.stdin.end(stdin);
    });

  it('ADD writes the IPPool through the client-node sidecar, DEL frees it', async (ctx) => {
    if (!existsSync(join(BIN_DIR, 'whereabouts'))) ctx.skip('dist/bin/whereabouts is not built');
    const c = JSON.stringify(conf({ range: '10.60.3.0/29' }));
    const add = await run('ADD', c);
    expect(add.code, add.out).toBe(0);
    expect(JSON.parse(add.out).ips[0].address).toBe('10.60.3.1/29');
    expect(Object.values(allocationsOf('10.60.3.0-29'))).toEqual([
      { id: `k8swb${process.pid}`, podref: 'default/bin', ifname: 'net1' },
    ]);
    const del = await run('DEL', c);
    expect(del.code, del.out).toBe(0);
    expect(allocationsOf('10.60.3.0-29')).toEqual({});
  });
});
