// Bridge VLANs over rtnetlink (the `bridge vlan add/del/show` requests): RTM.SETLINK/RTM.DELLINK
// with family AF_BRIDGE and an IFLA.AF_SPEC list, and the AF_BRIDGE link dump for reading back.
// Layouts from the kernel uapi (linux/rtnetlink.h, if_link.h, if_bridge.h).
import type { BridgeVlan } from '../types.js';
import { IFLA, ifinfomsg } from './link.js';
import { NLM_F, NlAttrs, type NlMessage, NlWriter } from './nlmsg.js';
import { AF, RTM } from './rtnl.js';

const IFINFOMSG_LEN = 16;
const RTEXT_FILTER_BRVLAN = 1 << 1;

const IFLA_BRIDGE_FLAGS = 0;
const IFLA_BRIDGE_VLAN_INFO = 2;
const BRIDGE_FLAGS_SELF = 2;

/** bridge_vlan_info.flags bits. */
export const BRIDGE_VLAN_INFO = {
  MASTER: 1 << 0,
  PVID: 1 << 1,
  UNTAGGED: 1 << 2,
  RANGE_BEGIN: 1 << 3,
  RANGE_END: 1 << 4,
  BRENTRY: 1 << 5,
} as const;

/** Options of a VLAN request; `self` targets the bridge device itself rather than a port. */
export interface BridgeVlanOpts {
  pvid?: boolean | undefined;
  untagged?: boolean | undefined;
  self?: boolean | undefined;
}

function vlanRequest(type: number, ifindex: number, vid: number, flags: number, self: boolean): NlWriter {
  // 0 and 4095 are reserved by 802.1Q; the kernel rejects them too, but a clear message is better.
  if (!Number.isInteger(vid) || vid < 1 || vid > 4094)
    throw new RangeError(`bridge vlan: vid ${vid} is not in 1..4094`);
  const w = new NlWriter(type, NLM_F.REQUEST | NLM_F.ACK);
  w.struct(ifinfomsg(AF.BRIDGE, ifindex));
  w.begin(IFLA.AF_SPEC);
  // Without the flags attribute the kernel sends the request to the port's master bridge.
  if (self) w.u16(IFLA_BRIDGE_FLAGS, BRIDGE_FLAGS_SELF);
  const info = Buffer.alloc(4); // struct bridge_vlan_info { u16 flags; u16 vid; }
  info.writeUInt16LE(flags, 0);
  info.writeUInt16LE(vid, 2);
  w.attr(IFLA_BRIDGE_VLAN_INFO, info);
  return w.end();
}

/** `bridge vlan add dev X vid V [pvid] [untagged] [self]`. */
export function vlanAdd(ifindex: number, vid: number, opts: BridgeVlanOpts = {}): NlWriter {
  const flags = (opts.pvid ? BRIDGE_VLAN_INFO.PVID : 0) | (opts.untagged ? BRIDGE_VLAN_INFO.UNTAGGED : 0);
  return vlanRequest(RTM.SETLINK, ifindex, vid, flags, opts.self === true);
}

/** `bridge vlan del dev X vid V [self]`. */
export function vlanDel(ifindex: number, vid: number, opts: Pick<BridgeVlanOpts, 'self'> = {}): NlWriter {
  return vlanRequest(RTM.DELLINK, ifindex, vid, 0, opts.self === true);
}

/** Dump of the bridge ports and bridges with their VLAN lists (`bridge vlan show`). */
export function vlanDump(): NlWriter {
  const w = new NlWriter(RTM.GETLINK, NLM_F.REQUEST | NLM_F.DUMP);
  w.struct(ifinfomsg(AF.BRIDGE, 0));
  return w.u32(IFLA.EXT_MASK, RTEXT_FILTER_BRVLAN);
}

/**
 * The VLANs of `ifindex` in a `vlanDump()` reply, ascending by vid. Ranges (as the compressed
 * dump sends them) are expanded; a range takes the flags of its end entry, as bridge(8) prints.
 */
export function parseVlans(msgs: NlMessage[], ifindex: number): BridgeVlan[] {
  const out: BridgeVlan[] = [];
  for (const m of msgs) {
    if (m.type !== RTM.NEWLINK || m.body.length < IFINFOMSG_LEN) continue;
    if (m.body.readUInt8(0) !== AF.BRIDGE || m.body.readInt32LE(4) !== ifindex) continue;
    const spec = new NlAttrs(m.body, IFINFOMSG_LEN).nested(IFLA.AF_SPEC);
    if (!spec) continue;
    let start = 0;
    for (const a of spec.all) {
      if (a.type !== IFLA_BRIDGE_VLAN_INFO || a.value.length < 4) continue;
      const flags = a.value.readUInt16LE(0);
      const vid = a.value.readUInt16LE(2);
      if (!(flags & BRIDGE_VLAN_INFO.RANGE_END)) start = vid;
      if (flags & BRIDGE_VLAN_INFO.RANGE_BEGIN) continue;
      const pvid = (flags & BRIDGE_VLAN_INFO.PVID) !== 0;
      const untagged = (flags & BRIDGE_VLAN_INFO.UNTAGGED) !== 0;
      for (let v = start; v <= vid; v++) out.push({ vid: v, pvid, untagged });
    }
  }
  return out.sort((a, b) => a.vid - b.vid);
}
