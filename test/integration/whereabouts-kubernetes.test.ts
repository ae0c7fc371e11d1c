// The Kubernetes store speaks whereabouts' own IPPool format: a pool written by whereabouts is
// honoured (its offsets stay taken, its containers can be deleted), and what we write is the
// shape whereabouts reads. Runs against the in-process API server (test/helpers/fake-k8s.ts), which
// keeps the real resourceVersion rules.
import { describe, expect, it } from 'vitest';
import { createWhereaboutsAllocator } from '../../src/ipam/whereabouts/index.js';
import { openKubeApi } from '../../src/k8s/connect.js';
import { fakeK8sPerFile } from '../helpers/fake-k8s-file.js';

const k8s = fakeK8sPerFile('wbkube', { tls: false });

/** A kubeconfig whose context namespace is `ns`: each test keeps its objects there. */
const kubeconfig = (ns: string) => k8s.kubeconfig(ns);

/** Creates an IPPool through the API, as whereabouts would have. */
async function seed(ns: string, name: string, spec: object): Promise<void> {
  const pools = (await openKubeApi(kubeconfig(ns))).customResources(
    'whereabouts.cni.cncf.io',
    'v1alpha1',
    'ippools',
  );
  const created = await pools.create(ns, {
    apiVersion: 'whereabouts.cni.cncf.io/v1alpha1',
    kind: 'IPPool',
    metadata: { name },
    spec,
  });
  expect(created.metadata.resourceVersion).toMatch(/^\d+$/);
}

describe('whereabouts Kubernetes store', () => {
  it('honours an IPPool written by whereabouts and writes the same shape back', async () => {
    const ns = 'wbkube1';
    await seed(ns, 'blue-10.20.0.0-24', {
      range: '10.20.0.0/24',
      allocations: {
        '1': { id: 'legacy-a', podref: 'app/a', ifname: 'net1' },
        '2': { id: 'legacy-b', podref: 'app/b', ifname: 'net1' },
      },
    });
    const a = createWhereaboutsAllocator(
      {
        cniVersion: '1.0.0',
        name: 'nad',
        ipam: {
          type: 'whereabouts',
          range: '10.20.0.0/24',
          network_name: 'blue',
          datastore: 'kubernetes',
          kubernetes: { kubeconfig: kubeconfig(ns) },
        },
      },
      { kube: openKubeApi },
    );
    const r = await a.allocate({ containerId: 'new-c', ifname: 'net1', podRef: 'app/c' });
    // Offsets 1 and 2 are held; after a lost claim the allocator picks among the next free ones.
    const got = r.ips![0]!.address;
    expect(got).toMatch(/^10\.20\.0\.\d+\/24$/);
    const off = got.split('/')[0]!.split('.')[3]!;
    expect(Number(off)).toBeGreaterThan(2);
    // A pod whereabouts placed keeps its address when re-created under its name.
    const again = await a.allocate({ containerId: 'legacy-a-2', ifname: 'net1', podRef: 'app/a' });
    expect(again.ips![0]!.address).toBe('10.20.0.1/24');
    await a.release({ containerId: 'legacy-b', ifname: 'net1' });
    const pool = k8s.api.objects('ippools').get(`${ns}/blue-10.20.0.0-24`) as {
      spec: { range: string; allocations: Record<string, unknown> };
    };
    expect(pool.spec.range).toBe('10.20.0.0/24');
    expect(pool.spec.allocations).toEqual({
      '1': { id: 'legacy-a-2', podref: 'app/a', ifname: 'net1' },
      [off]: { id: 'new-c', podref: 'app/c', ifname: 'net1' },
    });
    // Overlapping-range reservations carry whereabouts' names: the address, network-prefixed.
    expect([...k8s.api.objects('overlappingrangeipreservations').keys()]).toContain(
      `${ns}/blue-10.20.0.${off}`,
    );
    await a.gc([{ containerId: 'new-c', ifname: 'net1' }]);
    const after = k8s.api.objects('ippools').get(`${ns}/blue-10.20.0.0-24`) as typeof pool;
    expect(Object.keys(after.spec.allocations)).toEqual([off]);
  });

  it('uses offsets beyond 2^63 in an IPv6 /64 as decimal keys', async () => {
    const ns = 'wbkube2';
    const a = createWhereaboutsAllocator(
      {
        cniVersion: '1.0.0',
        name: 'nad',
        ipam: {
          type: 'whereabouts',
          range: 'fd00:20::/64',
          range_start: 'fd00:20::8000:0:0:5',
          datastore: 'kubernetes',
          kubernetes: { kubeconfig: kubeconfig(ns) },
        },
      },
      { kube: openKubeApi },
    );
    const r = await a.allocate({ containerId: 'v6', ifname: 'eth0' });
    expect(r.ips![0]!.address).toBe('fd00:20::8000:0:0:5/64');
    const pool = k8s.api.objects('ippools').get(`${ns}/fd00-20---64`) as {
      spec: { allocations: Record<string, unknown> };
    };
    expect(Object.keys(pool.spec.allocations)).toEqual([((1n << 63n) + 5n).toString()]);
  });
});
