// Input checks shared by both backends, so the memory backend rejects exactly what the Linux one
// would, and nothing unsafe (spaces, newlines, quotes) can reach an `ip -batch` line or a shell.
import { formatIP, type IP, type IPFamily, tryParseIP } from '../spec/addr.js';
import { invalidArg } from './errors.js';
import type { Family } from './types.js';

/** Checks an interface name the way the kernel and the Go reference do (1–15 bytes, no '/', ':', space). */
export function checkIfName(name: unknown, what = 'interface name'): string {
  if (typeof name !== 'string' || name.length === 0)
    throw invalidArg(what, name, 'must be a non-empty string');
  if (Buffer.byteLength(name) > 15) throw invalidArg(what, name, 'is longer than 15 bytes; shorten it');
  if (name === '.' || name === '..') throw invalidArg(what, name, 'is reserved; pick another name');
  if (/[\s/:"'\\#]/.test(name))
    throw invalidArg(what, name, "contains whitespace, '/', ':', a quote, '#' or '\\'; remove them");
  return name;
}

/** Checks a netns name for /var/run/netns (letters, digits, '.', '_', '-'; up to 64). */
export function checkNetnsName(name: unknown): string {
  if (typeof name !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(name) || name === '.' || name === '..')
    throw invalidArg('netns name', name, "must be 1-64 letters, digits, '.', '_' or '-'");
  return name;
}

/** Checks a netns path: absolute, no whitespace or quotes. */
export function checkNetnsPath(path: unknown): string {
  if (typeof path !== 'string' || !path.startsWith('/'))
    throw invalidArg(
      'netns path',
      path,
      'must be an absolute path such as /var/run/netns/x or /proc/<pid>/ns/net',
    );
  if (/[\s"'\\]/.test(path))
    throw invalidArg('netns path', path, 'contains whitespace, quotes or backslashes');
  return path;
}

// The kernel keeps an IPv4-mapped IPv6 address as IPv6, so netlink reads them with { mapped: 'v6' }.
const KERNEL = { mapped: 'v6' } as const;

/** Canonical text of an IP (IPv6 compressed per RFC 5952), with its family. */
export function parseIp(ip: unknown, what = 'IP address'): { ip: string; family: Family } {
  const parsed = typeof ip === 'string' ? tryParseIP(ip, KERNEL) : undefined;
  if (parsed) return { ip: formatIP(parsed, KERNEL), family: parsed.family };
  if (typeof ip !== 'string') throw invalidArg(what, ip, 'must be a string');
  throw invalidArg(what, ip, 'is not an IPv4 or IPv6 address');
}

function toIP(text: string, family: IPFamily): IP {
  const ip = tryParseIP(text, KERNEL);
  if (!ip || ip.family !== family) throw invalidArg('IP address', text, `is not an IPv${family} address`);
  return ip;
}

/** A parsed CIDR; `cidr` is canonical and keeps host bits. */
export interface Cidr {
  ip: string;
  prefix: number;
  family: Family;
  cidr: string;
}

/** Parses 'a.b.c.d/len' or 'x::y/len'; a bare IP gets a full-length prefix when `bareOk`. */
export function parseCidr(s: unknown, what = 'CIDR', bareOk = false): Cidr {
  if (typeof s !== 'string') throw invalidArg(what, s, 'must be a string like 10.1.2.3/24');
  const slash = s.indexOf('/');
  if (slash < 0 && !bareOk) throw invalidArg(what, s, 'needs a prefix length, e.g. 10.1.2.3/24');
  const { ip, family } = parseIp(slash < 0 ? s : s.slice(0, slash), what);
  const max = family === 4 ? 32 : 128;
  const lenText = slash < 0 ? String(max) : s.slice(slash + 1);
  const prefix = /^\d{1,3}$/.test(lenText) ? Number(lenText) : Number.NaN;
  if (!(prefix >= 0 && prefix <= max)) throw invalidArg(what, s, `has a prefix length outside 0..${max}`);
  return { ip, prefix, family, cidr: `${ip}/${prefix}` };
}

/** The network of a CIDR as canonical text ('10.1.2.0/24'). */
export function networkOf(c: Cidr): string {
  const bits = c.family === 4 ? 32 : 128;
  const mask = c.prefix === 0 ? 0n : ((1n << BigInt(c.prefix)) - 1n) << BigInt(bits - c.prefix);
  const value = toIP(c.ip, c.family).value & mask;
  return `${formatIP({ family: c.family, value }, KERNEL)}/${c.prefix}`;
}

/** True when `ip` lies inside the network of `c`. */
export function cidrContains(c: Cidr, ip: string, family: Family): boolean {
  if (c.family !== family) return false;
  return networkOf({ ...c, ip, cidr: '' }) === networkOf(c);
}

/**
 * A route destination: 'default' or a CIDR, returned canonical. Host bits are masked off rather than
 * rejected, as the Go plugins do (they parse result routes with net.ParseCIDR, which masks).
 */
export function parseRouteDst(dst: unknown, family: Family | undefined): { dst: string; family: Family } {
  if (dst === 'default') {
    const f = family ?? 4;
    return { dst: f === 4 ? '0.0.0.0/0' : '::/0', family: f };
  }
  const c = parseCidr(dst, 'route dst', true);
  return { dst: networkOf(c), family: c.family };
}

/** Checks a MAC address and returns it lower-case. */
export function checkMac(mac: unknown, what = 'MAC address'): string {
  if (typeof mac !== 'string' || !/^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/.test(mac))
    throw invalidArg(what, mac, 'must look like 0a:58:0a:f4:00:02');
  if (Number.parseInt(mac.slice(0, 2), 16) & 1)
    throw invalidArg(what, mac, 'is a multicast address; clear the lowest bit of the first byte');
  return mac.toLowerCase();
}

/** Checks an integer in [min, max]. */
export function checkInt(v: unknown, what: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw invalidArg(what, v, `must be an integer in ${min}..${max}`);
  return v;
}

/** Checks an MTU (68..65535, the range veth and bridge accept). */
export function checkMtu(v: unknown, what = 'mtu'): number {
  return checkInt(v, what, 68, 65535);
}

/** Normalizes a sysctl key to its /proc/sys relative path; only net/* keys are allowed. */
export function sysctlPath(key: unknown): string {
  if (typeof key !== 'string')
    throw invalidArg('sysctl key', key, 'must be a string like net/ipv4/ip_forward');
  const p = key.includes('/') ? key.replace(/^\/proc\/sys\//, '') : key.replace(/\./g, '/');
  if (!/^net\/[A-Za-z0-9_./-]+$/.test(p) || p.split('/').some((s) => s === '' || s === '.' || s === '..'))
    throw invalidArg('sysctl key', key, 'must name a file under /proc/sys/net/, e.g. net/ipv4/ip_forward');
  return p;
}

/** Checks a sysctl value (single line, no quotes). */
export function sysctlValue(v: unknown): string {
  const s = typeof v === 'number' && Number.isFinite(v) ? String(v) : v;
  if (typeof s !== 'string' || /[\n\r'"\\]/.test(s) || s.length > 256)
    throw invalidArg('sysctl value', v, 'must be a number or a one-line string without quotes');
  return s;
}
