// rtnetlink address, route and rule requests and dumps (uapi linux/if_addr.h, rtnetlink.h,
// fib_rules.h), with iproute2's defaults for what a request leaves out.
import type { NormRoute } from '../ops.js';
import type { Address, Family, RouteEntry, RuleEntry, RuleSpec } from '../types.js';
import { NLM_F, NlAttrs, type NlMessage, NlWriter } from './nlmsg.js';
import { AF, afOf, familyOf, ipBytes, ipText, REQ_ACK, RTM, SCOPE_IDS, SCOPE_NAMES } from './rtnl.js';

const IFA = { ADDRESS: 1, LOCAL: 2, BROADCAST: 4, FLAGS: 8 } as const;
const IFA_F = { NODAD: 0x02, DADFAILED: 0x08, TENTATIVE: 0x40 } as const;

const RTA = {
  DST: 1,
  OIF: 4,
  GATEWAY: 5,
  PRIORITY: 6,
  PREFSRC: 7,
  METRICS: 8,
  MULTIPATH: 9,
  TABLE: 15,
} as const;
const RTAX = { MTU: 2, ADVMSS: 8 } as const;
const RTM_F_CLONED = 0x200;
const RTN_UNICAST = 1;
const RTPROT_BOOT = 3;
/** The protocols a RouteSpec may name. */
const PROTOCOL_IDS = { kernel: 2, boot: 3, static: 4 } as const;

const FRA = { DST: 1, SRC: 2, PRIORITY: 6, TABLE: 15 } as const;
const FR_ACT_TO_TBL = 1;

/** Scope numbers (rtnetlink.h) and the names iproute2 prints. */
const PROTOCOLS: Record<number, string> = {
  0: 'unspec',
  1: 'redirect',
  2: 'kernel',
  3: 'boot',
  4: 'static',
  8: 'gated',
  9: 'ra',
  10: 'mrt',
  11: 'zebra',
  12: 'bird',
  13: 'dnrouted',
  14: 'xorp',
  15: 'ntk',
  16: 'dhcp',
  17: 'mrouted',
  18: 'keepalived',
  42: 'babel',
  186: 'bgp',
  187: 'isis',
  188: 'ospf',
  189: 'rip',
  192: 'eigrp',
};
const ROUTE_TYPES = [
  'unspec',
  'unicast',
  'local',
  'broadcast',
  'anycast',
  'multicast',
  'blackhole',
  'unreachable',
  'prohibit',
  'throw',
  'nat',
  'xresolve',
];

function ifaddrmsg(family: number, prefix: number, flags: number, scope: number, index: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt8(family, 0);
  b.writeUInt8(prefix, 1);
  b.writeUInt8(flags, 2);
  b.writeUInt8(scope, 3);
  b.writeUInt32LE(index, 4);
  return b;
}

interface RtmsgFields {
  family: number;
  dstLen: number;
  table: number;
  protocol: number;
  scope: number;
  type: number;
}
function rtmsg(f: RtmsgFields): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt8(f.family, 0);
  b.writeUInt8(f.dstLen, 1);
  b.writeUInt8(f.table < 256 ? f.table : 0, 4);
  b.writeUInt8(f.protocol, 5);
  b.writeUInt8(f.scope, 6);
  b.writeUInt8(f.type, 7);
  return b;
}

/** The IPv4 broadcast address `ip addr add ... brd +` derives: host bits all ones. */
function broadcast(ip: string, prefix: number): Buffer {
  const b = ipBytes(ip);
  const v = b.readUInt32BE(0);
  const host = prefix === 0 ? 0xffffffff : (0xffffffff >>> prefix) >>> 0;
  b.writeUInt32BE((v | host) >>> 0, 0);
  return b;
}

// ---------------------------------------------------------------- addresses

/** RTM_NEWADDR (`ip addr add`, or `replace` when `replace`), with the IPv4 broadcast `brd +` sets. */
export function addrAdd(
  index: number,
  cidr: string,
  family: Family,
  o: { noDad: boolean; replace: boolean },
): NlWriter {
  const [ip, len] = cidr.split('/') as [string, string];
  const prefix = Number(len);
  const w = new NlWriter(RTM.NEWADDR, REQ_ACK | NLM_F.CREATE | (o.replace ? NLM_F.REPLACE : NLM_F.EXCL));
  // iproute2 gives 127/8 addresses host scope, everything else global.
  const scope = family === 4 && ip.startsWith('127.') ? SCOPE_IDS.host! : 0;
  w.struct(ifaddrmsg(afOf(family), prefix, o.noDad ? IFA_F.NODAD : 0, scope, index));
  const bytes = ipBytes(ip);
  w.attr(IFA.LOCAL, bytes);
  w.attr(IFA.ADDRESS, bytes);
  if (family === 4 && prefix < 31) w.attr(IFA.BROADCAST, broadcast(ip, prefix));
  return w;
}

/** RTM_DELADDR. */
export function addrDel(index: number, cidr: string, family: Family): NlWriter {
  const [ip, len] = cidr.split('/') as [string, string];
  const w = new NlWriter(RTM.DELADDR, REQ_ACK);
  w.struct(ifaddrmsg(afOf(family), Number(len), 0, 0, index));
  w.attr(IFA.LOCAL, ipBytes(ip));
  return w;
}

/** RTM_GETADDR dump (both families). */
export function addrDump(): NlWriter {
  const w = new NlWriter(RTM.GETADDR, NLM_F.REQUEST | NLM_F.DUMP);
  w.struct(ifaddrmsg(AF.UNSPEC, 0, 0, 0, 0));
  return w;
}

/** An address dump as Address objects; `nameOf` names the owning link. */
export function parseAddrs(msgs: readonly NlMessage[], nameOf: (index: number) => string): Address[] {
  const out: Address[] = [];
  for (const m of msgs) {
    if (m.type !== RTM.NEWADDR || m.body.length < 8) continue;
    const family = familyOf(m.body.readUInt8(0));
    if (!family) continue;
    const prefix = m.body.readUInt8(1);
    const index = m.body.readUInt32LE(4);
    const a = new NlAttrs(m.body, 8);
    const raw = a.get(IFA.LOCAL) ?? a.get(IFA.ADDRESS);
    if (!raw) continue;
    const flags = a.u32(IFA.FLAGS) ?? m.body.readUInt8(2);
    const ip = ipText(raw);
    out.push({
      link: nameOf(index),
      index,
      family,
      cidr: `${ip}/${prefix}`,
      ip,
      prefixLength: prefix,
      scope: SCOPE_NAMES[m.body.readUInt8(3)] ?? String(m.body.readUInt8(3)),
      tentative: (flags & IFA_F.TENTATIVE) !== 0,
      dadFailed: (flags & IFA_F.DADFAILED) !== 0,
    });
  }
  return out;
}

// ---------------------------------------------------------------- routes

/** How a route request treats an existing route with the same key. */
export type RouteVerb = 'add' | 'replace' | 'append' | 'ecmp' | 'del';

/** RTM_NEWROUTE / RTM_DELROUTE for a normalized route; `oif` is the resolved `dev`. */
export function routeMsg(verb: RouteVerb, r: NormRoute, oif: number | undefined): NlWriter {
  const [dstIp, dstLen] = r.dst.split('/') as [string, string];
  const del = verb === 'del';
  const flags =
    verb === 'add'
      ? NLM_F.CREATE | NLM_F.EXCL
      : verb === 'replace'
        ? NLM_F.CREATE | NLM_F.REPLACE
        : verb === 'append'
          ? NLM_F.CREATE | NLM_F.APPEND
          : verb === 'ecmp'
            ? NLM_F.CREATE
            : 0;
  const w = new NlWriter(del ? RTM.DELROUTE : RTM.NEWROUTE, REQ_ACK | flags);
  const table = r.table ?? 254;
  // iproute2's defaults: proto boot, type unicast; scope link for a route without a gateway, and
  // on delete "any scope" for IPv4 (IPv6 has no route scopes).
  let scope: number;
  if (r.scope !== undefined) scope = SCOPE_IDS[r.scope]!;
  else if (r.family === 6) scope = 0;
  else if (del) scope = SCOPE_IDS.nowhere!;
  else scope = r.gw ? 0 : SCOPE_IDS.link!;
  w.struct(
    rtmsg({
      family: afOf(r.family),
      dstLen: Number(dstLen),
      table,
      protocol: del ? 0 : r.protocol ? PROTOCOL_IDS[r.protocol] : RTPROT_BOOT,
      scope,
      type: del ? 0 : RTN_UNICAST,
    }),
  );
  if (Number(dstLen) > 0) w.attr(RTA.DST, ipBytes(dstIp));
  if (r.gw) w.attr(RTA.GATEWAY, ipBytes(r.gw));
  if (oif !== undefined) w.u32(RTA.OIF, oif);
  if (r.metric !== undefined) w.u32(RTA.PRIORITY, r.metric);
  if (r.src !== undefined) w.attr(RTA.PREFSRC, ipBytes(r.src));
  if (table >= 256) w.u32(RTA.TABLE, table);
  if (r.mtu !== undefined || r.advmss !== undefined) {
    // RTA_METRICS holds plain (not nested-flagged) RTAX_* attributes.
    w.begin(RTA.METRICS, false);
    if (r.mtu !== undefined) w.u32(RTAX.MTU, r.mtu);
    if (r.advmss !== undefined) w.u32(RTAX.ADVMSS, r.advmss);
    w.end();
  }
  return w;
}

/** RTM_GETROUTE dump of one family. */
export function routeDump(family: Family): NlWriter {
  const w = new NlWriter(RTM.GETROUTE, NLM_F.REQUEST | NLM_F.DUMP);
  w.struct(rtmsg({ family: afOf(family), dstLen: 0, table: 0, protocol: 0, scope: 0, type: 0 }));
  return w;
}

/** A route dump as RouteEntry objects of `table` (cloned/cache entries left out, as `ip route show`). */
export function parseRoutes(
  msgs: readonly NlMessage[],
  family: Family,
  table: number,
  nameOf: (index: number) => string | undefined,
): RouteEntry[] {
  const out: RouteEntry[] = [];
  for (const m of msgs) {
    if (m.type !== RTM.NEWROUTE || m.body.length < 12) continue;
    if (familyOf(m.body.readUInt8(0)) !== family) continue;
    if (m.body.readUInt32LE(8) & RTM_F_CLONED) continue;
    const a = new NlAttrs(m.body, 12);
    const t = a.u32(RTA.TABLE) ?? m.body.readUInt8(4);
    if (t !== table) continue;
    const dstLen = m.body.readUInt8(1);
    const dst = a.get(RTA.DST);
    const e: RouteEntry = {
      family,
      dst: dst ? `${ipText(dst)}/${dstLen}` : family === 4 ? '0.0.0.0/0' : '::/0',
      table: t,
      scope: SCOPE_NAMES[m.body.readUInt8(6)] ?? String(m.body.readUInt8(6)),
      type: ROUTE_TYPES[m.body.readUInt8(7)] ?? String(m.body.readUInt8(7)),
      protocol: PROTOCOLS[m.body.readUInt8(5)] ?? String(m.body.readUInt8(5)),
    };
    const gw = a.get(RTA.GATEWAY);
    if (gw) e.gw = ipText(gw);
    const oif = a.u32(RTA.OIF);
    if (oif !== undefined) {
      const dev = nameOf(oif);
      if (dev) e.dev = dev;
    }
    const metric = a.u32(RTA.PRIORITY);
    if (metric !== undefined) e.metric = metric;
    const src = a.get(RTA.PREFSRC);
    if (src) e.src = ipText(src);
    const mtu = a.nested(RTA.METRICS)?.u32(RTAX.MTU);
    if (mtu !== undefined) e.mtu = mtu;
    const mp = a.get(RTA.MULTIPATH);
    if (mp) e.nexthops = parseNexthops(mp, nameOf);
    out.push(e);
  }
  return out;
}

/** RTA_MULTIPATH: a list of struct rtnexthop { u16 len; u8 flags; u8 hops; s32 ifindex } + attrs. */
function parseNexthops(
  b: Buffer,
  nameOf: (index: number) => string | undefined,
): NonNullable<RouteEntry['nexthops']> {
  const out: NonNullable<RouteEntry['nexthops']> = [];
  let off = 0;
  while (off + 8 <= b.length) {
    const len = b.readUInt16LE(off);
    if (len < 8 || off + len > b.length) break;
    const hop: NonNullable<RouteEntry['nexthops']>[number] = { weight: b.readUInt8(off + 3) + 1 };
    const dev = nameOf(b.readInt32LE(off + 4));
    if (dev) hop.dev = dev;
    const gw = new NlAttrs(b, off + 8, off + len).get(RTA.GATEWAY);
    if (gw) hop.gw = ipText(gw);
    out.push(hop);
    off += (len + 3) & ~3;
  }
  return out;
}

// ---------------------------------------------------------------- rules

/** RTM_NEWRULE / RTM_DELRULE (`ip rule add|del from SRC [to DST] [priority P] table T`). */
export function ruleMsg(add: boolean, r: RuleSpec): NlWriter {
  const w = new NlWriter(add ? RTM.NEWRULE : RTM.DELRULE, REQ_ACK | (add ? NLM_F.CREATE | NLM_F.EXCL : 0));
  const hdr = Buffer.alloc(12);
  hdr.writeUInt8(afOf(r.family), 0);
  const src = r.src?.split('/');
  const dst = r.dst?.split('/');
  hdr.writeUInt8(dst ? Number(dst[1]) : 0, 1);
  hdr.writeUInt8(src ? Number(src[1]) : 0, 2);
  hdr.writeUInt8(r.table < 256 ? r.table : 0, 4);
  hdr.writeUInt8(FR_ACT_TO_TBL, 7);
  w.struct(hdr);
  if (src && Number(src[1]) > 0) w.attr(FRA.SRC, ipBytes(src[0]!));
  if (dst && Number(dst[1]) > 0) w.attr(FRA.DST, ipBytes(dst[0]!));
  if (r.priority !== undefined) w.u32(FRA.PRIORITY, r.priority);
  w.u32(FRA.TABLE, r.table);
  return w;
}

/** RTM_GETRULE dump of one family. */
export function ruleDump(family: Family): NlWriter {
  const w = new NlWriter(RTM.GETRULE, NLM_F.REQUEST | NLM_F.DUMP);
  const hdr = Buffer.alloc(12);
  hdr.writeUInt8(afOf(family), 0);
  w.struct(hdr);
  return w;
}

/** A rule dump as RuleEntry objects. */
export function parseRules(msgs: readonly NlMessage[], family: Family): RuleEntry[] {
  const out: RuleEntry[] = [];
  for (const m of msgs) {
    if (m.type !== RTM.NEWRULE || m.body.length < 12) continue;
    if (familyOf(m.body.readUInt8(0)) !== family) continue;
    const a = new NlAttrs(m.body, 12);
    const e: RuleEntry = {
      family,
      priority: a.u32(FRA.PRIORITY) ?? 0,
      table: a.u32(FRA.TABLE) ?? m.body.readUInt8(4),
    };
    const src = a.get(FRA.SRC);
    if (src) e.src = `${ipText(src)}/${m.body.readUInt8(2)}`;
    const dst = a.get(FRA.DST);
    if (dst) e.dst = `${ipText(dst)}/${m.body.readUInt8(1)}`;
    out.push(e);
  }
  return out;
}
