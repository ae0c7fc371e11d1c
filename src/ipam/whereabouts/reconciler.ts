// The whereabouts reconciler (upstream's ip-control-loop and ip-reconciler in one): frees IPPool
// allocations and OverlappingRangeIPReservations whose pod is gone, for the addresses a node crash
// strands (no DEL ever comes). It runs a pass when pods leave the node's pod cache (upstream's pod
// watch, per node as upstream's ip-control-loop) and on the `reconciler_cron_expression` schedule
// (a full pass), which runs only while the instance holds leadership (a Lease, see cni-kit/k8s
// startLeaderElection), so two controllers never both sweep the cluster.
//
// The rule that matters (whereabouts' duplicate-address bug, wa#176): an allocation is freed only
// when NO pod exists under its podRef (namespace/name), as the API server answers a GET at the time
// of the pass. A pod re-created under its old name (a StatefulSet) keeps the address; its ADD
// adopts it (same podRef and interface). Entries are removed only if they are still exactly what
// was judged (same container ID, podRef and interface) when the resourceVersion-guarded PUT is
// built, so a concurrent ADD that adopted the address wins. Allocations without a podRef (no
// K8S_POD_* args) are never judged: the CNI GC verb and DEL handle those.
// API access is the store's `KubeAccess`: this layer loads no Kubernetes code.

import { CniError } from '../../spec/errors.js';
import { type CronSchedule, cronNext, parseCron } from './reconciler-cron.js';
import type { CustomResources, KubeAccess } from './stores/kubernetes.js';

/** What the reconciler reads of a pod. */
export interface PodLike {
  metadata: { name: string; namespace?: string; [k: string]: unknown };
}

/** How the reconciler learns whether a pod exists: undefined when the API answers 404. */
export type PodLookup = (namespace: string, name: string) => Promise<PodLike | undefined>;

/** The node's pod cache (cni-kit/k8s's Informer fits): pods that leave it trigger a pass. */
export interface PodCache {
  list(): PodLike[];
  /** Grows with every change (Informer.version()). */
  version(): number;
  synced(): boolean;
}

/** Who may act: the reconciler writes only while this says so. */
export interface Leadership {
  isLeader(): boolean;
}

/** One freed allocation. */
export interface FreedAllocation {
  pool: string;
  /** Offset key in the IPPool. */
  offset: string;
  containerId: string;
  podRef: string;
  ifname: string;
}

/** What one pass did. */
export interface ReconcileReport {
  freed: FreedAllocation[];
  /** Names of the OverlappingRangeIPReservations deleted. */
  reservations: string[];
  /** Pods found alive whose allocations were kept. */
  alive: number;
  /** Failures (a pass goes on past a pool it cannot read or write). */
  errors: string[];
  /** False when the pass did not run because this instance does not lead. */
  acted: boolean;
}

/** Settings of one pass. */
export interface ReconcileOptions {
  kube: KubeAccess;
  /** Namespace of the whereabouts objects; default the kubeconfig context's, else kube-system. */
  namespace?: string | undefined;
  getPod: PodLookup;
  /** Only allocations of these podRefs (`ns/name`); default all. */
  only?: ReadonlySet<string> | undefined;
  leader?: Leadership | undefined;
}

interface Entry {
  id: string;
  podref?: string;
  ifname?: string;
}
interface IPPool {
  apiVersion: string;
  kind: string;
  metadata: { name: string; resourceVersion?: string; [k: string]: unknown };
  spec: { range: string; allocations?: Record<string, Entry> };
}
interface Reservation {
  metadata: { name: string };
  spec?: { podref?: string; containerid?: string; ifname?: string };
}

const GROUP = 'whereabouts.cni.cncf.io';
const VERSION = 'v1alpha1';
const WRITE_ATTEMPTS = 10;

/**
 * Whether the pod of a `namespace/name` podRef is gone, asked once per podRef of a pass. Gone means
 * the lookup found no pod (or answered 404); any other failure goes into `errors` and counts as
 * alive, so an address is never freed on an unknown.
 */
export function podGoneVerdicts(getPod: PodLookup, errors: string[]): (podRef: string) => Promise<boolean> {
  const verdict = new Map<string, Promise<boolean>>();
  return (podRef) => {
    let v = verdict.get(podRef);
    if (!v) {
      const [pns = '', name = ''] = podRef.split('/');
      v = getPod(pns, name).then(
        (p) => p === undefined,
        (err) => {
          if (status(err) === 404) return true;
          errors.push(`pod ${podRef}: ${CniError.from(err).message}`);
          return false;
        },
      );
      verdict.set(podRef, v);
    }
    return v;
  };
}

const status = (err: unknown): number => {
  const s = (err as { status?: unknown } | undefined)?.status;
  return typeof s === 'number' ? s : -1;
};

const same = (a: Entry, b: Entry) =>
  a.id === b.id && (a.podref ?? '') === (b.podref ?? '') && (a.ifname ?? '') === (b.ifname ?? '');

/** A podRef the pass judges: `ns/name`, and among `only` when given. */
export function wantedRef(
  podRef: string | undefined,
  only: ReadonlySet<string> | undefined,
): podRef is string {
  return !!podRef && podRef.includes('/') && (!only || only.has(podRef));
}

/** One pass over the IPPools and reservations of a namespace. */
export async function reconcileWhereabouts(opts: ReconcileOptions): Promise<ReconcileReport> {
  const report: ReconcileReport = { freed: [], reservations: [], alive: 0, errors: [], acted: false };
  if (opts.leader && !opts.leader.isLeader()) return report;
  report.acted = true;
  const ns = opts.namespace ?? opts.kube.namespace ?? 'kube-system';
  const pools = opts.kube.customResources<IPPool>(GROUP, VERSION, 'ippools');
  const reservations = opts.kube.customResources<Reservation>(
    GROUP,
    VERSION,
    'overlappingrangeipreservations',
  );
  const wanted = (podRef: string | undefined): podRef is string => wantedRef(podRef, opts.only);

  // Pools are read before pods are asked about: a pod created after its GET said 404 cannot have
  // an entry this pass judged unless its ADD adopted it, which changes the container ID.
  const all = await pools.list(ns);
  const gone = podGoneVerdicts(opts.getPod, report.errors);

  for (const pool of all) {
    const orphans = new Map<string, Entry>();
    for (const [offset, e] of Object.entries(pool.spec?.allocations ?? {})) {
      if (!wanted(e.podref)) continue;
      if (await gone(e.podref)) orphans.set(offset, e);
      else report.alive += 1;
    }
    if (orphans.size === 0) continue;
    try {
      report.freed.push(...(await freeInPool(pools, ns, pool, orphans, opts.leader)));
    } catch (err) {
      report.errors.push(`IPPool ${ns}/${pool.metadata.name}: ${CniError.from(err).message}`);
    }
  }

  let held: Reservation[] = [];
  try {
    held = await reservations.list(ns);
  } catch (err) {
    report.errors.push(`OverlappingRangeIPReservations in ${ns}: ${CniError.from(err).message}`);
  }
  for (const r of held) {
    const podRef = r.spec?.podref;
    if (!wanted(podRef) || !(await gone(podRef))) continue;
    if (opts.leader && !opts.leader.isLeader()) break;
    try {
      await reservations.delete(ns, r.metadata.name);
      report.reservations.push(r.metadata.name);
    } catch (err) {
      if (status(err) !== 404)
        report.errors.push(`OverlappingRangeIPReservation ${r.metadata.name}: ${CniError.from(err).message}`);
    }
  }
  return report;
}

/** Removes `orphans` from one pool with a resourceVersion-guarded PUT, re-reading on conflict. */
async function freeInPool(
  pools: CustomResources<IPPool>,
  ns: string,
  first: IPPool,
  orphans: Map<string, Entry>,
  leader: Leadership | undefined,
): Promise<FreedAllocation[]> {
  let pool = first;
  for (let attempt = 0; attempt < WRITE_ATTEMPTS; attempt++) {
    const allocations = { ...(pool.spec.allocations ?? {}) };
    const freed: FreedAllocation[] = [];
    for (const [offset, judged] of orphans) {
      const cur = allocations[offset];
      if (!cur || !same(cur, judged)) continue; // freed by DEL, or adopted by a re-created pod
      delete allocations[offset];
      freed.push({
        pool: pool.metadata.name,
        offset,
        containerId: cur.id,
        podRef: cur.podref ?? '',
        ifname: cur.ifname ?? '',
      });
    }
    if (freed.length === 0) return [];
    if (leader && !leader.isLeader()) return [];
    try {
      await pools.replace(ns, pool.metadata.name, { ...pool, spec: { ...pool.spec, allocations } });
      return freed;
    } catch (err) {
      if (status(err) === 404) return [];
      if (status(err) !== 409) throw err;
    }
    pool = await pools.get(ns, pool.metadata.name);
  }
  throw new Error(`lost ${WRITE_ATTEMPTS} write races in a row; the next pass retries`);
}

/** Settings of the long-running reconciler. */
export interface WhereaboutsReconcilerOptions extends Omit<ReconcileOptions, 'only'> {
  /** Schedule of full passes (five-field cron, UTC); default whereabouts' `30 4 * * *`. */
  cronExpression?: string | undefined;
  /** The node's pod cache: pods leaving it trigger a pass over their allocations. */
  podCache?: PodCache | undefined;
  /** How often the pod cache is looked at (ms; default 1,000). */
  pollMs?: number | undefined;
  /** Told about each pass that acted (freed something or failed somewhere). */
  onReport?: ((r: ReconcileReport, why: 'cron' | 'pods' | 'manual') => void) | undefined;
  onError?: ((err: Error) => void) | undefined;
}

/** A running reconciler. */
export interface WhereaboutsReconciler {
  /** Runs a full pass now (still only when leading). */
  runNow(): Promise<ReconcileReport>;
  /** When the next scheduled full pass is due. */
  nextRun(): Date | undefined;
  close(): Promise<void>;
}

/** setTimeout's longest delay; longer waits are re-armed. */
const MAX_TIMER = 2 ** 31 - 1;

/**
 * Starts the reconciler: full passes on the cron schedule, targeted passes when pods leave the
 * pod cache. Throws a code-7 CniError for a bad `cronExpression`.
 */
export function startWhereaboutsReconciler(opts: WhereaboutsReconcilerOptions): WhereaboutsReconciler {
  const schedule: CronSchedule = parseCron(opts.cronExpression ?? '30 4 * * *');
  let closed = false;
  let chain: Promise<unknown> = Promise.resolve();
  let cronTimer: NodeJS.Timeout | undefined;
  let pollTimer: NodeJS.Timeout | undefined;
  let due: Date | undefined;

  /** Passes run one at a time. */
  const run = (why: 'cron' | 'pods' | 'manual', only?: ReadonlySet<string>) => {
    const p = chain.then(async () => {
      // Pod-cache passes judge only the pods that left this node's cache (upstream's per-node
      // ip-control-loop, which runs on every node); the cluster-wide cron pass needs the lease.
      const leader = why === 'pods' ? undefined : opts.leader;
      const r = await reconcileWhereabouts({ ...opts, only, leader });
      if (r.acted && (r.freed.length || r.reservations.length || r.errors.length)) opts.onReport?.(r, why);
      return r;
    });
    chain = p.catch((err) => opts.onError?.(err as Error));
    return p;
  };

  const arm = () => {
    if (closed) return;
    due = cronNext(schedule, new Date());
    if (!due) return;
    const wait = () => {
      const left = due!.getTime() - Date.now();
      cronTimer = setTimeout(
        () => {
          if (Date.now() < due!.getTime()) return wait();
          run('cron').catch(() => undefined);
          arm();
        },
        Math.min(Math.max(left, 0), MAX_TIMER),
      );
      cronTimer.unref?.();
    };
    wait();
  };
  arm();

  // Pods that leave the node's cache: diff the cached keys whenever the cache changes.
  const cache = opts.podCache;
  let known: Set<string> | undefined;
  let seen = -1;
  const keys = () =>
    new Set((cache?.list() ?? []).map((p) => `${p.metadata.namespace ?? ''}/${p.metadata.name}`));
  const poll = () => {
    if (closed || !cache) return;
    if (cache.synced() && cache.version() !== seen) {
      seen = cache.version();
      const now = keys();
      if (known) {
        const left = new Set([...known].filter((k) => !now.has(k)));
        if (left.size > 0) run('pods', left).catch(() => undefined);
      }
      known = now;
    }
    pollTimer = setTimeout(poll, opts.pollMs ?? 1000);
    pollTimer.unref?.();
  };
  poll();

  return {
    runNow: () => run('manual'),
    nextRun: () => due,
    async close() {
      closed = true;
      if (cronTimer) clearTimeout(cronTimer);
      if (pollTimer) clearTimeout(pollTimer);
      await chain;
    },
  };
}
