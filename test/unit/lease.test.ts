// Leader election on a coordination.k8s.io/v1 Lease against the fake API server (which enforces
// resourceVersion conflicts and the shipped RBAC): one holder at a time, takeover only after the
// holder stops renewing for leaseDurationSeconds, and a release hands over at once.
import { describe, expect, it } from 'vitest';
import { openKubeApi } from '../../src/k8s/connect.js';
import {
  daemonSetLeaseTiming,
  type LeaderElector,
  type Lease,
  microTime,
  startLeaderElection,
} from '../../src/k8s/lease.js';
import { fakeK8sPerFile } from '../helpers/fake-k8s-file.js';

const k8s = fakeK8sPerFile('lease', { tls: false });

const leasesIn = async (ns: string) =>
  (await openKubeApi(k8s.kubeconfig(ns))).customResources<Lease>('coordination.k8s.io', 'v1', 'leases');

const waitFor = async (cond: () => boolean, ms: number, seen?: () => unknown) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end)
      throw new Error(`timed out waiting for ${cond}${seen ? `; saw ${JSON.stringify(seen())}` : ''}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

const timing = { leaseDurationMs: 1000, renewDeadlineMs: 600, retryPeriodMs: 100 };
/**
 * Where a holder must keep its lease through a watched window: a loaded machine can starve one
 * event loop for a few hundred ms, and a holder that misses its renew deadline then steps down
 * (correctly); 2 s / 1.5 s leaves room for that without changing what is checked.
 */
const roomy = { leaseDurationMs: 2000, renewDeadlineMs: 1500, retryPeriodMs: 100 };

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
        ...roomy,
      });
      electors.push(a);
      await waitFor(() => a.isLeader(), 10_000);
      const b = startLeaderElection({
        leases,
        namespace: ns,
        name: 'whereabouts',
        identity: 'node-b',
        ...roomy,
      });
      electors.push(b);
      // Past the lease duration: a keeps renewing, so b never leads and sees a as holder.
      const until = Date.now() + 3000;
      while (Date.now() < until) {
        expect(a.isLeader() && b.isLeader()).toBe(false);
        expect(b.isLeader()).toBe(false);
        await new Promise((r) => setTimeout(r, 25));
      }
      expect(b.holder()).toBe('node-a');
      const stored = k8s.api.objects('leases').get(`${ns}/whereabouts`) as unknown as Lease;
      expect(stored.spec).toMatchObject({
        holderIdentity: 'node-a',
        leaseDurationSeconds: 2,
        leaseTransitions: 0,
      });
      expect(stored.spec?.renewTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
      // a crashes: no release, no more renewals. b waits out the duration, then takes over.
      const crashed = Date.now();
      await a.abandon();
      expect(a.isLeader()).toBe(false);
      await waitFor(
        () => b.isLeader(),
        15_000,
        () => b.holder(),
      );
      expect(Date.now() - crashed).toBeGreaterThanOrEqual(1900);
      const after = k8s.api.objects('leases').get(`${ns}/whereabouts`) as unknown as Lease;
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
      // A 6 s lease: a takeover within 4 s can only come from the release.
      const slow = { ...timing, leaseDurationMs: 6000, renewDeadlineMs: 4000 };
      const a = startLeaderElection({ leases, namespace: ns, name: 'l', identity: 'a', ...slow });
      electors.push(a);
      await waitFor(() => a.isLeader(), 10_000);
      const b = startLeaderElection({ leases, namespace: ns, name: 'l', identity: 'b', ...slow });
      electors.push(b);
      await new Promise((r) => setTimeout(r, 300));
      const released = Date.now();
      await a.stop();
      expect((k8s.api.objects('leases').get(`${ns}/l`) as unknown as Lease).spec?.holderIdentity).not.toBe(
        'a',
      );
      await waitFor(
        () => b.isLeader(),
        10_000,
        () => b.holder(),
      );
      expect(Date.now() - released).toBeLessThan(4000);

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
      await waitFor(() => c.isLeader(), 10_000);
      const cur = k8s.api.objects('leases').get(`${ns}/l2`)!;
      const spec = (cur as unknown as Lease).spec;
      k8s.api.objects('leases').set(`${ns}/l2`, {
        ...cur,
        spec: { ...spec, holderIdentity: 'intruder', renewTime: microTime(Date.now() + 60_000) },
      });
      await waitFor(
        () => stepped,
        10_000,
        () => c.holder(),
      );
      expect(c.isLeader()).toBe(false);
    } finally {
      for (const e of electors) await e.stop();
    }
  });

  it('a follower looks at a held lease only every followerRetryPeriodMs, and still takes it over', async () => {
    const ns = 'lease-follow';
    const kc = k8s.kubeconfig(ns);
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
    await waitFor(() => a.isLeader(), 10_000);
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
      const from = k8s.api.requests.length;
      await new Promise((r) => setTimeout(r, 1500));
      const seen = k8s.api.requests.slice(from);
      const byB = seen.filter((r) => r.userAgent === 'cand-b').length;
      const byA = seen.filter((r) => r.userAgent === 'cand-a').length;
      // b: its first look, then one every ~700-840 ms; a renews every ~50-60 ms (GET + PUT).
      expect(byB).toBeGreaterThanOrEqual(1);
      expect(byB).toBeLessThanOrEqual(3);
      expect(byA).toBeGreaterThan(10);
      expect(b.isLeader()).toBe(false);
      // The holder releases: b takes it at its next look.
      await a.stop();
      await waitFor(
        () => b.isLeader(),
        10_000,
        () => b.holder(),
      );
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

/**
 * Two candidates on one shared, hand-moved clock and an in-memory Lease store whose calls the test
 * can hold (a slow API server) or fail (a partitioned leader): every instant can be chosen, so the
 * rule "never two leaders at once" is checked where slow requests make it hard.
 */
function manualLeases() {
  let clock = 0;
  let rv = 0;
  let stored: Lease | undefined;
  const held = new Map<string, Array<() => void>>();
  const hold: Record<string, { get?: boolean; write?: boolean }> = {};
  const cut = new Set<string>();
  const calls: string[] = [];
  const refuse = (id: string) => {
    if (cut.has(id)) throw Object.assign(new Error('unreachable'), { status: 503 });
  };
  const wait = (id: string) => new Promise<void>((r) => held.set(id, [...(held.get(id) ?? []), r]));
  const write = (obj: Lease): Lease => {
    stored = { ...obj, metadata: { ...obj.metadata, resourceVersion: String(++rv) } };
    return stored;
  };
  const forId = (id: string) => ({
    async get(): Promise<Lease> {
      calls.push(`${id} get`);
      refuse(id);
      if (hold[id]?.get) await wait(id);
      refuse(id);
      if (!stored) throw Object.assign(new Error('not found'), { status: 404 });
      return structuredClone(stored);
    },
    async list(): Promise<Lease[]> {
      return stored ? [stored] : [];
    },
    async create(_ns: string, obj: Lease): Promise<Lease> {
      refuse(id);
      if (stored) throw Object.assign(new Error('exists'), { status: 409 });
      const out = write(obj);
      if (hold[id]?.write) await wait(id);
      return structuredClone(out);
    },
    async replace(_ns: string, _name: string, obj: Lease): Promise<Lease> {
      calls.push(`${id} put`);
      refuse(id);
      if (obj.metadata.resourceVersion !== stored?.metadata.resourceVersion)
        throw Object.assign(new Error('conflict'), { status: 409 });
      const out = write(obj);
      if (hold[id]?.write) await wait(id);
      return structuredClone(out);
    },
    async delete(): Promise<void> {},
  });
  return {
    now: () => clock,
    set: (ms: number) => {
      clock = ms;
    },
    forId,
    hold,
    cut,
    calls,
    /** Lets the held calls of `id` return (at the current clock). */
    release(id: string) {
      const waiting = held.get(id) ?? [];
      held.delete(id);
      for (const r of waiting) r();
    },
    heldCalls: (id: string) => held.get(id)?.length ?? 0,
    stored: () => stored,
  };
}

describe('Lease leader election with slow API calls (hand-moved clock)', () => {
  const fast = { leaseDurationMs: 1000, renewDeadlineMs: 600, retryPeriodMs: 10, followerRetryPeriodMs: 10 };
  /** Starts electors of Lease ns/l on `m`'s store and clock; `abandonAll` abandons every one started. */
  const electorsOn = (m: ReturnType<typeof manualLeases>) => {
    const electors: LeaderElector[] = [];
    return {
      start(identity: string): LeaderElector {
        const e = startLeaderElection({
          leases: m.forId(identity) as never,
          namespace: 'ns',
          name: 'l',
          identity,
          now: m.now,
          ...fast,
        });
        electors.push(e);
        return e;
      },
      async abandonAll() {
        for (const e of electors) await e.abandon();
      },
    };
  };

  it('a leader whose write was slow counts its lease from before the write, not from the answer', async () => {
    const m = manualLeases();
    const { start, abandonAll } = electorsOn(m);
    try {
      // a's create lands on the server at 0 and its answer comes back at 550.
      m.hold.a = { write: true };
      const a = start('a');
      await waitFor(() => m.heldCalls('a') === 1, 10_000);
      // b reads a's record at 0.
      const b = start('b');
      await waitFor(() => m.calls.includes('b get'), 10_000);
      m.set(550);
      m.cut.add('a'); // from now on a cannot reach the server (it can only step down)
      m.release('a');
      await waitFor(() => a.isLeader(), 10_000);
      // At 1000 the record b saw at 0 has expired: b takes over.
      m.set(1000);
      await waitFor(() => b.isLeader(), 10_000);
      expect(a.isLeader() && b.isLeader(), 'both lead at 1000').toBe(false);
    } finally {
      await abandonAll();
    }
  });

  it('a follower whose read was slow counts the holder’s lease from the answer, not from the request', async () => {
    const m = manualLeases();
    const { start, abandonAll } = electorsOn(m);
    try {
      const a = start('a');
      await waitFor(() => a.isLeader(), 10_000);
      // b asks at 0; the server answers late, with a's renewal of 420.
      m.hold.b = { get: true };
      const b = start('b');
      await waitFor(() => m.heldCalls('b') === 1, 10_000);
      m.set(420);
      const puts = m.calls.filter((c) => c === 'a put').length;
      await waitFor(() => m.calls.filter((c) => c === 'a put').length > puts + 1, 10_000);
      m.cut.add('a');
      expect(m.stored()?.spec?.renewTime).toBe(microTime(420));
      m.set(460);
      m.hold.b = {};
      m.release('b');
      await waitFor(() => m.calls.filter((c) => c === 'b get').length >= 2, 10_000);
      // At 1000 a (renewed at 420, deadline 600) still leads: b must not take over yet.
      m.set(1000);
      const gets = m.calls.filter((c) => c === 'b get').length;
      await waitFor(() => m.calls.filter((c) => c === 'b get').length >= gets + 3, 10_000);
      expect(a.isLeader(), 'a within its renew deadline').toBe(true);
      expect(b.isLeader(), 'b took over while a still led').toBe(false);
      // Once a's lease has run out as b saw it (1000 ms after b's answer at 460), b takes over.
      m.set(1500);
      await waitFor(() => b.isLeader(), 10_000);
      expect(a.isLeader()).toBe(false);
    } finally {
      await abandonAll();
    }
  });
});
