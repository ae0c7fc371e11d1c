// host-local config: every field of the reference (ranges, the legacy single range, routes, dataDir,
// resolvConf) plus runtimeConfig.ipRanges, and requested IPs from CNI_ARGS IP=, args.cni.ips and
// runtimeConfig.ips (concatenated in that order, like the reference).
import { CniError, ErrorCode } from '../../spec/errors.js';
import type { Route } from '../../spec/result/types.js';
import { compareVersions } from '../../spec/version.js';
import { type IP, parseCIDR, parseIP } from '../ip.js';
import {
  canonicalizeRange,
  canonicalizeRangeSet,
  checkRangeSetsDisjoint,
  type RangeConfig,
  type RangeSet,
} from '../range.js';
import { parseRoutes } from '../routes.js';
import type { IpamNetConf } from '../types.js';

/** The reference's default state directory. */
export const DEFAULT_HOST_LOCAL_DATA_DIR = '/var/lib/cni/networks';

/** A validated host-local config. */
export interface HostLocalConfig {
  cniVersion: string;
  /** The network name: the state directory is `<dataDir>/<name>`. */
  name: string;
  dataDir: string;
  rangeSets: RangeSet[];
  routes: Route[];
  resolvConf?: string;
}

function bad(msg: string): CniError {
  return new CniError(ErrorCode.InvalidNetworkConfig, msg);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function rangeSetsFrom(value: unknown, field: string): RangeConfig[][] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || !value.every(Array.isArray)) {
    throw bad(
      `${field}: expected an array of range sets like [[{"subnet": "10.1.0.0/16"}]], got ${JSON.stringify(value)}`,
    );
  }
  return value as RangeConfig[][];
}

/** Parses and validates a host-local config (type check included). */
export function parseHostLocalConfig(conf: IpamNetConf): HostLocalConfig {
  const ipam = conf.ipam;
  if (!isObject(ipam))
    throw bad(`ipam: missing; add "ipam": {"type": "host-local", "ranges": [[{"subnet": "..."}]]}`);
  if (
    typeof conf.name !== 'string' ||
    conf.name === '' ||
    conf.name.includes('/') ||
    conf.name === '.' ||
    conf.name === '..'
  ) {
    throw bad(`name: ${JSON.stringify(conf.name)} cannot name a state directory; use a plain network name`);
  }
  const configs: RangeConfig[][] = [];
  const rc = isObject(conf.runtimeConfig) ? conf.runtimeConfig : {};
  configs.push(...rangeSetsFrom(rc.ipRanges, 'runtimeConfig.ipRanges'));
  if (ipam.subnet !== undefined && ipam.subnet !== '') {
    configs.push([
      {
        subnet: ipam.subnet as string,
        rangeStart: ipam.rangeStart as string | undefined,
        rangeEnd: ipam.rangeEnd as string | undefined,
        gateway: ipam.gateway as string | undefined,
      },
    ]);
  }
  const fromRanges = rangeSetsFrom(ipam.ranges, 'ipam.ranges');
  configs.push(...fromRanges);
  if (configs.length === 0) {
    throw bad(`ipam.ranges: no IP ranges specified; add "ranges": [[{"subnet": "10.1.0.0/16"}]]`);
  }
  // Name each set by where it came from, so errors point at the line the user wrote.
  const nRuntime = rangeSetsFrom(rc.ipRanges, 'runtimeConfig.ipRanges').length;
  const hasLegacy = configs.length - nRuntime - fromRanges.length === 1;
  const fieldOf = (i: number): string => {
    if (i < nRuntime) return `runtimeConfig.ipRanges[${i}]`;
    if (hasLegacy && i === nRuntime) return 'ipam';
    return `ipam.ranges[${i - nRuntime - (hasLegacy ? 1 : 0)}]`;
  };
  const rangeSets = configs.map((set, i) => {
    if (fieldOf(i) === 'ipam') return [canonicalizeRange(set[0]!, 'ipam')];
    return canonicalizeRangeSet(set, fieldOf(i));
  });
  checkRangeSetsDisjoint(rangeSets, 'ranges');
  const cniVersion = conf.cniVersion;
  if (
    typeof cniVersion === 'string' &&
    /^\d+\.\d+\.\d+$/.test(cniVersion) &&
    compareVersions(cniVersion, '0.3.0') < 0
  ) {
    const v4 = rangeSets.filter((s) => s[0]!.start.family === 4).length;
    const v6 = rangeSets.length - v4;
    if (v4 > 1 || v6 > 1) {
      throw bad(
        `cniVersion: ${cniVersion} does not support more than 1 address per family; use cniVersion 0.3.0 or later, or fewer range sets`,
      );
    }
  }
  if (ipam.dataDir !== undefined && typeof ipam.dataDir !== 'string') {
    throw bad(
      `ipam.dataDir: ${JSON.stringify(ipam.dataDir)} must be a path string such as "/var/lib/cni/networks"`,
    );
  }
  if (ipam.resolvConf !== undefined && typeof ipam.resolvConf !== 'string') {
    throw bad(
      `ipam.resolvConf: ${JSON.stringify(ipam.resolvConf)} must be a path string such as "/etc/resolv.conf"`,
    );
  }
  const out: HostLocalConfig = {
    cniVersion,
    name: conf.name,
    dataDir: (ipam.dataDir as string | undefined) || DEFAULT_HOST_LOCAL_DATA_DIR,
    rangeSets,
    routes: parseRoutes(ipam.routes),
  };
  if (ipam.resolvConf) out.resolvConf = ipam.resolvConf as string;
  return out;
}

function ipOfMaybeCidr(text: unknown, field: string): IP {
  if (typeof text === 'string' && text.includes('/')) return parseCIDR(text, field).ip;
  return parseIP(text, field);
}

/** Requested IPs: CNI_ARGS `IP=` (one), then `args.cni.ips`, then `runtimeConfig.ips`; a "/prefix" is ignored. */
export function requestedIPs(
  conf: IpamNetConf,
  cniArgs: ReadonlyArray<readonly [string, string]> = [],
): IP[] {
  const out: IP[] = [];
  let ipArg: string | undefined;
  for (const [k, v] of cniArgs) if (k === 'IP') ipArg = v;
  if (ipArg !== undefined && ipArg !== '') out.push(ipOfMaybeCidr(ipArg, 'CNI_ARGS IP'));
  const cni = isObject(conf.args) && isObject(conf.args.cni) ? conf.args.cni : undefined;
  if (cni?.ips !== undefined) {
    if (!Array.isArray(cni.ips))
      throw bad(`args.cni.ips: expected an array of IPs, got ${JSON.stringify(cni.ips)}`);
    cni.ips.forEach((s, i) => {
      out.push(ipOfMaybeCidr(s, `args.cni.ips[${i}]`));
    });
  }
  const rc = isObject(conf.runtimeConfig) ? conf.runtimeConfig : undefined;
  if (rc?.ips !== undefined) {
    if (!Array.isArray(rc.ips))
      throw bad(`runtimeConfig.ips: expected an array of IPs, got ${JSON.stringify(rc.ips)}`);
    rc.ips.forEach((s, i) => {
      out.push(ipOfMaybeCidr(s, `runtimeConfig.ips[${i}]`));
    });
  }
  return out;
}
