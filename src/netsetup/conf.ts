// Typed reads of plugin config fields with errors that name the field, the bad value and the fix,
// plus the MAC lookup order the reference plugins share (runtimeConfig.mac, args.cni.mac, CNI_ARGS MAC).
import { CniError, ErrorCode } from '../spec/errors.js';

type Obj = Record<string, unknown>;

const bad = (field: string, value: unknown, fix: string): CniError =>
  new CniError(ErrorCode.InvalidNetworkConfig, `${field}: ${JSON.stringify(value)} ${fix}`);

/** An optional boolean field. */
export function optBool(conf: Obj, field: string): boolean | undefined {
  const v = conf[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw bad(field, v, 'must be true or false');
  return v;
}

/** An optional string field; `allowed` restricts it to a set of values. */
export function optString(conf: Obj, field: string, allowed?: readonly string[]): string | undefined {
  const v = conf[field];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw bad(field, v, 'must be a string');
  if (allowed && !allowed.includes(v)) throw bad(field, v, `must be one of ${allowed.join(', ')}`);
  return v;
}

/** An optional integer field within [min, max]; 0 reads as "unset" when `zeroUnset`. */
export function optInt(
  conf: Obj,
  field: string,
  min: number,
  max: number,
  zeroUnset = false,
): number | undefined {
  const v = conf[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw bad(field, v, `must be an integer from ${min} to ${max}`);
  return zeroUnset && v === 0 ? undefined : v;
}

const MAC_RE = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

/** Checks and lower-cases a MAC address from `field`; rejects multicast MACs, which no NIC can own. */
export function parseMac(value: unknown, field: string): string {
  if (typeof value !== 'string' || !MAC_RE.test(value))
    throw bad(field, value, 'must be a MAC address like "c2:11:22:33:44:55"');
  const mac = value.toLowerCase();
  if (Number.parseInt(mac.slice(0, 2), 16) & 1)
    throw bad(field, value, 'is a multicast MAC; clear the lowest bit of the first octet');
  return mac;
}

/**
 * The MAC requested for the container interface, in the reference's precedence: CNI_ARGS MAC,
 * then args.cni.mac, then runtimeConfig.mac, then the config's own `mac`.
 */
export function requestedMac(
  conf: Obj,
  args: ReadonlyArray<readonly [string, string]>,
  ownField = 'mac',
): string | undefined {
  const fromArgs = [...args].reverse().find(([k]) => k === 'MAC')?.[1];
  if (fromArgs) return parseMac(fromArgs, 'CNI_ARGS MAC');
  const cni = ((conf.args as Obj | undefined)?.cni ?? undefined) as Obj | undefined;
  if (cni?.mac !== undefined) return parseMac(cni.mac, 'args.cni.mac');
  const rc = conf.runtimeConfig as Obj | undefined;
  if (rc?.mac !== undefined && rc.mac !== '') return parseMac(rc.mac, 'runtimeConfig.mac');
  if (conf[ownField] !== undefined && conf[ownField] !== '') return parseMac(conf[ownField], ownField);
  return undefined;
}

/** Code 7 for a field that must be set. */
export function missingField(field: string, fix: string): CniError {
  return new CniError(ErrorCode.InvalidNetworkConfig, `${field}: missing; ${fix}`);
}
