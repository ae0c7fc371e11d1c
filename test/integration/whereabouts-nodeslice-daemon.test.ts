// The node-slice controller as the daemon runs it (--whereabouts-node-slices), against the fake
// API server with simulated Nodes: it assigns slices as Nodes come and go, only the daemon holding
// the Lease watches Nodes and writes NodeSlicePools, and when that daemon dies without releasing
// the Lease another takes over and carries on.
import { describe, expect, it } from 'vitest';
import {
  type DaemonNodeSlices,
  NODE_SLICE_LEASE,
  startDaemonNodeSlices,
} from '../../src/cli/whereabouts-node-slices.js';
import type { Lease } from '../../src/k8s/lease.js';
import type { SeenRequest } from '../helpers/fake-k8s.js';
import { fakeK8sPerFile } from '../helpers/fake-k8s-file.js';

const k8s = fakeK8sPerFile('wbslicectl', { tls: false });

// The holder must keep the Lease through each case: a loaded machine can starve its renewals for
// a few hundred ms, so the renew deadline leaves room for that (a takeover then waits 2 s).
const lease = { durationMs: 2000, renewDeadlineMs: 1500, retryPeriodMs: 100, followerRetryPeriodMs: 100 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Polls `ok` (15 s at most); on timeout says what the pools and the Lease looked like. */
async function until(what: string, ok: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) {
      const pools = Object.fromEntries(k8s.api.objects('nodeslicepools'));
      const leases = Object.fromEntries(k8s.api.objects('leases'));
      throw new Error(
        `timed out waiting for ${what}; pools ${JSON.stringify(pools)} leases ${JSON.stringify(leases)}`,
      );
    }
    await sleep(20);
  }
}

/** A NAD of network `net` cut into /26 slices of 10.60.<n>.0/24 (4 slices). */
function putSliceNad(ns: string, net: string, third: number): void {
  k8s.api.putNad(ns, net, {
    cniVersion: '1.0.0',
    name: net,
    type: 'macvlan',
    master: 'eth0',
    ipam: {
      type: 'whereabouts',
      range: `10.60.${third}.0/24`,
      node_slice_size: '/26',
      kubernetes: { kubeconfig: '/unused' },
    },
  });
}

const allocations = (ns: string, net: string) =>
  (
    k8s.api.objects('nodeslicepools').get(`${ns}/${net}`) as unknown as
      | { status: { allocations: Array<{ nodeName: string; sliceRange: string }> } }
      | undefined
  )?.status.allocations ?? [];
const assigned = (ns: string, net: string) =>
  allocations(ns, net)
    .map((a) => a.nodeName)
    .filter(Boolean)
    .sort();
const holder = (ns: string) =>
  (k8s.api.objects('leases').get(`${ns}/${NODE_SLICE_LEASE}`) as unknown as Lease | undefined)?.spec
    ?.holderIdentity;
const poolWrites = (since: number): SeenRequest[] =>
  k8s.api.requests
    .slice(since)
    .filter((r) => /\/nodeslicepools/.test(r.path) && (r.method === 'POST' || r.method === 'PUT'));

function start(ns: string, node: string, logs: string[] = []): Promise<DaemonNodeSlices> {
  return startDaemonNodeSlices({
    kubeconfig: k8s.kubeconfig(ns),
    nodeName: node,
    lease,
    pollMs: 30,
    flatFilePaths: [],
    log: (_l, f) => logs.push(`${f.msg}${f.error ? `: ${String(f.error)}` : ''}`),
  });
}

describe('the daemon’s node-slice controller', () => {
  it('assigns a slice to every simulated node as nodes join and leave', async () => {
    const ns = 'slc1';
    for (const n of ['n-a', 'n-b', 'n-c']) k8s.api.putNode(`${ns}-${n}`);
    putSliceNad(ns, 'blue', 1);
    const logs: string[] = [];
    const d = await start(ns, 'daemon-1', logs);
    try {
      await until('three nodes with a slice', () => assigned(ns, 'blue').length === 3);
      expect(d.isLeader()).toBe(true);
      expect(holder(ns)).toBe('daemon-1');
      expect(allocations(ns, 'blue').map((a) => a.sliceRange)).toEqual([
        '10.60.1.0/26',
        '10.60.1.64/26',
        '10.60.1.128/26',
        '10.60.1.192/26',
      ]);
      const before = new Map(
        allocations(ns, 'blue')
          .filter((a) => a.nodeName !== '')
          .map((a) => [a.nodeName, a.sliceRange]),
      );
      // A node joins: it gets the free slice; the others keep theirs.
      k8s.api.putNode(`${ns}-n-d`);
      await until('the new node’s slice', () => assigned(ns, 'blue').includes(`${ns}-n-d`));
      for (const [node, slice] of before)
        expect(allocations(ns, 'blue').find((a) => a.nodeName === node)?.sliceRange).toBe(slice);
      // A node leaves: its slice is free again.
      k8s.api.deleteNode(`${ns}-n-b`);
      await until('the slice of the node that left', () => !assigned(ns, 'blue').includes(`${ns}-n-b`));
      expect(allocations(ns, 'blue').filter((a) => a.nodeName === '')).toHaveLength(1);
      // A second network appears: it gets a pool of its own with every node.
      putSliceNad(ns, 'green', 2);
      await until('the second network', () => assigned(ns, 'green').length === 3);
      expect(logs.filter((l) => l.includes('failed'))).toEqual([]);
    } finally {
      await d.close();
      for (const n of ['n-a', 'n-b', 'n-c', 'n-d']) k8s.api.deleteNode(`${ns}-${n}`);
    }
    // Closing released the Lease for the next daemon.
    expect(holder(ns)).toBe('');
  });

  it('of two daemons only the Lease holder watches Nodes and writes; when it dies the other takes over', async () => {
    const ns = 'slc2';
    for (const n of ['w-1', 'w-2']) k8s.api.putNode(`${ns}-${n}`);
    putSliceNad(ns, 'red', 3);
    const since = k8s.api.requests.length;
    const a = await start(ns, 'daemon-a');
    await until('daemon-a leads', () => a.isLeader());
    const b = await start(ns, 'daemon-b');
    try {
      await until('two slices', () => assigned(ns, 'red').length === 2);
      // Changes while both run: still only a writes.
      k8s.api.putNode(`${ns}-w-3`);
      await until('w-3’s slice', () => assigned(ns, 'red').includes(`${ns}-w-3`));
      await b.passNow(); // a follower has no controller running: nothing happens
      await sleep(300); // several of b's Lease attempts
      expect(b.isLeader()).toBe(false);
      const writers = new Set(poolWrites(since).map((r) => r.userAgent));
      expect([...writers]).toEqual(['cni-kit-node-slices/daemon-a']);
      const fromB = k8s.api.requests
        .slice(since)
        .filter((r) => r.userAgent === 'cni-kit-node-slices/daemon-b');
      // The follower only campaigns: Lease reads (and no Node or NAD watch, no pool access).
      expect(fromB.length).toBeGreaterThan(0);
      expect(fromB.filter((r) => !r.path.includes('/leases/') && !r.path.endsWith('/leases'))).toEqual([]);
      // a dies without releasing the Lease (no renewals from now on).
      await a.abandon();
      const died = k8s.api.requests.length;
      k8s.api.deleteNode(`${ns}-w-1`);
      k8s.api.putNode(`${ns}-w-4`);
      await until('daemon-b takes over', () => b.isLeader());
      expect(holder(ns)).toBe('daemon-b');
      await until('w-4 gets w-1’s slice', () => assigned(ns, 'red').includes(`${ns}-w-4`));
      expect(assigned(ns, 'red')).toEqual([`${ns}-w-2`, `${ns}-w-3`, `${ns}-w-4`]);
      const after = new Set(poolWrites(died).map((r) => r.userAgent));
      expect([...after]).toEqual(['cni-kit-node-slices/daemon-b']);
    } finally {
      await a.close();
      await b.close();
      for (const n of ['w-1', 'w-2', 'w-3', 'w-4']) k8s.api.deleteNode(`${ns}-${n}`);
    }
  });
});
