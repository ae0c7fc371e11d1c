// The storage contract of the whereabouts-style allocator. The allocator is written once against
// these primitives; each backend (file, etcd, Kubernetes) makes `claim` atomic in its own way:
// an O_EXCL-style link on disk, a compare-and-swap transaction in etcd, a resourceVersion-guarded
// write in Kubernetes. No primitive scans the whole pool, so an ADD costs the same in an empty
// pool and in a full one.

/** Where one range keeps its records and in which namespace its addresses must be unique. */
export interface PoolRef {
  /** Stable pool name, whereabouts' IPPool naming: `[<network_name>-]<normalized range>`, e.g. `10.0.0.0-24`. */
  pool: string;
  /** The range in CIDR form (`10.0.0.0/24`), as stored in an IPPool's `spec.range`. */
  range: string;
  /** Network address of the range, the base of IPPool offsets. */
  base: bigint;
  /**
   * Namespace inside which an address is held at most once. With `enable_overlapping_ranges`
   * (the default) it is the network name, so overlapping ranges of one network never share an
   * address; otherwise it is the pool name.
   */
  space: string;
  /** Address family of the range. */
  family: 4 | 6;
}

/** One address held by one attachment. */
export interface Allocation {
  /** Absolute address as a number. */
  address: bigint;
  /** The pool that handed it out. */
  pool: string;
  containerId: string;
  ifname: string;
  /** `<namespace>/<name>` of the pod, when the runtime passed K8S_POD_* args. */
  podRef?: string;
}

/** What a claim did: took the address, found it held, or found the attachment already holding one. */
export type ClaimOutcome =
  | { kind: 'claimed' }
  | { kind: 'taken' }
  | { kind: 'owner-exists'; existing: Allocation };

/** An ADD's first reads (PoolSession.readForAdd). */
export interface AddReads {
  /** What byOwner answers. */
  mine: Allocation | undefined;
  /** What byPod answers; undefined without a pod reference. */
  prev: Allocation | undefined;
  /** What cursor answers. */
  cursor: bigint | undefined;
  /** Which of the `candidates` asked for are held (what takenAmong answers), when some were. */
  taken?: Set<bigint> | undefined;
}

/** The operations the allocator needs on one pool, valid inside one `Store.session`. */
export interface PoolSession {
  /** The address the attachment (containerId, ifname) holds in this pool, if any. */
  byOwner(containerId: string, ifname: string): Promise<Allocation | undefined>;
  /** The address the pod holds on this interface in this pool, if any (StatefulSet re-creation). */
  byPod(podRef: string, ifname: string): Promise<Allocation | undefined>;
  /**
   * Atomically takes `a.address` for `a`'s attachment, unless it or the attachment is already
   * taken; a successful claim also records the address as the pool's round-robin cursor.
   */
  claim(a: Allocation): Promise<ClaimOutcome>;
  /** Moves `prev` to a new container of the same pod; false when `prev` changed meanwhile. */
  adopt(prev: Allocation, containerId: string): Promise<boolean>;
  /** Frees `a` and its index entries if they still belong to `a`'s attachment; missing state is fine. */
  release(a: Allocation): Promise<void>;
  /**
   * DEL hook for backends whose writes are not one transaction: removes what a process killed
   * mid-ADD or mid-DEL left for this attachment (an index naming nothing, a record no index names).
   */
  repair?(containerId: string, ifname: string, podRef?: string): Promise<void>;
  /**
   * Optional, for backends that can batch reads: what byOwner, byPod (when `podRef` is given) and
   * cursor answer, and which of `candidates` (ascending runs) are held, in one round trip. An ADD
   * starts with these reads.
   */
  readForAdd?(
    containerId: string,
    ifname: string,
    podRef: string | undefined,
    candidates?: readonly bigint[],
  ): Promise<AddReads>;
  /** The subset of `addresses` held in this pool's space; addresses come in ascending runs. */
  takenAmong(addresses: readonly bigint[]): Promise<Set<bigint>>;
  /** The last address handed out (a round-robin hint only; stale values are harmless). */
  cursor(): Promise<bigint | undefined>;
  /** Records the last address handed out (claims do this themselves; for tools and benches). */
  setCursor(address: bigint): Promise<void>;
  /** Every allocation of this pool (GC and tests; cost grows with the pool). */
  list(): Promise<Allocation[]>;
  /** GC hook for backends whose writes are not one transaction: drops index entries a crash left dangling. */
  sweep?(): Promise<void>;
}

/** A backend holding whereabouts-style pools. */
export interface Store {
  /** Backend name: `file`, `etcd` or `kubernetes`. */
  readonly kind: string;
  /** Runs `fn` against one pool; backends that need mutual exclusion (file) hold it for the call. */
  session<T>(ref: PoolRef, fn: (s: PoolSession) => Promise<T>): Promise<T>;
  /** Releases connections and handles. */
  close(): Promise<void>;
  /** Node slices: the NodeSlicePool named `name`, undefined when missing (Kubernetes store only). */
  nodeSlicePool?(name: string): Promise<NodeSlicePool | undefined>;
}

/** Groups ascending addresses into runs whose neighbours are at most `gap` apart (one range query each). */
export function ascendingRuns(addresses: readonly bigint[], gap = 64n): bigint[][] {
  const sorted = [...addresses].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const runs: bigint[][] = [];
  let cur: bigint[] = [];
  for (const a of sorted) {
    const last = cur[cur.length - 1];
    if (last !== undefined && a - last > gap) {
      runs.push(cur);
      cur = [];
    }
    cur.push(a);
  }
  if (cur.length > 0) runs.push(cur);
  return runs;
}

/** The JSON record one address holds in the file and etcd stores. */
interface StoredRecord {
  ip: string;
  pool: string;
  id: string;
  ifname: string;
  podref?: string;
}

/** Encodes an allocation as the record stored for its address (compared byte-wise on release). */
export function encodeAllocation(a: Allocation, ip: string): string {
  const s: StoredRecord = { ip, pool: a.pool, id: a.containerId, ifname: a.ifname };
  if (a.podRef !== undefined) s.podref = a.podRef;
  return JSON.stringify(s);
}

/** Decodes a stored record for `address`; undefined when absent or unreadable (GC cleans those). */
export function decodeAllocation(raw: string | null | undefined, address: bigint): Allocation | undefined {
  if (!raw) return undefined;
  try {
    const s = JSON.parse(raw) as StoredRecord;
    const a: Allocation = { address, pool: s.pool, containerId: s.id, ifname: s.ifname };
    if (s.podref !== undefined) a.podRef = s.podref;
    return a;
  } catch {
    return undefined;
  }
}

/** One entry of a NodeSlicePool's `status.allocations`; `nodeName` "" is a free slice. */
export interface NodeSliceAllocation {
  nodeName: string;
  sliceRange: string;
}

/** A NodeSlicePool as whereabouts defines it (namespaced, named after the network). */
export interface NodeSlicePool {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    resourceVersion?: string;
    ownerReferences?: Array<{ apiVersion: string; kind: string; name: string; uid: string }>;
  };
  spec: { range: string; sliceSize: string };
  status?: { allocations: NodeSliceAllocation[] };
}
