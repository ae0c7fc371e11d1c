// The `k8s.v1.cni.cncf.io/network-status` annotation (multi-net-spec §5), in exactly the shape
// multus writes (the NAD client's types and CreateNetworkStatuses), so tools reading it keep
// working: keys in the same order, `dns` on every entry ({} when empty), `default` only when true,
// empty fields left out, bare IPs in Go's formatting, `gateway` for default-route next hops.
import { formatIP, tryParseIP } from '../spec/addr.js';
import type { DNS, Result } from '../spec/result/types.js';

/** Device information a device plugin reported for an attachment (passed through as given). */
export type DeviceInfo = Record<string, unknown>;

/** One entry of the network-status annotation; keys are written in this order. */
export interface NetworkStatus {
  /** `<namespace>/<nad>` for NAD-backed attachments, else the CNI config name. */
  name: string;
  interface?: string;
  /** Addresses without prefix length, as multus writes them. */
  ips?: string[];
  mac?: string;
  mtu?: number;
  /** Present (true) on exactly one entry: the cluster default network's interface. */
  default?: true;
  /** Always present, `{}` when the result has no DNS (multus writes it so). */
  dns: DNS;
  'device-info'?: DeviceInfo;
  /** Next hops of the default routes of this attachment. */
  gateway?: string[];
}

/** An address as Go prints a net.IP (lower case, shortest IPv6 form); other text as given. */
function goIP(text: string): string {
  const ip = tryParseIP(text);
  return ip ? formatIP(ip) : text;
}

const bare = (cidr: string) => goIP(cidr.split('/')[0] ?? cidr);

/** A default route for multus: its destination address is all zeros, whatever the prefix. */
function isDefaultDst(dst: string): boolean {
  if (dst === '' || dst === 'default') return true;
  const ip = tryParseIP(dst.split('/')[0] ?? '');
  return ip !== undefined && ip.value === 0n;
}

/** The DNS object with only its non-empty fields (Go's omitempty). */
function dnsOf(d: DNS | undefined): DNS {
  const out: DNS = {};
  if (d?.nameservers?.length) out.nameservers = [...d.nameservers];
  if (d?.domain) out.domain = d.domain;
  if (d?.search?.length) out.search = [...d.search];
  if (d?.options?.length) out.options = [...d.options];
  return out;
}

/** Builds one entry with the keys in multus's order, leaving out empty ones. */
function entry(fields: {
  name: string;
  iface?: string | undefined;
  ips: string[];
  mac?: string | undefined;
  mtu?: number | undefined;
  isDefault: boolean;
  dns: DNS;
  deviceInfo?: DeviceInfo | undefined;
  gateway: string[];
}): NetworkStatus {
  const s: Record<string, unknown> = { name: fields.name };
  if (fields.iface) s.interface = fields.iface;
  if (fields.ips.length) s.ips = fields.ips;
  if (fields.mac) s.mac = fields.mac;
  if (fields.mtu) s.mtu = fields.mtu;
  if (fields.isDefault) s.default = true;
  s.dns = fields.dns;
  if (fields.deviceInfo) s['device-info'] = fields.deviceInfo;
  if (fields.gateway.length) s.gateway = fields.gateway;
  return s as unknown as NetworkStatus;
}

/**
 * Entries for one attachment's result, as multus builds them. A result with exactly one interface
 * gives one entry carrying every IP (its interface, MAC and MTU only when that interface is in the
 * sandbox). Otherwise there is one entry per sandbox interface (none when the result has none):
 * an IP goes to the entry of its `interface` index (dropped when that interface is not in the
 * sandbox), an IP without one to the last entry; every entry carries the DNS and the default-route
 * gateways; for the default network, `default` marks the interface of the first IP with a gateway
 * and an interface index, else the first sandbox interface. Default routes without a next hop are
 * left out of `gateway` (multus would print Go's "<nil>" there).
 */
export function buildNetworkStatuses(
  name: string,
  result: Result | undefined,
  opts: { isDefault: boolean; deviceInfo?: DeviceInfo } = { isDefault: false },
): NetworkStatus[] {
  const gateway = () =>
    (result?.routes ?? []).filter((r) => isDefaultDst(r.dst) && r.gw).map((r) => goIP(r.gw as string));
  const dns = () => dnsOf(result?.dns);
  const interfaces = result?.interfaces ?? [];
  const ips = result?.ips ?? [];
  if (interfaces.length === 1) {
    const i = interfaces[0];
    const inSandbox = !!i?.sandbox;
    return [
      entry({
        name,
        iface: inSandbox ? i?.name : undefined,
        ips: ips.map((ip) => bare(ip.address)),
        mac: inSandbox ? i?.mac : undefined,
        mtu: inSandbox ? i?.mtu : undefined,
        isDefault: opts.isDefault,
        dns: dns(),
        deviceInfo: opts.deviceInfo,
        gateway: gateway(),
      }),
    ];
  }
  const gwIndex = opts.isDefault
    ? (ips.find((ip) => ip.gateway && ip.interface !== undefined)?.interface ?? -1)
    : -1;
  const slots = new Map<number, { iface: (typeof interfaces)[number]; ips: string[]; isDefault: boolean }>();
  let firstMarked = false;
  interfaces.forEach((iface, index) => {
    if (!iface.sandbox) return;
    let isDefault = false;
    if (opts.isDefault && (gwIndex === index || (gwIndex === -1 && !firstMarked))) {
      isDefault = true;
      firstMarked = true;
    }
    slots.set(index, { iface, ips: [], isDefault });
  });
  const ordered = [...slots.values()];
  const last = ordered[ordered.length - 1];
  for (const ip of ips) {
    const slot = ip.interface !== undefined ? slots.get(ip.interface) : last;
    slot?.ips.push(bare(ip.address));
  }
  return ordered.map((s) =>
    entry({
      name,
      iface: s.iface.name,
      ips: s.ips,
      mac: s.iface.mac,
      mtu: s.iface.mtu,
      isDefault: s.isDefault,
      dns: dns(),
      deviceInfo: opts.deviceInfo,
      gateway: gateway(),
    }),
  );
}

/** JSON text with the characters Go's encoder escapes (<, >, &, U+2028, U+2029) escaped the same way. */
function goJson(v: unknown): string {
  return JSON.stringify(v, null, 4).replace(
    /[<>&\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/**
 * The annotation value, byte for byte as multus writes it: each entry indented by four spaces on
 * its own, joined by "," inside "[" and "]".
 */
export function formatNetworkStatus(statuses: readonly NetworkStatus[]): string {
  return `[${statuses.map(goJson).join(',')}]`;
}

/** Parses a network-status annotation value; an absent or unreadable value gives []. */
export function parseNetworkStatus(value: string | undefined): NetworkStatus[] {
  if (!value) return [];
  try {
    const v = JSON.parse(value);
    return Array.isArray(v) ? (v as NetworkStatus[]) : [];
  } catch {
    return [];
  }
}
