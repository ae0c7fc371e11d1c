// IPAM `routes` validation shared by host-local and static.
import { CniError, ErrorCode } from '../spec/errors.js';
import type { Route } from '../spec/result/types.js';
import { parseCIDR, parseIP } from './ip.js';

function bad(msg: string): CniError {
  return new CniError(ErrorCode.InvalidNetworkConfig, msg);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Validates `ipam` routes ({dst: CIDR, gw?: IP}); they are copied to the result verbatim. */
export function parseRoutes(value: unknown, field = 'ipam.routes'): Route[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value))
    throw bad(`${field}: expected an array like [{"dst": "0.0.0.0/0"}], got ${JSON.stringify(value)}`);
  return value.map((r, i) => {
    if (!isObject(r))
      throw bad(`${field}[${i}]: expected {"dst": "<cidr>", "gw"?: "<ip>"}, got ${JSON.stringify(r)}`);
    parseCIDR(r.dst, `${field}[${i}].dst`);
    if (r.gw !== undefined && r.gw !== null && r.gw !== '') parseIP(r.gw, `${field}[${i}].gw`);
    return r as unknown as Route;
  });
}
