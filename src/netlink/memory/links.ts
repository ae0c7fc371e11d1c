// Link operations of the in-memory kernel, mirroring what plugins observe on Linux: names unique per
// netns, masters must be bridges, veth ends live and die together, upper devices die with their lower
// device, moving a link downs it, drops its addresses and keeps its index when free.
import type { LinkSettings, LinkSpec, TbfSpec } from '../types.js';
import { cycleLink, linkDown, linkUp } from './routing.js';
import {
  allocIndex,
  byName,
  fail,
  type MLink,
  type MNetns,
  type MState,
  mustLink,
  newLink,
} from './state.js';

function targetNs(st: MState, path: string): MNetns {
  return st.netns.get(path) ?? fail('ENOENT', `Invalid "netns" value "${path}"`);
}

function insert(ns: MNetns, l: MLink): void {
  if (byName(ns, l.name)) fail('EEXIST', `a link named ${l.name} exists in ${ns.path}`);
  l.ns = ns;
  ns.links.set(l.index, l);
}

/** Creates a link in `ns` (or in `spec.netns`), like RTM_NEWLINK with NLM_F_EXCL. */
export function addLink(st: MState, ns: MNetns, spec: LinkSpec): void {
  if (!st.kinds.has(spec.kind)) fail('EOPNOTSUPP', `Unknown device type ${spec.kind}`);
  const home = spec.netns ? targetNs(st, spec.netns) : ns;
  const named = 'parent' in spec && spec.parent ? mustLink(ns, spec.parent) : undefined;
  // A macvlan on a macvlan (an ipvlan on an ipvlan) is attached to the real device underneath; a
  // VLAN on a VLAN is stacked (802.1Q in 802.1Q) on the VLAN device itself.
  const lower = named?.kind === spec.kind && spec.kind !== 'vlan' && named.lower ? named.lower : named;
  if (byName(home, spec.name)) fail('EEXIST', `a link named ${spec.name} exists`);
  // A VRF device's MTU is IPv6's largest (IP6_MAX_MTU), as the kernel sets it.
  const mtu =
    spec.mtu ?? (spec.kind === 'vxlan' ? 1450 : spec.kind === 'vrf' ? 65575 : lower ? lower.mtu : 1500);
  if (lower && spec.kind !== 'vxlan' && mtu > lower.mtu)
    fail('EINVAL', `mtu ${mtu} above parent mtu ${lower.mtu}`);
  if (spec.kind === 'vlan' && lower)
    for (const n of st.netns.values())
      for (const l of n.links.values())
        if (l.kind === 'vlan' && l.lower === lower && l.details.vlanId === spec.vlanId)
          fail('EEXIST', `vlan ${spec.vlanId} already on ${lower.name}`);
  if (lower && (spec.kind === 'macvlan' || spec.kind === 'ipvlan')) {
    // One rx handler per device: a device with macvlan ports takes no ipvlan ones and the other way round.
    const other = spec.kind === 'macvlan' ? 'ipvlan' : 'macvlan';
    for (const n of st.netns.values())
      for (const x of n.links.values())
        if (x.kind === other && x.lower === lower) fail('EBUSY', `${lower.name} already has ${other} ports`);
  }
  if (spec.kind === 'vlan' && named?.kind === 'ipvlan') fail('EOPNOTSUPP', 'VLANs not supported on device');
  // An ipvlan device takes no macvlan ports (IFF_NO_RX_HANDLER); a macvlan device takes ipvlan
  // ones (seen on Debian's 6.1 by the kernel lane's differential property).
  if (lower && spec.kind === 'macvlan' && lower.kind === 'ipvlan')
    fail('EINVAL', `${lower.name} is an ipvlan device`);
  const shareMac = spec.kind === 'ipvlan' || spec.kind === 'vlan';
  // The kernel registers a veth's peer first, so in one netns the peer gets the lower ifindex.
  let peer: MLink | undefined;
  if (spec.kind === 'veth') {
    const peerNs = spec.peerNetns ? targetNs(st, spec.peerNetns) : home;
    if (byName(peerNs, spec.peerName)) fail('EEXIST', `a link named ${spec.peerName} exists`);
    if (peerNs === home && spec.peerName === spec.name) {
      // The peer registers (taking an ifindex), then the link itself clashes with it.
      allocIndex(home);
      fail('EEXIST', `a link named ${spec.name} exists`);
    }
    peer = newLink(peerNs, spec.peerName, 'veth', spec.peerMtu ?? spec.mtu ?? 1500, spec.peerMac);
    peer.macByUser = spec.peerMac !== undefined;
    insert(peerNs, peer);
  }
  // A tun carries IP packets: no link-layer address at all.
  const mac = shareMac && lower ? lower.mac : spec.kind === 'tun' ? '' : undefined;
  const l = newLink(home, spec.name, spec.kind, mtu, mac);
  if (spec.mtu !== undefined) l.mtuByUser = true;
  if (spec.mac !== undefined) {
    l.mac = spec.mac;
    l.macByUser = true;
  }
  l.lower = lower;
  switch (spec.kind) {
    case 'macvlan':
      l.details.macvlanMode = spec.mode ?? 'bridge';
      l.details.bcQueueLen = spec.bcQueueLen ?? 1000;
      break;
    case 'ipvlan':
      l.details.ipvlanMode = spec.mode ?? 'l2';
      // The mode belongs to the master's ipvlan port: a new ipvlan sets it for its siblings too.
      for (const n of st.netns.values())
        for (const x of n.links.values())
          if (x.kind === 'ipvlan' && x.lower === lower) x.details.ipvlanMode = l.details.ipvlanMode;
      break;
    case 'vlan':
      l.details.vlanId = spec.vlanId;
      break;
    case 'vxlan':
      l.details.vni = spec.vni;
      break;
    case 'bridge':
      if (spec.vlanFiltering && !st.bridgeVlans) fail('EOPNOTSUPP', 'bridge vlan_filtering is not supported');
      l.details.vlanFiltering = !!spec.vlanFiltering;
      if (st.bridgeVlans) l.vlans.set(1, { pvid: true, untagged: true });
      break;
    case 'veth':
      peer!.peer = l;
      l.peer = peer;
      break;
    case 'tap':
    case 'tun':
      // A tun's queue is the driver's TUN_READQ_SIZE; a tap has Ethernet's 1000.
      if (spec.kind === 'tun') l.txqlen = 500;
      // As `ip tuntap add` leaves it: persistent, no packet-info header, owner/group only when set.
      l.details.multiQueue = !!spec.multiQueue;
      l.details.vnetHdr = !!spec.vnetHdr;
      l.details.persist = true;
      if (spec.owner !== undefined) l.details.owner = spec.owner;
      if (spec.group !== undefined) l.details.group = spec.group;
      break;
    case 'vrf':
      l.details.vrfTable = spec.table;
      break;
    default:
      break;
  }
  insert(home, l);
}

/** Removes a link and everything that dies with it (peer, upper devices, ports' enslavement). */
export function removeLink(st: MState, l: MLink): void {
  if (!l.ns.links.has(l.index) || l.ns.links.get(l.index) !== l) return;
  linkDown(l, true);
  l.ns.links.delete(l.index);
  const master = l.master;
  l.master = undefined;
  if (master) recalcBridge(master);
  for (const n of st.netns.values())
    for (const o of [...n.links.values()]) {
      if (o.master === l) {
        o.master = undefined;
        // A VRF's ports are released the way `nomaster` releases them: routes back to main.
        if (l.kind === 'vrf') cycleLink(o);
      }
      if (o.lower === l && o.kind !== 'vxlan') removeLink(st, o);
      if (o.lower === l) o.lower = undefined;
    }
  if (l.peer) {
    const p = l.peer;
    l.peer = undefined;
    p.peer = undefined;
    removeLink(st, p);
  }
}

/** RTM_DELLINK by name. */
export function delLink(st: MState, ns: MNetns, name: string): void {
  const l = mustLink(ns, name);
  if (l.name === 'lo') fail('EOPNOTSUPP', 'the loopback device cannot be deleted');
  removeLink(st, l);
}

/** A bridge without a user-set MAC/MTU takes the lowest port MAC and the smallest port MTU. */
function recalcBridge(br: MLink): void {
  const ports = [...br.ns.links.values()].filter((p) => p.master === br);
  if (ports.length === 0) return;
  if (!br.macByUser) br.mac = ports.map((p) => p.mac).sort()[0]!;
  if (!br.mtuByUser) br.mtu = Math.min(...ports.map((p) => p.mtu));
}

/** RTM_SETLINK with the attributes of `LinkSettings`, applied in the kernel's order. */
export function setLink(st: MState, ns: MNetns, name: string, set: LinkSettings): void {
  const l = mustLink(ns, name);
  if (set.mtu !== undefined) {
    // The device's own range: loopback has none, Ethernet-like devices take 68..65535.
    // A tap keeps room for its Ethernet header below 64 KiB (65535 - 14).
    const max = l.kind === 'tap' ? 65521 : l.kind === 'vrf' ? 65575 : 65535;
    if (l.name !== 'lo' && set.mtu > max) fail('EINVAL', 'mtu greater than device maximum');
    if (l.name !== 'lo' && set.mtu < 68) fail('EINVAL', 'mtu less than device minimum');
    // ipvlan checks its parent's MTU only when it is created (up to the parent's maximum after).
    if (l.lower && l.kind !== 'vxlan' && l.kind !== 'ipvlan' && set.mtu > l.lower.mtu)
      fail(l.kind === 'vlan' ? 'ERANGE' : 'EINVAL', `mtu ${set.mtu} above parent mtu ${l.lower.mtu}`);
    l.mtu = set.mtu;
    l.mtuByUser = true;
    if (l.master) recalcBridge(l.master);
    // The kernel lowers macvlan, ipvlan and vlan links above the new MTU to it, in any netns.
    for (const n of st.netns.values())
      for (const o of n.links.values())
        if (o.lower === l && o.kind !== 'vxlan' && o.mtu > set.mtu) {
          o.mtu = set.mtu;
          if (o.master) recalcBridge(o.master);
        }
  }
  if (set.mac !== undefined) {
    l.mac = set.mac;
    l.macByUser = true;
    if (l.master) recalcBridge(l.master);
  }
  if (set.master !== undefined) {
    const old = l.master;
    const target = set.master === null ? undefined : mustLink(ns, set.master);
    if (target && target !== old) {
      if (target.kind !== 'bridge' && target.kind !== 'vrf')
        fail('EOPNOTSUPP', `${target.name} is not a bridge or a VRF`);
      if (l.name === 'lo') fail('EINVAL', 'the loopback device cannot be enslaved');
      if (target.kind === 'bridge' && l.kind === 'bridge')
        fail('EINVAL', 'Can not enslave a bridge to a bridge');
      if (target.kind === 'vrf' && l.kind === 'vrf')
        fail('EINVAL', 'Can not enslave an L3 master device to a VRF');
    }
    if (!target) l.vlans = new Map();
    // The kernel releases the link from its old master first (ndo_del_slave), then adds it to the new one.
    if (target !== old) {
      l.master = target;
      if (target?.kind === 'bridge') {
        l.hairpin = false;
        l.isolated = false;
        // A new port gets the bridge's default PVID 1, untagged, when VLAN support exists.
        l.vlans = new Map(target.vlans.size || st.bridgeVlans ? [[1, { pvid: true, untagged: true }]] : []);
        recalcBridge(target);
      } else l.vlans = new Map();
      if (old?.kind === 'bridge') recalcBridge(old);
      // Joining or leaving a VRF cycles the link, moving its connected routes between tables.
      if (old?.kind === 'vrf' || target?.kind === 'vrf') cycleLink(l);
    }
  }
  const wasUp = l.up;
  setRest(l, set);
  if (l.up !== wasUp) followLower(st, l);
}

/**
 * 8021q follows its lower device: when it comes up, its VLANs (in any netns) come up too, even one
 * set down before; when it goes down, they go down (vlan_device_event; no loose_binding here).
 */
function followLower(st: MState, lower: MLink): void {
  for (const n of st.netns.values())
    for (const v of n.links.values()) {
      if (v.kind !== 'vlan' || v.lower !== lower || v.up === lower.up) continue;
      if (lower.up) linkUp(v);
      else linkDown(v, false);
      followLower(st, v);
    }
}

/** The attributes `setLink` applies after the master. */
function setRest(l: MLink, set: LinkSettings): void {
  if (set.promisc !== undefined) l.promisc = set.promisc;
  if (set.allmulti !== undefined) l.allmulti = set.allmulti;
  if (set.txqlen !== undefined) l.txqlen = set.txqlen;
  if (set.alias !== undefined) l.alias = set.alias ?? undefined;
  // A VLAN device opens only over an open device (vlan_dev_open).
  if (set.up === true && !l.up && l.kind === 'vlan' && l.lower && !l.lower.up)
    fail('ENETDOWN', 'Network is down');
  if (set.up === true && !l.up) linkUp(l);
  if (set.up === false && l.up) linkDown(l, false);
  if (set.hairpin !== undefined || set.isolated !== undefined) {
    if (l.master?.kind !== 'bridge') fail('EOPNOTSUPP', `${l.name} is not a bridge port`);
    if (set.hairpin !== undefined) l.hairpin = set.hairpin;
    if (set.isolated !== undefined) l.isolated = set.isolated;
  }
}

/** Renames a link; the 6.x kernel allows this while up. */
export function renameLink(ns: MNetns, name: string, newName: string): void {
  const l = mustLink(ns, name);
  if (name === newName) return;
  if (byName(ns, newName)) fail('EEXIST', `a link named ${newName} exists`);
  const routes = ns.routes.filter((r) => r.dev === l.name);
  l.name = newName;
  for (const r of routes) r.dev = newName;
}

/** Moves a link to another netns: it goes down, loses addresses, routes, master and sysctls. */
export function moveLink(st: MState, ns: MNetns, name: string, path: string): void {
  const l = mustLink(ns, name);
  const to = targetNs(st, path);
  if (to === ns) return;
  if (l.name === 'lo' || l.kind === 'bridge') fail('EINVAL', 'The interface netns is immutable');
  if (byName(to, l.name)) fail('EEXIST', `a link named ${l.name} exists in ${path}`);
  linkDown(l, true);
  ns.links.delete(l.index);
  const master = l.master;
  l.master = undefined;
  if (master) recalcBridge(master);
  for (const o of ns.links.values()) if (o.master === l) o.master = undefined;
  l.sysctl.clear();
  l.tc = { ingress: false, redirects: [] };
  if (to.links.has(l.index)) l.index = allocIndex(to);
  l.ns = to;
  to.links.set(l.index, l);
}

/** Deletes a netns and its links (veth peers elsewhere go with them). */
export function removeNetns(st: MState, ns: MNetns): void {
  for (const l of [...ns.links.values()]) removeLink(st, l);
  st.netns.delete(ns.path);
  for (const n of st.netns.values()) n.nsids.delete(ns);
}

/** Root tbf qdisc (replace semantics). tc derives the byte rate by dividing bits by 8. */
export function setTbf(ns: MNetns, link: string, spec: TbfSpec): void {
  const l = mustLink(ns, link);
  l.tc.tbf = {
    rateBytes: Math.floor(spec.rateBits / 8),
    burstBytes: spec.burstBytes,
    latencyUs: spec.latencyMs * 1000,
  };
}

/** The ingress qdisc; adding it twice is EEXIST, as with NLM_F_EXCL. */
export function addIngress(ns: MNetns, link: string): void {
  const l = mustLink(ns, link);
  if (l.tc.ingress) fail('EEXIST', 'Exclusivity flag on, cannot modify');
  l.tc.ingress = true;
}

/** A match-all filter on the ingress qdisc redirecting to another link's egress. */
export function addRedirect(ns: MNetns, link: string, to: string): void {
  const l = mustLink(ns, link);
  if (!l.tc.ingress) fail('ENOENT', "Parent Qdisc doesn't exists");
  l.tc.redirects.push(mustLink(ns, to));
}

/** Deletes the root (tbf) or ingress qdisc; the ingress takes its filters along. */
export function delQdisc(ns: MNetns, link: string, which: 'root' | 'ingress'): void {
  const l = mustLink(ns, link);
  if (which === 'root') {
    if (!l.tc.tbf) fail('ENOENT', 'Cannot delete qdisc with handle of zero');
    l.tc.tbf = undefined;
  } else {
    if (!l.tc.ingress) fail('ENOENT', 'Cannot find specified qdisc on specified device');
    l.tc = { ...l.tc, ingress: false, redirects: [] };
  }
}

/** `bridge vlan add`: on a port (or a bridge with `self`); a pvid moves the PVID flag here. */
export function addVlan(
  st: MState,
  ns: MNetns,
  link: string,
  vid: number,
  f: { pvid: boolean; untagged: boolean; self: boolean },
): void {
  const l = mustLink(ns, link);
  if (!st.bridgeVlans) fail('EOPNOTSUPP', 'bridge VLAN filtering is not supported');
  if (l.kind !== 'bridge' && l.master?.kind !== 'bridge')
    fail('EOPNOTSUPP', `${link} is not a bridge or bridge port`);
  if (f.pvid) for (const v of l.vlans.values()) v.pvid = false;
  l.vlans.set(vid, { pvid: f.pvid, untagged: f.untagged });
}

/** `bridge vlan del`; a VLAN that is not there is no error (the kernel ignores it, as 6.1 does). */
export function delVlan(ns: MNetns, link: string, vid: number): void {
  mustLink(ns, link).vlans.delete(vid);
}
