// host-local config: every field of the reference (ranges, the legacy single range, routes, dataDir,
// resolvConf) plus runtimeConfig.ipRanges, and requested IPs from CNI_ARGS IP=, args.cni.ips and
// runtimeConfig.ips (concatenated in that order, like the reference).

import type { IP } from '../../spec/addr.js';
import { CniError, ErrorCode } from '../../spec/errors.js';
import type { Route } from '../../spec/result/types.js';
import { conf } from '../../spec/schema.js';
import {
  canonicalizeRange,
  canonicalizeRangeSet,
  checkRangeSetsDisjoint,
  type RangeConfig,
  type RangeSet,
} from '../range.js';
import {
  checkLegacyAddressCount,
  ipOfMaybeCidr,
  requestedFields,
  requestedIPsSchema,
  routesSchema,
} from '../schema.js';
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

const rangeFields = {
  subnet: conf.string().fix('every range needs a subnet such as "10.1.0.0/16"'),
  rangeStart: conf.string().optional(),
  rangeEnd: conf.string().optional(),
  gateway: conf.string().optional(),
};
const rangeSetsSchema = conf
  .array(conf.array(conf.object(rangeFields).fix('use an object like {"subnet": "10.1.0.0/16"}')))
  .fix('use a list of range sets like [[{"subnet": "10.1.0.0/16"}]]');

function bad(msg: string): CniError {
  return new CniError(ErrorCode.InvalidNetworkConfig, msg);
}

/** host-local's config: the network name and the `ipam` block, plus runtimeConfig.ipRanges. */
const hostLocalSchema = conf
  .object({
    cniVersion: conf.string(),
    name: conf
      .string()
      .pattern(/^(?!\.\.?$)[^/]+$/, 'cannot name a state directory')
      .fix('use a plain network name'),
    runtimeConfig: conf.object({ ipRanges: rangeSetsSchema.optional() }).optional(),
    ipam: conf
      .object({
        // The legacy single range.
        subnet: conf.string().optional(),
        rangeStart: conf.string().optional(),
        rangeEnd: conf.string().optional(),
        gateway: conf.string().optional(),
        ranges: rangeSetsSchema.optional(),
        routes: routesSchema.default([]),
        dataDir: conf.string().default(DEFAULT_HOST_LOCAL_DATA_DIR),
        resolvConf: conf.string().optional(),
      })
      .fix('add "ipam": {"type": "host-local", "ranges": [[{"subnet": "..."}]]}'),
  })
  .transform((c): HostLocalConfig => {
    const { ipam } = c;
    // Name each set by where it came from, so errors point at the line the user wrote.
    const sets: Array<{ field: string; configs: RangeConfig[] }> = [];
    (c.runtimeConfig?.ipRanges ?? []).forEach((configs, i) => {
      sets.push({ field: `runtimeConfig.ipRanges[${i}]`, configs });
    });
    if (ipam.subnet !== undefined) {
      const legacy: RangeConfig = { subnet: ipam.subnet };
      if (ipam.rangeStart !== undefined) legacy.rangeStart = ipam.rangeStart;
      if (ipam.rangeEnd !== undefined) legacy.rangeEnd = ipam.rangeEnd;
      if (ipam.gateway !== undefined) legacy.gateway = ipam.gateway;
      sets.push({ field: 'ipam', configs: [legacy] });
    }
    (ipam.ranges ?? []).forEach((configs, i) => {
      sets.push({ field: `ipam.ranges[${i}]`, configs });
    });
    if (sets.length === 0) {
      throw bad('ipam.ranges: no IP ranges specified; add "ranges": [[{"subnet": "10.1.0.0/16"}]]');
    }
    const rangeSets = sets.map(({ field, configs }) =>
      field === 'ipam' ? [canonicalizeRange(configs[0]!, 'ipam')] : canonicalizeRangeSet(configs, field),
    );
    checkRangeSetsDisjoint(rangeSets, 'ranges');
    const families = rangeSets.map((s) => s[0]!.start.family);
    checkLegacyAddressCount(c.cniVersion, families, ', or fewer range sets');
    const out: HostLocalConfig = {
      cniVersion: c.cniVersion,
      name: c.name,
      dataDir: ipam.dataDir,
      rangeSets,
      routes: ipam.routes as Route[],
    };
    if (ipam.resolvConf !== undefined) out.resolvConf = ipam.resolvConf;
    return out;
  });

/** Parses and validates a host-local config (type check included). */
export function parseHostLocalConfig(config: IpamNetConf): HostLocalConfig {
  return hostLocalSchema.parse(config);
}

const requestedSchema = conf.object(requestedFields(requestedIPsSchema));

/** Requested IPs: CNI_ARGS `IP=` (one), then `args.cni.ips`, then `runtimeConfig.ips`; a "/prefix" is ignored. */
export function requestedIPs(
  config: IpamNetConf,
  cniArgs: ReadonlyArray<readonly [string, string]> = [],
): IP[] {
  let ipArg: string | undefined;
  for (const [k, v] of cniArgs) if (k === 'IP') ipArg = v;
  const sources = requestedSchema.parse(config);
  return [
    ...(ipArg ? [ipOfMaybeCidr(ipArg, 'CNI_ARGS IP')] : []),
    ...(sources.args?.cni?.ips ?? []),
    ...(sources.runtimeConfig?.ips ?? []),
  ];
}
