// What the plugin printed, judged against the spec: one JSON document, VERSION's shape, the error
// object, and the ADD result of each version family. Written for the kit (strict, every problem
// named with its JSON path) rather than reusing the SDK's parsers, so the SDK's own plugins are
// not judged by the code that produced their output.
import { type IPFamily, tryParseIP } from '../spec/index.js';

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Obj = { [k: string]: Json };

/** Parses stdout as exactly one JSON document (surrounding whitespace allowed). */
export function parseSingleJson(stdout: string): { value: Json } | { why: string } {
  const text = stdout.trim();
  if (!text) return { why: 'stdout is empty' };
  try {
    return { value: JSON.parse(text) as Json };
  } catch {
    const shown = text.length > 100 ? `${text.slice(0, 99)}…` : text;
    return { why: `stdout is not one JSON document: ${JSON.stringify(shown)}` };
  }
}

export const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

const VERSION_RE = /^\d+\.\d+\.\d+$/;

/** VERSION output: `{cniVersion, supportedVersions: [string, ...]}`. */
export function checkVersionInfo(v: Json): string[] {
  if (!isObj(v)) return ['VERSION output is not a JSON object'];
  const p: string[] = [];
  if (typeof v.cniVersion !== 'string') p.push('cniVersion: missing or not a string');
  else if (!VERSION_RE.test(v.cniVersion)) p.push(`cniVersion: ${JSON.stringify(v.cniVersion)} is not X.Y.Z`);
  const sv = v.supportedVersions;
  if (sv === undefined) p.push('supportedVersions: missing');
  else if (!Array.isArray(sv)) p.push('supportedVersions: not an array');
  else if (sv.length === 0) p.push('supportedVersions: empty');
  else
    sv.forEach((s, i) => {
      if (typeof s !== 'string') p.push(`supportedVersions[${i}]: not a string`);
    });
  return p;
}

/** An error object: `{code: number, msg: string, details?: string, cniVersion?: string}`. */
export function checkErrorJson(v: Json): string[] {
  if (!isObj(v)) return ['error output is not a JSON object'];
  const p: string[] = [];
  if (typeof v.code !== 'number' || !Number.isInteger(v.code) || v.code < 0)
    p.push(`code: ${JSON.stringify(v.code)} is not a non-negative integer`);
  if (typeof v.msg !== 'string') p.push(`msg: ${JSON.stringify(v.msg)} is not a string`);
  if (v.details !== undefined && typeof v.details !== 'string') p.push('details: not a string');
  if (v.cniVersion !== undefined && typeof v.cniVersion !== 'string') p.push('cniVersion: not a string');
  return p;
}

function ipOf(text: unknown, family?: IPFamily): IPFamily | string {
  if (typeof text !== 'string') return `${JSON.stringify(text)} is not a string`;
  const ip = tryParseIP(text);
  if (!ip) return `${JSON.stringify(text)} is not an IP address`;
  if (family && ip.family !== family) return `${JSON.stringify(text)} is not IPv${family}`;
  return ip.family;
}

function cidrOf(text: unknown, family?: IPFamily): IPFamily | string {
  if (typeof text !== 'string') return `${JSON.stringify(text)} is not a string`;
  const m = /^([^/]+)\/(\d{1,3})$/.exec(text);
  if (!m) return `${JSON.stringify(text)} is not in CIDR notation (address/prefix)`;
  const ip = tryParseIP(m[1]!);
  if (!ip) return `${JSON.stringify(text)}: ${JSON.stringify(m[1])} is not an IP address`;
  if (Number(m[2]) > (ip.family === 4 ? 32 : 128)) return `${JSON.stringify(text)}: prefix out of range`;
  if (family && ip.family !== family) return `${JSON.stringify(text)} is not IPv${family}`;
  return ip.family;
}

function checkRoutes(routes: Json | undefined, path: string, p: string[], family?: IPFamily): void {
  if (routes === undefined || routes === null) return;
  if (!Array.isArray(routes)) {
    p.push(`${path}: not an array`);
    return;
  }
  routes.forEach((r, i) => {
    const at = `${path}[${i}]`;
    if (!isObj(r)) {
      p.push(`${at}: not an object`);
      return;
    }
    const dst = cidrOf(r.dst, family);
    if (typeof dst === 'string') p.push(`${at}.dst: ${dst}`);
    if (r.gw !== undefined && r.gw !== '') {
      const gw = ipOf(r.gw, typeof dst === 'number' ? dst : family);
      if (typeof gw === 'string') p.push(`${at}.gw: ${gw}`);
    }
    for (const k of ['mtu', 'advmss', 'priority', 'table', 'scope']) {
      if (r[k] !== undefined && typeof r[k] !== 'number') p.push(`${at}.${k}: not a number`);
    }
  });
}

function checkDns(dns: Json | undefined, p: string[]): void {
  if (dns === undefined || dns === null) return;
  if (!isObj(dns)) {
    p.push('dns: not an object');
    return;
  }
  for (const k of ['nameservers', 'search', 'options']) {
    const v = dns[k];
    if (v === undefined || v === null) continue;
    if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) p.push(`dns.${k}: not a list of strings`);
  }
  if (dns.domain !== undefined && typeof dns.domain !== 'string') p.push('dns.domain: not a string');
}

function checkLegacyResult(r: Obj, version: string, p: string[]): void {
  for (const k of ['ips', 'interfaces']) {
    if (r[k] !== undefined) p.push(`${k}: a ${version} result carries ip4/ip6, not ips/interfaces`);
  }
  for (const [k, fam] of [
    ['ip4', 4],
    ['ip6', 6],
  ] as const) {
    const b = r[k];
    if (b === undefined || b === null) continue;
    if (!isObj(b)) {
      p.push(`${k}: not an object`);
      continue;
    }
    const ip = cidrOf(b.ip, fam);
    if (typeof ip === 'string') p.push(`${k}.ip: ${ip}`);
    if (b.gateway !== undefined && b.gateway !== '') {
      const gw = ipOf(b.gateway, fam);
      if (typeof gw === 'string') p.push(`${k}.gateway: ${gw}`);
    }
    checkRoutes(b.routes, `${k}.routes`, p, fam);
  }
}

function checkCurrentResult(r: Obj, version: string, p: string[]): void {
  const withVersion = version.startsWith('0.');
  for (const k of ['ip4', 'ip6']) {
    if (r[k] !== undefined) p.push(`${k}: a ${version} result carries ips, not ip4/ip6`);
  }
  let ifCount = 0;
  if (r.interfaces !== undefined && r.interfaces !== null) {
    if (!Array.isArray(r.interfaces)) p.push('interfaces: not an array');
    else {
      ifCount = r.interfaces.length;
      r.interfaces.forEach((itf, i) => {
        const at = `interfaces[${i}]`;
        if (!isObj(itf)) {
          p.push(`${at}: not an object`);
          return;
        }
        if (typeof itf.name !== 'string' || itf.name === '') p.push(`${at}.name: missing or empty`);
        if (itf.mac !== undefined && itf.mac !== '') {
          if (typeof itf.mac !== 'string' || !/^[0-9a-f]{2}(:[0-9a-f]{2}){5,19}$/i.test(itf.mac))
            p.push(`${at}.mac: ${JSON.stringify(itf.mac)} is not a hardware address`);
        }
        if (itf.sandbox !== undefined && typeof itf.sandbox !== 'string')
          p.push(`${at}.sandbox: not a string`);
        if (itf.mtu !== undefined && typeof itf.mtu !== 'number') p.push(`${at}.mtu: not a number`);
      });
    }
  }
  if (r.ips !== undefined && r.ips !== null) {
    if (!Array.isArray(r.ips)) p.push('ips: not an array');
    else
      r.ips.forEach((ipc, i) => {
        const at = `ips[${i}]`;
        if (!isObj(ipc)) {
          p.push(`${at}: not an object`);
          return;
        }
        const fam = cidrOf(ipc.address);
        if (typeof fam === 'string') p.push(`${at}.address: ${fam}`);
        if (ipc.gateway !== undefined && ipc.gateway !== '') {
          const gw = ipOf(ipc.gateway, typeof fam === 'number' ? fam : undefined);
          if (typeof gw === 'string') p.push(`${at}.gateway: ${gw}`);
        }
        if (ipc.interface !== undefined && ipc.interface !== null) {
          const n = ipc.interface;
          if (typeof n !== 'number' || !Number.isInteger(n)) p.push(`${at}.interface: not an integer`);
          else if (n < 0 || n >= ifCount)
            p.push(`${at}.interface: ${n} is out of range (the result lists ${ifCount} interface(s))`);
        }
        if (withVersion) {
          const want = typeof fam === 'number' ? String(fam) : undefined;
          if (ipc.version !== '4' && ipc.version !== '6')
            p.push(`${at}.version: must be "4" or "6" in ${version}`);
          else if (want && ipc.version !== want)
            p.push(`${at}.version: "${ipc.version}" but the address is IPv${want}`);
        } else if (ipc.version !== undefined) {
          p.push(`${at}.version: not part of a ${version} result (removed in 1.0.0)`);
        }
      });
  }
  checkRoutes(r.routes, 'routes', p);
}

/** Problems of an ADD result for `version`; an empty list means valid. */
export function checkResult(v: Json, version: string): string[] {
  if (!isObj(v)) return ['the result is not a JSON object'];
  const p: string[] = [];
  if (v.cniVersion !== version) p.push(`cniVersion: ${JSON.stringify(v.cniVersion)}, requested ${version}`);
  if (version === '0.1.0' || version === '0.2.0') checkLegacyResult(v, version, p);
  else checkCurrentResult(v, version, p);
  checkDns(v.dns, p);
  return p;
}

/** The addresses (without prefix) a result of any family lists. */
export function resultAddresses(v: Json): string[] {
  if (!isObj(v)) return [];
  const out: string[] = [];
  if (Array.isArray(v.ips)) {
    for (const ipc of v.ips)
      if (isObj(ipc) && typeof ipc.address === 'string') out.push(ipc.address.split('/')[0]!);
  }
  for (const k of ['ip4', 'ip6']) {
    const b = v[k];
    if (isObj(b) && typeof b.ip === 'string') out.push(b.ip.split('/')[0]!);
  }
  return out;
}

/** A short summary of a result for the report: interfaces and addresses. */
export function summarizeResult(v: Json): string {
  if (!isObj(v)) return '';
  const names = Array.isArray(v.interfaces)
    ? v.interfaces.map((i) => (isObj(i) && typeof i.name === 'string' ? i.name : '?'))
    : [];
  const addrs = resultAddresses(v);
  const parts = [];
  if (names.length) parts.push(`interfaces ${names.join(',')}`);
  parts.push(addrs.length ? `ips ${addrs.join(',')}` : 'no ips');
  return parts.join('; ');
}
