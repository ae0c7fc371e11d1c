// rtnetlink link requests and link dumps (uapi linux/if_link.h): create, set, rename, move,
// delete and list, with the kind-specific data of bridge, veth, macvlan, ipvlan, vlan, vxlan and
// vrf; tun/tap devices are read here but made through /dev/net/tun (tuntap.ts).
import type { IpvlanMode, Link, LinkSettings, LinkSpec, MacvlanMode } from '../types.js';
import { NLM_F, NlAttrs, type NlMessage, NlWriter } from './nlmsg.js';
import { AF, ipBytes, REQ_ACK, RTM } from './rtnl.js';

export const IFLA = {
  ADDRESS: 1,
  IFNAME: 3,
  MTU: 4,
  LINK: 5,
  MASTER: 10,
  TXQLEN: 13,
  OPERSTATE: 16,
  LINKINFO: 18,
  IFALIAS: 20,
  AF_SPEC: 26,
  NET_NS_FD: 28,
  EXT_MASK: 29,
  LINK_NETNSID: 37,
} as const;
const INFO = { KIND: 1, DATA: 2, SLAVE_KIND: 4, SLAVE_DATA: 5 } as const;
const BRPORT = { MODE: 4, ISOLATED: 33 } as const;
const IFF = { UP: 0x1, PROMISC: 0x100, ALLMULTI: 0x200, LOWER_UP: 0x10000 } as const;
const OPERSTATES = ['UNKNOWN', 'NOTPRESENT', 'DOWN', 'LOWERLAYERDOWN', 'TESTING', 'DORMANT', 'UP'];

/** IFLA_MACVLAN_* attributes (linux/if_link.h). */
const MACVLAN_ATTR = { MODE: 1, BC_QUEUE_LEN: 7 } as const;
const MACVLAN_MODES: Record<MacvlanMode, number> = {
  private: 1,
  vepa: 2,
  bridge: 4,
  passthru: 8,
  source: 16,
};
const IPVLAN_MODES: Record<IpvlanMode, number> = { l2: 0, l3: 1, l3s: 2 };
/** IFLA_VRF_TABLE and the IFLA_TUN_* attributes a tun/tap device reports (linux/if_link.h). */
const VRF_TABLE = 1;
const TUN = { OWNER: 1, GROUP: 2, TYPE: 3, VNET_HDR: 5, PERSIST: 6, MULTI_QUEUE: 7 } as const;
/** IFF_TUN / IFF_TAP, as IFLA_TUN_TYPE carries them. */
const TUN_TYPES: Record<number, 'tun' | 'tap'> = { 1: 'tun', 2: 'tap' };
const VXLAN = { ID: 1, GROUP: 2, LINK: 3, LOCAL: 4, LEARNING: 7, PORT: 15, GROUP6: 16, LOCAL6: 17 };

/** struct ifinfomsg: family, ifindex, flags and the mask of flags to change. */
export function ifinfomsg(family: number, index: number, flags = 0, change = 0): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt8(family, 0);
  b.writeInt32LE(index, 4);
  b.writeUInt32LE(flags >>> 0, 8);
  b.writeUInt32LE(change >>> 0, 12);
  return b;
}

function macBytes(mac: string): Buffer {
  return Buffer.from(mac.split(':').map((h) => Number.parseInt(h, 16)));
}
function macText(b: Buffer | undefined): string {
  return b ? [...b].map((x) => x.toString(16).padStart(2, '0')).join(':') : '';
}

// ---------------------------------------------------------------- links

/** What the caller resolved for a link-add: parent ifindex and open netns descriptors. */
export interface LinkAddRefs {
  parentIndex?: number | undefined;
  netnsFd?: number | undefined;
  peerNetnsFd?: number | undefined;
}

/** RTM_NEWLINK creating `spec` (NLM_F_CREATE|NLM_F_EXCL, as `ip link add`). */
export function linkAdd(spec: LinkSpec, refs: LinkAddRefs): NlWriter {
  const w = new NlWriter(RTM.NEWLINK, REQ_ACK | NLM_F.CREATE | NLM_F.EXCL);
  w.struct(ifinfomsg(AF.UNSPEC, 0));
  w.str(IFLA.IFNAME, spec.name);
  if (spec.mtu !== undefined) w.u32(IFLA.MTU, spec.mtu);
  if (spec.mac !== undefined) w.attr(IFLA.ADDRESS, macBytes(spec.mac));
  if (refs.netnsFd !== undefined) w.u32(IFLA.NET_NS_FD, refs.netnsFd);
  if (refs.parentIndex !== undefined && spec.kind !== 'vxlan') w.u32(IFLA.LINK, refs.parentIndex);
  w.begin(IFLA.LINKINFO).bytesOf(INFO.KIND, spec.kind);
  switch (spec.kind) {
    case 'bridge':
      if (spec.vlanFiltering) w.begin(INFO.DATA).u8(7, 1).end();
      break;
    case 'veth':
      w.begin(INFO.DATA).begin(1);
      w.struct(ifinfomsg(AF.UNSPEC, 0));
      w.str(IFLA.IFNAME, spec.peerName);
      if (spec.peerMac !== undefined) w.attr(IFLA.ADDRESS, macBytes(spec.peerMac));
      if (spec.peerMtu !== undefined) w.u32(IFLA.MTU, spec.peerMtu);
      if (refs.peerNetnsFd !== undefined) w.u32(IFLA.NET_NS_FD, refs.peerNetnsFd);
      w.end().end();
      break;
    case 'macvlan':
      w.begin(INFO.DATA).u32(MACVLAN_ATTR.MODE, MACVLAN_MODES[spec.mode ?? 'bridge']);
      if (spec.bcQueueLen !== undefined) w.u32(MACVLAN_ATTR.BC_QUEUE_LEN, spec.bcQueueLen);
      w.end();
      break;
    case 'ipvlan':
      // Mode and flags (0: bridge), as `ip link add ... type ipvlan` sends them.
      w.begin(INFO.DATA)
        .u16(1, IPVLAN_MODES[spec.mode ?? 'l2'])
        .u16(2, 0)
        .end();
      break;
    case 'vlan':
      w.begin(INFO.DATA).u16(1, spec.vlanId).end();
      break;
    case 'vrf':
      w.begin(INFO.DATA).u32(VRF_TABLE, spec.table).end();
      break;
    case 'vxlan': {
      w.begin(INFO.DATA).u32(VXLAN.ID, spec.vni);
      const peer = spec.remote ?? spec.group;
      if (peer !== undefined) {
        const b = ipBytes(peer);
        w.attr(b.length === 4 ? VXLAN.GROUP : VXLAN.GROUP6, b);
      }
      if (spec.local !== undefined) {
        const b = ipBytes(spec.local);
        w.attr(b.length === 4 ? VXLAN.LOCAL : VXLAN.LOCAL6, b);
      }
      if (refs.parentIndex !== undefined) w.u32(VXLAN.LINK, refs.parentIndex);
      w.u8(VXLAN.LEARNING, spec.learning === false ? 0 : 1);
      w.be16(VXLAN.PORT, spec.port ?? 4789);
      w.end();
      break;
    }
    default:
      break;
  }
  w.end();
  return w;
}

/** RTM_DELLINK by index. */
export function linkDel(index: number): NlWriter {
  const w = new NlWriter(RTM.DELLINK, REQ_ACK);
  w.struct(ifinfomsg(AF.UNSPEC, index));
  return w;
}

/** The RTM_NEWLINK messages for `ip link set` (device attributes, then bridge-port attributes). */
export function linkSet(index: number, set: LinkSettings, masterIndex: number | undefined): NlWriter[] {
  const out: NlWriter[] = [];
  let flags = 0;
  let change = 0;
  const flag = (bit: number, on: boolean | undefined) => {
    if (on === undefined) return;
    change |= bit;
    if (on) flags |= bit;
  };
  flag(IFF.UP, set.up);
  flag(IFF.PROMISC, set.promisc);
  flag(IFF.ALLMULTI, set.allmulti);
  const dev =
    set.mtu !== undefined ||
    set.mac !== undefined ||
    set.master !== undefined ||
    set.txqlen !== undefined ||
    set.alias !== undefined ||
    change !== 0;
  if (dev) {
    const w = new NlWriter(RTM.NEWLINK, REQ_ACK);
    w.struct(ifinfomsg(AF.UNSPEC, index, flags, change));
    if (set.mac !== undefined) w.attr(IFLA.ADDRESS, macBytes(set.mac));
    if (set.mtu !== undefined) w.u32(IFLA.MTU, set.mtu);
    if (set.master !== undefined) w.u32(IFLA.MASTER, set.master === null ? 0 : (masterIndex ?? 0));
    if (set.txqlen !== undefined) w.u32(IFLA.TXQLEN, set.txqlen);
    // The kernel takes the attribute length as the alias length: no terminator; empty clears it.
    if (set.alias !== undefined) w.bytesOf(IFLA.IFALIAS, set.alias ?? '');
    out.push(w);
  }
  if (set.hairpin !== undefined || set.isolated !== undefined) {
    const w = new NlWriter(RTM.NEWLINK, REQ_ACK);
    w.struct(ifinfomsg(AF.UNSPEC, index));
    w.begin(IFLA.LINKINFO).bytesOf(INFO.SLAVE_KIND, 'bridge').begin(INFO.SLAVE_DATA);
    if (set.hairpin !== undefined) w.u8(BRPORT.MODE, set.hairpin ? 1 : 0);
    if (set.isolated !== undefined) w.u8(BRPORT.ISOLATED, set.isolated ? 1 : 0);
    w.end().end();
    out.push(w);
  }
  return out;
}

/** RTM_NEWLINK renaming link `index`. */
export function linkRename(index: number, newName: string): NlWriter {
  const w = new NlWriter(RTM.NEWLINK, REQ_ACK);
  w.struct(ifinfomsg(AF.UNSPEC, index));
  w.str(IFLA.IFNAME, newName);
  return w;
}

/** RTM_NEWLINK moving link `index` into the netns open as `netnsFd`. */
export function linkMove(index: number, netnsFd: number): NlWriter {
  const w = new NlWriter(RTM.NEWLINK, REQ_ACK);
  w.struct(ifinfomsg(AF.UNSPEC, index));
  w.u32(IFLA.NET_NS_FD, netnsFd);
  return w;
}

/** RTM_GETLINK for one link by name (the reply is the link, or ENODEV). */
export function linkGetByName(name: string): NlWriter {
  const w = new NlWriter(RTM.GETLINK, NLM_F.REQUEST);
  w.struct(ifinfomsg(AF.UNSPEC, 0));
  w.str(IFLA.IFNAME, name);
  return w;
}

/** RTM_GETLINK dump of every link. */
export function linkDump(): NlWriter {
  const w = new NlWriter(RTM.GETLINK, NLM_F.REQUEST | NLM_F.DUMP);
  w.struct(ifinfomsg(AF.UNSPEC, 0));
  return w;
}

/** Index and name of an RTM_NEWLINK reply. */
export function linkIdentity(m: NlMessage): { index: number; name: string } {
  const a = new NlAttrs(m.body, 16);
  return { index: m.body.readInt32LE(4), name: a.str(IFLA.IFNAME) ?? '' };
}

/** A link dump as the SDK's Link objects (masters named from the same dump). */
export function parseLinks(msgs: readonly NlMessage[]): Link[] {
  const rows = msgs
    .filter((m) => m.type === RTM.NEWLINK && m.body.length >= 16)
    .map((m) => ({ m, a: new NlAttrs(m.body, 16), index: m.body.readInt32LE(4) }));
  const names = new Map(rows.map((r) => [r.index, r.a.str(IFLA.IFNAME) ?? '']));
  return rows.map(({ m, a, index }) => {
    const flags = m.body.readUInt32LE(8);
    const l: Link = {
      index,
      name: a.str(IFLA.IFNAME) ?? '',
      up: (flags & IFF.UP) !== 0,
      lowerUp: (flags & IFF.LOWER_UP) !== 0,
      operstate: OPERSTATES[a.u8(IFLA.OPERSTATE) ?? 0] ?? 'UNKNOWN',
      mac: macText(a.get(IFLA.ADDRESS)),
      mtu: a.u32(IFLA.MTU) ?? 0,
      promisc: (flags & IFF.PROMISC) !== 0,
      allmulti: (flags & IFF.ALLMULTI) !== 0,
      txqlen: a.u32(IFLA.TXQLEN) ?? 0,
    };
    const info = a.nested(IFLA.LINKINFO);
    const data = info?.nested(INFO.DATA);
    // The kernel calls tun and tap devices both 'tun'; IFLA_TUN_TYPE says which.
    const rawKind = info?.str(INFO.KIND);
    const kind = rawKind === 'tun' ? (TUN_TYPES[data?.u8(TUN.TYPE) ?? 0] ?? 'tun') : rawKind;
    if (kind) l.kind = kind;
    const master = a.u32(IFLA.MASTER);
    if (master) {
      const name = names.get(master);
      if (name) l.master = name;
    }
    const alias = a.str(IFLA.IFALIAS);
    if (alias) l.alias = alias;
    const parent = a.u32(IFLA.LINK);
    if (parent) l.parentIndex = parent;
    const nsid = a.s32(IFLA.LINK_NETNSID);
    if (nsid !== undefined) l.parentNetnsId = nsid;
    if (info?.str(INFO.SLAVE_KIND) === 'bridge') {
      const port = info.nested(INFO.SLAVE_DATA);
      l.hairpin = port?.u8(BRPORT.MODE) === 1;
      l.isolated = port?.u8(BRPORT.ISOLATED) === 1;
    }
    if (data) {
      if (kind === 'vrf') {
        const table = data.u32(VRF_TABLE);
        if (table !== undefined) l.vrfTable = table;
      }
      if (kind === 'tap' || kind === 'tun') {
        l.multiQueue = data.u8(TUN.MULTI_QUEUE) === 1;
        l.vnetHdr = data.u8(TUN.VNET_HDR) === 1;
        l.persist = data.u8(TUN.PERSIST) === 1;
        const owner = data.u32(TUN.OWNER);
        if (owner !== undefined) l.owner = owner;
        const group = data.u32(TUN.GROUP);
        if (group !== undefined) l.group = group;
      }
      if (kind === 'macvlan') {
        const mode = data.u32(1);
        const name = Object.entries(MACVLAN_MODES).find(([, v]) => v === mode)?.[0];
        if (name) l.macvlanMode = name as MacvlanMode;
        const bc = data.u32(MACVLAN_ATTR.BC_QUEUE_LEN);
        if (bc !== undefined) l.bcQueueLen = bc;
      }
      if (kind === 'ipvlan') {
        const mode = data.u16(1);
        const name = Object.entries(IPVLAN_MODES).find(([, v]) => v === mode)?.[0];
        if (name) l.ipvlanMode = name as IpvlanMode;
      }
      if (kind === 'vlan') {
        const id = data.u16(1);
        if (id !== undefined) l.vlanId = id;
      }
      if (kind === 'vxlan') {
        const id = data.u32(VXLAN.ID);
        if (id !== undefined) l.vni = id;
      }
    }
    if (kind === 'bridge') l.vlanFiltering = data?.u8(7) === 1;
    return l;
  });
}
