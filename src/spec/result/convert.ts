import { isIPv4Address } from '../addr.js';
import { CniError, ErrorCode } from '../errors.js';
import { type SchemaIssue, schemaError, showValue } from '../schema.js';
import {
  CURRENT_VERSION,
  normalizeVersion,
  type ResultFamily,
  resultFamily,
  type SpecVersion,
} from '../version.js';
import { resultSchemas } from './schema.js';
import type {
  AnyResult,
  DNS,
  Interface040,
  IPBlock020,
  IPConfig040,
  Result,
  Result020,
  Result040,
  Route,
} from './types.js';

// Conversion between result versions, following the reference library's rules (its
// pkg/types/100 package): lossless within a family, `version` added/dropped across
// 0.4 <-> 1.x, lossy and possibly refused going down to 0.1/0.2.

const clone = <T>(v: T): T => (v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T));

function isEmptyDns(d: DNS | undefined): boolean {
  return (
    !d ||
    ((d.nameservers?.length ?? 0) === 0 &&
      !d.domain &&
      (d.search?.length ?? 0) === 0 &&
      (d.options?.length ?? 0) === 0)
  );
}

function knownVersion(
  v: string | undefined,
  what: string,
  code: number = ErrorCode.IncompatibleCNIVersion,
): SpecVersion {
  const n = normalizeVersion(v);
  if (!n) {
    throw new CniError(
      code,
      `${what}: unsupported CNI result version ${JSON.stringify(v)}; use one of 0.1.0 … 1.1.0`,
    );
  }
  return n;
}

function familyOf(r: AnyResult): ResultFamily {
  return resultFamily(knownVersion(r.cniVersion, 'cniVersion'));
}

function basicRoute(r: Route): Route {
  const out: Route = { dst: r.dst };
  if (r.gw !== undefined) out.gw = r.gw;
  return out;
}

function v020to040(r: Result020, to: string): Result040 {
  const ips: IPConfig040[] = [];
  const routes: Route[] = [];
  for (const [block, version] of [
    [r.ip4, '4'],
    [r.ip6, '6'],
  ] as const) {
    if (!block) continue;
    const ip: IPConfig040 = { version, address: block.ip };
    if (block.gateway !== undefined) ip.gateway = block.gateway;
    ips.push(ip);
    for (const rt of block.routes ?? []) routes.push(clone(rt));
  }
  const out: Result040 = { cniVersion: to, dns: clone(r.dns) ?? {} };
  if (ips.length) out.ips = ips;
  if (routes.length) out.routes = routes;
  return out;
}

function v040to020(r: Result040, to: string): Result020 {
  let ip4: IPBlock020 | undefined;
  let ip6: IPBlock020 | undefined;
  for (const ip of r.ips ?? []) {
    const block: IPBlock020 = { ip: ip.address };
    if (ip.gateway !== undefined) block.gateway = ip.gateway;
    if (ip.version === '4' && !ip4) ip4 = block;
    else if (ip.version === '6' && !ip6) ip6 = block;
  }
  if (!ip4 && !ip6) {
    throw new CniError(
      ErrorCode.IncompatibleCNIVersion,
      `cannot convert result to ${to}: no valid IP addresses (a ${to} result needs an IPv4 or IPv6 address)`,
    );
  }
  for (const rt of r.routes ?? []) {
    const v4 = isIPv4Address(rt.dst);
    const block = v4 ? ip4 : ip6;
    if (!block) continue;
    block.routes ??= [];
    block.routes.push(basicRoute(rt));
  }
  return { cniVersion: to, ...(ip4 ? { ip4 } : {}), ...(ip6 ? { ip6 } : {}), dns: clone(r.dns) ?? {} };
}

function v040to100(r: Result040, to: string): Result {
  const out: Result = { cniVersion: to };
  if (r.interfaces) out.interfaces = r.interfaces.map((i) => clone(i));
  if (r.ips) {
    out.ips = r.ips.map(({ version: _v, ...rest }) => clone(rest));
  }
  if (r.routes) out.routes = clone(r.routes);
  if (!isEmptyDns(r.dns)) out.dns = clone(r.dns);
  return out;
}

function v100to040(r: Result, to: string): Result040 {
  const out: Result040 = { cniVersion: to, dns: {} };
  if (r.interfaces) {
    out.interfaces = r.interfaces.map((i) => {
      const o: Interface040 = { name: i.name };
      if (i.mac !== undefined) o.mac = i.mac;
      if (i.sandbox !== undefined) o.sandbox = i.sandbox;
      return o;
    });
  }
  if (r.ips) {
    out.ips = r.ips.map((ip) => {
      const o: IPConfig040 = { version: isIPv4Address(ip.address) ? '4' : '6', address: ip.address };
      if (ip.interface !== undefined) o.interface = ip.interface;
      if (ip.gateway !== undefined) o.gateway = ip.gateway;
      return o;
    });
  }
  if (r.routes) out.routes = clone(r.routes);
  out.dns = clone(r.dns) ?? {};
  return out;
}

/**
 * Converts a result of any version to `toVersion` ("" means 0.1.0), with the reference's rules.
 * Always returns a fresh object. Throws CniError code 1 for an unknown version or when nothing
 * representable is left (a 0.1/0.2 result without IPs).
 */
export function convertResult(result: AnyResult, toVersion: string): AnyResult {
  const to = knownVersion(toVersion, 'target version');
  const from = familyOf(result);
  const toFam = resultFamily(to);
  if (from === toFam) {
    const out = clone(result);
    out.cniVersion = to;
    return out;
  }
  if (from === '0.2') {
    const r040 = v020to040(result as Result020, to);
    return toFam === '0.4' ? r040 : v040to100(r040, to);
  }
  if (from === '0.4') {
    return toFam === '0.2' ? v040to020(result as Result040, to) : v040to100(result as Result040, to);
  }
  const r040 = v100to040(result as Result, to);
  return toFam === '0.4' ? r040 : v040to020(r040, to);
}

/** Converts any result to the current type (1.1.0), the only result type inside the SDK. */
export function toCurrentResult(result: AnyResult): Result {
  return convertResult(result, CURRENT_VERSION) as Result;
}

/**
 * Parses a result from JSON text or a decoded value, validating it against its version's schema.
 * A missing or empty `cniVersion` takes `fallbackVersion` (libcni's rule: the config's version),
 * else 0.1.0; `null` counts as `{}`. The returned result is stamped with its version.
 */
export function parseResult(
  json: unknown,
  fallbackVersion?: string,
  opts: { what?: string; code?: number; label?: string } = {},
): AnyResult {
  const what = opts.what ?? 'result';
  const code = opts.code ?? ErrorCode.DecodingFailure;
  const label = opts.label ?? '';
  let v: unknown = json;
  if (typeof json === 'string' || json instanceof Uint8Array) {
    const text = typeof json === 'string' ? json : new TextDecoder().decode(json);
    try {
      v = JSON.parse(text);
    } catch (e) {
      throw new CniError(code, `${label}${what}: not valid JSON (${(e as Error).message})`);
    }
  }
  if (v === null) v = {};
  if (typeof v !== 'object' || Array.isArray(v)) {
    throw new CniError(
      code,
      `${label}${what}: must be a JSON object, got ${Array.isArray(v) ? 'a list' : typeof v}`,
    );
  }
  const obj = clone(v) as Record<string, unknown>;
  const raw = obj.cniVersion;
  if (raw !== undefined && typeof raw !== 'string') {
    throw new CniError(
      code,
      `${label}${what}.cniVersion: ${JSON.stringify(raw)} must be a string such as "1.1.0"`,
    );
  }
  const version = knownVersion(
    raw ? raw : fallbackVersion || '0.1.0',
    `${label}${what}.cniVersion`,
    opts.code ?? ErrorCode.IncompatibleCNIVersion,
  );
  obj.cniVersion = version;
  const schemaLabel = label.replace(/: $/, '');
  resultSchemas[resultFamily(version)].parse(obj, {
    path: what,
    code,
    ...(schemaLabel ? { label: schemaLabel } : {}),
  });
  return obj as unknown as AnyResult;
}

/**
 * Validates a result against the schema of the version it carries, and checks that every
 * `ips[].interface` is an index into `interfaces` (0.3.0 and later); throws CniError (code 6)
 * naming the field, the value and the fix otherwise. The SDK runs it on every result a handler
 * returns before printing it.
 */
export function validateResult(result: AnyResult, what = 'result'): void {
  const version = knownVersion(result.cniVersion, `${what}.cniVersion`);
  const family = resultFamily(version);
  resultSchemas[family].parse(result, { path: what, code: ErrorCode.DecodingFailure });
  if (family !== '0.2') checkInterfaceIndexes(result as Result | Result040, what, ErrorCode.DecodingFailure);
}

/** `ips[i].interface` must name an entry of `interfaces` (the schema already made it an integer >= 0). */
function checkInterfaceIndexes(result: Result | Result040, what: string, code: number): void {
  const count = result.interfaces?.length ?? 0;
  const issues: SchemaIssue[] = [];
  (result.ips ?? []).forEach((ip, i) => {
    if (ip.interface === undefined || ip.interface === null || ip.interface < count) return;
    const path = `${what}.ips[${i}].interface`;
    const problem =
      count === 0
        ? 'is not an index into interfaces: the result lists no interfaces'
        : `is not an index into interfaces: the result lists ${count} (indexes 0 to ${count - 1})`;
    const fix =
      count === 0
        ? 'add the interface to "interfaces", or leave "interface" out'
        : `use the index of the interface in "interfaces" (0 to ${count - 1}), or leave "interface" out`;
    issues.push({ path, message: `${path}: ${showValue(ip.interface)} ${problem}; ${fix}` });
  });
  if (issues.length > 0) throw schemaError(issues, code);
}
