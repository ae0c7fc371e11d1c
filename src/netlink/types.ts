// The one netlink interface plugin logic programs against, and the data it reads and writes.
//
// Model: a `NetnsOps` handle belongs to one network namespace. Write methods (create, set, add,
// delete, sysctl writes) are *queued* and return immediately; reads (`links()`, `addresses()`, …),
// `flush()` and the end of an `inNetns` callback run everything queued so far, in order, and stop at
// the first failure, which is thrown from that read/flush. The Linux backend turns one flush into one
// process spawn (`ip -batch`, under `nsenter` for another netns), so "do five things in the
// container" costs one spawn instead of five. The memory backend applies the same queue to a model.

import type { IPFamily } from '../spec/addr.js';

/** Link kinds the SDK can create. */
export type LinkKind =
  | 'bridge'
  | 'veth'
  | 'macvlan'
  | 'ipvlan'
  | 'vlan'
  | 'vxlan'
  | 'ifb'
  | 'dummy'
  | 'tap'
  | 'tun'
  | 'vrf';

/** Every creatable link kind, in probe order. */
export const LINK_KINDS: readonly LinkKind[] = [
  'bridge',
  'veth',
  'macvlan',
  'ipvlan',
  'vlan',
  'vxlan',
  'ifb',
  'dummy',
  'tap',
  'tun',
  'vrf',
];

/** macvlan modes (the kernel's names). */
export type MacvlanMode = 'bridge' | 'private' | 'vepa' | 'passthru' | 'source';
/** ipvlan modes. */
export type IpvlanMode = 'l2' | 'l3' | 'l3s';

/** The fields every {@link LinkSpec} has, whatever its kind. */
export interface LinkSpecBase {
  /** Interface name, 1–15 characters, no '/', ':' or whitespace. */
  name: string;
  mtu?: number | undefined;
  /** MAC address, `aa:bb:cc:dd:ee:ff`. */
  mac?: string | undefined;
  /** Create the link directly inside this netns (a path); the parent is looked up where the call runs. */
  netns?: string | undefined;
}

/** What to create; a discriminated union on `kind`. */
export type LinkSpec =
  | (LinkSpecBase & { kind: 'bridge'; vlanFiltering?: boolean | undefined })
  | (LinkSpecBase & {
      kind: 'veth';
      peerName: string;
      /** Netns (path) of the peer; default: the same netns as the link. */
      peerNetns?: string | undefined;
      peerMac?: string | undefined;
      peerMtu?: number | undefined;
    })
  | (LinkSpecBase & {
      kind: 'macvlan';
      parent: string;
      mode?: MacvlanMode | undefined;
      /** Broadcast/multicast queue length requested (IFLA_MACVLAN_BC_QUEUE_LEN); kernel default 1000. */
      bcQueueLen?: number | undefined;
    })
  | (LinkSpecBase & { kind: 'ipvlan'; parent: string; mode?: IpvlanMode | undefined })
  | (LinkSpecBase & { kind: 'vlan'; parent: string; vlanId: number })
  | (LinkSpecBase & {
      kind: 'vxlan';
      vni: number;
      parent?: string | undefined;
      remote?: string | undefined;
      local?: string | undefined;
      group?: string | undefined;
      port?: number | undefined;
      learning?: boolean | undefined;
    })
  | (LinkSpecBase & { kind: 'ifb' })
  | (LinkSpecBase & { kind: 'dummy' })
  | (LinkSpecBase & {
      /**
       * A persistent tap (Ethernet frames) or tun (IP packets) device, made through /dev/net/tun as
       * `ip tuntap add` makes it (the kernel refuses to create these over rtnetlink). `netns` is not
       * accepted: create it inside the netns it belongs to. A tun has no MAC.
       */
      kind: 'tap' | 'tun';
      /** IFF_MULTI_QUEUE: a reader may attach several queues. */
      multiQueue?: boolean | undefined;
      /** TUNSETOWNER: the uid allowed to attach (default: anyone with CAP_NET_ADMIN). */
      owner?: number | undefined;
      /** TUNSETGROUP: the gid allowed to attach. */
      group?: number | undefined;
      /** IFF_VNET_HDR: frames carry a virtio-net header (what QEMU's vhost-net uses). */
      vnetHdr?: boolean | undefined;
    })
  | (LinkSpecBase & {
      /** An L3 master device (VRF): its ports' routes live in `table`. */
      kind: 'vrf';
      /** IFLA_VRF_TABLE: the routing table of the VRF, 1..2^32-1. */
      table: number;
    });

/** Attributes `setLink` can change in one request; omitted fields stay as they are. */
export interface LinkSettings {
  up?: boolean | undefined;
  mtu?: number | undefined;
  mac?: string | undefined;
  /** Enslave to this bridge or VRF; `null` releases the link from its master. */
  master?: string | null | undefined;
  promisc?: boolean | undefined;
  allmulti?: boolean | undefined;
  txqlen?: number | undefined;
  /** IFLA_IFALIAS; `null` or '' clears it. No whitespace or quotes. */
  alias?: string | null | undefined;
  /** Bridge-port hairpin mode (the link must be a bridge port). */
  hairpin?: boolean | undefined;
  /** Bridge-port isolation (the link must be a bridge port). */
  isolated?: boolean | undefined;
}

/** A link as read back from a netns. */
export interface Link {
  index: number;
  name: string;
  /** IFLA_INFO_KIND ('veth', 'bridge', …); undefined for loopback and physical devices. */
  kind?: string;
  /** Administratively up (IFF_UP). */
  up: boolean;
  /** Carrier present (IFF_LOWER_UP). */
  lowerUp: boolean;
  /** RFC 2863 operational state as the kernel reports it ('UP', 'DOWN', 'LOWERLAYERDOWN', 'UNKNOWN'). */
  operstate: string;
  mac: string;
  mtu: number;
  /** Name of the master (bridge or VRF) when enslaved. */
  master?: string;
  alias?: string;
  /** IFLA_LINK: the veth peer's or the parent's ifindex, in the netns `parentNetnsId` names if set. */
  parentIndex?: number;
  /** Set when the peer/parent lives in another netns (the kernel's netnsid for it). */
  parentNetnsId?: number;
  promisc: boolean;
  allmulti: boolean;
  txqlen: number;
  /** Bridge-port attributes, present only for bridge ports. */
  hairpin?: boolean;
  isolated?: boolean;
  /** Kind-specific details the SDK understands. */
  macvlanMode?: MacvlanMode;
  /** macvlan: the broadcast queue length this link requested (IFLA_MACVLAN_BC_QUEUE_LEN). */
  bcQueueLen?: number;
  ipvlanMode?: IpvlanMode;
  vlanId?: number;
  vni?: number;
  vlanFiltering?: boolean;
  /** vrf: its routing table (IFLA_VRF_TABLE). */
  vrfTable?: number;
  /**
   * tap/tun: the kernel reports both as IFLA_INFO_KIND 'tun'; `kind` says which ('tap' or 'tun')
   * from IFLA_TUN_TYPE. These are the device's IFLA_TUN_* flags; owner/group only when set.
   */
  multiQueue?: boolean;
  owner?: number;
  group?: number;
  vnetHdr?: boolean;
  persist?: boolean;
}

/** Address family. */
export type Family = IPFamily;

/** An address on a link. */
export interface Address {
  /** Owning link's name and index. */
  link: string;
  index: number;
  family: Family;
  /** Address with prefix length, host bits kept: '10.1.2.3/24'. */
  cidr: string;
  ip: string;
  prefixLength: number;
  scope: string;
  /** IPv6 duplicate address detection still running. */
  tentative: boolean;
  /** IPv6 duplicate address detection found a duplicate. */
  dadFailed: boolean;
}

/** Options for adding an address. */
export interface AddressOptions {
  /** Skip IPv6 DAD (IFA_F_NODAD). */
  noDad?: boolean | undefined;
}

/** A route to add, replace or delete. `dst` is a CIDR or 'default'; family is inferred from dst/gw. */
export interface RouteSpec {
  dst: string;
  gw?: string | undefined;
  dev?: string | undefined;
  /** Routing table id; default main (254). */
  table?: number | undefined;
  metric?: number | undefined;
  /** 'global' (default with a gateway), 'link' (default without), 'host'. */
  scope?: 'global' | 'link' | 'host' | undefined;
  /** Preferred source address. */
  src?: string | undefined;
  mtu?: number | undefined;
  advmss?: number | undefined;
  /**
   * Who installed the route (rtm_protocol): default 'boot', as `ip route` does; 'kernel' when
   * copying a kernel-made prefix route elsewhere as it was (what sbr does).
   */
  protocol?: RouteProtocol | undefined;
  /** Force 'default' routes to this family when no gateway tells it. */
  family?: Family | undefined;
}

/** Route protocols a RouteSpec may name (rtnetlink.h numbers 2, 3, 4). */
export type RouteProtocol = 'kernel' | 'boot' | 'static';

/** A route as read back. */
export interface RouteEntry {
  family: Family;
  /** Normalized: '0.0.0.0/0' or '::/0' for default, otherwise 'a.b.c.d/len'. */
  dst: string;
  gw?: string;
  dev?: string;
  table: number;
  metric?: number;
  scope: string;
  src?: string;
  mtu?: number;
  /** 'kernel', 'boot', 'static', … */
  protocol?: string;
  /** 'unicast', 'local', 'broadcast', … */
  type: string;
  /** The nexthops of a multipath route (then `gw` and `dev` are unset), in kernel order. */
  nexthops?: RouteNexthop[];
}

/** One nexthop of a multipath route. */
export interface RouteNexthop {
  gw?: string;
  dev?: string;
  /** Relative weight, 1 by default. */
  weight: number;
}

/** Filter for listing routes. */
export interface RouteFilter {
  family?: Family | undefined;
  /** Table id; default main (254). */
  table?: number | undefined;
  dev?: string | undefined;
}

/** A policy routing rule. */
export interface RuleSpec {
  family: Family;
  priority?: number | undefined;
  /** Source prefix ('10.0.0.5/32'); omitted = all. */
  src?: string | undefined;
  dst?: string | undefined;
  table: number;
}

/** A rule as read back. */
export interface RuleEntry {
  family: Family;
  priority: number;
  src?: string;
  dst?: string;
  table: number;
}

/** Token-bucket shaping as the bandwidth plugin configures it. */
export interface TbfSpec {
  /** Rate in bits per second. */
  rateBits: number;
  /** Bucket size in bytes. */
  burstBytes: number;
  /** Queueing latency bound in milliseconds (the Go plugin uses 25). */
  latencyMs: number;
}

/** A qdisc as read back (kernel defaults with handle 0: are left out). */
export interface Qdisc {
  link: string;
  kind: string;
  /** '1:', 'ffff:', … */
  handle: string;
  root: boolean;
  /** tbf only: rate in bytes per second, bucket in bytes, latency in microseconds. */
  rateBytes?: number;
  burstBytes?: number;
  latencyUs?: number;
}

/** A VLAN on a bridge port (or on the bridge itself with `self`). */
export interface BridgeVlan {
  vid: number;
  /** Untagged ingress traffic is classified into this VLAN. */
  pvid: boolean;
  /** Egress traffic leaves untagged. */
  untagged: boolean;
}

/** Options for waiting on IPv6 DAD. */
export interface DadWaitOptions {
  timeoutMs?: number | undefined;
  intervalMs?: number | undefined;
}

/** Operations inside one network namespace. Writes are queued; reads and `flush()` execute the queue. */
export interface NetnsOps {
  /** Path of the netns this handle works in. */
  readonly netns: string;

  /** Create a link; `existsOk` makes an existing link of that name a no-op (as bridge does for its bridge). */
  createLink(spec: LinkSpec, opts?: { existsOk?: boolean | undefined }): void;
  /** Delete a link; a veth takes its peer with it. `missingOk` makes a missing link a no-op. */
  deleteLink(name: string, opts?: { missingOk?: boolean | undefined }): void;
  setLink(name: string, settings: LinkSettings): void;
  renameLink(name: string, newName: string): void;
  /** Move a link into another netns (path). Its addresses are dropped, as the kernel does. */
  moveLink(name: string, netns: string): void;
  addAddress(link: string, cidr: string, opts?: AddressOptions & { existsOk?: boolean | undefined }): void;
  deleteAddress(link: string, cidr: string, opts?: { missingOk?: boolean | undefined }): void;
  addRoute(route: RouteSpec, opts?: { existsOk?: boolean | undefined }): void;
  /** Add or overwrite the route with the same dst/table/metric (NLM_F_REPLACE). */
  replaceRoute(route: RouteSpec): void;
  /**
   * Add a route even when one with the same destination, table and metric exists
   * (NLM_F_APPEND, `ip route append`): an IPv6 route with a gateway joins the existing one as
   * another nexthop (multipath); an IPv4 route is added after it.
   */
  appendRoute(route: RouteSpec): void;
  /**
   * Add a route with create-without-exclusive semantics (NLM_F_CREATE alone, Go's
   * `netlink.RouteAddEcmp`, `ip route prepend`), as the reference installs result routes. IPv4: a
   * route of the same dst/tos/metric with another nexthop becomes a second entry, placed first; an
   * identical one is EEXIST. IPv6: a gateway route joins an existing gateway route of the same key
   * as another nexthop (multipath); the same nexthop again is EEXIST.
   */
  addRouteEcmp(route: RouteSpec): void;
  deleteRoute(route: RouteSpec, opts?: { missingOk?: boolean | undefined }): void;
  addRule(rule: RuleSpec, opts?: { existsOk?: boolean | undefined }): void;
  deleteRule(rule: RuleSpec, opts?: { missingOk?: boolean | undefined }): void;
  /** Install (or replace) a root tbf qdisc with handle 1: on `link`. */
  setTbf(link: string, spec: TbfSpec): void;
  /** Add the ingress qdisc (handle ffff:) to `link`. */
  addIngressQdisc(link: string, opts?: { existsOk?: boolean | undefined }): void;
  /** Redirect everything arriving on `link` to `to`'s egress (u32 match-all + mirred), as bandwidth does into an ifb. */
  redirectIngress(link: string, to: string): void;
  /** Delete the root or ingress qdisc of `link`. */
  deleteQdisc(link: string, which: 'root' | 'ingress', opts?: { missingOk?: boolean | undefined }): void;
  /** Add a VLAN to a bridge port (`self`: to the bridge device); `pvid` moves the PVID here. */
  addBridgeVlan(
    link: string,
    vid: number,
    opts?: { pvid?: boolean | undefined; untagged?: boolean | undefined; self?: boolean | undefined },
  ): void;
  /** Remove a VLAN from a bridge port (or the bridge with `self`). */
  deleteBridgeVlan(
    link: string,
    vid: number,
    opts?: { self?: boolean | undefined; missingOk?: boolean | undefined },
  ): void;
  /** Write `/proc/sys/<key>` in this netns; key as 'net/ipv4/ip_forward' or 'net.ipv4.ip_forward'. */
  setSysctl(key: string, value: string | number): void;

  /** Execute everything queued; throws the first failure. */
  flush(): Promise<void>;
  links(): Promise<Link[]>;
  /** The link by name or index, or undefined. */
  findLink(nameOrIndex: string | number): Promise<Link | undefined>;
  /** The link by name or index; throws ENODEV naming it when missing. */
  getLink(nameOrIndex: string | number): Promise<Link>;
  addresses(filter?: { link?: string | undefined; family?: Family | undefined }): Promise<Address[]>;
  routes(filter?: RouteFilter): Promise<RouteEntry[]>;
  rules(family: Family): Promise<RuleEntry[]>;
  /** Non-default qdiscs of every link (or of `link`). */
  qdiscs(link?: string): Promise<Qdisc[]>;
  /** Names of the links `link`'s ingress traffic is redirected to. */
  ingressRedirects(link: string): Promise<string[]>;
  /** VLANs configured on a bridge port or bridge, ascending by vid. */
  bridgeVlans(link: string): Promise<BridgeVlan[]>;
  /** Read `/proc/sys/<key>` in this netns (trimmed). */
  getSysctl(key: string): Promise<string>;
  /** Poll until no IPv6 address on `link` is tentative; throws on DAD failure or timeout. */
  waitDad(link: string, opts?: DadWaitOptions): Promise<void>;
}

/** A temporary network namespace; `remove()` deletes it and every link still inside. */
export interface TempNetns {
  readonly name: string;
  readonly path: string;
  remove(): Promise<void>;
}

/** The entry point plugin logic receives. */
export interface Netlink {
  /** 'linux' or 'memory'. */
  readonly backend: string;
  /** Path of the netns this process runs in (the "host" side). */
  readonly hostNetns: string;
  /**
   * Runs `fn` with a handle on the netns at `path` (undefined = host), then flushes what it queued.
   * Throws ENOENT naming the path when the netns does not exist.
   */
  inNetns<T>(path: string | undefined, fn: (ns: NetnsOps) => Promise<T> | T): Promise<T>;
  /** A long-lived handle on a netns (undefined = host); remember to `flush()`. */
  open(path?: string): NetnsOps;
  /** True when `path` names an existing network namespace. */
  netnsExists(path: string): Promise<boolean>;
  /** Create a named netns (`/var/run/netns/<name>` on Linux); a random name when omitted. */
  createNetns(name?: string): Promise<TempNetns>;
  /** Delete a netns created by name under /var/run/netns; missing is OK. */
  removeNetns(path: string): Promise<void>;
  /** Link kinds this kernel can create (probed once per instance in a throwaway netns). */
  supportedLinkKinds(): Promise<ReadonlySet<LinkKind>>;
  /** Whether this kernel has bridge VLAN filtering (probed with the link kinds). */
  supportsBridgeVlans(): Promise<boolean>;
}
