// The one IP/CIDR module of the SDK: every layer parses, formats and does arithmetic on addresses
// here and nowhere else. Addresses are bigints, so IPv6 ranges are as wide as IPv4 ones (a whole
// /64 is usable, no uint64 offsets). Formatting is Go's net.IP.String() (RFC 5952), so file names
// on disk and results match the Go plugins byte for byte.
//
//   IP = { family: 4 | 6, value: bigint }            Subnet = { family, network: bigint, prefix }
//   tryParseIP / parseIP(text, field)                 strict, Go-compatible (no leading zeros in v4;
//                                                     ::ffff:a.b.c.d is family 4 like Go's To4, unless
//                                                     { mapped: 'v6' } as the kernel sees it)
//   formatIP(ip)                                      Go's net.IP.String()
//   ipFamily(text)                                    family of an address or CIDR text, no throw
//   parseCIDR(text, field) -> { ip, subnet }          keeps host bits in ip, masks the subnet
//   parseSubnet(text, field)                          refuses host bits with the fix in the message
//   formatSubnet, formatCIDR, subnetContains, subnetNetwork/Last/Broadcast, subnetSize, ipAdd, ...
// Parse errors are CniError(InvalidNetworkConfig) naming the field, the value and the fix.
import { createRequire } from 'node:module';
import { CniError, ErrorCode } from './errors.js';

/**
 * ip-address, loaded on the first IPv6 parse: initialising it costs a plugin ~3 ms of start-up and
 * most calls never see an IPv6 address. The literal require() lets the plugin bundles keep it
 * behind a lazy wrapper; where ESM has no require (the package's ESM build, tsx) createRequire does.
 */
function ipAddress(): typeof import('ip-address') {
  try {
    return require('ip-address');
  } catch {
    return createRequire(import.meta.url)('ip-address');
  }
}

/** An address family: 4 or 6. */
export type IPFamily = 4 | 6;

/** One IP address as a number; `value` is below 2^32 (v4) or 2^128 (v6). */
export interface IP {
  readonly family: IPFamily;
  readonly value: bigint;
}

/** A network: `network` has no host bits set. */
export interface Subnet {
  readonly family: IPFamily;
  readonly network: bigint;
  readonly prefix: number;
}

/** An address with its prefix, as in "10.1.2.3/24": the address keeps its host bits. */
export interface CidrAddress {
  readonly ip: IP;
  readonly subnet: Subnet;
}

/** Number of bits in an address of the family. */
export function familyBits(family: IPFamily): 32 | 128 {
  return family === 4 ? 32 : 128;
}

function maxValue(family: IPFamily): bigint {
  return (1n << BigInt(familyBits(family))) - 1n;
}

function invalid(field: string, value: unknown, fix: string): CniError {
  return new CniError(ErrorCode.InvalidNetworkConfig, `${field}: ${JSON.stringify(value)} ${fix}`);
}

const V4_RE = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

function parseV4(text: string): bigint | undefined {
  if (!V4_RE.test(text)) return undefined;
  let v = 0n;
  for (const part of text.split('.')) v = (v << 8n) | BigInt(Number(part));
  return v;
}

/** How an IPv4-mapped IPv6 address (::ffff:a.b.c.d) is read and written. */
export interface MappedOption {
  /** 'v4' (default): family 4, as Go's To4 and host-local's file names; 'v6': family 6, as the kernel. */
  mapped?: 'v4' | 'v6';
}

/** Parses an IP address the way Go's net.ParseIP does; undefined when it is not one. */
export function tryParseIP(text: string, opts: MappedOption = {}): IP | undefined {
  if (typeof text !== 'string' || text.length === 0 || text.length > 64) return undefined;
  const v4 = parseV4(text);
  if (v4 !== undefined) return { family: 4, value: v4 };
  // Zones and prefixes are not part of an address; ip-address would accept both.
  if (!text.includes(':') || text.includes('%') || text.includes('/')) return undefined;
  if (!/^[0-9a-fA-F:.]+$/.test(text)) return undefined;
  let value: bigint;
  try {
    const a = new (ipAddress().Address6)(text);
    if (text.includes('.') && parseV4(text.slice(text.lastIndexOf(':') + 1)) === undefined) return undefined;
    value = a.bigInt();
  } catch {
    return undefined;
  }
  // Go treats IPv4-mapped IPv6 as IPv4 (To4() != nil), and so do host-local's file names.
  if (opts.mapped !== 'v6' && value >> 32n === 0xffffn) return { family: 4, value: value & 0xffffffffn };
  return { family: 6, value };
}

/** Parses an IP address; throws CniError 7 naming `field` when it is not one. */
export function parseIP(text: unknown, field = 'ip'): IP {
  const ip = typeof text === 'string' ? tryParseIP(text.trim()) : undefined;
  if (!ip) {
    const hint = typeof text === 'string' && text.includes('/') ? '; drop the "/prefix"' : '';
    throw invalid(field, text, `is not an IP address; use e.g. "10.1.2.3" or "2001:db8::3"${hint}`);
  }
  return ip;
}

/**
 * The family of an address or CIDR text ("10.1.2.3", "2001:db8::1/64"), or undefined when it is
 * neither. An IPv4-mapped IPv6 address counts as IPv4, as Go's To4 does.
 */
export function ipFamily(text: string): IPFamily | undefined {
  if (typeof text !== 'string') return undefined;
  const slash = text.indexOf('/');
  return tryParseIP(slash < 0 ? text : text.slice(0, slash))?.family;
}

/** True when the address (with or without prefix) is IPv4, v4-mapped IPv6 included (as Go's To4). */
export function isIPv4Address(text: string): boolean {
  return ipFamily(text) === 4;
}

/** Formats an address exactly like Go's net.IP.String() (RFC 5952 for v6), so file names match. */
export function formatIP(ip: IP, opts: MappedOption = {}): string {
  if (ip.family === 4) {
    const v = ip.value;
    return `${(v >> 24n) & 255n}.${(v >> 16n) & 255n}.${(v >> 8n) & 255n}.${v & 255n}`;
  }
  if (opts.mapped !== 'v6' && ip.value >> 32n === 0xffffn) {
    return formatIP({ family: 4, value: ip.value & 0xffffffffn });
  }
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((ip.value >> BigInt(i * 16)) & 0xffffn));
  // The longest run of two or more zero groups is compressed; the first one wins a tie.
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (g: number[]) => g.map((x) => x.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`;
}

/** Orders two addresses; v4 sorts before v6. */
export function compareIP(a: IP, b: IP): number {
  if (a.family !== b.family) return a.family - b.family;
  return a.value < b.value ? -1 : a.value > b.value ? 1 : 0;
}

/** True when both addresses are the same family and value. */
export function ipEquals(a: IP | undefined, b: IP | undefined): boolean {
  return a !== undefined && b !== undefined && a.family === b.family && a.value === b.value;
}

/** True when both have the same family. */
export function sameFamily(a: { family: IPFamily }, b: { family: IPFamily }): boolean {
  return a.family === b.family;
}

/** The address `n` steps away; throws RangeError when it leaves the family's space. */
export function ipAdd(ip: IP, n: bigint): IP {
  const value = ip.value + n;
  if (value < 0n || value > maxValue(ip.family)) throw new RangeError(`${formatIP(ip)} + ${n} overflows`);
  return { family: ip.family, value };
}

function hostMask(family: IPFamily, prefix: number): bigint {
  return (1n << BigInt(familyBits(family) - prefix)) - 1n;
}

/** Parses "addr/prefix" keeping the address's host bits; the subnet is masked. */
export function parseCIDR(text: unknown, field = 'address'): CidrAddress {
  const s = typeof text === 'string' ? text.trim() : '';
  const slash = s.indexOf('/');
  const ip = slash > 0 ? tryParseIP(s.slice(0, slash)) : undefined;
  const prefixText = slash > 0 ? s.slice(slash + 1) : '';
  const prefix = /^(0|[1-9]\d{0,2})$/.test(prefixText) ? Number(prefixText) : Number.NaN;
  if (!ip || !(prefix >= 0 && prefix <= familyBits(ip.family))) {
    throw invalid(
      field,
      text,
      `is not in CIDR notation; use "address/prefix" such as "10.1.2.3/24" or "2001:db8::3/64"`,
    );
  }
  // A mapped v6 CIDR ("::ffff:10.0.0.0/120") keeps its prefix meaning for the v4 part, as Go does.
  const p = ip.family === 4 && s.slice(0, slash).includes(':') ? prefix - 96 : prefix;
  if (p < 0) throw invalid(field, text, 'has a prefix too short for an IPv4-mapped address');
  const network = ip.value & ~hostMask(ip.family, p) & maxValue(ip.family);
  return { ip, subnet: { family: ip.family, network, prefix: p } };
}

/** Parses a network CIDR; host bits are an error whose message gives the right network. */
export function parseSubnet(text: unknown, field = 'subnet'): Subnet {
  const { ip, subnet } = parseCIDR(text, field);
  if (ip.value !== subnet.network) {
    throw invalid(
      field,
      text,
      `has host bits set; for a /${subnet.prefix} the network address is ${formatIP({ family: subnet.family, value: subnet.network })}, use ${formatSubnet(subnet)}`,
    );
  }
  return subnet;
}

/** "network/prefix". */
export function formatSubnet(s: Subnet): string {
  return `${formatIP({ family: s.family, value: s.network })}/${s.prefix}`;
}

/** "ip/prefix" (the result's address form: host bits kept). */
export function formatCIDR(ip: IP, prefix: number): string {
  return `${formatIP(ip)}/${prefix}`;
}

/** True when the address lies in the subnet (same family and prefix match). */
export function subnetContains(s: Subnet, ip: IP): boolean {
  return s.family === ip.family && (ip.value & ~hostMask(s.family, s.prefix)) === s.network;
}

/** The subnet's network address. */
export function subnetNetwork(s: Subnet): IP {
  return { family: s.family, value: s.network };
}

/** The subnet's all-ones host address (the v4 broadcast). */
export function subnetBroadcast(s: Subnet): IP {
  return { family: s.family, value: s.network | hostMask(s.family, s.prefix) };
}

/** host-local's last usable default: broadcast−1 for v4, the all-ones host for v6. */
export function subnetLast(s: Subnet): IP {
  const b = subnetBroadcast(s);
  return s.family === 4 ? { family: 4, value: b.value - 1n } : b;
}

/** Number of addresses in the subnet, network and broadcast included. */
export function subnetSize(s: Subnet): bigint {
  return 1n << BigInt(familyBits(s.family) - s.prefix);
}

/** True when two subnets share any address. */
export function subnetsOverlap(a: Subnet, b: Subnet): boolean {
  if (a.family !== b.family) return false;
  const p = Math.min(a.prefix, b.prefix);
  const m = ~hostMask(a.family, p);
  return (a.network & m) === (b.network & m);
}

/** The prefix-length mask as a bigint (useful for results that print netmasks). */
export function prefixMask(family: IPFamily, prefix: number): bigint {
  return maxValue(family) & ~hostMask(family, prefix);
}
