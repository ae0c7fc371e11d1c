// Ranges and range sets with host-local's defaults and checks:
//   canonicalizeRange(cfg, field)        defaults gateway=network+1, start=network+1 (the gateway is skipped,
//                                        so .2 is handed out first), end=broadcast-1 (v4) / all-ones (v6);
//                                        refuses /31, /32, /127, /128 and start/end/gateway outside the subnet
//   canonicalizeRangeSet(cfgs, field)    one family per set, no two [start,end] intervals overlapping
//   checkRangeSetsDisjoint(sets, field)  no overlap across sets
//   rangeContains / rangeSetFor / rangeSetContains / rangeSize / formatRange / formatRangeSet

import {
  compareIP,
  familyBits,
  formatIP,
  formatSubnet,
  type IP,
  ipAdd,
  parseIP,
  parseSubnet,
  type Subnet,
  subnetContains,
  subnetLast,
  subnetNetwork,
} from '../spec/addr.js';
import { CniError, ErrorCode } from '../spec/errors.js';

/** A range as written in config (host-local `ranges[][]` entries and the legacy top-level fields). */
export interface RangeConfig {
  subnet: string;
  rangeStart?: string;
  rangeEnd?: string;
  gateway?: string;
}

/** A canonical range: start and end are inclusive and inside the subnet; gateway is never handed out. */
export interface IPRange {
  readonly subnet: Subnet;
  readonly start: IP;
  readonly end: IP;
  readonly gateway?: IP;
}

/** Ranges that form one pool; an allocation returns one address per set. */
export type RangeSet = readonly IPRange[];

function bad(msg: string): CniError {
  return new CniError(ErrorCode.InvalidNetworkConfig, msg);
}

/** Options that relax host-local's defaults for other allocators. */
export interface CanonicalizeOptions {
  /** Fill in network+1 when no gateway is given (host-local: true). */
  defaultGateway?: boolean | undefined;
}

/** Validates one range and fills in host-local's defaults. */
export function canonicalizeRange(cfg: RangeConfig, field: string, opts: CanonicalizeOptions = {}): IPRange {
  if (typeof cfg !== 'object' || cfg === null) {
    throw bad(`${field}: expected an object like {"subnet": "10.1.0.0/16"}, got ${JSON.stringify(cfg)}`);
  }
  if (cfg.subnet === undefined || cfg.subnet === '') {
    throw bad(`${field}.subnet: missing; every range needs a subnet such as "10.1.0.0/16"`);
  }
  const subnet = parseSubnet(cfg.subnet, `${field}.subnet`);
  if (subnet.prefix > familyBits(subnet.family) - 2) {
    throw bad(
      `${field}.subnet: ${JSON.stringify(cfg.subnet)} is too small to allocate from; use a /${familyBits(subnet.family) - 2} or larger`,
    );
  }
  const inside = (ipField: string, text: string | undefined): IP | undefined => {
    if (text === undefined || text === null || text === '') return undefined;
    const ip = parseIP(text, `${field}.${ipField}`);
    if (!subnetContains(subnet, ip)) {
      throw bad(
        `${field}.${ipField}: ${JSON.stringify(text)} is not in subnet ${formatSubnet(subnet)}; pick an address inside it`,
      );
    }
    return ip;
  };
  const first = ipAdd(subnetNetwork(subnet), 1n);
  const gateway = inside('gateway', cfg.gateway) ?? (opts.defaultGateway === false ? undefined : first);
  const start = inside('rangeStart', cfg.rangeStart) ?? first;
  const end = inside('rangeEnd', cfg.rangeEnd) ?? subnetLast(subnet);
  if (compareIP(start, end) > 0) {
    throw bad(
      `${field}: rangeStart ${formatIP(start)} is after rangeEnd ${formatIP(end)}; swap them or widen the range`,
    );
  }
  return gateway ? { subnet, start, end, gateway } : { subnet, start, end };
}

/** True when the address lies in [start, end] of the range. */
export function rangeContains(r: IPRange, ip: IP): boolean {
  return ip.family === r.start.family && ip.value >= r.start.value && ip.value <= r.end.value;
}

/** Number of addresses in [start, end] (the gateway included). */
export function rangeSize(r: IPRange): bigint {
  return r.end.value - r.start.value + 1n;
}

/** True when the [start, end] intervals intersect. */
export function rangesOverlap(a: IPRange, b: IPRange): boolean {
  return a.start.family === b.start.family && a.start.value <= b.end.value && b.start.value <= a.end.value;
}

/** "start-end". */
export function formatRange(r: IPRange): string {
  return `${formatIP(r.start)}-${formatIP(r.end)}`;
}

/** "a-b,c-d" (the reference's exhaustion message format). */
export function formatRangeSet(set: RangeSet): string {
  return set.map(formatRange).join(',');
}

/** Validates a set: non-empty, one family, no overlapping intervals. */
export function canonicalizeRangeSet(
  cfgs: readonly RangeConfig[],
  field: string,
  opts: CanonicalizeOptions = {},
): RangeSet {
  if (!Array.isArray(cfgs) || cfgs.length === 0) {
    throw bad(`${field}: empty range set; give at least one range like [{"subnet": "10.1.0.0/16"}]`);
  }
  const set = cfgs.map((c, i) => canonicalizeRange(c, `${field}[${i}]`, opts));
  for (let i = 0; i < set.length; i++) {
    const a = set[i]!;
    if (a.start.family !== set[0]!.start.family) {
      throw bad(
        `${field}[${i}]: mixed address families in one range set; put IPv4 and IPv6 in separate sets`,
      );
    }
    for (let j = 0; j < i; j++) {
      const b = set[j]!;
      if (rangesOverlap(a, b)) {
        throw bad(
          `${field}[${i}]: range ${formatRange(a)} overlaps ${field}[${j}] ${formatRange(b)}; make the rangeStart-rangeEnd intervals disjoint`,
        );
      }
    }
  }
  return set;
}

/** Refuses two sets that share any address. */
export function checkRangeSetsDisjoint(sets: readonly RangeSet[], field: string): void {
  for (let i = 0; i < sets.length; i++) {
    for (let j = 0; j < i; j++) {
      for (const a of sets[i]!) {
        for (const b of sets[j]!) {
          if (rangesOverlap(a, b)) {
            throw bad(
              `${field}[${i}]: range set ${i} overlaps with range set ${j} (${formatRange(a)} and ${formatRange(b)}); an address may belong to one set only`,
            );
          }
        }
      }
    }
  }
}

/** The range of the set holding the address, if any. */
export function rangeSetFor(set: RangeSet, ip: IP): IPRange | undefined {
  return set.find((r) => rangeContains(r, ip));
}

/** True when some range of the set holds the address. */
export function rangeSetContains(set: RangeSet, ip: IP): boolean {
  return rangeSetFor(set, ip) !== undefined;
}

/** Number of addresses the set can hand out (gateways excluded). */
export function rangeSetCapacity(set: RangeSet): bigint {
  let n = 0n;
  for (const r of set) n += rangeSize(r) - (r.gateway && rangeContains(r, r.gateway) ? 1n : 0n);
  return n;
}
