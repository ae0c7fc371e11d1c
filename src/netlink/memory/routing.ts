// Addresses, routes, rules and sysctls of the in-memory kernel. Follows what Linux 6.x does for what
// plugins observe: connected routes appear when an address is on an up link, IPv4 routes through a
// link vanish when it goes down, IPv6 addresses go too unless keep_addr_on_down, gateways must be
// reachable on-link, deleting something missing is ESRCH/EADDRNOTAVAIL.
import type { NormRoute } from '../ops.js';
import type { Family, RouteEntry, RuleEntry, RuleSpec } from '../types.js';
import { cidrContains, networkOf, parseCidr } from '../validate.js';
import {
  CONF_DEFAULTS,
  fail,
  GLOBAL_DEFAULTS,
  type MLink,
  type MNetns,
  type MState,
  mustLink,
} from './state.js';

const MAIN = 254;

function confValue(l: MLink, fam: 'ipv4' | 'ipv6', leaf: string): string {
  return (
    l.sysctl.get(`${fam}/${leaf}`) ??
    l.ns.sysctl.get(`net/${fam}/conf/default/${leaf}`) ??
    CONF_DEFAULTS[fam][leaf]!
  );
}

function keepV6(l: MLink): boolean {
  return (
    confValue(l, 'ipv6', 'keep_addr_on_down') !== '0' ||
    l.ns.sysctl.get('net/ipv6/conf/all/keep_addr_on_down') === '1'
  );
}

/** The table a link's connected routes go to: its VRF's when it is a VRF port (l3mdev), else main. */
export function linkTable(l: MLink): number {
  return l.master?.kind === 'vrf' ? (l.master.details.vrfTable ?? MAIN) : MAIN;
}

function connected(l: MLink, a: { ip: string; prefix: number; family: Family }): RouteEntry | undefined {
  const full = a.family === 4 ? 32 : 128;
  if (a.prefix === full || a.ip.startsWith('127.') || a.ip === '::1') return undefined;
  const dst = networkOf({ ...a, cidr: '' });
  const table = linkTable(l);
  return a.family === 4
    ? {
        family: 4,
        dst,
        dev: l.name,
        table,
        scope: 'link',
        src: a.ip,
        protocol: 'kernel',
        type: 'unicast',
      }
    : {
        family: 6,
        dst,
        dev: l.name,
        table,
        scope: 'global',
        metric: 256,
        protocol: 'kernel',
        type: 'unicast',
      };
}

function addConnected(l: MLink, a: { ip: string; prefix: number; family: Family }): void {
  const r = connected(l, a);
  if (
    r &&
    !l.ns.routes.some(
      (x) => x.family === r.family && x.dst === r.dst && x.dev === l.name && x.protocol === 'kernel',
    )
  )
    l.ns.routes.push(r);
}

/** IFF_UP: loopback gets its addresses, connected routes return. */
export function linkUp(l: MLink): void {
  l.up = true;
  if (l.name === 'lo' && l.addrs.length === 0)
    l.addrs.push(
      { ip: '127.0.0.1', prefix: 8, family: 4, scope: 'host', tentative: false, dadFailed: false },
      { ip: '::1', prefix: 128, family: 6, scope: 'host', tentative: false, dadFailed: false },
    );
  for (const a of l.addrs) addConnected(l, a);
}

/**
 * What the kernel does to a port joining or leaving a VRF (cycle_netdev): an up link goes down and
 * up again, so every route through it goes (in every table), IPv6 addresses go unless
 * keep_addr_on_down, and the connected routes come back in the table the link now belongs to.
 */
export function cycleLink(l: MLink): void {
  if (!l.up) return;
  linkDown(l, false);
  l.ns.routes = l.ns.routes.filter((r) => r.dev !== l.name && !r.nexthops?.some((h) => h.dev === l.name));
  linkUp(l);
}

/** IFF_UP cleared (or the link is going away when `removing`). */
export function linkDown(l: MLink, removing: boolean): void {
  l.up = false;
  const keep6 = !removing && keepV6(l);
  l.ns.routes = l.ns.routes.filter((r) => r.dev !== l.name || (r.family === 6 && keep6));
  if (removing) l.addrs = [];
  else if (!keep6) l.addrs = l.addrs.filter((a) => a.family === 4);
}

/** RTM_NEWADDR. */
export function addAddr(ns: MNetns, link: string, cidr: string, noDad: boolean): void {
  const l = mustLink(ns, link);
  const c = parseCidr(cidr);
  if (l.addrs.some((a) => a.ip === c.ip && (c.family === 6 || a.prefix === c.prefix)))
    fail('EEXIST', `${c.ip} already assigned to ${link}`);
  const scope =
    c.ip.startsWith('127.') || c.ip === '::1' ? 'host' : /^fe[89ab]/i.test(c.ip) ? 'link' : 'global';
  const dad = c.family === 6 && !noDad && confValue(l, 'ipv6', 'accept_dad') !== '0';
  const a = { ip: c.ip, prefix: c.prefix, family: c.family, scope, tentative: dad, dadFailed: false };
  l.addrs.push(a);
  if (l.up) addConnected(l, a);
}

/** RTM_DELADDR; the connected route goes when no other address on the link covers it. */
export function delAddr(ns: MNetns, link: string, cidr: string): void {
  const l = mustLink(ns, link);
  const c = parseCidr(cidr);
  const i = l.addrs.findIndex((a) => a.ip === c.ip && a.prefix === c.prefix);
  if (i < 0) fail('EADDRNOTAVAIL', `Address not found: ${cidr} on ${link}`);
  const [a] = l.addrs.splice(i, 1);
  const r = connected(l, a!);
  if (r && !l.addrs.some((o) => connected(l, o)?.dst === r.dst))
    ns.routes = ns.routes.filter((x) => !(x.dev === l.name && x.protocol === 'kernel' && x.dst === r.dst));
}

function sameKey(a: RouteEntry, r: NormRoute): boolean {
  return (
    a.family === r.family &&
    a.dst === r.dst &&
    a.table === (r.table ?? MAIN) &&
    (a.metric ?? (a.family === 6 ? 1024 : 0)) === (r.metric ?? (r.family === 6 ? 1024 : 0))
  );
}

function build(ns: MNetns, r: NormRoute): RouteEntry {
  let dev = r.dev ? mustLink(ns, r.dev) : undefined;
  if (!r.gw && dev && !dev.up) fail('ENETDOWN', `Device for nexthop ${dev.name} is not up`);
  if (r.gw) {
    const table = r.table ?? MAIN;
    const onLink = ns.routes.find(
      (x) =>
        x.family === r.family &&
        !x.gw &&
        (x.table === table || x.table === MAIN) &&
        (!dev || x.dev === dev.name) &&
        (r.family === 6 || x.scope === 'link') &&
        cidrContains(parseCidr(x.dst), r.gw!, r.family),
    );
    if (!onLink) fail('ENETUNREACH', `gateway ${r.gw} is not reachable on-link`);
    dev ??= mustLink(ns, onLink.dev!);
    if (!dev.up) fail('ENETDOWN', `Nexthop device ${dev.name} is not up`);
  }
  if (r.src && ![...ns.links.values()].some((l) => l.addrs.some((a) => a.ip === r.src)))
    fail('EINVAL', `Invalid prefsrc address ${r.src}`);
  const e: RouteEntry = {
    family: r.family,
    dst: r.dst,
    table: r.table ?? MAIN,
    scope: r.family === 6 ? 'global' : (r.scope ?? (r.gw ? 'global' : 'link')),
    type: 'unicast',
    protocol: r.protocol ?? 'boot',
  };
  if (r.gw) e.gw = r.gw;
  if (dev) e.dev = dev.name;
  if (r.family === 6 || r.metric) e.metric = r.metric ?? 1024;
  if (r.src) e.src = r.src;
  if (r.mtu) e.mtu = r.mtu;
  return e;
}

/** RTM_NEWROUTE with NLM_F_EXCL (add) or NLM_F_REPLACE (replace). */
export function putRoute(ns: MNetns, r: NormRoute, replace: boolean): void {
  const e = build(ns, r);
  const i = ns.routes.findIndex((a) => sameKey(a, r));
  if (i >= 0 && !replace) fail('EEXIST', `route ${r.dst} exists`);
  if (i >= 0) ns.routes[i] = e;
  else ns.routes.push(e);
}

/** The nexthops of a route entry, multipath or not. */
const hopsOf = (e: RouteEntry): Array<{ gw?: string; dev?: string; weight: number }> =>
  e.nexthops ?? [{ ...(e.gw ? { gw: e.gw } : {}), ...(e.dev ? { dev: e.dev } : {}), weight: 1 }];

/** A route with these nexthops: plain with one, multipath (no top-level gw/dev) with several. */
function withHops(e: RouteEntry, hops: Array<{ gw?: string; dev?: string; weight: number }>): RouteEntry {
  const { gw: _gw, dev: _dev, nexthops: _n, ...rest } = e;
  if (hops.length > 1) return { ...rest, nexthops: hops };
  const [h] = hops;
  return { ...rest, ...(h?.gw ? { gw: h.gw } : {}), ...(h?.dev ? { dev: h.dev } : {}) };
}

/** Two hops are the same nexthop (rt6_duplicate_nexthop: same device and gateway). */
const sameHop = (a: { gw?: string; dev?: string }, b: { gw?: string; dev?: string }): boolean =>
  a.gw === b.gw && a.dev === b.dev;

/**
 * IPv4: the kernel refuses a route only when an alias of the same key has the same type and the
 * same fib_info (nexthops, scope, prefsrc, protocol, metrics); anything else makes a new alias.
 */
function sameFibInfo(a: RouteEntry, e: RouteEntry): boolean {
  const ha = hopsOf(a);
  const he = hopsOf(e);
  return (
    a.type === e.type &&
    a.scope === e.scope &&
    a.protocol === e.protocol &&
    a.src === e.src &&
    a.mtu === e.mtu &&
    ha.length === he.length &&
    ha.every((h, i) => sameHop(h, he[i]!))
  );
}

/**
 * RTM_NEWROUTE without NLM_F_EXCL: NLM_F_APPEND (`where` 'append') or NLM_F_CREATE alone
 * ('prepend', Go's RouteAddEcmp). IPv6: a gateway route joins an existing gateway route of the
 * same key as another nexthop (one multipath route), whichever flag; a route without a gateway is
 * a separate entry; a nexthop (device and gateway) already there is EEXIST. IPv4: an identical
 * route is EEXIST, otherwise a second entry after (append) or before (prepend) the existing ones.
 */
function addNonExclusive(ns: MNetns, r: NormRoute, where: 'append' | 'prepend'): void {
  const e = build(ns, r);
  const same = ns.routes.filter((a) => sameKey(a, r));
  const hop = hopsOf(e)[0]!;
  const dup =
    r.family === 6
      ? same.some((a) => hopsOf(a).some((h) => sameHop(h, hop)))
      : same.some((a) => sameFibInfo(a, e));
  if (dup) fail('EEXIST', `route ${r.dst} via ${hop.gw ?? hop.dev} exists`);
  const ecmp = r.family === 6 ? same.find((a) => hopsOf(a).every((h) => h.gw) && e.gw) : undefined;
  if (ecmp) {
    ns.routes[ns.routes.indexOf(ecmp)] = withHops(ecmp, [...hopsOf(ecmp), hop]);
    return;
  }
  if (same.length === 0) ns.routes.push(e);
  else if (where === 'prepend' && r.family === 4) ns.routes.splice(ns.routes.indexOf(same[0]!), 0, e);
  else ns.routes.splice(ns.routes.indexOf(same[same.length - 1]!) + 1, 0, e);
}

/** RTM_NEWROUTE with NLM_F_CREATE | NLM_F_APPEND (`ip route append`). */
export function appendRoute(ns: MNetns, r: NormRoute): void {
  addNonExclusive(ns, r, 'append');
}

/** RTM_NEWROUTE with NLM_F_CREATE alone (`ip route prepend`, Go's RouteAddEcmp). */
export function ecmpRoute(ns: MNetns, r: NormRoute): void {
  addNonExclusive(ns, r, 'prepend');
}

/**
 * RTM_DELROUTE: matches dst/table and whichever of gw, dev, metric were given; on an IPv6
 * multipath route a gateway removes just that nexthop.
 */
export function delRoute(ns: MNetns, r: NormRoute): void {
  const i = ns.routes.findIndex(
    (a) =>
      a.family === r.family &&
      a.dst === r.dst &&
      a.table === (r.table ?? MAIN) &&
      (r.gw === undefined || hopsOf(a).some((h) => h.gw === r.gw)) &&
      (r.dev === undefined || hopsOf(a).some((h) => h.dev === r.dev)) &&
      (r.metric === undefined || (a.metric ?? 0) === r.metric),
  );
  if (i < 0) fail('ESRCH', `No such process: route ${r.dst}`);
  const a = ns.routes[i]!;
  if (a.nexthops && (r.gw !== undefined || r.dev !== undefined)) {
    const left = a.nexthops.filter(
      (h) => !((r.gw === undefined || h.gw === r.gw) && (r.dev === undefined || h.dev === r.dev)),
    );
    if (left.length) {
      ns.routes[i] = withHops(a, left);
      return;
    }
  }
  ns.routes.splice(i, 1);
}

/** Routes of one family and table, sorted like the kernel dump (by dst prefix, then metric). */
export function viewRoutes(ns: MNetns, family: Family, table: number): RouteEntry[] {
  return ns.routes
    .filter((r) => r.family === family && r.table === table)
    .map((r) => ({ ...r }))
    .sort((a, b) => (a.metric ?? 0) - (b.metric ?? 0));
}

/** RTM_NEWRULE; without a priority the kernel picks one below the first non-zero rule. */
export function addRule(ns: MNetns, r: RuleSpec): void {
  const same = ns.rules.filter((x) => x.family === r.family);
  const priority =
    r.priority ?? Math.max(0, Math.min(...same.filter((x) => x.priority > 0).map((x) => x.priority)) - 1);
  const e: RuleEntry = { family: r.family, priority, table: r.table };
  if (r.src) e.src = r.src;
  if (r.dst) e.dst = r.dst;
  if (same.some((x) => x.priority === priority && x.table === e.table && x.src === e.src && x.dst === e.dst))
    fail('EEXIST', 'rule exists');
  ns.rules.push(e);
  ns.rules.sort((a, b) => a.priority - b.priority);
}

/** RTM_DELRULE: matches table, priority, src and dst where given. */
export function delRule(ns: MNetns, r: RuleSpec): void {
  const i = ns.rules.findIndex(
    (x) =>
      x.family === r.family &&
      x.table === r.table &&
      (r.priority === undefined || x.priority === r.priority) &&
      x.src === r.src &&
      x.dst === r.dst,
  );
  if (i < 0) fail('ENOENT', 'No such file or directory: rule');
  ns.rules.splice(i, 1);
}

type SysctlSlot = { get(): string | undefined; set(v: string): void };

function slot(st: MState, ns: MNetns, key: string): SysctlSlot {
  const m = /^net\/(ipv4|ipv6)\/conf\/([^/]+)\/([^/]+)$/.exec(key);
  if (m) {
    const fam = m[1] as 'ipv4' | 'ipv6';
    const [, , dev, leaf] = m as unknown as [string, string, string, string];
    if (!(leaf in CONF_DEFAULTS[fam])) fail('ENOENT', `/proc/sys/${key}: No such file or directory`);
    if (dev === 'all' || dev === 'default')
      return { get: () => ns.sysctl.get(key) ?? CONF_DEFAULTS[fam][leaf], set: (v) => ns.sysctl.set(key, v) };
    const l = mustLinkSysctl(ns, dev, key);
    return { get: () => confValue(l, fam, leaf), set: (v) => l.sysctl.set(`${fam}/${leaf}`, v) };
  }
  const def = st.extraSysctls[key] ?? GLOBAL_DEFAULTS[key];
  if (def === undefined) fail('ENOENT', `/proc/sys/${key}: No such file or directory`);
  return { get: () => ns.sysctl.get(key) ?? def, set: (v) => ns.sysctl.set(key, v) };
}

function mustLinkSysctl(ns: MNetns, dev: string, key: string): MLink {
  for (const l of ns.links.values()) if (l.name === dev) return l;
  return fail('ENOENT', `/proc/sys/${key}: Directory nonexistent`);
}

/** Reads a sysctl of the netns. */
export function getSysctl(st: MState, ns: MNetns, key: string): string {
  return slot(st, ns, key).get()!;
}

/** Writes a sysctl of the netns; conf values must be integers, as the kernel requires. */
export function setSysctl(st: MState, ns: MNetns, key: string, value: string): void {
  const s = slot(st, ns, key);
  if (key.includes('/conf/') && !/^-?\d+$/.test(value.trim())) fail('EINVAL', `I/O error writing ${value}`);
  s.set(value.trim());
  if (key === 'net/ipv4/ip_forward') ns.sysctl.set('net/ipv4/conf/all/forwarding', value.trim());
  if (key === 'net/ipv4/conf/all/forwarding') ns.sysctl.set('net/ipv4/ip_forward', value.trim());
}
