// static IPAM: echoes configured addresses. Sources, in the reference's precedence:
// ipam.addresses, then CNI_ARGS IP= (comma-separated CIDRs, appended) and GATEWAY= (set on every
// address whose subnet holds it), then args.cni.ips (replaces), then runtimeConfig.ips (replaces).
// No state: DEL and GC are no-ops; CHECK compares against prevResult.
import { CniError, ErrorCode } from '../../spec/errors.js';
import type { DNS, IPConfig, Result, Route } from '../../spec/result/types.js';
import { compareVersions } from '../../spec/version.js';
import {
  formatCIDR,
  formatIP,
  type IP,
  ipEquals,
  parseCIDR,
  parseIP,
  type Subnet,
  subnetContains,
} from '../ip.js';
import { parseRoutes } from '../routes.js';
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

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function cidrList(value: unknown, field: string): StaticAddress[] {
  if (!Array.isArray(value))
    throw bad(`${field}: expected an array of CIDRs like ["10.1.2.3/24"], got ${JSON.stringify(value)}`);
  return value.map((s, i) => {
    const { ip, subnet } = parseCIDR(s, `${field}[${i}]`);
    return { ip, subnet };
  });
}

/** Resolves the addresses static hands out for one call, in the reference's precedence. */
export function staticAddresses(
  conf: IpamNetConf,
  cniArgs: ReadonlyArray<readonly [string, string]> = [],
): StaticAddress[] {
  const ipam = conf.ipam;
  if (!isObject(ipam))
    throw bad(`ipam: missing; add "ipam": {"type": "static", "addresses": [{"address": "10.1.2.3/24"}]}`);
  let out: StaticAddress[] = [];
  if (ipam.addresses !== undefined && ipam.addresses !== null) {
    if (!Array.isArray(ipam.addresses)) {
      throw bad(
        `ipam.addresses: expected [{"address": "10.1.2.3/24", "gateway"?: "10.1.2.1"}], got ${JSON.stringify(ipam.addresses)}`,
      );
    }
    out = ipam.addresses.map((a: unknown, i: number) => {
      const f = `ipam.addresses[${i}]`;
      if (!isObject(a)) throw bad(`${f}: expected {"address": "10.1.2.3/24"}, got ${JSON.stringify(a)}`);
      const { ip, subnet } = parseCIDR(a.address, `${f}.address`);
      const entry: StaticAddress = { ip, subnet };
      if (a.gateway !== undefined && a.gateway !== null && a.gateway !== '') {
        entry.gateway = parseIP(a.gateway, `${f}.gateway`);
        if (entry.gateway.family !== ip.family) {
          throw bad(
            `${f}.gateway: ${JSON.stringify(a.gateway)} is not the same family as ${JSON.stringify(a.address)}; use an IPv${ip.family} gateway`,
          );
        }
      }
      return entry;
    });
  }
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
  const cni = isObject(conf.args) && isObject(conf.args.cni) ? conf.args.cni : undefined;
  if (cni?.ips !== undefined) out = cidrList(cni.ips, 'args.cni.ips');
  const rc = isObject(conf.runtimeConfig) ? conf.runtimeConfig : undefined;
  if (rc?.ips !== undefined) out = cidrList(rc.ips, 'runtimeConfig.ips');
  const v = conf.cniVersion;
  if (typeof v === 'string' && /^\d+\.\d+\.\d+$/.test(v) && compareVersions(v, '0.3.0') < 0) {
    const v4 = out.filter((a) => a.ip.family === 4).length;
    if (v4 > 1 || out.length - v4 > 1) {
      throw bad(
        `cniVersion: ${v} does not support more than 1 address per family; use cniVersion 0.3.0 or later`,
      );
    }
  }
  return out;
}

function parseDns(value: unknown): DNS | undefined {
  if (value === undefined || value === null) return undefined;
  if (!isObject(value))
    throw bad(
      `ipam.dns: expected {"nameservers": [...], "domain"?, "search"?, "options"?}, got ${JSON.stringify(value)}`,
    );
  for (const k of ['nameservers', 'search', 'options'] as const) {
    const list = value[k];
    if (list !== undefined && (!Array.isArray(list) || !list.every((s) => typeof s === 'string'))) {
      throw bad(`ipam.dns.${k}: expected an array of strings, got ${JSON.stringify(list)}`);
    }
  }
  if (value.domain !== undefined && typeof value.domain !== 'string') {
    throw bad(`ipam.dns.domain: expected a string, got ${JSON.stringify(value.domain)}`);
  }
  return value as DNS;
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
  private readonly conf: IpamNetConf;
  private readonly routes: Route[];
  private readonly dns: DNS | undefined;

  constructor(conf: IpamNetConf) {
    this.conf = conf;
    staticAddresses(conf); // validate the config part early
    const ipam = conf.ipam as Record<string, unknown>;
    this.routes = parseRoutes(ipam.routes);
    this.dns = parseDns(ipam.dns);
  }

  /** ADD: the configured (or requested) addresses, routes and DNS. */
  async allocate(req: IpamRequest): Promise<Result> {
    const ips: IPConfig[] = staticAddresses(this.conf, req.args).map((a) => {
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
    for (const a of staticAddresses(this.conf, req.args)) {
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
