// Shared informers against the fake API server: LIST then WATCH of the pods of one node and of the
// NADs, resumed from the last resourceVersion, a LIST again on 410 Expired, backoff after a broken
// stream; and the cache-backed client: a hit makes no request, a miss is one GET.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  cachedKubeClient,
  connectKube,
  Informer,
  type KubeTransport,
  openKubeTransport,
  type Pod,
  registerSharedKubeCache,
  sharedCacheOf,
  sharedKubeCache,
  startNodeCaches,
} from 'cni-kit/k8s';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type FakeK8s, startFakeK8s } from '../helpers/fake-k8s.js';

let api: FakeK8s;
let dir: string;
let kubeconfig: string;
let transport: KubeTransport;
const closers: Array<() => unknown> = [];

beforeAll(async () => {
  api = await startFakeK8s();
  dir = mkdtempSync(join(tmpdir(), 'informer-'));
  kubeconfig = api.writeKubeconfig(join(dir, 'kubeconfig'));
  transport = await openKubeTransport(kubeconfig);
});
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});
afterAll(async () => {
  transport.close();
  await api.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Polls `ok` (15 s at most: a loaded machine is slow); on timeout says what `seen` last showed. */
const until = async (what: string, ok: () => boolean, ms = 15_000, seen?: () => unknown) => {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end)
      throw new Error(`timed out waiting for ${what}${seen ? `; saw ${JSON.stringify(seen())}` : ''}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

const pod = (ns: string, name: string, node: string) => ({
  metadata: { name, namespace: ns },
  spec: { nodeName: node, containers: [] },
});

function podInformer(node: string, extra = {}) {
  const inf = new Informer<Pod>(transport, {
    path: '/api/v1/pods',
    fieldSelector: `spec.nodeName=${node}`,
    backoff: { initialMs: 5, maxMs: 50 },
    ...extra,
  }).start();
  closers.push(() => inf.close());
  return inf;
}

describe('Informer', () => {
  it('lists, then follows the watch: only the pods of its node, deletes included', async () => {
    api.putPod(pod('a', 'here-1', 'n1'));
    api.putPod(pod('a', 'there-1', 'n2'));
    const inf = podInformer('n1');
    expect(await inf.waitForSync(15_000)).toBe(true);
    expect(inf.list().map((p) => p.metadata.name)).toEqual(['here-1']);
    api.putPod(pod('b', 'here-2', 'n1'));
    api.putPod(pod('b', 'there-2', 'n2'));
    await until('here-2', () => inf.get('b', 'here-2') !== undefined);
    api.objects('pods').delete('a/here-1');
    await until('here-1 gone', () => inf.get('a', 'here-1') === undefined);
    expect(inf.get('b', 'there-2')).toBeUndefined();
    expect(inf.stats.lists).toBe(1);
  });

  it('resumes a broken watch from its resourceVersion without listing again', async () => {
    const inf = podInformer('n3');
    await inf.waitForSync(15_000);
    await until('watch open', () => inf.stats.watches === 1 && api.watches() > 0);
    api.dropWatches();
    api.putPod(pod('c', 'during-gap', 'n3'));
    await until('gap event replayed', () => inf.get('c', 'during-gap') !== undefined);
    expect(inf.stats.lists).toBe(1);
    expect(inf.stats.watches).toBeGreaterThanOrEqual(2);
  });

  it('lists again when the server answers 410 Expired, and misses nothing', async () => {
    api.putPod(pod('d', 'old', 'n4'));
    const inf = podInformer('n4');
    await inf.waitForSync(15_000);
    await until('watch open', () => api.watches() > 0);
    api.dropWatches();
    api.putPod(pod('d', 'while-compacted', 'n4'));
    api.objects('pods').delete('d/old');
    api.compact();
    await until('relisted', () => inf.stats.expired >= 1 && inf.get('d', 'while-compacted') !== undefined);
    expect(inf.get('d', 'old')).toBeUndefined();
    expect(inf.stats.lists).toBe(2);
  });

  it('takes the resourceVersion of a BOOKMARK, so a later watch is not expired', async () => {
    const inf = podInformer('n5');
    await inf.waitForSync(15_000);
    await until('watch open', () => api.watches() > 0);
    // Changes elsewhere move the server's resourceVersion past the informer's last event.
    api.putPod(pod('e', 'elsewhere', 'n6'));
    const events = inf.stats.events;
    api.bookmark();
    // The BOOKMARK must have reached the informer before the history goes (not a fixed wait).
    await until(
      'the bookmark to arrive',
      () => inf.stats.events > events,
      undefined,
      () => inf.stats,
    );
    api.compact();
    api.dropWatches();
    await until('rewatch', () => inf.stats.watches >= 2 && api.watches() > 0);
    await new Promise((r) => setTimeout(r, 50));
    expect(inf.stats.expired).toBe(0);
    expect(inf.stats.lists).toBe(1);
  });

  it('a resync LIST repairs a change whose event was lost', async () => {
    api.putPod(pod('r', 'kept', 'nr'));
    const inf = podInformer('nr', { resyncMs: 300 });
    await inf.waitForSync(15_000);
    // Changed on the server without any watch event (as if the event had been lost).
    const store = api.objects('pods');
    const cur = store.get('r/kept');
    Map.prototype.set.call(store, 'r/kept', {
      ...cur,
      metadata: { ...cur?.metadata, annotations: { changed: 'yes' } },
    });
    await until(
      'resync',
      () => inf.get('r', 'kept')?.metadata.annotations?.changed === 'yes',
      undefined,
      () => inf.stats,
    );
    expect(inf.stats.lists).toBeGreaterThanOrEqual(2);
  });

  it('keeps trying, with growing delays, while the API server refuses', async () => {
    const at: number[] = [];
    const errors: string[] = [];
    // A collection RBAC does not allow: every LIST fails until the informer is closed.
    const inf = new Informer(transport, {
      path: '/api/v1/namespaces/x/secrets',
      backoff: { initialMs: 40, maxMs: 2000 },
      onError: (e) => {
        at.push(Date.now());
        errors.push(e.message);
      },
    }).start();
    closers.push(() => inf.close());
    await until(
      'failures',
      () => inf.stats.failures >= 5,
      undefined,
      () => errors,
    );
    expect(inf.synced()).toBe(false);
    expect(errors[0]).toMatch(/403/);
    const gaps = at.slice(1, 5).map((t, i) => t - (at[i] as number));
    // Waits of 40, 80, 160, 320 ms (-20%/+20%) between failures. A loaded machine can only make a
    // gap longer, so each is checked against its lower bound (a fixed 40 ms would fail from the
    // second on); comparing two gaps instead fails when a stall lengthens the first.
    expect(gaps).toHaveLength(4);
    gaps.forEach((g, i) => {
      expect(g, `gap ${i} of ${JSON.stringify(gaps)}`).toBeGreaterThanOrEqual(0.8 * 40 * 2 ** i - 2);
    });
  });
});

describe('Informer convergence (property)', () => {
  it('after any mix of changes, dropped watches and compactions, the store matches the server', async () => {
    type Op =
      | { op: 'put'; name: number; node: number }
      | { op: 'del'; name: number }
      | { op: 'drop' }
      | { op: 'compact' };
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ op: fc.constant('put' as const), name: fc.nat(5), node: fc.nat(1) }),
      fc.record({ op: fc.constant('del' as const), name: fc.nat(5) }),
      fc.record({ op: fc.constant('drop' as const) }),
      fc.record({ op: fc.constant('compact' as const) }),
    );
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { maxLength: 25 }), async (ops) => {
        const ns = `prop${run++}`;
        const inf = podInformer('p0');
        try {
          await inf.waitForSync(15_000);
          for (const o of ops) {
            if (o.op === 'put') api.putPod(pod(ns, `p${o.name}`, `p${o.node}`));
            else if (o.op === 'del') api.objects('pods').delete(`${ns}/p${o.name}`);
            else if (o.op === 'drop') api.dropWatches();
            else api.compact();
            await new Promise((r) => setTimeout(r, 1));
          }
          const want = () =>
            [...api.objects('pods').values()]
              .filter(
                (p) => p.metadata.namespace === ns && (p.spec as { nodeName?: string }).nodeName === 'p0',
              )
              .map((p) => `${p.metadata.name}@${p.metadata.resourceVersion}`)
              .sort()
              .join(',');
          const have = () =>
            inf
              .list(ns)
              .map((p) => `${p.metadata.name}@${p.metadata.resourceVersion}`)
              .sort()
              .join(',');
          await until(
            'convergence',
            () => have() === want(),
            undefined,
            () => ({ want: want(), have: have() }),
          );
        } finally {
          await inf.close();
        }
      }),
      { numRuns: 15 },
    );
  });
});

describe('cachedKubeClient', () => {
  it('answers from the cache without a request; a miss is one GET', async () => {
    api.putPod(pod('f', 'cached', 'n7'));
    api.putNad('f', 'net-a', { cniVersion: '1.0.0', type: 'bridge' });
    const caches = startNodeCaches(transport, { nodeName: 'n7', backoff: { initialMs: 5, maxMs: 50 } });
    closers.push(() => caches.close());
    expect(await caches.waitForSync(15_000)).toBe(true);
    const shared = sharedCacheOf(caches);
    closers.push(registerSharedKubeCache(kubeconfig, shared));
    expect(sharedKubeCache(kubeconfig)).toBe(shared);
    const kube = cachedKubeClient(await connectKube(kubeconfig), shared);
    const gets = () => api.requests.filter((r) => r.method === 'GET' && !r.path.endsWith('s')).length;
    const before = gets();
    expect((await kube.getPod('f', 'cached')).metadata.name).toBe('cached');
    expect((await kube.getNetworkAttachmentDefinition('f', 'net-a')).metadata.name).toBe('net-a');
    expect(gets()).toBe(before);
    // Created on the API but not delivered yet as far as the caller knows: a GET.
    api.putPod(pod('f', 'brand-new', 'n8'));
    expect((await kube.getPod('f', 'brand-new')).metadata.name).toBe('brand-new');
    expect(gets()).toBe(before + 1);
    // A 404 for a NAD is remembered until the NAD store changes.
    await expect(kube.getNetworkAttachmentDefinition('f', 'absent')).rejects.toMatchObject({ status: 404 });
    await expect(kube.getNetworkAttachmentDefinition('f', 'absent')).rejects.toMatchObject({ status: 404 });
    expect(gets()).toBe(before + 2);
    api.putNad('f', 'absent', { cniVersion: '1.0.0', type: 'bridge' });
    await until('nad delivered', () => caches.nads.get('f', 'absent') !== undefined);
    expect((await kube.getNetworkAttachmentDefinition('f', 'absent')).metadata.name).toBe('absent');
    expect(gets()).toBe(before + 2);
    expect(shared.counts).toMatchObject({ podHits: 1, podMisses: 1 });
  });

  it('treats a cached pod with another uid (re-created under its name) as a miss', async () => {
    api.putPod(pod('g', 'again', 'n9'));
    const caches = startNodeCaches(transport, { nodeName: 'n9' });
    closers.push(() => caches.close());
    await caches.waitForSync(15_000);
    const kube = cachedKubeClient(await connectKube(kubeconfig), sharedCacheOf(caches), 'another-uid');
    const before = api.requests.length;
    await kube.getPod('g', 'again');
    expect(api.requests.slice(before).map((r) => r.path)).toEqual(['/api/v1/namespaces/g/pods/again']);
  });
});

describe('the per-call client under a burst', () => {
  it('more concurrent requests than kept sockets all succeed (none fails with Premature close)', async () => {
    for (let i = 0; i < 40; i++) api.putPod(pod('burst', `b${i}`, 'nb'));
    const kube = await connectKube(kubeconfig);
    const all = await Promise.allSettled(
      Array.from({ length: 40 }, (_, i) => kube.updatePodAnnotations('burst', `b${i}`, { a: 'b' })),
    );
    const failed = all.filter((r) => r.status === 'rejected').map((r) => String(r.reason));
    expect(failed).toEqual([]);
  });
});
