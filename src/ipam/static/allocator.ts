// static IPAM: echoes configured addresses. Sources, in the reference's precedence:
// ipam.addresses, then CNI_ARGS IP= (comma-separated CIDRs, appended) and GATEWAY= (set on every
// address whose subnet holds it), then args.cni.ips (replaces), then runtimeConfig.ips (replaces).
// No state: DEL and GC are no-ops; CHECK compares against prevResult.
import {
  formatCIDR,
  formatIP,
  type IP,
  ipEquals,
  parseCIDR,
  parseIP,
  type Subnet,
  subnetContains,
} from '../../spec/addr.js';
import { CniError, ErrorCode } from '../../spec/errors.js';
import { dnsSchema } from '../../spec/result/schema.js';
import type { DNS, IPConfig, Result, Route } from '../../spec/result/types.js';
import { conf, type Infer } from '../../spec/schema.js';
import { checkLegacyAddressCount, requestedFields, routesSchema } from '../schema.js';
import type { IpamAllocator, IpamGcReport, IpamNetConf, IpamRequest, IpamStatus } from '../types.js';

/** One static address: the host bits are kept. */
export interface StaticAddress {
  ip: IP;
  subnet: Subnet;
  gateway?: IP;
}

function bad(msg: string): CniError {
  return new CniError(ErrorCode.InvalidNetworkConfig, msg);
}

const cidrList = conf
  .array(conf.cidr().transform((c, path) => parseCIDR(c, path)))
  .fix('use a list of CIDRs like ["10.1.2.3/24"]');

/** static's config: the `ipam` block, and the addresses args.cni and runtimeConfig may request. */
const staticSchema = conf.object({
  cniVersion: conf.string(),
  ipam: conf
    .object({
      addresses: conf
        .array(
          conf
            .object({ address: conf.cidr(), gateway: conf.ip().optional() })
            .fix('use {"address": "10.1.2.3/24", "gateway"?: "10.1.2.1"}')
            .transform((a, path): StaticAddress => {
              const { ip, subnet } = parseCIDR(a.address);
              if (a.gateway === undefined) return { ip, subnet };
              const gateway = parseIP(a.gateway);
              if (gateway.family !== ip.family) {
                throw bad(
                  `${path}.gateway: ${JSON.stringify(a.gateway)} is not the same family as ${JSON.stringify(a.address)}; use an IPv${ip.family} gateway`,
                );
              }
              return { ip, subnet, gateway };
            }),
        )
        .default([]),
      routes: routesSchema.default([]),
      dns: dnsSchema.optional(),
    })
    .fix('add "ipam": {"type": "static", "addresses": [{"address": "10.1.2.3/24"}]}'),
  ...requestedFields(cidrList),
});

/** Resolves the addresses static hands out for one call, in the reference's precedence. */
export function staticAddresses(
  config: IpamNetConf,
  cniArgs: ReadonlyArray<readonly [string, string]> = [],
): StaticAddress[] {
  return resolveAddresses(staticSchema.parse(config), cniArgs);
}

function resolveAddresses(
  c: Infer<typeof staticSchema>,
  cniArgs: ReadonlyArray<readonly [string, string]>,
): StaticAddress[] {
  let out: StaticAddress[] = c.ipam.addresses.map((a) => ({ ...a }));
  let ipArg: string | undefined;
  let gwArg: string | undefined;
  for (const [k, v] of cniArgs) {
    if (k === 'IP') ipArg = v;
    else if (k === 'GATEWAY') gwArg = v;
  }
  if (ipArg) {
    ipArg.split(',').forEach((item, i) => {
      const { ip, subnet } = parseCIDR(item.trim(), `CNI_ARGS IP (item ${i})`);
      out.push({ ip, subnet });
    });
  }
  if (gwArg) {
    for (const item of gwArg.split(',')) {
      const gw = parseIP(item.trim(), 'CNI_ARGS GATEWAY');
      for (const a of out) if (subnetContains(a.subnet, gw)) a.gateway = gw;
    }
  }
  const cniIps = c.args?.cni?.ips;
  if (cniIps !== undefined) out = cniIps.map(({ ip, subnet }) => ({ ip, subnet }));
  const rcIps = c.runtimeConfig?.ips;
  if (rcIps !== undefined) out = rcIps.map(({ ip, subnet }) => ({ ip, subnet }));
  checkLegacyAddressCount(
    c.cniVersion,
    out.map((a) => a.ip.family),
    '',
  );
  return out;
}

function sameAddress(a: StaticAddress, cidr: string): boolean {
  try {
    const p = parseCIDR(cidr);
    return ipEquals(p.ip, a.ip) && p.subnet.prefix === a.subnet.prefix;
  } catch {
    return false;
  }
}

/** The static allocator for one network config. */
export class StaticAllocator implements IpamAllocator {
  private readonly conf: Infer<typeof staticSchema>;
  private readonly routes: Route[];
  private readonly dns: DNS | undefined;

  constructor(config: IpamNetConf) {
    const c = staticSchema.parse(config);
    resolveAddresses(c, []); // the config's own addresses are checked early too
    this.conf = c;
    this.routes = c.ipam.routes as Route[];
    this.dns = c.ipam.dns;
  }

  /** ADD: the configured (or requested) addresses, routes and DNS. */
  async allocate(req: IpamRequest): Promise<Result> {
    const ips: IPConfig[] = resolveAddresses(this.conf, req.args ?? []).map((a) => {
      const c: IPConfig = { address: formatCIDR(a.ip, a.subnet.prefix) };
      if (a.gateway) c.gateway = formatIP(a.gateway);
      return c;
    });
    const result: Result = { cniVersion: this.conf.cniVersion, ips };
    if (this.routes.length > 0) result.routes = this.routes;
    if (this.dns) result.dns = this.dns;
    return result;
  }

  /** DEL: nothing was allocated. */
  async release(): Promise<void> {}

  /** CHECK: every address must be in prevResult with the same gateway. */
  async check(req: IpamRequest): Promise<void> {
    if (!req.prevResult) {
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        'static: CHECK requires prevResult in the config; the runtime must pass the ADD result',
      );
    }
    const prev = req.prevResult.ips ?? [];
    for (const a of resolveAddresses(this.conf, req.args ?? [])) {
      const found = prev.find((p) => sameAddress(a, p.address));
      const addr = formatCIDR(a.ip, a.subnet.prefix);
      if (!found) {
        throw new CniError(
          ErrorCode.InvalidNetworkConfig,
          `static: failed to match addr ${addr} on interface ${req.ifname}: it is not in prevResult.ips`,
        );
      }
      const gw = found.gateway ? parseIP(found.gateway, 'prevResult.ips[].gateway') : undefined;
      if ((a.gateway || gw) && !ipEquals(a.gateway, gw)) {
        throw new CniError(
          ErrorCode.InvalidNetworkConfig,
          `static: failed to match addr ${addr} on interface ${req.ifname}: gateway is ${found.gateway ?? 'unset'} in prevResult, ${a.gateway ? formatIP(a.gateway) : 'unset'} in config`,
        );
      }
    }
  }

  /** GC: static holds no state. */
  async gc(): Promise<IpamGcReport> {
    return { released: [] };
  }

  /** STATUS: always ready. */
  async status(): Promise<IpamStatus> {
    return { pools: [] };
  }
}

/** Factory for the registry. */
export function createStatic(config: IpamNetConf): StaticAllocator {
  return new StaticAllocator(config);
}
