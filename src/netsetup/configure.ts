// Applies an IPAM result to a container interface (addresses, IPv6 sysctls, link up, DAD, routes)
// and verifies it later for CHECK. Everything for one interface is queued on one NetnsOps, so the
// Linux backend does it in one spawn (plus a DAD poll for IPv6).
import type { NetnsOps, RouteEntry, RouteSpec } from '../netlink/types.js';
import { ipFamily } from '../spec/addr.js';
import { CniError, ErrorCode } from '../spec/errors.js';
import type { IPConfig, Result, Route } from '../spec/result/types.js';

// Result addresses were validated on the way in; anything unparsable is treated as IPv4.
const familyOf = (ip: string) => ipFamily(ip) ?? 4;

/** The index of the interface entry named `ifname` (and in `sandbox`, when given) in a result. */
export function interfaceIndex(result: Result, ifname: string, sandbox?: string): number {
  return (result.interfaces ?? []).findIndex(
    (i) => i.name === ifname && (sandbox === undefined || i.sandbox === undefined || i.sandbox === sandbox),
  );
}

/** The IPs of a result that belong to interface `index` (IPs without an index belong to none). */
export function ipsOfInterface(result: Result, index: number): IPConfig[] {
  return (result.ips ?? []).filter((ip) => ip.interface === index);
}

/** The result's route as a netlink route on `dev`; a missing gateway takes the family's from `ips`. */
export function routeSpec(r: Route, dev: string, ips: readonly IPConfig[]): RouteSpec {
  const fam = familyOf(r.dst);
  const gw = r.gw ?? ips.find((ip) => ip.gateway && familyOf(ip.gateway) === fam)?.gateway;
  const spec: RouteSpec = { dst: r.dst, dev };
  if (gw) spec.gw = gw;
  if (r.priority !== undefined) spec.metric = r.priority;
  if (r.table !== undefined) spec.table = r.table;
  if (r.mtu !== undefined) spec.mtu = r.mtu;
  if (r.advmss !== undefined) spec.advmss = r.advmss;
  // Route scopes in a result are the kernel's numbers (RT_SCOPE_*).
  if (r.scope === 253) spec.scope = 'link';
  else if (r.scope === 254) spec.scope = 'host';
  else if (r.scope === 0) spec.scope = 'global';
  return spec;
}

/** Options for configureInterface. */
export interface ConfigureOptions {
  /** Index of the interface in `result.interfaces`; default: the entry named `ifname`. */
  index?: number | undefined;
  /** Skip the IPv6 DAD wait (the caller disabled DAD). */
  skipDadWait?: boolean | undefined;
  /** Routes to add instead of `result.routes` (ptp adds its own). */
  routes?: readonly Route[] | undefined;
  /** Announce the addresses (arp_notify, ndisc_notify for IPv6) so neighbours drop stale entries for a reused IP. */
  announce?: boolean | undefined;
}

/**
 * Configures `ifname` in the netns of `ns` from `result`: enables IPv6 when an IPv6 address is
 * assigned, adds the interface's addresses, sets it up, waits for DAD and adds the routes. The
 * routes stay queued, so the caller's next read (or the end of `inNetns`) runs them in the same batch.
 */
export async function configureInterface(
  ns: NetnsOps,
  ifname: string,
  result: Result,
  opts: ConfigureOptions = {},
): Promise<void> {
  const index = opts.index ?? interfaceIndex(result, ifname);
  for (const ip of result.ips ?? []) {
    if (ip.interface === undefined) continue;
    const entry = result.interfaces?.[ip.interface];
    if (!entry) {
      throw new CniError(
        ErrorCode.Internal,
        `failed to add IP ${ip.address} to ${ifname}: ips[].interface ${ip.interface} points past the ${result.interfaces?.length ?? 0} interfaces of the result`,
      );
    }
  }
  const ips = ipsOfInterface(result, index);
  const v6 = ips.some((ip) => familyOf(ip.address) === 6);
  if (opts.announce) {
    ns.setSysctl(`net/ipv4/conf/${ifname}/arp_notify`, 1);
    if (v6) ns.setSysctl(`net/ipv6/conf/${ifname}/ndisc_notify`, 1);
  }
  if (v6) {
    ns.setSysctl(`net/ipv6/conf/${ifname}/disable_ipv6`, 0);
    ns.setSysctl(`net/ipv6/conf/${ifname}/keep_addr_on_down`, 1);
  }
  for (const ip of ips) ns.addAddress(ifname, ip.address);
  ns.setLink(ifname, { up: true });
  if (v6 && !opts.skipDadWait) await ns.waitDad(ifname);
  // Create without exclusive, as the reference (RouteAddEcmp): a second network's default route
  // installs beside the first instead of failing with EEXIST.
  for (const r of opts.routes ?? result.routes ?? []) ns.addRouteEcmp(routeSpec(r, ifname, ips));
}

const sameIp = (a: string | undefined, b: string | undefined): boolean =>
  a === b || (a !== undefined && b !== undefined && a.toLowerCase() === b.toLowerCase());

function canonicalDst(dst: string): string {
  const [ip = '', len] = dst.split('/');
  if (len === '0') return familyOf(ip) === 4 ? '0.0.0.0/0' : '::/0';
  return dst.toLowerCase();
}

/** CHECK: every address of the interface's IPs is on `ifname`; names the missing one. */
export async function checkInterfaceIps(
  ns: NetnsOps,
  ifname: string,
  ips: readonly IPConfig[],
): Promise<void> {
  const have = await ns.addresses({ link: ifname });
  for (const ip of ips) {
    const want = ip.address.split('/')[0] ?? '';
    if (!have.some((a) => sameIp(a.ip, want))) {
      throw new CniError(
        ErrorCode.Internal,
        `CHECK: ${ifname} in ${ns.netns} lacks address ${ip.address} from prevResult (has ${have.map((a) => a.cidr).join(', ') || 'none'})`,
      );
    }
  }
}

/** CHECK: every route of the result exists in the netns (same dst, same gateway when given). */
export async function checkRoutes(
  ns: NetnsOps,
  routes: readonly Route[],
  ips: readonly IPConfig[],
  dev?: string,
): Promise<void> {
  const cache = new Map<string, RouteEntry[]>();
  for (const r of routes) {
    const spec = routeSpec(r, dev ?? '', ips);
    const fam = familyOf(r.dst);
    const key = `${fam}:${spec.table ?? 254}`;
    let list = cache.get(key);
    if (!list) {
      list = await ns.routes({ family: fam, table: spec.table ?? 254 });
      cache.set(key, list);
    }
    const dst = canonicalDst(r.dst);
    const found = list.some((e) => e.dst === dst && (!spec.gw || sameIp(e.gw, spec.gw)));
    if (!found) {
      throw new CniError(
        ErrorCode.Internal,
        `CHECK: route to ${r.dst}${spec.gw ? ` via ${spec.gw}` : ''} from prevResult is missing in ${ns.netns}`,
      );
    }
  }
}
