// Kubernetes backend: whereabouts' own objects, so pools are readable by whereabouts tooling.
// One IPPool (whereabouts.cni.cncf.io/v1alpha1) per range: `spec.allocations` maps the decimal
// offset of an address from the range's network address to {id, podref, ifname}. Every write is
// a PUT carrying the resourceVersion that was read, so a concurrent writer makes it fail with 409
// and the change is re-applied to a fresh read instead of overwriting (whereabouts adds a
// cluster-wide Lease on top; the resourceVersion check alone is what makes a write safe, and it
// costs no extra round trips). Changes to one pool made at once by one process (a daemon serving
// many ADDs) go out together: one PUT carries every claim queued while the previous PUT was in
// flight (BatchWriter), so they neither conflict with each other nor fail with code 11.
// With overlapping ranges, an OverlappingRangeIPReservation named after the address is created
// *before* the pool write (whereabouts creates it after, and leaks when that fails, wa#712), so it
// acts as the cluster-wide per-address lock across pools of one network. API access is injected
// (`KubeOpener`; plugins pass cni-kit/k8s's openKubeApi, on @kubernetes/client-node): this layer
// declares only the few calls it makes. Over the 400-line guideline: the pool session and the
// reservation lock it takes are one protocol and read best side by side.
import { parseCIDR, subnetContains, tryParseIP } from '../../../spec/addr.js';
import { CniError, ErrorCode } from '../../../spec/errors.js';
import type { Allocation, ClaimOutcome, NodeSlicePool, PoolRef, PoolSession, Store } from '../store.js';
import { BatchWriter } from './batch-writer.js';

/** Namespaced custom resources of one kind, as raw JSON objects (what the store needs of an API client). */
export interface CustomResources<T extends object> {
  get(namespace: string, name: string): Promise<T>;
  list(namespace: string): Promise<T[]>;
  /** Fails with an error whose `status` is 409 when the name is taken. */
  create(namespace: string, obj: T): Promise<T>;
  /** Fails with an error whose `status` is 409 when `obj`'s resourceVersion is stale. */
  replace(namespace: string, name: string, obj: T): Promise<T>;
  delete(namespace: string, name: string): Promise<void>;
}

/** The Kubernetes access the store needs; failed calls throw errors with the HTTP `status` (404, 409). */
export interface KubeAccess {
  /** Namespace of the kubeconfig's current context, when it names one. */
  readonly namespace: string | undefined;
  customResources<T extends object>(group: string, version: string, plural: string): CustomResources<T>;
}

/** Opens API access from a kubeconfig file (cni-kit/k8s's `openKubeApi` fits). */
export type KubeOpener = (
  kubeconfig: string,
  opts: { timeoutMs: number; userAgent: string; server?: string },
) => Promise<KubeAccess>;

/** Settings of the Kubernetes store, named after whereabouts' `kubernetes` block. */
export interface KubernetesStoreOptions {
  kubeconfig: string;
  /** Overrides the kubeconfig's server URL. */
  k8s_api_root?: string | undefined;
  /** Namespace of the objects; default the kubeconfig context's, else kube-system (as whereabouts). */
  namespace?: string | undefined;
  /** Per-request time bound; default 10 s. */
  timeoutMs?: number | undefined;
}

interface Entry {
  id: string;
  podref: string;
  ifname?: string;
}

interface Reservation {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string };
  spec: { containerid: string; podref: string; ifname: string };
}

interface IPPool {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    resourceVersion?: string;
    annotations?: Record<string, string>;
  };
  spec: { range: string; allocations: Record<string, Entry> };
}

const GROUP = 'whereabouts.cni.cncf.io';
const VERSION = 'v1alpha1';
const CURSOR = 'cni-kit.io/cursor';
/** Attempts at reading or creating a pool before giving up with "try again". */
const RETRIES = 20;

const status = (err: unknown): number => {
  const s = (err as { status?: unknown } | undefined)?.status;
  return typeof s === 'number' ? s : -1;
};

/** The two whereabouts kinds in the store's namespace, and one writer per pool. */
interface Kinds {
  pools: CustomResources<IPPool>;
  reservations: CustomResources<Reservation>;
  ns: string;
  writer(pool: string): BatchWriter<IPPool>;
}

/** A copy of a pool whose allocation map and annotations may be changed (entries are replaced, never edited). */
function draftOf(p: IPPool): IPPool {
  const metadata = { ...p.metadata };
  if (p.metadata.annotations) metadata.annotations = { ...p.metadata.annotations };
  return { ...p, metadata, spec: { ...p.spec, allocations: { ...(p.spec.allocations ?? {}) } } };
}

const withAllocations = (p: IPPool): IPPool => {
  p.spec.allocations ??= {};
  return p;
};

/**
 * Opens a Kubernetes-backed store; the kubeconfig is read once per store. `kube` is how to connect
 * (`openKubeApi` of cni-kit/k8s), or an open connection (tests, or a caller that already has one).
 */
export async function openKubernetesStore(
  opts: KubernetesStoreOptions,
  format: (a: bigint, family: 4 | 6) => string,
  kube: KubeOpener | KubeAccess | undefined,
): Promise<Store> {
  if (kube === undefined) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      'ipam.datastore: "kubernetes" needs Kubernetes access, which this plugin was built without; register whereabouts with a `kube` opener (cni-kit/k8s openKubeApi) or use the whereabouts binary',
    );
  }
  const conn =
    typeof kube === 'function'
      ? await kube(opts.kubeconfig, {
          timeoutMs: opts.timeoutMs ?? 10_000,
          userAgent: 'cni-kit-whereabouts',
          ...(opts.k8s_api_root ? { server: opts.k8s_api_root } : {}),
        })
      : kube;
  const pools = conn.customResources<IPPool>(GROUP, VERSION, 'ippools');
  const ns = opts.namespace ?? conn.namespace ?? 'kube-system';
  const writers = new Map<string, BatchWriter<IPPool>>();
  const kinds: Kinds = {
    pools,
    reservations: conn.customResources<Reservation>(GROUP, VERSION, 'overlappingrangeipreservations'),
    ns,
    writer(pool) {
      let w = writers.get(pool);
      if (!w) {
        w = new BatchWriter<IPPool>({
          get: async () => withAllocations(await pools.get(ns, pool)),
          replace: async (draft) => withAllocations(await pools.replace(ns, pool, draft)),
          copy: draftOf,
          isConflict: (err) => status(err) === 409,
          what: `IPPool ${ns}/${pool}`,
        });
        writers.set(pool, w);
      }
      return w;
    },
  };
  return {
    kind: 'kubernetes',
    async session<T>(ref: PoolRef, fn: (s: PoolSession) => Promise<T>): Promise<T> {
      const s = new KubernetesSession(kinds, ref, format);
      await s.load();
      return fn(s);
    },
    async close() {},
    async nodeSlicePool(name: string): Promise<NodeSlicePool | undefined> {
      const slices = conn.customResources<NodeSlicePool>(GROUP, VERSION, 'nodeslicepools');
      try {
        return await slices.get(ns, name);
      } catch (err) {
        if (status(err) === 404) return undefined;
        throw err;
      }
    },
  };
}

/** The object name whereabouts gives a reservation: the address with ':' as '-', network-prefixed. */
export function reservationName(ip: string, networkName: string): string {
  let n = ip.replace(/:/g, '-');
  if (n.endsWith('-')) n += '0';
  return networkName ? `${networkName}-${n}` : n;
}

class KubernetesSession implements PoolSession {
  /** The newest copy of the pool this session knows; read-only (changes go through the writer). */
  private pool!: IPPool;
  /** Attachments released in this session (their reservations went with them). */
  private readonly released = new Set<string>();

  constructor(
    private readonly kinds: Kinds,
    private readonly ref: PoolRef,
    private readonly format: (a: bigint, family: 4 | 6) => string,
  ) {}

  private get writer(): BatchWriter<IPPool> {
    return this.kinds.writer(this.ref.pool);
  }

  /** Reads the pool, creating it empty the first time a range is used. */
  async load(): Promise<void> {
    for (let i = 0; i < RETRIES; i++) {
      try {
        this.pool = await this.writer.read();
        return;
      } catch (err) {
        if (status(err) !== 404) throw err;
      }
      const fresh: IPPool = {
        apiVersion: 'whereabouts.cni.cncf.io/v1alpha1',
        kind: 'IPPool',
        metadata: { name: this.ref.pool },
        spec: { range: this.ref.range, allocations: {} },
      };
      try {
        this.pool = withAllocations(await this.kinds.pools.create(this.kinds.ns, fresh));
        this.writer.saw(this.pool);
        return;
      } catch (err) {
        if (status(err) !== 409) throw err; // someone else created it: read theirs
      }
    }
    throw new CniError(ErrorCode.TryAgainLater, `IPPool ${this.ref.pool}: could not read or create it`);
  }

  /** Applies a change through the pool's writer and keeps the pool as written. */
  private async change<R>(fn: (draft: IPPool) => { result: R; changed: boolean }): Promise<R> {
    const { result, object } = await this.writer.submit(fn);
    this.pool = object;
    return result;
  }

  private entryOwner(
    allocations: Record<string, Entry>,
    containerId: string,
    ifname: string,
  ): Allocation | undefined {
    for (const [k, e] of Object.entries(allocations))
      if (e.id === containerId && (e.ifname ?? '') === ifname) return this.toAllocation(k, e);
    return undefined;
  }

  private key(a: bigint): string {
    return (a - this.ref.base).toString();
  }

  private toAllocation(key: string, e: Entry): Allocation {
    const a: Allocation = {
      address: this.ref.base + BigInt(key),
      pool: this.ref.pool,
      containerId: e.id,
      ifname: e.ifname ?? '',
    };
    if (e.podref) a.podRef = e.podref;
    return a;
  }

  private find(pred: (e: Entry) => boolean): Allocation | undefined {
    // this.pool is the session's view; a claim re-checks on the server's newest copy.
    for (const [k, e] of Object.entries(this.pool.spec.allocations))
      if (pred(e)) return this.toAllocation(k, e);
    return undefined;
  }

  async byOwner(containerId: string, ifname: string): Promise<Allocation | undefined> {
    return this.find((e) => e.id === containerId && (e.ifname ?? '') === ifname);
  }

  async byPod(podRef: string, ifname: string): Promise<Allocation | undefined> {
    return this.find((e) => e.podref === podRef && (e.ifname ?? '') === ifname);
  }

  /** Overlapping ranges of one network share a space (`net.<name>`); a pool-private one needs no reservation. */
  private get shared(): boolean {
    return this.ref.space.startsWith('net.');
  }

  /** whereabouts' network_name ('' when unset, which the config encodes as '_'). */
  private get network(): string {
    const n = this.ref.space.slice(4);
    return n === '_' ? '' : n;
  }

  private reservationOf(a: bigint): string {
    return reservationName(this.format(a, this.ref.family), this.network);
  }

  /** The reservation of an address, if any (an unreadable one counts as absent). */
  private held(a: bigint): Promise<Reservation | undefined> {
    return this.kinds.reservations.get(this.kinds.ns, this.reservationOf(a)).catch(() => undefined);
  }

  /** Takes the cluster-wide reservation of an address; false when another attachment holds it. */
  private async reserve(a: Allocation): Promise<boolean> {
    const name = this.reservationOf(a.address);
    const spec = { containerid: a.containerId, podref: a.podRef ?? '', ifname: a.ifname };
    try {
      await this.kinds.reservations.create(this.kinds.ns, {
        apiVersion: 'whereabouts.cni.cncf.io/v1alpha1',
        kind: 'OverlappingRangeIPReservation',
        metadata: { name },
        spec,
      });
      return true;
    } catch (err) {
      if (status(err) !== 409) throw err;
    }
    const held = await this.held(a.address);
    return held?.spec?.containerid === a.containerId && held.spec.ifname === a.ifname;
  }

  private async unreserve(a: Allocation): Promise<void> {
    const held = await this.held(a.address);
    if (held?.spec?.containerid === a.containerId && held.spec.ifname === a.ifname) {
      await this.kinds.reservations.delete(this.kinds.ns, this.reservationOf(a.address)).catch((err) => {
        if (status(err) !== 404) throw err;
      });
    }
  }

  async claim(a: Allocation): Promise<ClaimOutcome> {
    const k = this.key(a.address);
    const mine = await this.byOwner(a.containerId, a.ifname);
    if (mine) return { kind: 'owner-exists', existing: mine };
    if (this.pool.spec.allocations[k]) return { kind: 'taken' };
    let reserved = false;
    if (this.shared) {
      if (!(await this.reserve(a))) return { kind: 'taken' };
      reserved = true;
    }
    let out: ClaimOutcome;
    try {
      // Decided on the newest copy of the pool when the PUT carrying it is built (and again
      // after each lost race), so a stale view never claims a held address.
      out = await this.change<ClaimOutcome>((draft) => {
        const existing = this.entryOwner(draft.spec.allocations, a.containerId, a.ifname);
        if (existing) return { result: { kind: 'owner-exists', existing }, changed: false };
        if (draft.spec.allocations[k]) return { result: { kind: 'taken' }, changed: false };
        draft.spec.allocations[k] = { id: a.containerId, podref: a.podRef ?? '', ifname: a.ifname };
        draft.metadata.annotations = {
          ...(draft.metadata.annotations ?? {}),
          [CURSOR]: a.address.toString(),
        };
        return { result: { kind: 'claimed' }, changed: true };
      });
    } catch (err) {
      if (reserved) await this.unreserve(a).catch(() => undefined);
      throw err;
    }
    if (out.kind !== 'claimed' && reserved) await this.unreserve(a);
    return out;
  }

  async adopt(prev: Allocation, containerId: string): Promise<boolean> {
    const k = this.key(prev.address);
    const moved = await this.change((draft) => {
      const e = draft.spec.allocations[k];
      if (!e || e.id !== prev.containerId || (e.ifname ?? '') !== prev.ifname)
        return { result: false, changed: false };
      draft.spec.allocations[k] = { ...e, id: containerId };
      return { result: true, changed: true };
    });
    if (!moved) return false;
    if (this.shared) {
      // Best effort: the reservation follows the new container so its DEL can drop it.
      await this.unreserve(prev).catch(() => undefined);
      await this.reserve({ ...prev, containerId }).catch(() => undefined);
    }
    return true;
  }

  async release(a: Allocation): Promise<void> {
    this.released.add(`${a.containerId}\n${a.ifname}`);
    const k = this.key(a.address);
    await this.change((draft) => {
      const e = draft.spec.allocations[k];
      if (!e || e.id !== a.containerId || (e.ifname ?? '') !== a.ifname)
        return { result: undefined, changed: false };
      delete draft.spec.allocations[k];
      return { result: undefined, changed: true };
    });
    if (this.shared) await this.unreserve(a);
  }

  async takenAmong(addresses: readonly bigint[]): Promise<Set<bigint>> {
    return new Set(addresses.filter((a) => this.pool.spec.allocations[this.key(a)] !== undefined));
  }

  async cursor(): Promise<bigint | undefined> {
    const c = this.pool.metadata.annotations?.[CURSOR];
    return c && /^\d+$/.test(c) ? BigInt(c) : undefined;
  }

  async setCursor(address: bigint): Promise<void> {
    // claim() stores the cursor with the allocation in one write; this is for tools and benches.
    if ((await this.cursor()) === address) return;
    await this.change((draft) => {
      draft.metadata.annotations = { ...(draft.metadata.annotations ?? {}), [CURSOR]: address.toString() };
      return { result: undefined, changed: true };
    });
  }

  /**
   * DEL hook: a process killed between taking an address's reservation and writing the pool leaves
   * a reservation no pool entry explains, which keeps the address from every range of the network.
   * DEL cannot know the address, so when it released nothing it lists the reservations and deletes
   * those of this attachment inside this range that the pool does not back (one LIST, as
   * whereabouts' own DEL lists the pools).
   */
  async repair(containerId: string, ifname: string): Promise<void> {
    if (!this.shared || this.released.has(`${containerId}\n${ifname}`)) return;
    const held = await this.byOwner(containerId, ifname);
    for (const r of await this.kinds.reservations.list(this.kinds.ns)) {
      if (r.spec?.containerid !== containerId || (r.spec.ifname ?? '') !== ifname) continue;
      const address = this.addressOf(r.metadata.name);
      if (address === undefined || address === held?.address) continue;
      await this.kinds.reservations.delete(this.kinds.ns, r.metadata.name).catch((err) => {
        if (status(err) !== 404) throw err;
      });
    }
  }

  /** The address a reservation of this network names, when it lies in this range. */
  private addressOf(name: string): bigint | undefined {
    const net = this.network;
    if (net && !name.startsWith(`${net}-`)) return undefined;
    const text = net ? name.slice(net.length + 1) : name;
    const ip = tryParseIP(this.ref.family === 6 ? text.replace(/-/g, ':') : text);
    if (!ip || ip.family !== this.ref.family) return undefined;
    if (reservationName(this.format(ip.value, ip.family), net) !== name) return undefined;
    return subnetContains(parseCIDR(this.ref.range, 'IPPool spec.range').subnet, ip) ? ip.value : undefined;
  }

  async list(): Promise<Allocation[]> {
    return Object.entries(this.pool.spec.allocations).map(([k, e]) => this.toAllocation(k, e));
  }
}
