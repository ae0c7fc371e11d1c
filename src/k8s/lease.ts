// Leader election on a coordination.k8s.io/v1 Lease, the way client-go's leaderelection package
// does it, so that of several controllers (one per node, or replicas of a Deployment) exactly one
// acts at a time. A candidate takes the Lease when nobody holds it, when it already holds it, or
// when the holder has not renewed it within leaseDurationSeconds as measured on the candidate's own
// clock since the record last changed (clocks of different machines are never compared). Every
// write is a PUT carrying the resourceVersion that was read, so two candidates racing for an
// expired Lease cannot both win: the loser gets 409 and stays a follower. A leader that cannot
// renew within `renewDeadlineMs` steps down on its own, before the others may take over.
import type { CustomResources } from './client.js';

/** The Lease object (coordination.k8s.io/v1), fields as the API names them. */
export interface Lease {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; [k: string]: unknown };
  spec?: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    /** MicroTime: RFC 3339 with microseconds. */
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

/** Settings of one candidate. */
export interface LeaderElectionOptions {
  /** Lease access (`customResources('coordination.k8s.io', 'v1', 'leases')` of cni-kit/k8s). */
  leases: CustomResources<Lease>;
  namespace: string;
  name: string;
  /** This candidate's identity (client-go uses the pod or host name). */
  identity: string;
  /** How long a lease lasts without renewal (ms; written as whole seconds, at least 1; default 15,000). */
  leaseDurationMs?: number;
  /** A leader that has not renewed for this long steps down (ms; default 10,000; < leaseDurationMs). */
  renewDeadlineMs?: number;
  /** Between attempts to take or renew (ms; default 2,000). */
  retryPeriodMs?: number;
  /**
   * Between looks at a lease another candidate holds (ms; default retryPeriodMs). Candidates that
   * run on every node (a DaemonSet) each GET the Lease this often: a longer period keeps that load
   * down, at the price of a takeover that many ms later (after a release or an expiry).
   */
  followerRetryPeriodMs?: number;
  /** Gives the lease up on stop() so another candidate need not wait for it to expire (default true). */
  releaseOnStop?: boolean;
  onStartedLeading?: () => void;
  onStoppedLeading?: () => void;
  /** Told about failed API calls (they are retried). */
  onError?: (err: Error) => void;
  /** The clock (tests). */
  now?: () => number;
}

/** Lease timing as a daemon's option (ms); each unset field keeps startLeaderElection's default. */
export interface LeaseTimingMs {
  durationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  followerRetryPeriodMs?: number;
}

/**
 * The timing of a candidate that runs on every node (a DaemonSet's daemons): as `t` says, and while
 * another holds the Lease it looks every 10 s rather than every 2 s (a 5,000-node cluster: 500 GETs/s
 * per Lease instead of 2,500).
 */
export function daemonSetLeaseTiming(
  t: LeaseTimingMs | undefined,
): Pick<
  LeaderElectionOptions,
  'leaseDurationMs' | 'renewDeadlineMs' | 'retryPeriodMs' | 'followerRetryPeriodMs'
> {
  return {
    ...(t?.durationMs ? { leaseDurationMs: t.durationMs } : {}),
    ...(t?.renewDeadlineMs ? { renewDeadlineMs: t.renewDeadlineMs } : {}),
    ...(t?.retryPeriodMs ? { retryPeriodMs: t.retryPeriodMs } : {}),
    followerRetryPeriodMs: t?.followerRetryPeriodMs ?? 10_000,
  };
}

/** A running candidate. */
export interface LeaderElector {
  /** True while this candidate holds the lease and renewed it within the renew deadline. */
  isLeader(): boolean;
  /** The identity of the holder as last seen ('' when nobody holds it). */
  holder(): string;
  /** Stops campaigning; releases the lease when holding it and `releaseOnStop` is on. */
  stop(): Promise<void>;
  /** Stops without releasing and without further renewals, as a crashed process would (tests). */
  abandon(): Promise<void>;
}

const status = (err: unknown): number => {
  const s = (err as { status?: unknown } | undefined)?.status;
  return typeof s === 'number' ? s : -1;
};

/** MicroTime as the API writes it: `2006-01-02T15:04:05.000000Z`. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/** Starts campaigning for the lease; returns at once. */
export function startLeaderElection(opts: LeaderElectionOptions): LeaderElector {
  const now = opts.now ?? Date.now;
  const durationMs = opts.leaseDurationMs ?? 15_000;
  const durationS = Math.max(1, Math.ceil(durationMs / 1000));
  const renewDeadline = opts.renewDeadlineMs ?? 10_000;
  const retry = opts.retryPeriodMs ?? 2_000;
  const followerRetry = opts.followerRetryPeriodMs ?? retry;
  const { leases, namespace: ns, name, identity } = opts;

  let leading = false;
  let lastRenew = 0;
  let observed: { key: string; at: number } | undefined;
  let seenHolder = '';
  let current: Lease | undefined;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let wake: (() => void) | undefined;

  const setLeading = (on: boolean) => {
    if (on === leading) return;
    leading = on;
    (on ? opts.onStartedLeading : opts.onStoppedLeading)?.();
  };

  const spec = (prev: Lease['spec'], t: number): NonNullable<Lease['spec']> => {
    const mine = prev?.holderIdentity === identity;
    return {
      holderIdentity: identity,
      leaseDurationSeconds: durationS,
      acquireTime: mine && prev?.acquireTime ? prev.acquireTime : microTime(t),
      renewTime: microTime(t),
      leaseTransitions: (prev?.leaseTransitions ?? 0) + (prev && !mine ? 1 : 0),
    };
  };

  /**
   * One attempt to take or renew. On success, the time the attempt began: the holder's lease counts
   * from there (its write may have landed any time after), never from the answer, which a slow API
   * server can deliver after a follower already started counting; undefined otherwise.
   */
  const tryAcquireOrRenew = async (): Promise<number | undefined> => {
    const t = now();
    let lease: Lease;
    try {
      lease = await leases.get(ns, name);
    } catch (err) {
      if (status(err) !== 404) throw err;
      try {
        current = await leases.create(ns, {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name, namespace: ns },
          spec: spec(undefined, t),
        });
      } catch (e) {
        if (status(e) === 409) return undefined; // another candidate created it first
        throw e;
      }
      observed = { key: JSON.stringify(current.spec), at: t };
      seenHolder = identity;
      return t;
    }
    // A record seen for the first time counts from when its answer came: it may have been written
    // just before the server answered a request sent long before (`t`).
    const key = JSON.stringify(lease.spec ?? {});
    if (observed?.key !== key) observed = { key, at: Math.max(t, now()) };
    const holder = lease.spec?.holderIdentity ?? '';
    seenHolder = holder;
    const held = (lease.spec?.leaseDurationSeconds ?? durationS) * 1000;
    if (holder !== '' && holder !== identity && observed.at + held > t) return undefined;
    try {
      current = await leases.replace(ns, name, { ...lease, spec: spec(lease.spec, t) });
    } catch (err) {
      if (status(err) === 409) return undefined; // someone else wrote it since we read it
      throw err;
    }
    observed = { key: JSON.stringify(current.spec), at: t };
    seenHolder = identity;
    return t;
  };

  const sleep = (ms: number) =>
    new Promise<void>((r) => {
      wake = r;
      // Jittered as client-go's wait.JitterUntil, so candidates do not move in lockstep.
      timer = setTimeout(r, ms * (1 + Math.random() * 0.2));
    });

  const loop = async () => {
    while (!stopped) {
      let renewedAt: number | undefined;
      try {
        renewedAt = await tryAcquireOrRenew();
      } catch (err) {
        opts.onError?.(err as Error);
      }
      if (stopped) break;
      const ok = renewedAt !== undefined;
      if (renewedAt !== undefined) {
        lastRenew = renewedAt;
        setLeading(true);
      } else if (leading && now() - lastRenew >= renewDeadline) {
        setLeading(false);
      } else if (leading && seenHolder !== identity && seenHolder !== '') {
        setLeading(false); // another candidate holds it: we lost it while we could not renew
      }
      await sleep(!ok && !leading && seenHolder !== '' && seenHolder !== identity ? followerRetry : retry);
    }
  };
  const running = loop();

  const halt = async () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    wake?.();
    await running;
  };

  return {
    isLeader: () => leading && now() - lastRenew < Math.min(renewDeadline, durationMs),
    holder: () => seenHolder,
    async stop() {
      await halt();
      const was = leading;
      setLeading(false);
      if (!was || opts.releaseOnStop === false || !current) return;
      // As client-go's ReleaseOnCancel: an empty holder with a 1 s duration, guarded by the
      // resourceVersion of our last write (if someone took it meanwhile, it is theirs).
      try {
        await leases.replace(ns, name, {
          ...current,
          spec: {
            ...current.spec,
            holderIdentity: '',
            leaseDurationSeconds: 1,
            renewTime: microTime(now()),
          },
        });
      } catch (err) {
        if (status(err) !== 409 && status(err) !== 404) opts.onError?.(err as Error);
      }
    },
    async abandon() {
      await halt();
      setLeading(false);
    },
  };
}
