// Schema pieces the IPAM configs share (see cni-kit/spec `conf`): result routes, requested
// addresses, and the "IP or CIDR" form CNI_ARGS and args.cni use.
import { type IP, type IPFamily, parseCIDR, parseIP } from '../spec/addr.js';
import { CniError, ErrorCode } from '../spec/errors.js';
import { conf, type Schema } from '../spec/schema.js';
import { compareVersions } from '../spec/version.js';

/** IPAM `routes`: copied to the result as written (extra route fields such as priority kept). */
export const routesSchema = conf
  .array(
    conf
      .object({ dst: conf.cidr(), gw: conf.ip().optional() })
      .fix('use {"dst": "<cidr>", "gw"?: "<ip>"}, e.g. {"dst": "0.0.0.0/0"}'),
  )
  .fix('use a list like [{"dst": "0.0.0.0/0"}]');

/** An address with or without a "/prefix" (the prefix is ignored), as a parsed IP. */
export function ipOfMaybeCidr(text: unknown, field: string): IP {
  if (typeof text === 'string' && text.includes('/')) return parseCIDR(text, field).ip;
  return parseIP(text, field);
}

/** A list of requested addresses (host-local's `args.cni.ips`, `runtimeConfig.ips`): bare IPs or CIDRs. */
export const requestedIPsSchema = conf
  .array(conf.custom((v, path) => ipOfMaybeCidr(v, path)))
  .fix('use a list of IPs such as ["10.1.2.3"]');

/** Where a runtime or a meta plugin requests addresses: `args.cni.ips` and `runtimeConfig.ips`. */
export function requestedFields<T>(list: Schema<T[]>) {
  return {
    args: conf.object({ cni: conf.object({ ips: list.optional() }).optional() }).optional(),
    runtimeConfig: conf.object({ ips: list.optional() }).optional(),
  };
}

/**
 * A 0.1.0/0.2.0 result holds one address per family (ip4, ip6): refuse a config that would hand
 * out more, naming the version and `fix`.
 */
export function checkLegacyAddressCount(
  cniVersion: string,
  families: readonly IPFamily[],
  fix: string,
): void {
  if (!/^\d+\.\d+\.\d+$/.test(cniVersion) || compareVersions(cniVersion, '0.3.0') >= 0) return;
  const v4 = families.filter((f) => f === 4).length;
  if (v4 > 1 || families.length - v4 > 1) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `cniVersion: ${cniVersion} does not support more than 1 address per family; use cniVersion 0.3.0 or later${fix}`,
    );
  }
}
