// Leader election on a coordination.k8s.io/v1 Lease against the fake API server (which enforces
// resourceVersion conflicts and the shipped RBAC): one holder at a time, takeover only after the
// holder stops renewing for leaseDurationSeconds, and a release hands over at once.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openKubeApi } from '../../src/k8s/connect.js';
import {
  daemonSetLeaseTiming,
  type LeaderElector,
  type Lease,
  microTime,
  startLeaderElection,
} from '../../src/k8s/lease.js';
import { type FakeK8s, startFakeK8s } from '../helpers/fake-k8s.js';

const tmp = mkdtempSync(join(tmpdir(), `lease-${process.pid}-`));
let api: FakeK8s;
beforeAll(async () => {
  api = await startFakeK8s({ tls: false });
});
afterAll(async () => {
  await api.close();
  rmSync(tmp, { recursive: true, force: true });
});

const leasesIn = async (ns: string) =>
  (await openKubeApi(api.writeKubeconfig(join(tmp, `kc-${ns}.json`), 'json', ns))).customResources<Lease>(
    'coordination.k8s.io',
    'v1',
    'leases',
  );

const waitFor = async (cond: () => boolean, ms: number) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
};

const timing = { leaseDurationMs: 1000, renewDeadlineMs: 600, retryPeriodMs: 100 };

describe('Lease leader election', () => {
  it('writes MicroTime as the API does', () => {
    expect(microTime(Date.UTC(2026, 10, 27, 16, 0, 0, 123))).toBe('2026-11-27T16:00:00.123000Z');
  });

  it('one of two candidates leads; the other takes over only once the holder stops renewing', async () => {
    const ns = 'lease1';
    const leases = await leasesIn(ns);
    const electors: LeaderElector[] = [];
    try {
      const a = startLeaderElection({
        leases,
        namespace: ns,
        name: 'whereabouts',
        identity: 'node-a',
        ...timing,
      });
      electors.push(a);
      await waitFor(() => a.isLeader(), 3000);
      const b = startLeaderElection({
        leases,
        namespace: ns,
        name: 'whereabouts',
        identity: 'node-b',
        ...timing,
      });
      electors.push(b);
      // Well past the lease duration: a keeps renewing, so b never leads and sees a as holder.
      const until = Date.now() + 2000;
      while (Date.now() < until) {
        expect(a.isLeader() && b.isLeader()).toBe(false);
        expect(b.isLeader()).toBe(false);
        await new Promise((r) => setTimeout(r, 25));
      }
      expect(b.holder()).toBe('node-a');
      const stored = api.objects('leases').get(`${ns}/whereabouts`) as unknown as Lease;
      expect(stored.spec).toMatchObject({
        holderIdentity: 'node-a',
        leaseDurationSeconds: 1,
        leaseTransitions: 0,
      });
      expect(stored.spec?.renewTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
      // a crashes: no release, no more renewals. b waits out the duration, then takes over.
      const crashed = Date.now();
      await a.abandon();
      expect(a.isLeader()).toBe(false);
      await waitFor(() => b.isLeader(), 4000);
      expect(Date.now() - crashed).toBeGreaterThanOrEqual(900);
      const after = api.objects('leases').get(`${ns}/whereabouts`) as unknown as Lease;
      expect(after.spec).toMatchObject({ holderIdentity: 'node-b', leaseTransitions: 1 });
    } finally {
      for (const e of electors) await e.stop();
    }
  });

  it('a released lease is taken at once; a leader that cannot renew steps down', async () => {
    const ns = 'lease2';
    const leases = await leasesIn(ns);
    const electors: LeaderElector[] = [];
    try {
      // A 3 s lease: a takeover within 2 s can only come from the release.
      const slow = { ...timing, leaseDurationMs: 3000 };
      const a = startLeaderElection({ leases, namespace: ns, name: 'l', identity: 'a', ...slow });
      electors.push(a);
      await waitFor(() => a.isLeader(), 3000);
      const b = startLeaderElection({ leases, namespace: ns, name: 'l', identity: 'b', ...slow });
      electors.push(b);
      await new Promise((r) => setTimeout(r, 300));
      const released = Date.now();
      await a.stop();
      expect((api.objects('leases').get(`${ns}/l`) as unknown as Lease).spec?.holderIdentity).not.toBe('a');
      await waitFor(() => b.isLeader(), 3000);
      expect(Date.now() - released).toBeLessThan(2000);

      // Someone else overwrites the lease (as after a partition): b cannot renew and steps down.
      let stepped = false;
      const c = startLeaderElection({
        leases,
        namespace: ns,
        name: 'l2',
        identity: 'c',
        ...timing,
        onStoppedLeading: () => {
          stepped = true;
        },
      });
      electors.push(c);
      await waitFor(() => c.isLeader(), 3000);
      const cur = api.objects('leases').get(`${ns}/l2`)!;
      const spec = (cur as unknown as Lease).spec;
      api.objects('leases').set(`${ns}/l2`, {
        ...cur,
        spec: { ...spec, holderIdentity: 'intruder', renewTime: microTime(Date.now() + 60_000) },
      });
      await waitFor(() => stepped, 3000);
      expect(c.isLeader()).toBe(false);
    } finally {
      for (const e of electors) await e.stop();
    }
  });

  it('a follower looks at a held lease only every followerRetryPeriodMs, and still takes it over', async () => {
    const ns = 'lease-follow';
    const kc = api.writeKubeconfig(join(tmp, `kc-${ns}.json`), 'json', ns);
    const leasesAs = async (ua: string) =>
      (await openKubeApi(kc, { userAgent: ua })).customResources<Lease>(
        'coordination.k8s.io',
        'v1',
        'leases',
      );
    const a = startLeaderElection({
      leases: await leasesAs('cand-a'),
      namespace: ns,
      name: 'follow',
      identity: 'a',
      ...timing,
      retryPeriodMs: 50,
    });
    await waitFor(() => a.isLeader(), 3000);
    const b = startLeaderElection({
      leases: await leasesAs('cand-b'),
      namespace: ns,
      name: 'follow',
      identity: 'b',
      ...timing,
      retryPeriodMs: 50,
      followerRetryPeriodMs: 700,
    });
    try {
      const from = api.requests.length;
      await new Promise((r) => setTimeout(r, 1500));
      const seen = api.requests.slice(from);
      const byB = seen.filter((r) => r.userAgent === 'cand-b').length;
      const byA = seen.filter((r) => r.userAgent === 'cand-a').length;
      // b: its first look, then one every ~700-840 ms; a renews every ~50-60 ms (GET + PUT).
      expect(byB).toBeGreaterThanOrEqual(1);
      expect(byB).toBeLessThanOrEqual(3);
      expect(byA).toBeGreaterThan(10);
      expect(b.isLeader()).toBe(false);
      // The holder releases: b takes it at its next look.
      await a.stop();
      await waitFor(() => b.isLeader(), 3000);
    } finally {
      await a.stop();
      await b.stop();
    }
  });
});

describe('daemonSetLeaseTiming', () => {
  it('keeps the defaults for unset fields and makes followers look every 10 s', () => {
    expect(daemonSetLeaseTiming(undefined)).toEqual({ followerRetryPeriodMs: 10_000 });
    expect(daemonSetLeaseTiming({ retryPeriodMs: 500 })).toEqual({
      retryPeriodMs: 500,
      followerRetryPeriodMs: 10_000,
    });
  });

  it("passes every field it is given under startLeaderElection's names", () => {
    expect(
      daemonSetLeaseTiming({
        durationMs: 3000,
        renewDeadlineMs: 2000,
        retryPeriodMs: 100,
        followerRetryPeriodMs: 700,
      }),
    ).toEqual({
      leaseDurationMs: 3000,
      renewDeadlineMs: 2000,
      retryPeriodMs: 100,
      followerRetryPeriodMs: 700,
    });
  });
});
