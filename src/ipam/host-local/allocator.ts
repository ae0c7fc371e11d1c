// host-local as an in-process allocator. Same files, same lock and same round-robin order as the Go
// plugin; better where users complain: ADD is idempotent, a failed ADD rolls back, GC and STATUS exist,
// files are never left empty, and ADD/DEL/CHECK do not read every file (see store.ts).

import { formatCIDR, formatIP, type IP, ipAdd, ipEquals, tryParseIP } from '../../spec/addr.js';
import type { Attachment } from '../../spec/config.js';
import { CniError, ErrorCode } from '../../spec/errors.js';
import type { IPConfig, Result } from '../../spec/result/types.js';
import { readResolvConf } from '../dns.js';
import {
  formatRangeSet,
  type IPRange,
  type RangeSet,
  rangeSetCapacity,
  rangeSetContains,
  rangeSetFor,
} from '../range.js';
import type { IpamAllocator, IpamGcReport, IpamNetConf, IpamRequest, IpamStatus } from '../types.js';
import { type HostLocalConfig, parseHostLocalConfig, requestedIPs } from './config.js';
import { type AllocationKey, HostLocalStore, type HostLocalStoreOptions } from './store.js';

/** Candidates in the Go plugin's order: from last_reserved+1 through the set, wrapping, gateways skipped. */
export function* roundRobin(set: RangeSet, last: IP | undefined): Generator<{ ip: IP; range: IPRange }> {
  let idx = 0;
  let cur: IP | undefined;
  let startIP: IP | undefined;
  if (last && rangeSetContains(set, last)) {
    idx = set.findIndex((r) => r.start.value <= last.value && last.value <= r.end.value);
    cur = last;
  }
  for (;;) {
    let r = set[idx]!;
    if (cur === undefined) {
      cur = r.start;
      startIP = cur;
    } else {
      if (cur.value === r.end.value) {
        idx = (idx + 1) % set.length;
        r = set[idx]!;
        cur = r.start;
      } else {
        cur = ipAdd(cur, 1n);
      }
      if (startIP === undefined) startIP = cur;
      else if (cur.value === startIP.value) return;
    }
    if (!ipEquals(cur, r.gateway)) yield { ip: cur, range: r };
  }
}

function ipConfig(ip: IP, r: IPRange): IPConfig {
  const c: IPConfig = { address: formatCIDR(ip, r.subnet.prefix) };
  if (r.gateway) c.gateway = formatIP(r.gateway);
  return c;
}

function keyOf(req: IpamRequest): AllocationKey {
  return { containerId: req.containerId, ifname: req.ifname };
}

/** The host-local allocator for one network config. */
export class HostLocalAllocator implements IpamAllocator {
  readonly config: HostLocalConfig;
  /** The on-disk state (tests reach into it). @internal */
  readonly store: HostLocalStore;
  private readonly netconf: IpamNetConf;

  constructor(netconf: IpamNetConf, opts: HostLocalStoreOptions = {}) {
    this.netconf = netconf;
    this.config = parseHostLocalConfig(netconf);
    this.store = new HostLocalStore(this.config.dataDir, this.config.name, opts);
  }

  /** ADD: one address per range set; returns what the attachment already holds when called again. */
  async allocate(req: IpamRequest): Promise<Result> {
    const requested = requestedIPs(this.netconf, req.args);
    const { rangeSets } = this.config;
    const dns = this.config.resolvConf ? readResolvConf(this.config.resolvConf) : undefined;
    const key = keyOf(req);
    const ips = await this.store.withLock(() => {
      const held = this.store.held(key, false);
      const left = [...requested];
      const out: Array<IPConfig | undefined> = [];
      // Plan first (stat only), record the plan in the index, then create the files: a crash at any
      // point leaves either nothing or files the index names, so a retried ADD finds them.
      const plan: Array<{ idx: number; ip: IP; range: IPRange }> = [];
      rangeSets.forEach((set, idx) => {
        const want = left.findIndex((ip) => rangeSetContains(set, ip));
        const reqIP = want >= 0 ? left.splice(want, 1)[0] : undefined;
        const have = held.find((ip) => rangeSetContains(set, ip));
        if (have) {
          if (reqIP && !ipEquals(reqIP, have)) {
            throw new CniError(
              ErrorCode.InvalidNetworkConfig,
              `requested IP ${formatIP(reqIP)} for ${req.containerId}/${req.ifname}, which already holds ${formatIP(have)} in range set ${idx}; DEL the attachment first`,
            );
          }
          out.push(ipConfig(have, rangeSetFor(set, have)!));
          return;
        }
        plan.push({ idx, ...(reqIP ? this.checkRequested(set, idx, reqIP) : this.pickNext(set, idx)) });
        out.push(undefined);
      });
      if (left.length > 0) {
        throw new CniError(
          ErrorCode.InvalidNetworkConfig,
          `requested IPs ${left.map((ip) => formatIP(ip)).join(', ')} are not inside any range set (${rangeSets.map(formatRangeSet).join(' | ')}), or two were requested from one set; request at most one address per range set, inside it`,
        );
      }
      if (plan.length === 0) return out as IPConfig[];
      this.store.writeEntry(key, [...held, ...plan.map((p) => p.ip)], req.podRef);
      this.store.opts.onStep?.('intent');
      const created: IP[] = [];
      try {
        for (const p of plan) {
          if (!this.store.reserve(p.ip, key, String(p.idx))) {
            // Someone not honouring the lock took it since the plan: fall back to probing.
            const again = requested.some((r) => ipEquals(r, p.ip))
              ? undefined
              : this.reserveNext(rangeSets[p.idx]!, p.idx, key);
            if (!again) throw this.unavailable(rangeSets[p.idx]!, p.ip);
            p.ip = again.ip;
            p.range = again.range;
            this.store.writeEntry(key, [...held, ...plan.map((q) => q.ip)], req.podRef);
          }
          created.push(p.ip);
          this.store.opts.onStep?.('reserved');
        }
      } catch (err) {
        for (const ip of created) this.store.remove(ip);
        this.store.writeEntry(key, held, req.podRef);
        throw err;
      }
      for (const p of plan) {
        const at = out.indexOf(undefined);
        out[at] = ipConfig(p.ip, p.range);
      }
      return out as IPConfig[];
    });
    const result: Result = { cniVersion: this.config.cniVersion, ips };
    if (this.config.routes.length > 0) result.routes = this.config.routes;
    if (dns) result.dns = dns;
    return result;
  }

  private checkRequested(set: RangeSet, idx: number, ip: IP): { ip: IP; range: IPRange } {
    const range = rangeSetFor(set, ip)!;
    if (ipEquals(ip, range.gateway)) {
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        `requested IP ${formatIP(ip)} is the gateway of range set ${idx}; request another address`,
      );
    }
    if (this.store.isTaken(ip)) throw this.unavailable(set, ip);
    return { ip, range };
  }

  private unavailable(set: RangeSet, ip: IP): CniError {
    return new CniError(
      ErrorCode.InvalidNetworkConfig,
      `requested IP address ${formatIP(ip)} is not available in range set ${formatRangeSet(set)}: it is held by ${describeOwner(this.store.owner(ip))}; request a free address or DEL its holder`,
    );
  }

  private exhausted(set: RangeSet, idx: number): CniError {
    // Code 999 like the Go plugin, whose callers match on the message, not the code.
    return new CniError(
      ErrorCode.Internal,
      `failed to allocate for range ${idx}: no IP addresses available in range set: ${formatRangeSet(set)}; free addresses (DEL, or GC stale attachments) or widen the range`,
    );
  }

  private pickNext(set: RangeSet, idx: number): { ip: IP; range: IPRange } {
    for (const c of roundRobin(set, this.store.lastReserved(String(idx)))) {
      if (!this.store.isTaken(c.ip)) return c;
    }
    throw this.exhausted(set, idx);
  }

  private reserveNext(set: RangeSet, idx: number, key: AllocationKey): { ip: IP; range: IPRange } {
    for (const c of roundRobin(set, this.store.lastReserved(String(idx)))) {
      if (this.store.reserve(c.ip, key, String(idx))) return c;
    }
    throw this.exhausted(set, idx);
  }

  /** DEL: removes every address file of the attachment; nothing held is success. */
  async release(req: IpamRequest): Promise<void> {
    const key = keyOf(req);
    await this.store.withLock(() => {
      for (const ip of this.store.held(key)) {
        this.store.remove(ip);
        this.store.opts.onStep?.('released');
      }
      this.store.removeEntry(key);
    });
  }

  /** CHECK: the attachment holds an address in every range set, and each prevResult address in our sets. */
  async check(req: IpamRequest): Promise<void> {
    const key = keyOf(req);
    const held = await this.store.withLock(() => this.store.held(key));
    if (held.length === 0) {
      throw new CniError(
        ErrorCode.UnknownContainer,
        `host-local: no address is held by container ${req.containerId} interface ${req.ifname} in ${this.store.dir}; it was never added or was released`,
      );
    }
    for (const ipc of req.prevResult?.ips ?? []) {
      const ip = parseAddress(ipc.address);
      if (!ip || !this.config.rangeSets.some((s) => rangeSetContains(s, ip))) continue;
      if (!held.some((h) => ipEquals(h, ip))) {
        throw new CniError(
          ErrorCode.InvalidNetworkConfig,
          `host-local: prevResult address ${ipc.address} is not held by container ${req.containerId} interface ${req.ifname} (it holds ${held.map((ip) => formatIP(ip)).join(', ')})`,
        );
      }
    }
  }

  /** GC: frees every address file not owned by a valid attachment (empty files included). */
  async gc(valid: readonly Attachment[]): Promise<IpamGcReport> {
    const keep = new Set(valid.map((v) => `${v.containerId.trim()}\r\n${v.ifname}`));
    const keepIds = new Set(valid.map((v) => v.containerId.trim()));
    return this.store.withLock(() => {
      const released: string[] = [];
      for (const a of this.store.scan()) {
        const ok =
          a.ifname === undefined
            ? a.containerId !== '' && keepIds.has(a.containerId)
            : keep.has(`${a.containerId}\r\n${a.ifname}`);
        if (!ok) {
          this.store.remove(a.ip);
          released.push(formatIP(a.ip));
        }
      }
      for (const k of this.store.indexKeys()) {
        if (!keep.has(`${k.containerId.trim()}\r\n${k.ifname}`)) this.store.removeEntry(k);
      }
      this.store.removeTempFiles();
      return { released };
    });
  }

  /** STATUS: free addresses per range set; CniError 50 when a set has none left. */
  async status(): Promise<IpamStatus> {
    const addrs = this.store.addresses();
    const pools = this.config.rangeSets.map((set) => {
      const used = addrs.filter(
        (ip) => rangeSetContains(set, ip) && !set.some((r) => ipEquals(r.gateway, ip)),
      ).length;
      const capacity = rangeSetCapacity(set);
      return { ranges: formatRangeSet(set), capacity, used, free: capacity - BigInt(used) };
    });
    const full = pools.find((p) => p.free <= 0n);
    if (full) {
      throw new CniError(
        ErrorCode.PluginNotAvailable,
        `host-local: no IP addresses left in range set ${full.ranges} (${full.used} of ${full.capacity} used); free addresses (GC) or widen the range`,
      );
    }
    return { pools: pools.map((p) => ({ ...p, capacity: String(p.capacity), free: String(p.free) })) };
  }
}

function describeOwner(content: string | undefined): string {
  const t = (content ?? '').trim();
  if (t === '') return 'an empty file (a crashed writer; GC frees it)';
  const nl = t.indexOf('\r\n');
  return nl < 0 ? `container ${t}` : `container ${t.slice(0, nl)} interface ${t.slice(nl + 2)}`;
}

function parseAddress(cidr: string): IP | undefined {
  const slash = cidr.indexOf('/');
  return tryParseIP(slash < 0 ? cidr : cidr.slice(0, slash));
}

/** Factory for the registry: validates the config and returns the allocator. */
export function createHostLocal(config: IpamNetConf, opts?: HostLocalStoreOptions): HostLocalAllocator {
  return new HostLocalAllocator(config, opts);
}
