// State of the in-memory kernel: namespaces, links, addresses, routes, rules and sysctls, plus the
// pure helpers that turn it into the same `Link`/`Address`/… shapes the Linux backend parses.
import { type Errno, NetlinkError } from '../errors.js';
import type { Address, Family, Link, Qdisc, RouteEntry, RuleEntry } from '../types.js';

/** A link in the model; cross-references are object references, so moves keep them valid. */
export interface MLink {
  ns: MNetns;
  index: number;
  name: string;
  kind?: string | undefined;
  up: boolean;
  mtu: number;
  mtuByUser: boolean;
  mac: string;
  macByUser: boolean;
  master?: MLink | undefined;
  alias?: string | undefined;
  /** veth peer. */
  peer?: MLink | undefined;
  /** Lower device of macvlan/ipvlan/vlan/vxlan. */
  lower?: MLink | undefined;
  promisc: boolean;
  allmulti: boolean;
  txqlen: number;
  hairpin: boolean;
  isolated: boolean;
  details: Pick<
    Link,
    | 'macvlanMode'
    | 'bcQueueLen'
    | 'ipvlanMode'
    | 'vlanId'
    | 'vni'
    | 'vlanFiltering'
    | 'vrfTable'
    | 'multiQueue'
    | 'owner'
    | 'group'
    | 'vnetHdr'
    | 'persist'
  >;
  addrs: MAddr[];
  /** Per-interface sysctl leaves that differ from the netns defaults. */
  sysctl: Map<string, string>;
  /** Bridge VLANs of a port (or of the bridge itself), by vid. */
  vlans: Map<number, { pvid: boolean; untagged: boolean }>;
  /** Traffic control: root tbf, ingress qdisc and its mirred redirect targets. */
  tc: {
    tbf?: { rateBytes: number; burstBytes: number; latencyUs: number } | undefined;
    ingress: boolean;
    redirects: MLink[];
  };
}

/** An address in the model. */
export interface MAddr {
  ip: string;
  prefix: number;
  family: Family;
  scope: string;
  tentative: boolean;
  dadFailed: boolean;
}

/** A network namespace in the model. */
export interface MNetns {
  path: string;
  links: Map<number, MLink>;
  nextIndex: number;
  routes: RouteEntry[];
  rules: RuleEntry[];
  /** Global sysctls and the 'all'/'default' conf entries. */
  sysctl: Map<string, string>;
  /** netnsid this netns uses for other namespaces (allocated on first use, like the kernel). */
  nsids: Map<MNetns, number>;
}

/** The whole model. */
export interface MState {
  netns: Map<string, MNetns>;
  hostPath: string;
  kinds: ReadonlySet<string>;
  bridgeVlans: boolean;
  extraSysctls: Record<string, string>;
}

/** Throws a NetlinkError for the op being applied; the engine fills in op and netns. */
export class ModelError extends Error {
  constructor(
    readonly errno: Errno,
    detail = '',
  ) {
    super(detail);
  }
}

/** Shorthand for throwing a ModelError. */
export function fail(errno: Errno, detail = ''): never {
  throw new ModelError(errno, detail);
}

/** Rewraps a ModelError as the public NetlinkError. */
export function toNetlinkError(e: ModelError, op: string, netns: string): NetlinkError {
  return new NetlinkError(e.errno, op, netns, e.message || undefined);
}

/** Per-interface sysctl leaves and their defaults (as on a 6.x kernel). */
export const CONF_DEFAULTS: Record<'ipv4' | 'ipv6', Record<string, string>> = {
  ipv4: {
    forwarding: '0',
    arp_notify: '0',
    route_localnet: '0',
    rp_filter: '0',
    proxy_arp: '0',
    accept_redirects: '1',
    send_redirects: '1',
    arp_ignore: '0',
    arp_announce: '0',
  },
  ipv6: {
    forwarding: '0',
    disable_ipv6: '0',
    accept_ra: '1',
    accept_dad: '1',
    enhanced_dad: '1',
    keep_addr_on_down: '0',
    ndisc_notify: '0',
    autoconf: '1',
    accept_redirects: '1',
  },
};

/** Global (non-conf) sysctls every netns has. */
export const GLOBAL_DEFAULTS: Record<string, string> = {
  'net/ipv4/ip_forward': '0',
  'net/ipv4/ip_local_port_range': '32768\t60999',
  'net/ipv4/ping_group_range': '0\t2147483647',
  'net/core/somaxconn': '4096',
};

/** A new netns with only a down loopback, as `unshare(CLONE_NEWNET)` gives. */
export function newNetns(path: string): MNetns {
  const ns: MNetns = {
    path,
    links: new Map(),
    nextIndex: 1,
    routes: [],
    rules: [],
    sysctl: new Map(),
    nsids: new Map(),
  };
  const lo = newLink(ns, 'lo', undefined, 65536, '00:00:00:00:00:00');
  ns.links.set(lo.index, lo);
  ns.rules.push(
    { family: 4, priority: 0, table: 255 },
    { family: 4, priority: 32766, table: 254 },
    { family: 4, priority: 32767, table: 253 },
    { family: 6, priority: 0, table: 255 },
    { family: 6, priority: 32766, table: 254 },
  );
  return ns;
}

/** A detached link with defaults; the caller inserts it into `ns.links`. */
export function newLink(
  ns: MNetns,
  name: string,
  kind: string | undefined,
  mtu = 1500,
  mac = randomMac(),
): MLink {
  return {
    ns,
    index: allocIndex(ns),
    name,
    kind,
    up: false,
    mtu,
    mtuByUser: false,
    mac,
    macByUser: false,
    promisc: false,
    allmulti: false,
    txqlen: 1000,
    hairpin: false,
    isolated: false,
    details: {},
    addrs: [],
    sysctl: new Map(),
    tc: { ingress: false, redirects: [] },
    vlans: new Map(),
  };
}

/** Next free ifindex: the kernel allocates cyclically per netns, skipping indices in use. */
export function allocIndex(ns: MNetns): number {
  while (ns.links.has(ns.nextIndex)) ns.nextIndex++;
  return ns.nextIndex++;
}

/** A random locally administered unicast MAC, as the kernel picks for virtual links. */
export function randomMac(): string {
  const b = Array.from({ length: 6 }, () => Math.floor(Math.random() * 256));
  b[0] = (b[0]! & 0xfe) | 0x02;
  return b.map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** The link named `name` in `ns`, or undefined. */
export function byName(ns: MNetns, name: string): MLink | undefined {
  for (const l of ns.links.values()) if (l.name === name) return l;
  return undefined;
}

/** The link named `name` in `ns`; ENODEV when missing. */
export function mustLink(ns: MNetns, name: string): MLink {
  return byName(ns, name) ?? fail('ENODEV', `Cannot find device "${name}"`);
}

/** Whether the link has carrier (IFF_LOWER_UP), following the kernel's rules per kind. */
export function carrier(l: MLink): boolean {
  if (!l.up) return false;
  switch (l.kind) {
    case 'veth':
      return !!l.peer?.up;
    case 'bridge':
      return [...l.ns.links.values()].some((p) => p.master === l && carrier(p));
    case 'macvlan':
    case 'ipvlan':
    case 'vlan':
      return !!l.lower && carrier(l.lower);
    case 'tap':
    case 'tun':
      // No process has the device open in the model, so no carrier (NO-CARRIER, as a fresh tap).
      return false;
    default:
      return true;
  }
}

function operstate(l: MLink): string {
  if (!l.up) return 'DOWN';
  if (l.kind === undefined || l.kind === 'ifb' || l.kind === 'dummy' || l.kind === 'vxlan')
    return l.name === 'lo' || l.kind !== undefined ? 'UNKNOWN' : 'UP';
  if (carrier(l)) return 'UP';
  // The kernel reports LOWERLAYERDOWN only when the lower/peer device is in the same netns.
  const other = l.peer ?? l.lower;
  return other && other.ns === l.ns ? 'LOWERLAYERDOWN' : 'DOWN';
}

function nsid(from: MNetns, to: MNetns): number {
  let id = from.nsids.get(to);
  if (id === undefined) {
    id = from.nsids.size;
    from.nsids.set(to, id);
  }
  return id;
}

/** The public view of a link. */
export function viewLink(l: MLink): Link {
  const out: Link = {
    index: l.index,
    name: l.name,
    up: l.up,
    lowerUp: carrier(l),
    operstate: operstate(l),
    mac: l.mac,
    mtu: l.mtu,
    promisc: l.promisc,
    allmulti: l.allmulti,
    txqlen: l.txqlen,
    ...l.details,
  };
  if (l.kind) out.kind = l.kind;
  if (l.master) out.master = l.master.name;
  if (l.alias) out.alias = l.alias;
  const other = l.peer ?? (l.kind === 'vxlan' ? undefined : l.lower);
  if (other) {
    out.parentIndex = other.index;
    if (other.ns !== l.ns) out.parentNetnsId = nsid(l.ns, other.ns);
  }
  if (l.master?.kind === 'bridge') {
    out.hairpin = l.hairpin;
    out.isolated = l.isolated;
  }
  return out;
}

/** The public view of every address in a netns, in link-index order; settles finished DAD. */
export function viewAddrs(ns: MNetns): Address[] {
  const out: Address[] = [];
  for (const l of [...ns.links.values()].sort((a, b) => a.index - b.index)) {
    for (const a of l.addrs) {
      out.push({
        link: l.name,
        index: l.index,
        family: a.family,
        cidr: `${a.ip}/${a.prefix}`,
        ip: a.ip,
        prefixLength: a.prefix,
        scope: a.scope,
        tentative: a.tentative,
        dadFailed: a.dadFailed,
      });
      // DAD in the model completes once it has been observed running with carrier present.
      if (a.tentative && !a.dadFailed && carrier(l)) a.tentative = false;
    }
  }
  return out;
}

/** The public view of a netns's qdiscs, in ifindex order, root before ingress (like `tc qdisc show`). */
export function viewQdiscs(ns: MNetns): Qdisc[] {
  const out: Qdisc[] = [];
  for (const l of [...ns.links.values()].sort((a, b) => a.index - b.index)) {
    if (l.tc.tbf) out.push({ link: l.name, kind: 'tbf', handle: '1:', root: true, ...l.tc.tbf });
    if (l.tc.ingress) out.push({ link: l.name, kind: 'ingress', handle: 'ffff:', root: false });
  }
  return out;
}
