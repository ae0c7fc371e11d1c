// The whereabouts reconciler against the fake API server: a node crash (pods deleted, no DEL ever
// sent) is repaired by freeing exactly the addresses of the deleted pods and their reservations;
// a pod re-created under its old name keeps its address (upstream's duplicate bug, wa#176); two
// controllers with a Lease never both sweep; pods leaving the node's pod cache trigger a pass.
import { describe, expect, it } from 'vitest';
import { startDaemonReconciler } from '../../src/cli/whereabouts-reconciler.js';
import { createWhereaboutsAllocator } from '../../src/ipam/whereabouts/index.js';
import {
  type PodLookup,
  reconcileWhereabouts,
  startWhereaboutsReconciler,
} from '../../src/ipam/whereabouts/reconciler.js';
import { isKubeNotFound } from '../../src/k8s/client.js';
import { openKubeApi } from '../../src/k8s/connect.js';
import { Informer, openKubeTransport } from '../../src/k8s/informer.js';
import { type Lease, startLeaderElection } from '../../src/k8s/lease.js';
import { fakeK8sPerFile } from '../helpers/fake-k8s-file.js';

const k8s = fakeK8sPerFile('wbrec', { tls: false });

const kubeconfig = (ns: string) => k8s.kubeconfig(ns);

/** An allocator on the Kubernetes store of namespace `ns` (network "blue", overlapping ranges on). */
function allocator(ns: string) {
  return createWhereaboutsAllocator(
    {
      cniVersion: '1.0.0',
      name: 'nad',
      ipam: {
        type: 'whereabouts',
        range: '10.30.0.0/24',
        network_name: 'blue',
        datastore: 'kubernetes',
        kubernetes: { kubeconfig: kubeconfig(ns) },
      },
    },
    { kube: openKubeApi },
  );
}

/** A pod lookup on the API: undefined on 404. */
async function podLookup(ns: string): Promise<PodLookup> {
  const client = (await openKubeApi(kubeconfig(ns))).client;
  return async (pns, name) => {
    try {
      return await client.getPod(pns, name);
    } catch (err) {
      if (isKubeNotFound(err)) return undefined;
      throw err;
    }
  };
}

type Pool = { spec: { allocations: Record<string, { id: string; podref: string; ifname: string }> } };
const poolOf = (ns: string) => k8s.api.objects('ippools').get(`${ns}/blue-10.30.0.0-24`) as unknown as Pool;
const reservationsOf = (ns: string) =>
  [...k8s.api.objects('overlappingrangeipreservations').keys()].filter((k) => k.startsWith(`${ns}/`)).sort();

/** Starts `n` pods in namespace `app` on `node` and allocates net1 for each; returns pod name -> address. */
async function startPods(ns: string, n: number, node = 'node-1', prefix = 'p'): Promise<Map<string, string>> {
  const a = allocator(ns);
  const got = new Map<string, string>();
  for (let i = 0; i < n; i++) {
    const name = `${prefix}${i}`;
    k8s.api.putPod({ metadata: { name, namespace: 'app' }, spec: { nodeName: node } });
    const r = await a.allocate({ containerId: `ctr-${name}`, ifname: 'net1', podRef: `app/${name}` });
    got.set(name, r.ips![0]!.address.split('/')[0]!);
  }
  return got;
}

describe('whereabouts reconciler', () => {
  it('after a node crash (pods deleted, no DEL) frees exactly the deleted pods’ addresses and reservations', async () => {
    const ns = 'rec1';
    const ips = await startPods(ns, 6);
    expect(new Set(ips.values()).size).toBe(6);
    // A second interface of a surviving pod, and an allocation without a podRef: both must stay.
    const a = allocator(ns);
    await a.allocate({ containerId: 'ctr-p0', ifname: 'net2', podRef: 'app/p0' });
    await a.allocate({ containerId: 'bare', ifname: 'net1' });
    for (const name of ['p1', 'p3', 'p4']) k8s.api.objects('pods').delete(`app/${name}`);
    const before = Object.keys(poolOf(ns).spec.allocations).length;
    expect(before).toBe(8);

    const r = await reconcileWhereabouts({
      kube: await openKubeApi(kubeconfig(ns)),
      getPod: await podLookup(ns),
    });
    expect(r.errors).toEqual([]);
    expect(r.acted).toBe(true);
    const freedIps = r.freed.map((f) => `10.30.0.${f.offset}`).sort();
    expect(freedIps).toEqual(['p1', 'p3', 'p4'].map((n) => ips.get(n)!).sort());
    expect(r.freed.map((f) => f.podRef).sort()).toEqual(['app/p1', 'app/p3', 'app/p4']);
    const left = Object.values(poolOf(ns).spec.allocations).map((e) => `${e.podref}:${e.ifname}`);
    expect(left.sort()).toEqual([':net1', 'app/p0:net1', 'app/p0:net2', 'app/p2:net1', 'app/p5:net1']);
    // The reservations of the freed addresses went; the others stay.
    expect(r.reservations.sort()).toEqual(['p1', 'p3', 'p4'].map((n) => `blue-${ips.get(n)}`).sort());
    const res = reservationsOf(ns);
    for (const n of ['p0', 'p2', 'p5']) expect(res).toContain(`${ns}/blue-${ips.get(n)}`);
    for (const n of ['p1', 'p3', 'p4']) expect(res).not.toContain(`${ns}/blue-${ips.get(n)}`);
    // The freed addresses are allocatable again, and a second pass has nothing to do.
    const again = await reconcileWhereabouts({
      kube: await openKubeApi(kubeconfig(ns)),
      getPod: await podLookup(ns),
    });
    expect(again.freed).toEqual([]);
    expect(again.reservations).toEqual([]);
  });

  it('a pod re-created under its old name keeps its address (podRef and interface match)', async () => {
    const ns = 'rec2';
    const ips = await startPods(ns, 2);
    // p0 is deleted and re-created (a StatefulSet) before any pass; its new sandbox's ADD comes later.
    k8s.api.objects('pods').delete('app/p0');
    k8s.api.putPod({ metadata: { name: 'p0', namespace: 'app' }, spec: { nodeName: 'node-2' } });
    const r = await reconcileWhereabouts({
      kube: await openKubeApi(kubeconfig(ns)),
      getPod: await podLookup(ns),
    });
    expect(r.freed).toEqual([]);
    expect(r.alive).toBe(2);
    const again = await allocator(ns).allocate({
      containerId: 'ctr-p0-new',
      ifname: 'net1',
      podRef: 'app/p0',
    });
    expect(again.ips![0]!.address).toBe(`${ips.get('p0')}/24`);

    // The race: the pass finds p1 gone, then p1 is re-created and its ADD adopts the address before
    // the pass writes. The entry changed (new container ID), so the pass must leave it.
    k8s.api.objects('pods').delete('app/p1');
    const lookup = await podLookup(ns);
    const racing: PodLookup = async (pns, name) => {
      const p = await lookup(pns, name);
      if (name === 'p1') {
        k8s.api.putPod({ metadata: { name: 'p1', namespace: 'app' } });
        await allocator(ns).allocate({ containerId: 'ctr-p1-new', ifname: 'net1', podRef: 'app/p1' });
      }
      return p;
    };
    const raced = await reconcileWhereabouts({ kube: await openKubeApi(kubeconfig(ns)), getPod: racing });
    expect(raced.freed).toEqual([]);
    const e = Object.entries(poolOf(ns).spec.allocations).find(([, v]) => v.podref === 'app/p1');
    expect(e && `10.30.0.${e[0]}`).toBe(ips.get('p1'));
    expect(e?.[1].id).toBe('ctr-p1-new');
  });

  it('re-reads the pool after a lost write race, and keeps what it cannot judge', async () => {
    const ns = 'rec7';
    const ips = await startPods(ns, 3);
    k8s.api.objects('pods').delete('app/p0');
    k8s.api.objects('pods').delete('app/p1');
    const lookup = await podLookup(ns);
    let raced = false;
    const getPod: PodLookup = async (pns, name) => {
      if (name === 'p1') throw Object.assign(new Error('etcdserver: request timed out'), { status: 500 });
      if (name === 'p0' && !raced) {
        // Another writer changes the pool after the pass read it: its PUT gets 409.
        raced = true;
        k8s.api.putPod({ metadata: { name: 'late', namespace: 'app' } });
        await allocator(ns).allocate({ containerId: 'ctr-late', ifname: 'net1', podRef: 'app/late' });
      }
      return lookup(pns, name);
    };
    const r = await reconcileWhereabouts({ kube: await openKubeApi(kubeconfig(ns)), getPod });
    expect(r.freed.map((f) => `10.30.0.${f.offset}`)).toEqual([ips.get('p0')]);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatch(/^pod app\/p1: etcdserver: request timed out/);
    const left = Object.values(poolOf(ns).spec.allocations)
      .map((e) => e.podref)
      .sort();
    expect(left).toEqual(['app/late', 'app/p1', 'app/p2']);
    const puts = k8s.api.requests.filter(
      (q) => q.method === 'PUT' && q.path.includes(`/namespaces/${ns}/ippools/`),
    );
    expect(puts.map((q) => q.code)).toContain(409);
  });

  it('two controllers with a Lease: only the holder sweeps; the other takes over when it stops renewing', async () => {
    const ns = 'rec3';
    const kube = await openKubeApi(kubeconfig(ns));
    const leases = kube.customResources<Lease>('coordination.k8s.io', 'v1', 'leases');
    // a must keep the lease through the passes below: a loaded machine can starve its renewals
    // for a few hundred ms, so the renew deadline leaves room for that (b's takeover then waits 2 s).
    const timing = { leaseDurationMs: 2000, renewDeadlineMs: 1500, retryPeriodMs: 100 };
    const elect = (identity: string) =>
      startLeaderElection({ leases, namespace: ns, name: 'whereabouts-reconciler', identity, ...timing });
    const ea = elect('node-a');
    const waitLeader = async (e: { isLeader(): boolean; holder(): string }) => {
      const end = Date.now() + 15_000;
      while (!e.isLeader() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
      expect(e.isLeader(), `holder seen: ${e.holder()}`).toBe(true);
    };
    await waitLeader(ea);
    const eb = elect('node-b');
    const getPod = await podLookup(ns);
    const ra = startWhereaboutsReconciler({ kube, getPod, leader: ea, cronExpression: '0 0 1 1 *' });
    const rb = startWhereaboutsReconciler({ kube, getPod, leader: eb, cronExpression: '0 0 1 1 *' });
    try {
      const ips = await startPods(ns, 4);
      k8s.api.objects('pods').delete('app/p0');
      // The follower's pass does nothing; the holder's frees p0.
      const fromB = await rb.runNow();
      expect(fromB.acted).toBe(false);
      expect(Object.keys(poolOf(ns).spec.allocations)).toHaveLength(4);
      const fromA = await ra.runNow();
      expect(fromA.freed.map((f) => f.podRef)).toEqual(['app/p0']);
      // Both at once: exactly one acts.
      k8s.api.objects('pods').delete('app/p1');
      const both = await Promise.all([ra.runNow(), rb.runNow()]);
      expect(both.map((x) => x.acted)).toEqual([true, false]);
      expect(both[0].freed.map((f) => `10.30.0.${f.offset}`)).toEqual([ips.get('p1')]);
      // The holder crashes (stops renewing without releasing): b takes over and sweeps.
      await ea.abandon();
      k8s.api.objects('pods').delete('app/p2');
      expect((await ra.runNow()).acted).toBe(false);
      await waitLeader(eb);
      const late = await rb.runNow();
      expect(late.freed.map((f) => f.podRef)).toEqual(['app/p2']);
      expect(Object.values(poolOf(ns).spec.allocations).map((e) => e.podref)).toEqual(['app/p3']);
    } finally {
      await ra.close();
      await rb.close();
      await ea.stop();
      await eb.stop();
    }
  });

  it('pods leaving the node’s pod cache are reconciled without waiting for the schedule', async () => {
    const ns = 'rec4';
    const ips = await startPods(ns, 3, 'node-9', 'q');
    const transport = await openKubeTransport(kubeconfig(ns));
    const pods = new Informer(transport, {
      path: '/api/v1/pods',
      fieldSelector: 'spec.nodeName=node-9',
    }).start();
    const reports: string[][] = [];
    const rec = startWhereaboutsReconciler({
      kube: await openKubeApi(kubeconfig(ns)),
      getPod: await podLookup(ns),
      podCache: pods,
      pollMs: 30,
      cronExpression: '0 0 1 1 *',
      // A follower: pod-cache passes are per node and need no lease.
      leader: { isLeader: () => false },
      onReport: (r) => reports.push(r.freed.map((f) => f.podRef)),
    });
    try {
      expect(await pods.waitForSync(15_000)).toBe(true);
      // The reconciler notes the synced cache at its next poll (30 ms, a timer due before this one).
      await new Promise((r) => setTimeout(r, 100));
      k8s.api.objects('pods').delete('app/q1');
      const end = Date.now() + 15_000;
      while (reports.length === 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
      expect(reports).toEqual([['app/q1']]);
      const held = Object.entries(poolOf(ns).spec.allocations)
        .map(([k]) => `10.30.0.${k}`)
        .sort();
      expect(held).toEqual([ips.get('q0'), ips.get('q2')].sort());
      expect(rec.nextRun()?.toISOString()).toMatch(/-01-01T00:00:00\.000Z$/);
    } finally {
      await rec.close();
      await pods.close();
      transport.close();
    }
  });

  it('the daemon’s reconciler (--whereabouts-reconciler) takes the Lease, watches its node and sweeps', async () => {
    const ns = 'rec6';
    const ips = await startPods(ns, 3, 'node-d', 'd');
    const logs: string[] = [];
    const from = k8s.api.requests.length;
    const d = await startDaemonReconciler({
      kubeconfig: kubeconfig(ns),
      nodeName: 'node-d',
      cronExpression: '0 0 1 1 *',
      lease: { durationMs: 1000, renewDeadlineMs: 600, retryPeriodMs: 100, followerRetryPeriodMs: 100 },
      pollMs: 30,
      log: (_lvl, f) => logs.push(f.msg),
    });
    try {
      const until = async (what: string, ok: () => boolean) => {
        const end = Date.now() + 15_000;
        while (!ok() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
        expect(ok(), `${what}; logs: ${JSON.stringify(logs)}`).toBe(true);
      };
      await until('the daemon leads', () => d.isLeader());
      expect(
        (k8s.api.objects('leases').get(`${ns}/whereabouts-reconciler`) as unknown as Lease).spec
          ?.holderIdentity,
      ).toBe('node-d');
      // Once the node's pod watch is open (its LIST done: the cache has synced) and a poll (30 ms,
      // a timer due before this test's next one) has noted it, delete a pod of this node: freed
      // without waiting for the schedule. A fixed wait from the start missed the sync when slow.
      // (The informer LISTs, then starts its watch: a second GET of the collection.)
      await until(
        'the pod LIST and watch of node-d',
        () =>
          k8s.api.requests.slice(from).filter((q) => q.method === 'GET' && q.path === '/api/v1/pods')
            .length >= 2,
      );
      await new Promise((r) => setTimeout(r, 100));
      k8s.api.objects('pods').delete('app/d2');
      await until('a pass', () => logs.includes('whereabouts reconciler: pass'));
      const held = Object.keys(poolOf(ns).spec.allocations)
        .map((k) => `10.30.0.${k}`)
        .sort();
      expect(held).toEqual([ips.get('d0'), ips.get('d1')].sort());
      expect(logs).toContain('whereabouts reconciler: pass');
      // A pod deleted elsewhere is for the full pass, which the Lease holder runs.
      k8s.api.objects('pods').delete('app/d0');
      const r = await d.reconciler.runNow();
      expect(r.freed.map((f) => f.podRef)).toEqual(['app/d0']);
    } finally {
      await d.close();
    }
    // Closing released the Lease.
    expect(
      (k8s.api.objects('leases').get(`${ns}/whereabouts-reconciler`) as unknown as Lease).spec
        ?.holderIdentity,
    ).toBe('');
  });

  it('refuses a bad cron expression with a code-7 error naming the field', async () => {
    const kube = await openKubeApi(kubeconfig('rec5'));
    expect(() =>
      startWhereaboutsReconciler({ kube, getPod: async () => undefined, cronExpression: '61 * * * *' }),
    ).toThrow(/reconciler_cron_expression "61 \* \* \* \*": minute 61 is outside 0-59/);
  });
});
