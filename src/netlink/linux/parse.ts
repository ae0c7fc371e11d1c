// `ip -json` output to the SDK's types. iproute2 omits defaults (scope universe, proto boot, type
// unicast, the table it was asked for), prints host routes without '/32' and names same-netns peers
// instead of giving their index; all of that is normalized here.

import { readFileSync } from 'node:fs';
import type {
  Address,
  BridgeVlan,
  Family,
  IpvlanMode,
  Link,
  MacvlanMode,
  Qdisc,
  RouteEntry,
  RuleEntry,
} from '../types.js';
import { parseCidr, parseIp } from '../validate.js';

type Json = Record<string, unknown>;

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);

function arr(text: string): Json[] {
  const t = text.trim();
  if (!t) return [];
  const v: unknown = JSON.parse(t);
  return Array.isArray(v) ? (v as Json[]) : [];
}

const TABLES: Record<string, number> = { main: 254, local: 255, default: 253, unspec: 0 };
const tableId = (v: unknown, fallback: number): number =>
  typeof v === 'string' ? (TABLES[v] ?? Number(v)) : (num(v) ?? fallback);

/**
 * A tun/tap owner or group as `ip -d -j link` prints it: a number, or the name it resolved through
 * the passwd/group database, which is read back to the id the same way (files only, as iproute2's
 * lookup does on systems without NSS modules).
 */
export function idOf(v: unknown, db: 'passwd' | 'group', read = readDb): number | undefined {
  if (typeof v === 'number') return v;
  if (typeof v !== 'string') return undefined;
  if (/^\d+$/.test(v)) return Number(v);
  for (const line of read(db).split('\n')) {
    const f = line.split(':');
    if (f[0] === v && f[2] !== undefined && /^\d+$/.test(f[2])) return Number(f[2]);
  }
  return undefined;
}

function readDb(db: 'passwd' | 'group'): string {
  try {
    return readFileSync(`/etc/${db}`, 'utf8');
  } catch {
    return '';
  }
}

/** Parses `ip -d -j link show`. */
export function parseLinks(text: string): Link[] {
  const rows = arr(text);
  const byName = new Map(rows.map((r) => [str(r.ifname), num(r.ifindex)]));
  return rows.map((r) => {
    const flags = Array.isArray(r.flags) ? (r.flags as string[]) : [];
    const info = (r.linkinfo ?? {}) as Json;
    const data = (info.info_data ?? {}) as Json;
    const slave = (info.info_slave_data ?? {}) as Json;
    // The kernel calls tun and tap devices both 'tun'; the device's type says which.
    const kind = str(info.info_kind) === 'tun' ? (str(data.type) ?? 'tun') : str(info.info_kind);
    const l: Link = {
      index: num(r.ifindex) ?? 0,
      name: str(r.ifname) ?? '',
      up: flags.includes('UP'),
      lowerUp: flags.includes('LOWER_UP'),
      operstate: str(r.operstate) ?? 'UNKNOWN',
      mac: str(r.address) ?? '',
      mtu: num(r.mtu) ?? 0,
      promisc: flags.includes('PROMISC'),
      allmulti: flags.includes('ALLMULTI'),
      txqlen: num(r.txqlen) ?? 0,
    };
    if (kind) l.kind = kind;
    const master = str(r.master);
    if (master) l.master = master;
    const alias = str(r.ifalias);
    if (alias) l.alias = alias;
    const parent = num(r.link_index) ?? (typeof r.link === 'string' ? byName.get(r.link) : undefined);
    if (parent !== undefined) l.parentIndex = parent;
    const nsid = num(r.link_netnsid);
    if (nsid !== undefined) l.parentNetnsId = nsid;
    if (str(info.info_slave_kind) === 'bridge') {
      l.hairpin = slave.hairpin === true;
      l.isolated = slave.isolated === true;
    }
    if (kind === 'macvlan') l.macvlanMode = str(data.mode) as MacvlanMode;
    const bc = num(data.bcqueuelen);
    if (kind === 'macvlan' && bc !== undefined) l.bcQueueLen = bc;
    if (kind === 'ipvlan') l.ipvlanMode = str(data.mode) as IpvlanMode;
    const id = num(data.id);
    if (kind === 'vlan' && id !== undefined) l.vlanId = id;
    if (kind === 'vxlan' && id !== undefined) l.vni = id;
    if (kind === 'bridge') l.vlanFiltering = data.vlan_filtering === 1;
    if (kind === 'vrf' && num(data.table) !== undefined) l.vrfTable = num(data.table)!;
    if (kind === 'tap' || kind === 'tun') {
      l.multiQueue = data.multi_queue === true;
      l.vnetHdr = data.vnet_hdr === true;
      l.persist = data.persist === true;
      const owner = idOf(data.user, 'passwd');
      if (owner !== undefined) l.owner = owner;
      const group = idOf(data.group, 'group');
      if (group !== undefined) l.group = group;
    }
    return l;
  });
}

/** Parses `ip -j addr show`. */
export function parseAddrs(text: string): Address[] {
  const out: Address[] = [];
  for (const r of arr(text)) {
    const infos = Array.isArray(r.addr_info) ? (r.addr_info as Json[]) : [];
    for (const a of infos) {
      const local = str(a.local);
      const fam = str(a.family);
      if (!local || (fam !== 'inet' && fam !== 'inet6')) continue;
      const c = parseCidr(`${local}/${num(a.prefixlen) ?? (fam === 'inet' ? 32 : 128)}`);
      out.push({
        link: str(r.ifname) ?? '',
        index: num(r.ifindex) ?? 0,
        family: c.family,
        cidr: c.cidr,
        ip: c.ip,
        prefixLength: c.prefix,
        scope: str(a.scope) ?? 'global',
        tentative: a.tentative === true,
        dadFailed: a.dadfailed === true,
      });
    }
  }
  return out;
}

function normDst(dst: string | undefined, family: Family): string {
  if (!dst || dst === 'default') return family === 4 ? '0.0.0.0/0' : '::/0';
  return parseCidr(dst, 'route dst', true).cidr;
}

/** Parses `ip -j -4|-6 route show table T`. */
export function parseRoutes(text: string, family: Family, table: number): RouteEntry[] {
  return arr(text).map((r) => {
    const e: RouteEntry = {
      family,
      dst: normDst(str(r.dst), family),
      table: tableId(r.table, table),
      scope: str(r.scope) ?? 'global',
      type: str(r.type) ?? 'unicast',
      protocol: str(r.protocol) ?? 'boot',
    };
    const gw = str(r.gateway);
    if (gw) e.gw = parseIp(gw).ip;
    const dev = str(r.dev);
    if (dev) e.dev = dev;
    const metric = num(r.metric);
    if (metric !== undefined) e.metric = metric;
    const src = str(r.prefsrc);
    if (src) e.src = parseIp(src).ip;
    const metrics = Array.isArray(r.metrics) ? (r.metrics as Json[]) : [];
    const mtu = metrics.map((m) => num(m.mtu)).find((m) => m !== undefined);
    if (mtu !== undefined) e.mtu = mtu;
    if (Array.isArray(r.nexthops))
      e.nexthops = (r.nexthops as Json[]).map((h) => {
        const hop: NonNullable<RouteEntry['nexthops']>[number] = { weight: num(h.weight) ?? 1 };
        const g = str(h.gateway);
        if (g) hop.gw = parseIp(g).ip;
        const d = str(h.dev);
        if (d) hop.dev = d;
        return hop;
      });
    return e;
  });
}

/** Parses `ip -j -4|-6 rule show`. */
export function parseRules(text: string, family: Family): RuleEntry[] {
  const full = family === 4 ? 32 : 128;
  return arr(text).map((r) => {
    const e: RuleEntry = { family, priority: num(r.priority) ?? 0, table: tableId(r.table, 0) };
    const src = str(r.src);
    if (src && src !== 'all') e.src = parseCidr(`${src}/${num(r.srclen) ?? full}`).cidr;
    const dst = str(r.dst);
    if (dst && dst !== 'all') e.dst = parseCidr(`${dst}/${num(r.dstlen) ?? full}`).cidr;
    return e;
  });
}

/** Parses `tc -j qdisc show`, leaving out kernel defaults (handle 0:). */
export function parseQdiscs(text: string): Qdisc[] {
  return arr(text)
    .filter((q) => str(q.handle) !== '0:')
    .map((q) => {
      const o = (q.options ?? {}) as Json;
      const e: Qdisc = {
        link: str(q.dev) ?? '',
        kind: str(q.kind) ?? '',
        handle: str(q.handle) ?? '',
        root: q.root === true,
      };
      if (e.kind === 'tbf') {
        const rate = num(o.rate);
        const burst = num(o.burst);
        const lat = num(o.lat);
        if (rate !== undefined) e.rateBytes = rate;
        if (burst !== undefined) e.burstBytes = burst;
        if (lat !== undefined) e.latencyUs = lat;
      }
      return e;
    });
}

/** Parses `tc -j filter show dev X parent ffff:` into the mirred redirect targets. */
export function parseRedirects(text: string): string[] {
  const out: string[] = [];
  for (const f of arr(text)) {
    const actions = ((f.options ?? {}) as Json).actions;
    if (!Array.isArray(actions)) continue;
    for (const a of actions as Json[]) {
      const to = str(a.to_dev);
      if (str(a.kind) === 'mirred' && to) out.push(to);
    }
  }
  return out;
}

/** Parses `bridge -j vlan show dev X` (ranges expanded; flags 'PVID' and 'Egress Untagged'). */
export function parseVlans(text: string): BridgeVlan[] {
  const out: BridgeVlan[] = [];
  for (const port of arr(text)) {
    const vlans = Array.isArray(port.vlans) ? (port.vlans as Json[]) : [];
    for (const v of vlans) {
      const flags = Array.isArray(v.flags) ? (v.flags as string[]) : [];
      const from = num(v.vlan) ?? 0;
      for (let vid = from; vid <= (num(v.vlanEnd) ?? from); vid++)
        out.push({ vid, pvid: flags.includes('PVID'), untagged: flags.includes('Egress Untagged') });
    }
  }
  return out.sort((a, b) => a.vid - b.vid);
}
