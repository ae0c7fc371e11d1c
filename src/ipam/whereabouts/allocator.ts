// The whereabouts-style allocator: one address per configured range, keyed by (containerId, ifname)
// with the pod reference as a second key, on any Store.
//
// Unlike whereabouts (lowest free address, found by scanning the whole pool on every ADD under one
// cluster-wide lease), this walks round-robin from a per-pool cursor and claims addresses one by
// one with the store's atomic `claim`: an ADD touches a handful of keys whatever the pool's fill,
// and a freed address is not handed out again at once (wa#288). Under contention a client that
// loses a claim picks at random among the next free addresses, so N racing clients do not all
// chase the same one.

import { formatCIDR, formatIP, parseCIDR } from '../../spec/addr.js';
import { formatPodRef, podRef } from '../../spec/args.js';
import type { Attachment } from '../../spec/config.js';
import { CniError, ErrorCode } from '../../spec/errors.js';
import type { IPConfig, Result } from '../../spec/result/types.js';
import type { IpamAllocator, IpamGcReport, IpamRequest, IpamStatus } from '../types.js';
import type { WhereaboutsConfig, WhereaboutsRange } from './config.js';
import type { Allocation, PoolSession, Store } from './store.js';

/** Candidates checked per store round trip when the cursor's neighbour is taken. */
const PAGE = 64;
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

/** A source of randomness in [0, 1); tests pass a seeded one. */
export type Random = () => number;

/** Options of a WhereaboutsAllocator. */
export interface WhereaboutsAllocatorOptions {
  /** cniVersion stamped on results. */
  cniVersion?: string | undefined;
  /** Close the store after every call (one-shot plugin processes); default false. */
  closeAfterEachCall?: boolean | undefined;
  random?: Random | undefined;
}

/** An IpamAllocator over whereabouts-style pools held in a Store. */
export class WhereaboutsAllocator implements IpamAllocator {
  private readonly random: Random;

  constructor(
    readonly config: WhereaboutsConfig,
    private readonly openStore: () => Promise<Store>,
    private readonly opts: WhereaboutsAllocatorOptions = {},
  ) {
    this.random = opts.random ?? Math.random;
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

  /** ADD: one address per range; repeated calls for the same attachment or pod return the same ones. */
  async allocate(req: IpamRequest): Promise<Result> {
    return this.use(async (store) => {
      const pod = req.podRef === undefined ? podRef(req.args) : undefined;
      const podRefText = req.podRef ?? (pod ? formatPodRef(pod) : undefined);
      const got: Array<{ range: WhereaboutsRange; alloc: Allocation; fresh: boolean }> = [];
      try {
        for (const range of this.config.ranges) {
          const r = await store.session(range.ref, (s) => this.allocateIn(s, range, req, podRefText));
          got.push({ range, ...r });
        }
      } catch (err) {
        // Roll back what this call claimed; addresses that were already held stay held.
        for (const g of got.filter((x) => x.fresh)) {
          await store.session(g.range.ref, (s) => s.release(g.alloc)).catch(() => undefined);
        }
        throw err;
      }
      return this.result(
        got.map((g) => ({ range: g.range, address: g.alloc.address })),
        req,
      );
    });
  }

  private async allocateIn(
    s: PoolSession,
    r: WhereaboutsRange,
    req: IpamRequest,
    podRef: string | undefined,
  ): Promise<{ alloc: Allocation; fresh: boolean }> {
    for (let attempt = 0; attempt < 8; attempt++) {
      // Three independent reads: one round trip of latency on a remote store.
      const [mine, prev, cur] = await Promise.all([
        s.byOwner(req.containerId, req.ifname),
        podRef === undefined ? undefined : s.byPod(podRef, req.ifname),
        s.cursor(),
      ]);
      if (mine && isAllowed(r, mine.address)) return { alloc: mine, fresh: false };
      if (mine) await s.release(mine); // the config changed under it: the address is no longer ours to keep
      // A StatefulSet pod re-created under the same name gets its address back (wa#291, wa#383).
      if (prev && prev.containerId !== req.containerId && isAllowed(r, prev.address)) {
        if (await s.adopt(prev, req.containerId)) {
          return { alloc: { ...prev, containerId: req.containerId }, fresh: false };
        }
        continue;
      }
      const claimed = await this.claimFree(s, r, req, podRef, cur);
      if (claimed) return claimed;
    }
    throw new CniError(
      ErrorCode.TryAgainLater,
      `${r.field}: the allocation of ${req.containerId}/${req.ifname} in ${r.ref.range} kept changing under concurrent updates; retry`,
    );
  }

  /** Claims a free address after the cursor; undefined asks the caller to re-read the owner index. */
  private async claimFree(
    s: PoolSession,
    r: WhereaboutsRange,
    req: IpamRequest,
    podRef: string | undefined,
    cur: bigint | undefined,
  ): Promise<{ alloc: Allocation; fresh: boolean } | undefined> {
    if (r.capacity === 0n) throw this.exhausted(r);
    let cand = nextAllowed(r, cur !== undefined && cur >= r.first && cur <= r.last ? cur + 1n : r.first);
    for (let collisions = 0; collisions <= MAX_COLLISIONS; collisions++) {
      if (collisions > 0) {
        const free = await this.freeAfter(s, r, cand);
        if (free.length === 0) throw this.exhausted(r);
        // Spread racing clients over the next free addresses instead of all taking the first.
        cand = free[Math.floor(this.random() * Math.min(free.length, 1 + collisions))]!;
      }
      const alloc: Allocation = {
        address: cand,
        pool: r.ref.pool,
        containerId: req.containerId,
        ifname: req.ifname,
      };
      if (podRef !== undefined) alloc.podRef = podRef;
      const out = await s.claim(alloc);
      if (out.kind === 'claimed') return { alloc, fresh: true };
      if (out.kind === 'owner-exists') {
        return isAllowed(r, out.existing.address) ? { alloc: out.existing, fresh: false } : undefined;
      }
    }
    throw new CniError(
      ErrorCode.TryAgainLater,
      `${r.field}: lost ${MAX_COLLISIONS} claims in a row in ${r.ref.range}; the pool is under heavy contention, retry`,
    );
  }

  /** Up to PAGE free addresses from `from` on (wrapping); empty only when the whole range is held. */
  private async freeAfter(s: PoolSession, r: WhereaboutsRange, from: bigint): Promise<bigint[]> {
    let walked = 0n;
    let x = nextAllowed(r, from);
    while (walked < r.capacity) {
      const page: bigint[] = [];
      while (page.length < PAGE && walked < r.capacity) {
        page.push(x);
        walked++;
        x = nextAllowed(r, x + 1n);
      }
      const taken = await s.takenAmong(page);
      const free = page.filter((a) => !taken.has(a));
      if (free.length > 0) return free;
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

  private result(held: Array<{ range: WhereaboutsRange; address: bigint }>, req: IpamRequest): Result {
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
    // whereabouts also takes static addresses from CNI_ARGS IP= (comma-separated CIDRs).
    for (const [k, v] of req.args ?? []) {
      if (k !== 'IP') continue;
      for (const c of v.split(',').filter((x) => x.trim() !== '')) {
        parseCIDR(c.trim(), 'CNI_ARGS IP');
        ips.push({ address: c.trim() });
      }
    }
    const res: Result = { cniVersion: this.opts.cniVersion ?? '1.1.0', ips };
    if (this.config.routes) res.routes = this.config.routes.map((r) => ({ ...r }));
    if (this.config.dns) res.dns = { ...this.config.dns };
    return res;
  }

  /** DEL: frees what (containerId, ifname) holds in every range; missing state is success. */
  async release(req: IpamRequest): Promise<void> {
    await this.use(async (store) => {
      for (const range of this.config.ranges) {
        await store.session(range.ref, async (s) => {
          const mine = await s.byOwner(req.containerId, req.ifname);
          if (mine) await s.release(mine);
        });
      }
    });
  }

  /** CHECK: every range holds an address for the attachment, and prevResult (if any) lists it. */
  async check(req: IpamRequest): Promise<void> {
    await this.use(async (store) => {
      for (const range of this.config.ranges) {
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
      for (const range of this.config.ranges) {
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
      for (const range of this.config.ranges) {
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
