// The whereabouts-style allocator: one address per configured range, keyed by (containerId, ifname)
// with the pod reference as a second key, on any Store.
//
// Unlike whereabouts (lowest free address, found by scanning the whole pool on every ADD under one
// cluster-wide lease), this walks round-robin from a per-pool cursor and claims addresses one by
// one with the store's atomic `claim`: an ADD touches a handful of keys whatever the pool's fill,
// and a freed address is not handed out again at once (wa#288). Under contention clients spread
// at random over the next free addresses instead of all chasing the cursor's neighbour: from the
// first try when other ADDs on the pool are in flight in this process (a daemon serving many
// calls), after the first lost claim otherwise (other processes or nodes).
// Over the 400-line guideline: ADD, DEL, CHECK, GC and STATUS share the claim strategy and the
// node-slice resolution, and splitting them would spread one invariant over several files.

import {
  formatCIDR,
  formatIP,
  formatSubnet,
  parseCIDR,
  parseIP,
  type Subnet,
  subnetContains,
} from '../../spec/addr.js';
import { formatPodRef, podRef } from '../../spec/args.js';
import type { Attachment } from '../../spec/config.js';
import { CniError, ErrorCode } from '../../spec/errors.js';
import type { IPConfig, Result } from '../../spec/result/types.js';
import type { IpamAllocator, IpamGcReport, IpamRequest, IpamStatus } from '../types.js';
import type { WhereaboutsConfig, WhereaboutsRange } from './config.js';
import type { WhereaboutsLog } from './log.js';
import { sliceRange } from './node-slice.js';
import type { Allocation, PoolSession, Store } from './store.js';

/** Free candidates a contended claim picks among at random. */
export const SPREAD = 64;
/** Largest page of candidates read in one store round trip (pages double up to it past held runs). */
const MAX_PAGE = 4096;
/** Lost claims tolerated in one ADD before asking the runtime to retry. */
const MAX_COLLISIONS = 256;

/** The first allowed address at or after `x`, wrapping to the range's first one. */
export function nextAllowed(r: WhereaboutsRange, x: bigint): bigint {
  const segs = r.segments;
  let lo = 0;
  let hi = segs.length - 1;
  // Binary search for the first segment whose end is >= x.
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (segs[mid]!.hi < x) lo = mid + 1;
    else hi = mid;
  }
  const s = segs[lo]!;
  if (s.hi < x) return segs[0]!.lo;
  return x < s.lo ? s.lo : x;
}

/** True when `x` is one of the range's allowed addresses. */
export function isAllowed(r: WhereaboutsRange, x: bigint): boolean {
  return r.segments.some((s) => s.lo <= x && x <= s.hi);
}

/** A CIDR, or undefined when the text is not one (objects written by others are not trusted). */
function tryParseCIDR(text: string): ReturnType<typeof parseCIDR> | undefined {
  try {
    return parseCIDR(text);
  } catch {
    return undefined;
  }
}

/** The pod reference CNI_ARGS carry (K8S_POD_NAMESPACE, K8S_POD_NAME), if any. */
function podRefOf(req: IpamRequest): string | undefined {
  const pod = podRef(req.args);
  return pod ? formatPodRef(pod) : undefined;
}

/**
 * whereabouts' static extras from CNI_ARGS, checked before anything is claimed: `IP=` adds
 * addresses (comma-separated CIDRs), `GATEWAY=` (comma-separated IPs) sets the gateway of those
 * whose subnet contains it.
 */
export function staticFromArgs(args: IpamRequest['args']): IPConfig[] {
  const out: Array<IPConfig & { subnet: Subnet }> = [];
  for (const [k, v] of args ?? []) {
    if (k !== 'IP') continue;
    for (const c of v.split(',').map((x) => x.trim())) {
      if (c === '') continue;
      if (!c.includes('/')) {
        throw new CniError(
          ErrorCode.InvalidNetworkConfig,
          `CNI_ARGS IP: ${JSON.stringify(c)} has no prefix length; whereabouts takes static addresses in CIDR form, e.g. IP=${c}/24`,
        );
      }
      out.push({ address: c, subnet: parseCIDR(c, 'CNI_ARGS IP').subnet });
    }
  }
  for (const [k, v] of args ?? []) {
    if (k !== 'GATEWAY') continue;
    for (const g of v.split(',').map((x) => x.trim())) {
      if (g === '') continue;
      const gw = parseIP(g, 'CNI_ARGS GATEWAY');
      for (const a of out) if (subnetContains(a.subnet, gw)) a.gateway = formatIP(gw);
    }
  }
  return out.map(({ subnet: _, ...ip }) => ip);
}

/** What one process knows about walks through a pool's held runs (WhereaboutsAllocatorOptions.walks). */
export interface PoolWalks {
  /** The walk in flight, whose free addresses the ADDs meeting the same run wait for. */
  running?: Promise<bigint[]> | undefined;
  /** The last long walk: from its start to the first free address it found, and when. */
  skip?: { from: bigint; to: bigint; at: number } | undefined;
}

/** How long a walked held run is jumped over (addresses freed inside it wait for a later pass). */
const SKIP_MS = 60_000;

/** True when `x` lies in [from, to) walking up from `from` and wrapping. */
function inRun(from: bigint, x: bigint, to: bigint): boolean {
  return from <= to ? from <= x && x < to : x >= from || x < to;
}

/** A source of randomness in [0, 1); tests pass a seeded one. */
export type Random = () => number;

/** Options of a WhereaboutsAllocator. */
export interface WhereaboutsAllocatorOptions {
  /** cniVersion stamped on results. */
  cniVersion?: string | undefined;
  /** Close the store after every call (one-shot plugin processes); default false. */
  closeAfterEachCall?: boolean | undefined;
  random?: Random | undefined;
  /** whereabouts-format logging (`log_file`, `log_level`). */
  log?: WhereaboutsLog | undefined;
  /** DEL's store when the config resolves none (pools an older default left); undefined: nothing held. */
  releaseStore?: (() => Promise<Store | undefined>) | undefined;
  /**
   * ADDs in flight per pool, shared by the allocators of one process (whereaboutsIpam shares one
   * per factory) so that concurrent ADDs spread their first try; default one per allocator.
   */
  inflight?: Map<string, number> | undefined;
  /**
   * Walks through held runs per pool, shared like `inflight` (whereaboutsIpam shares one per
   * factory): concurrent ADDs that meet the same held run wait for one walk instead of each
   * reading the whole run, and ADDs that start inside a run walked lately jump past it; default
   * one per allocator.
   */
  walks?: Map<string, PoolWalks> | undefined;
  /**
   * The last cursor seen per pool, shared like `inflight`: a crowded ADD on a store that batches
   * reads asks, with its first reads, which addresses around it are held, and spreads over the free
   * ones after the cursor it reads, one store round trip fewer.
   */
  hints?: Map<string, bigint> | undefined;
  /** Node slices: this node's name (NODENAME, the nodename file, the host name), read when first needed. */
  nodeName?: (() => string) | undefined;
  /** Node slices: the NodeSlicePool's name (`network_name`, else the network's `name`). */
  sliceSetName?: string | undefined;
}

/** An IpamAllocator over whereabouts-style pools held in a Store. */
export class WhereaboutsAllocator implements IpamAllocator {
  private readonly random: Random;
  private readonly inflight: Map<string, number>;
  private readonly walks: Map<string, PoolWalks>;
  private readonly hints: Map<string, bigint>;

  constructor(
    readonly config: WhereaboutsConfig,
    private readonly openStore: () => Promise<Store>,
    private readonly opts: WhereaboutsAllocatorOptions = {},
  ) {
    this.random = opts.random ?? Math.random;
    this.inflight = opts.inflight ?? new Map();
    this.walks = opts.walks ?? new Map();
    this.hints = opts.hints ?? new Map();
  }

  private store: Promise<Store> | undefined;

  private async use<T>(fn: (store: Store) => Promise<T>): Promise<T> {
    this.store ??= this.openStore();
    const store = await this.store;
    try {
      return await fn(store);
    } finally {
      if (this.opts.closeAfterEachCall) await this.close();
    }
  }

  /** Closes the store connection (etcd, Kubernetes); the next call reopens it. */
  async close(): Promise<void> {
    const s = this.store;
    this.store = undefined;
    if (s) await (await s).close();
  }

  /**
   * ADD: one address per range; repeated calls for the same attachment or pod return the same ones.
   * Everything that can be refused is checked before the first claim, and a failure after a claim
   * releases what this call claimed: a failed ADD holds nothing it did not hold before.
   */
  async allocate(req: IpamRequest): Promise<Result> {
    const log = this.opts.log;
    log?.debug(
      `ADD: beginning IPAM for ContainerID ${JSON.stringify(req.containerId)}, ifName ${JSON.stringify(req.ifname)}`,
    );
    try {
      const res = await this.allocateAll(req);
      log?.debug(`ADD: ${req.containerId}/${req.ifname} holds ${res.ips?.map((i) => i.address).join(', ')}`);
      return res;
    } catch (err) {
      log?.error(`ADD: ${req.containerId}/${req.ifname} failed: ${CniError.from(err).message}`);
      throw err;
    }
  }

  /**
   * The ranges this node allocates from: the configured ones, or with node slices the node's slice
   * of the range as its NodeSlicePool says. ADD fails with code 11 while the node has no slice yet
   * (the controller has not caught up); DEL, CHECK, GC and STATUS then see nothing held.
   */
  private async rangesFor(store: Store, forAdd: boolean): Promise<WhereaboutsRange[]> {
    const size = this.config.nodeSliceSize;
    if (size === undefined) return this.config.ranges;
    const parent = this.config.ranges[0]!;
    const name = this.opts.sliceSetName ?? this.config.networkName;
    const node = this.opts.nodeName?.() ?? '';
    const notYet = (why: string): WhereaboutsRange[] => {
      if (!forAdd) return [];
      throw new CniError(
        ErrorCode.TryAgainLater,
        `ipam.node_slice_size: ${why}; the node-slice controller (startNodeSliceController, or whereabouts' own) hands nodes their slices: retry once it has run`,
      );
    };
    if (!node) {
      // Without a name no slice can be found, so an ADD under this config never held anything here.
      if (!forAdd) return [];
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        'ipam.node_slice_size: this node has no name: set NODENAME in the environment or write it to the nodename file beside the whereabouts flat file',
      );
    }
    const pool = await store.nodeSlicePool?.(name);
    if (!pool) return notYet(`NodeSlicePool ${JSON.stringify(name)} does not exist`);
    const spec = tryParseCIDR(pool.spec?.range ?? '');
    const specSize = Number(String(pool.spec?.sliceSize ?? '').replace(/^\//, ''));
    if (!spec || formatSubnet(spec.subnet) !== formatSubnet(parent.subnet) || specSize !== size) {
      return notYet(
        `NodeSlicePool ${JSON.stringify(name)} slices ${pool.spec?.range} by ${pool.spec?.sliceSize}, not ${formatSubnet(parent.subnet)} by /${size} as this config says`,
      );
    }
    const mine = pool.status?.allocations?.find((a) => a.nodeName === node)?.sliceRange;
    const slice = mine ? tryParseCIDR(mine) : undefined;
    if (!slice || slice.subnet.prefix !== size || !subnetContains(parent.subnet, slice.ip)) {
      return notYet(`NodeSlicePool ${JSON.stringify(name)} gives node ${JSON.stringify(node)} no slice`);
    }
    return [sliceRange(parent, slice.subnet, node, this.config.networkName)];
  }

  private async allocateAll(req: IpamRequest): Promise<Result> {
    const statics = staticFromArgs(req.args);
    return this.use(async (store) => {
      const podRefText = req.podRef ?? podRefOf(req);
      const got: Array<{ range: WhereaboutsRange; alloc: Allocation; fresh: boolean }> = [];
      const ranges = await this.rangesFor(store, true);
      try {
        for (const range of ranges) {
          const r = await store.session(range.ref, (s) => this.allocateIn(s, range, req, podRefText));
          got.push({ range, ...r });
        }
        return this.result(
          got.map((g) => ({ range: g.range, address: g.alloc.address })),
          statics,
        );
      } catch (err) {
        // Roll back what this call claimed; addresses that were already held stay held. A claim
        // that failed halfway may have left an index naming nothing: repair drops it.
        for (const range of ranges) {
          const g = got.find((x) => x.range === range);
          await store
            .session(range.ref, async (s) => {
              if (g?.fresh) await s.release(g.alloc);
              await s.repair?.(req.containerId, req.ifname, podRefText);
            })
            .catch(() => undefined);
        }
        throw err;
      }
    });
  }

  private async allocateIn(
    s: PoolSession,
    r: WhereaboutsRange,
    req: IpamRequest,
    podRef: string | undefined,
  ): Promise<{ alloc: Allocation; fresh: boolean }> {
    const key = r.ref.pool;
    this.inflight.set(key, (this.inflight.get(key) ?? 0) + 1);
    try {
      return await this.allocateInPool(s, r, req, podRef);
    } finally {
      const n = (this.inflight.get(key) ?? 1) - 1;
      if (n > 0) this.inflight.set(key, n);
      else this.inflight.delete(key);
    }
  }

  private async allocateInPool(
    s: PoolSession,
    r: WhereaboutsRange,
    req: IpamRequest,
    podRef: string | undefined,
  ): Promise<{ alloc: Allocation; fresh: boolean }> {
    for (let attempt = 0; attempt < 8; attempt++) {
      // Three independent reads: one round trip of latency on a remote store (one call, where the
      // store batches them). When other ADDs on this pool are in flight here, the free addresses
      // after the cursor are read too (without batching, as soon as the cursor is known,
      // alongside the owner and pod indexes).
      const crowded = (this.inflight.get(r.ref.pool) ?? 0) > 1;
      let freeP: Promise<bigint[]> | undefined;
      let mine: Allocation | undefined;
      let prev: Allocation | undefined;
      let cur: bigint | undefined;
      if (s.readForAdd) {
        // A store that batches reads: the three in one round trip, and when crowded the addresses
        // around the last cursor seen here; if they hold enough free ones after the cursor read,
        // those are the free list (else it is read once a new address proves needed).
        const hint = crowded ? this.hints.get(r.ref.pool) : undefined;
        const page = hint === undefined ? undefined : this.around(r, hint);
        const got = await s.readForAdd(req.containerId, req.ifname, podRef, page);
        ({ mine, prev, cursor: cur } = got);
        if (cur !== undefined) this.hints.set(r.ref.pool, cur);
        const free = page && got.taken ? this.freeInPage(page, got.taken, cur) : undefined;
        if (free) freeP = Promise.resolve(free);
      } else {
        const curP = s.cursor();
        freeP = crowded ? curP.then((c) => this.freeAfter(s, r, this.startAfter(r, c))) : undefined;
        [mine, prev, cur] = await Promise.all([
          s.byOwner(req.containerId, req.ifname),
          podRef === undefined ? undefined : s.byPod(podRef, req.ifname),
          curP,
        ]);
      }
      freeP?.catch(() => undefined); // read again by claimFree if needed; never unhandled
      if (mine && isAllowed(r, mine.address)) return { alloc: mine, fresh: false };
      if (mine) await s.release(mine); // the config changed under it: the address is no longer ours to keep
      // A StatefulSet pod re-created under the same name gets its address back (wa#291, wa#383).
      if (prev && prev.containerId !== req.containerId && isAllowed(r, prev.address)) {
        if (await s.adopt(prev, req.containerId)) {
          return { alloc: { ...prev, containerId: req.containerId }, fresh: false };
        }
        continue;
      }
      if (crowded && !freeP) freeP = this.freeAfter(s, r, this.startAfter(r, cur));
      const claimed = await this.claimFree(s, r, req, podRef, cur, freeP);
      if (claimed) return claimed;
    }
    throw new CniError(
      ErrorCode.TryAgainLater,
      `${r.field}: the allocation of ${req.containerId}/${req.ifname} in ${r.ref.range} kept changing under concurrent updates; retry`,
    );
  }

  /** Allowed addresses from SPREAD / 2 before `hint` on (wrapping), 3 x SPREAD of them at most. */
  private around(r: WhereaboutsRange, hint: bigint): bigint[] {
    const back = BigInt(SPREAD / 2);
    let x = nextAllowed(r, hint - back >= r.first && hint <= r.last ? hint - back : r.first);
    const page: bigint[] = [];
    for (let n = 0n; n < r.capacity && page.length < 3 * SPREAD; n++) {
      page.push(x);
      x = nextAllowed(r, x + 1n);
    }
    return page;
  }

  /**
   * The free addresses of `page` after the cursor, when the cursor lies in it and at least a
   * quarter of SPREAD are free there; undefined otherwise (the free list is then read after it).
   */
  private freeInPage(page: bigint[], taken: Set<bigint>, cur: bigint | undefined): bigint[] | undefined {
    const at = cur === undefined ? -1 : page.indexOf(cur);
    if (at < 0) return undefined;
    const free = page.slice(at + 1).filter((a) => !taken.has(a));
    return free.length >= SPREAD / 4 ? free.slice(0, SPREAD) : undefined;
  }

  /** The first candidate after the cursor (the range's first address when there is none). */
  private startAfter(r: WhereaboutsRange, cur: bigint | undefined): bigint {
    return nextAllowed(r, cur !== undefined && cur >= r.first && cur <= r.last ? cur + 1n : r.first);
  }

  /**
   * Claims a free address after the cursor; undefined asks the caller to re-read the owner index.
   * `firstFree`, when given (other ADDs in flight here would read the same cursor), is the free
   * list read ahead: the first try then spreads over it instead of taking the cursor's neighbour.
   */
  private async claimFree(
    s: PoolSession,
    r: WhereaboutsRange,
    req: IpamRequest,
    podRef: string | undefined,
    cur: bigint | undefined,
    firstFree?: Promise<bigint[]>,
  ): Promise<{ alloc: Allocation; fresh: boolean } | undefined> {
    if (r.capacity === 0n) throw this.exhausted(r);
    let cand = this.startAfter(r, cur);
    for (let collisions = 0; collisions <= MAX_COLLISIONS; collisions++) {
      if (collisions > 0 || firstFree) {
        const free = collisions === 0 && firstFree ? await firstFree : await this.freeAfter(s, r, cand);
        if (free.length === 0) throw this.exhausted(r);
        // Racing clients pick at random among the next free addresses instead of all taking the
        // first one: with k clients and SPREAD candidates a claim is lost with odds ~k/SPREAD.
        cand = free[Math.floor(this.random() * Math.min(free.length, SPREAD))]!;
      }
      const alloc: Allocation = {
        address: cand,
        pool: r.ref.pool,
        containerId: req.containerId,
        ifname: req.ifname,
      };
      if (podRef !== undefined) alloc.podRef = podRef;
      const out = await s.claim(alloc);
      if (out.kind === 'claimed') {
        this.hints.set(r.ref.pool, cand); // the claim moved the cursor there
        return { alloc, fresh: true };
      }
      if (out.kind === 'owner-exists') {
        return isAllowed(r, out.existing.address) ? { alloc: out.existing, fresh: false } : undefined;
      }
    }
    throw new CniError(
      ErrorCode.TryAgainLater,
      `${r.field}: lost ${MAX_COLLISIONS} claims in a row in ${r.ref.range}; the pool is under heavy contention, retry`,
    );
  }

  /**
   * Up to SPREAD free addresses from `from` on (wrapping); empty only when the whole range is held.
   * Pages double while they come back fully held, so a run of n held addresses past the cursor
   * costs O(log n) round trips, not n / SPREAD.
   */
  private async freeAfter(s: PoolSession, r: WhereaboutsRange, from: bigint): Promise<bigint[]> {
    const key = r.ref.pool;
    let state = this.walks.get(key);
    if (!state) {
      state = {};
      this.walks.set(key, state);
    }
    let start = nextAllowed(r, from);
    // Inside a run walked lately (ADDs that read the cursor before the walk's claims moved it):
    // start where that walk found free addresses.
    const skip = state.skip;
    if (skip && Date.now() - skip.at < SKIP_MS && inRun(skip.from, start, skip.to)) start = skip.to;
    const first = await this.walk(s, r, start, 0n, SPREAD, true);
    if (first.length > 0 || first.end === undefined) return first;
    // A held run past the first page (the cursor wrapped onto the addresses held since the range
    // was last walked, or a pool filled from its start): every ADD in flight on the pool meets
    // it, and each reading the whole run would cost the store that many times over. One walk per
    // pool at a time in this process; the others take its free addresses and spread over them.
    if (state.running) return state.running;
    const st = state;
    const shared = this.walk(s, r, first.end, BigInt(SPREAD), SPREAD * 2, false)
      .then((w) => {
        if (w.length > 0) st.skip = { from: start, to: w[0]!, at: Date.now() };
        return [...w];
      })
      .finally(() => {
        if (st.running === shared) st.running = undefined;
      });
    shared.catch(() => undefined); // each waiter sees the failure through its own await
    st.running = shared;
    return shared;
  }

  /**
   * Reads pages from `x` on until one holds a free address (or, with `once`, after the first page).
   * Returns up to SPREAD free addresses; `end` is where the next page would start (undefined when
   * the whole range has been walked).
   */
  private async walk(
    s: PoolSession,
    r: WhereaboutsRange,
    start: bigint,
    walkedBefore: bigint,
    firstSize: number,
    once: boolean,
  ): Promise<bigint[] & { end?: bigint }> {
    let walked = walkedBefore;
    let x = start;
    let size = firstSize;
    while (walked < r.capacity) {
      const page: bigint[] = [];
      while (page.length < size && walked < r.capacity) {
        page.push(x);
        walked++;
        x = nextAllowed(r, x + 1n);
      }
      const taken = await s.takenAmong(page);
      const free: bigint[] & { end?: bigint } = page.filter((a) => !taken.has(a)).slice(0, SPREAD);
      if (free.length > 0 || once) {
        if (walked < r.capacity) free.end = x;
        return free;
      }
      size = Math.min(size * 2, MAX_PAGE);
    }
    return [];
  }

  private exhausted(r: WhereaboutsRange): CniError {
    const f = (v: bigint) => formatIP({ family: r.subnet.family, value: v });
    const ex = r.exclude.length > 0 ? `, excluding ${r.exclude.join(', ')}` : '';
    return new CniError(
      ErrorCode.Internal,
      `${r.field}: no free address in ${r.ref.range} (${f(r.first)}-${f(r.last)}${ex}): all ${r.capacity} usable addresses are held; widen the range or free addresses with DEL or GC`,
    );
  }

  private result(held: Array<{ range: WhereaboutsRange; address: bigint }>, statics: IPConfig[]): Result {
    const gw = this.config.gateway;
    const ips: IPConfig[] = held.map(({ range, address }) => {
      const ip: IPConfig = {
        address: formatCIDR({ family: range.subnet.family, value: address }, range.subnet.prefix),
      };
      if (gw && gw.family === range.subnet.family) ip.gateway = formatIP(gw);
      return ip;
    });
    for (const a of this.config.addresses)
      ips.push(a.gateway ? { address: a.address, gateway: a.gateway } : { address: a.address });
    ips.push(...statics);
    const res: Result = { cniVersion: this.opts.cniVersion ?? '1.1.0', ips };
    if (this.config.routes) res.routes = this.config.routes.map((r) => ({ ...r }));
    if (this.config.dns) res.dns = { ...this.config.dns };
    return res;
  }

  /** DEL: frees what (containerId, ifname) holds in every range; missing state is success. */
  async release(req: IpamRequest): Promise<void> {
    const log = this.opts.log;
    log?.debug(`DEL: ContainerID ${JSON.stringify(req.containerId)}, ifName ${JSON.stringify(req.ifname)}`);
    try {
      if (this.config.datastore.kind === 'none') {
        // No store resolves, so this config never held anything; a pool the old node-local
        // default kept is still freed.
        const legacy = await this.opts.releaseStore?.();
        log?.verbose(
          `DEL: no store is configured, so nothing is held${legacy ? '; releasing what the node-local file store of earlier versions holds' : ''}`,
        );
        if (!legacy) return;
        try {
          await this.releaseIn(legacy, req);
        } finally {
          await legacy.close();
        }
        return;
      }
      await this.use((store) => this.releaseIn(store, req));
    } catch (err) {
      log?.error(`DEL: ${req.containerId}/${req.ifname} failed: ${CniError.from(err).message}`);
      throw err;
    }
  }

  private async releaseIn(store: Store, req: IpamRequest): Promise<void> {
    for (const range of await this.rangesFor(store, false)) {
      await store.session(range.ref, async (s) => {
        const mine = await s.byOwner(req.containerId, req.ifname);
        if (mine) await s.release(mine);
        await s.repair?.(req.containerId, req.ifname, req.podRef ?? podRefOf(req));
      });
    }
  }

  /** CHECK: every range holds an address for the attachment, and prevResult (if any) lists it. */
  async check(req: IpamRequest): Promise<void> {
    await this.use(async (store) => {
      const ranges = await this.rangesFor(store, false);
      if (ranges.length === 0 && this.config.ranges.length > 0) {
        throw new CniError(
          ErrorCode.Internal,
          `ipam.node_slice_size: this node has no slice, so ${req.containerId}/${req.ifname} holds no address; run ADD again`,
        );
      }
      for (const range of ranges) {
        const mine = await store.session(range.ref, (s) => s.byOwner(req.containerId, req.ifname));
        if (!mine) {
          throw new CniError(
            ErrorCode.Internal,
            `${range.field}: ${req.containerId}/${req.ifname} holds no address in ${range.ref.range}; run ADD again`,
          );
        }
        const ip = formatIP({ family: range.subnet.family, value: mine.address });
        const listed = req.prevResult?.ips?.some((c) => c.address.split('/')[0] === ip);
        if (req.prevResult && !listed) {
          throw new CniError(
            ErrorCode.Internal,
            `${range.field}: ${req.containerId}/${req.ifname} holds ${ip}, which prevResult does not list`,
          );
        }
      }
    });
  }

  /** GC: frees allocations of attachments not in `valid`, and duplicates a crash left behind. */
  async gc(valid: readonly Attachment[]): Promise<IpamGcReport> {
    const keep = new Set(valid.map((v) => `${v.containerId}\n${v.ifname}`));
    const released: string[] = [];
    await this.use(async (store) => {
      for (const range of await this.rangesFor(store, false)) {
        await store.session(range.ref, async (s) => {
          await s.sweep?.();
          for (const a of await s.list()) {
            let drop = !keep.has(`${a.containerId}\n${a.ifname}`);
            if (!drop) drop = (await s.byOwner(a.containerId, a.ifname))?.address !== a.address;
            if (drop) {
              await s.release(a);
              released.push(formatIP({ family: range.subnet.family, value: a.address }));
            }
          }
        });
      }
    });
    return { released };
  }

  /** STATUS: per-range accounting; throws CniError 50 when a range is full or the store is unreachable. */
  async status(): Promise<IpamStatus> {
    return this.use(async (store) => {
      const pools = [];
      let ranges: WhereaboutsRange[];
      try {
        ranges = await this.rangesFor(store, true);
      } catch (err) {
        // No slice for this node yet: the plugin cannot serve ADDs, which STATUS reports as 50.
        throw new CniError(ErrorCode.PluginNotAvailable, CniError.from(err).message, undefined, {
          cause: err,
        });
      }
      for (const range of ranges) {
        let used: number;
        try {
          used = (await store.session(range.ref, (s) => s.list())).length;
        } catch (err) {
          throw new CniError(ErrorCode.PluginNotAvailable, CniError.from(err).message, undefined, {
            cause: err,
          });
        }
        const free = range.capacity - BigInt(used);
        if (free <= 0n) {
          throw new CniError(
            ErrorCode.PluginNotAvailable,
            `${range.field}: ${range.ref.range} has no free address`,
          );
        }
        pools.push({ ranges: range.ref.range, capacity: String(range.capacity), used, free: String(free) });
      }
      return { pools };
    });
  }
}
