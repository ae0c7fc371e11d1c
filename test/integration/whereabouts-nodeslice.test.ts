// Node slices against the in-process API server: the controller writes NodeSlicePools in
// whereabouts' shape and keeps one slice per node as nodes come and go; simulated nodes allocate
// only inside their own slice, each in its own IPPool, with no write to another node's objects.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createWhereaboutsAllocator,
  SharedStores,
  whereaboutsIpam,
} from '../../src/ipam/whereabouts/index.js';
import {
  reconcileNodeSlices,
  startNodeSliceController,
} from '../../src/ipam/whereabouts/node-slice-controller.js';
import { cachedKubeConnect, openKubeApi } from '../../src/k8s/connect.js';
import { CniError } from '../../src/spec/errors.js';
import { type FakeK8s, startFakeK8s } from '../helpers/fake-k8s.js';

const tmp = mkdtempSync(join(tmpdir(), `wbslice-${process.pid}-`));
let api: FakeK8s;
let kubeconfig = '';
const shared: SharedStores[] = [];

beforeAll(async () => {
  api = await startFakeK8s({ tls: false });
  kubeconfig = api.writeKubeconfig(join(tmp, 'kc.json'));
});
afterAll(async () => {
  await Promise.all(shared.map((s) => s.close()));
  await api?.close();
  rmSync(tmp, { recursive: true, force: true });
});

const NS = 'kube-system';
const ipamOf = (extra: Record<string, unknown>) => ({
  type: 'whereabouts',
  kubernetes: { kubeconfig },
  ...extra,
});
const nad = (name: string, ipam: Record<string, unknown>, netName = name) => ({
  apiVersion: 'k8s.cni.cncf.io/v1',
  kind: 'NetworkAttachmentDefinition',
  metadata: { name, namespace: 'default', uid: `uid-${name}` },
  spec: { config: JSON.stringify({ cniVersion: '1.0.0', name: netName, type: 'macvlan', ipam }) },
});
const noFlat = { flatFilePaths: [] };
const slicePool = (name: string) =>
  api.objects('nodeslicepools').get(`${NS}/${name}`) as unknown as {
    spec: unknown;
    status: { allocations: Array<{ nodeName: string; sliceRange: string }> };
    metadata: { ownerReferences?: Array<{ name: string }> };
  };

/** A node's whereabouts, as its daemon would hold it: one factory, NODENAME in the call's environment. */
function nodeIpam(node: string) {
  const sharedStores = new SharedStores();
  shared.push(sharedStores);
  const factory = whereaboutsIpam({ kube: cachedKubeConnect(openKubeApi), sharedStores, flatFilePaths: [] });
  return (conf: object) => factory(conf as never, { env: { NODENAME: node } });
}

describe('whereabouts node slices', () => {
  it('the controller writes a NodeSlicePool in whereabouts shape and keeps one slice per node', async () => {
    const kube = await openKubeApi(kubeconfig);
    const nads = [
      nad('slices-a', ipamOf({ range: '10.30.0.0/24', node_slice_size: '/26' }), 'slicenet'),
      nad('slices-b', ipamOf({ range: '10.30.0.0/24', node_slice_size: '26' }), 'slicenet'),
      nad('plain', ipamOf({ range: '10.31.0.0/24' })),
    ];
    const r1 = await reconcileNodeSlices({ kube, nads, nodes: ['node-c', 'node-a', 'node-b'], ...noFlat });
    expect(r1).toEqual({ written: ['slicenet'], problems: [] });
    const p = slicePool('slicenet');
    expect(p.spec).toEqual({ range: '10.30.0.0/24', sliceSize: '/26' });
    expect(p.status.allocations).toEqual([
      { nodeName: 'node-a', sliceRange: '10.30.0.0/26' },
      { nodeName: 'node-b', sliceRange: '10.30.0.64/26' },
      { nodeName: 'node-c', sliceRange: '10.30.0.128/26' },
      { nodeName: '', sliceRange: '10.30.0.192/26' },
    ]);
    expect(p.metadata.ownerReferences?.map((o) => o.name)).toEqual(['slices-a', 'slices-b']);
    expect(api.objects('nodeslicepools').size).toBe(1);
    // Nothing changed: nothing written.
    expect(
      (await reconcileNodeSlices({ kube, nads, nodes: ['node-a', 'node-b', 'node-c'], ...noFlat })).written,
    ).toEqual([]);
    // node-b leaves, node-d joins: it takes the first free slice, the others keep theirs.
    await reconcileNodeSlices({ kube, nads, nodes: ['node-a', 'node-c', 'node-d'], ...noFlat });
    expect(slicePool('slicenet').status.allocations.map((a) => a.nodeName)).toEqual([
      'node-a',
      'node-d',
      'node-c',
      '',
    ]);
    // A fifth node when every slice is taken gets none (and nothing else moves).
    await reconcileNodeSlices({
      kube,
      nads,
      nodes: ['node-a', 'node-c', 'node-d', 'node-e', 'node-f'],
      ...noFlat,
    });
    expect(slicePool('slicenet').status.allocations.map((a) => a.nodeName)).toEqual([
      'node-a',
      'node-d',
      'node-c',
      'node-e',
    ]);
    // NADs of one network that disagree are reported and their pool left alone.
    const clash = [
      ...nads,
      nad('slices-c', ipamOf({ range: '10.30.0.0/24', node_slice_size: '/27' }), 'slicenet'),
    ];
    const r2 = await reconcileNodeSlices({ kube, nads: clash, nodes: ['node-a'], ...noFlat });
    expect(r2.written).toEqual([]);
    expect(r2.problems.join('\n')).toContain('make the NADs of one network agree');
    // A new slice size re-cuts every slice.
    const wider = [nad('slices-a', ipamOf({ range: '10.30.0.0/24', node_slice_size: '/25' }), 'slicenet')];
    await reconcileNodeSlices({ kube, nads: wider, nodes: ['node-a', 'node-c'], ...noFlat });
    expect(slicePool('slicenet').spec).toEqual({ range: '10.30.0.0/24', sliceSize: '/25' });
    expect(slicePool('slicenet').status.allocations).toEqual([
      { nodeName: 'node-a', sliceRange: '10.30.0.0/25' },
      { nodeName: 'node-c', sliceRange: '10.30.0.128/25' },
    ]);
  });

  it('8 simulated nodes allocate at once, each inside its own slice and IPPool, without touching another node', async () => {
    const kube = await openKubeApi(kubeconfig);
    const nodes = Array.from({ length: 8 }, (_, i) => `worker-${i}`);
    const ipam = ipamOf({ range: '10.40.0.0/21', node_slice_size: '/24', network_name: 'fast' });
    const reports: string[] = [];
    const controller = startNodeSliceController({
      kube,
      listNads: async () => [nad('fast-nad', ipam)],
      listNodes: async () => nodes,
      resyncMs: 60_000,
      onPass: (r) => reports.push(...r.problems),
      onError: (e) => reports.push(String(e)),
      ...noFlat,
    });
    try {
      await controller.trigger();
      expect(reports).toEqual([]);
      const conf = { cniVersion: '1.1.0', name: 'fast-nad', ipam };
      const before = api.requests.length;
      const per = 12;
      const results = await Promise.all(
        nodes.flatMap((node) => {
          const ipamFor = nodeIpam(node);
          return Array.from({ length: per }, async (_, i) => {
            const a = await ipamFor(conf);
            const r = await a.allocate({
              containerId: `${node}-c${i}`,
              ifname: 'net1',
              podRef: `default/${node}-p${i}`,
            });
            return { node, address: r.ips![0]!.address };
          });
        }),
      );
      const addrs = results.map((r) => r.address);
      expect(new Set(addrs).size).toBe(nodes.length * per);
      const slices = new Map(slicePool('fast').status.allocations.map((a) => [a.nodeName, a.sliceRange]));
      for (const { node, address } of results) {
        const slice = slices.get(node)!;
        expect(address.split('.').slice(0, 3).join('.'), `${node} got ${address}, slice ${slice}`).toBe(
          slice.split('.').slice(0, 3).join('.'),
        );
        expect(address.endsWith('/21')).toBe(true); // the result keeps the configured range's prefix
      }
      for (const node of nodes) {
        const slice = slices.get(node)!;
        const pool = api.objects('ippools').get(`${NS}/fast-${node}-${slice.replace('/', '-')}`);
        expect(pool?.spec).toMatchObject({ range: slice });
        expect(Object.keys((pool!.spec as { allocations: object }).allocations)).toHaveLength(per);
      }
      // No cross-node contention: every pool write named one node's pool and none lost a race.
      const writes = api.requests
        .slice(before)
        .filter((r) => r.method === 'PUT' && r.path.includes('/ippools/'));
      expect(writes.filter((w) => w.code === 409)).toEqual([]);
    } finally {
      await controller.stop();
    }
  }, 60_000);

  it('without a slice for the node ADD is code 11 and DEL succeeds; bad sizes and stores are code 7', async () => {
    const ipam = ipamOf({ range: '10.50.0.0/24', node_slice_size: '/26', network_name: 'noslice' });
    const conf = { cniVersion: '1.1.0', name: 'n', ipam };
    const forNode = nodeIpam('lonely');
    const add = await (await forNode(conf)).allocate({ containerId: 'x', ifname: 'net1' }).catch((e) => e);
    expect(add).toBeInstanceOf(CniError);
    expect(add.code).toBe(11);
    expect(add.message).toContain('NodeSlicePool "noslice" does not exist');
    await (await forNode(conf)).release({ containerId: 'x', ifname: 'net1' });
    // The pool exists, but not for this node.
    const kube = await openKubeApi(kubeconfig);
    await reconcileNodeSlices({ kube, nads: [nad('n', ipam)], nodes: ['other'], ...noFlat });
    const add2 = await (await forNode(conf)).allocate({ containerId: 'x', ifname: 'net1' }).catch((e) => e);
    expect(add2.code).toBe(11);
    expect(add2.message).toContain('gives node "lonely" no slice');
    const st = await (await forNode(conf)).status().catch((e) => e);
    expect(st.code).toBe(50);
    await (await forNode(conf)).release({ containerId: 'x', ifname: 'net1' });

    // No node name at all: ADD is code 7 naming NODENAME, DEL has nothing to free.
    const nameless = createWhereaboutsAllocator(conf, {
      ...noFlat,
      hostnameFile: join(tmp, 'missing'),
      kube: openKubeApi,
    });
    try {
      const e = await nameless.allocate({ containerId: 'y', ifname: 'net1' }).catch((err) => err);
      expect(e.code).toBe(7);
      expect(e.message).toContain('NODENAME');
      await nameless.release({ containerId: 'y', ifname: 'net1' });
    } finally {
      await nameless.close();
    }

    const bad = (extra: Record<string, unknown>) => {
      try {
        createWhereaboutsAllocator({ cniVersion: '1.1.0', name: 'n', ipam: { ...ipam, ...extra } }, noFlat);
      } catch (e) {
        return e as CniError;
      }
      throw new Error(`accepted ${JSON.stringify(extra)}`);
    };
    for (const [extra, text] of [
      [{ node_slice_size: '/22' }, 'is wider than the range 10.50.0.0/24'],
      [{ node_slice_size: '/31' }, 'leaves no usable address'],
      [{ node_slice_size: 'big' }, 'is not a prefix length'],
      [{ datastore: 'etcd', etcd_host: 'http://127.0.0.1:1' }, 'needs the Kubernetes store'],
      [{ ipRanges: [{ range: '10.51.0.0/24' }] }, 'has 2 ranges'],
    ] as const) {
      const e = bad(extra);
      expect(e.code, text).toBe(7);
      expect(e.message).toContain('ipam.node_slice_size');
      expect(e.message).toContain(text);
    }
  });
});
