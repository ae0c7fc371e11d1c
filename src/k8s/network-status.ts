// The `k8s.v1.cni.cncf.io/network-status` annotation (multi-net-spec §5), built the way multus
// builds it so tools reading it keep working: bare IPs, `gateway` for default-route next hops.
import type { DNS, Result } from '../spec/result/types.js';

/** Device information a device plugin reported for an attachment (passed through as given). */
export type DeviceInfo = Record<string, unknown>;

/** One entry of the network-status annotation. */
export interface NetworkStatus {
  /** `<namespace>/<nad>` for NAD-backed attachments, else the CNI config name. */
  name: string;
  interface?: string;
  /** Addresses without prefix length, as multus writes them. */
  ips?: string[];
  mac?: string;
  mtu?: number;
  /** True for exactly one entry: the cluster default network's interface. */
  default: boolean;
  dns?: DNS;
  /** Next hops of the default routes of this attachment. */
  gateway?: string[];
  'device-info'?: DeviceInfo;
}

const bare = (cidr: string) => cidr.split('/')[0] ?? cidr;
const isDefaultDst = (dst: string) =>
  dst === '0.0.0.0/0' || dst === '::/0' || dst === '' || dst === 'default';

function hasDns(d: DNS | undefined): d is DNS {
  return !!d && (!!d.nameservers?.length || !!d.domain || !!d.search?.length || !!d.options?.length);
}

/**
 * Entries for one attachment's result: one per interface that is inside the sandbox (or one for
 * a result with none). IPs go to the entry of their `interface` index, IPs without one to the last
 * entry; `default` marks the interface owning the first IP with a gateway, else the first entry.
 */
export function buildNetworkStatuses(
  name: string,
  result: Result | undefined,
  opts: { isDefault: boolean; deviceInfo?: DeviceInfo } = { isDefault: false },
): NetworkStatus[] {
  const gateways = (result?.routes ?? [])
    .filter((r) => isDefaultDst(r.dst) && r.gw)
    .map((r) => r.gw as string);
  const ifaces = (result?.interfaces ?? [])
    .map((iface, index) => ({ iface, index }))
    .filter((x) => x.iface.sandbox !== undefined && x.iface.sandbox !== '');
  const withExtras = (s: NetworkStatus): NetworkStatus => {
    if (hasDns(result?.dns)) s.dns = result.dns;
    if (opts.deviceInfo) s['device-info'] = opts.deviceInfo;
    return s;
  };
  if (ifaces.length === 0) {
    const s: NetworkStatus = { name, default: opts.isDefault };
    const ips = (result?.ips ?? []).map((ip) => bare(ip.address));
    if (ips.length) s.ips = ips;
    if (gateways.length) s.gateway = gateways;
    return [withExtras(s)];
  }
  const out = ifaces.map(({ iface }) => {
    const s: NetworkStatus = { name, interface: iface.name, default: false };
    if (iface.mac) s.mac = iface.mac;
    if (iface.mtu) s.mtu = iface.mtu;
    return s;
  });
  const last = out.length - 1;
  for (const ip of result?.ips ?? []) {
    let at = ifaces.findIndex((x) => x.index === ip.interface);
    if (at < 0) at = last;
    const s = out[at] as NetworkStatus;
    s.ips = [...(s.ips ?? []), bare(ip.address)];
  }
  if (gateways.length) (out[last] as NetworkStatus).gateway = gateways;
  if (opts.isDefault) {
    const firstGw = (result?.ips ?? []).find((ip) => ip.gateway);
    let at = firstGw ? ifaces.findIndex((x) => x.index === firstGw.interface) : 0;
    if (at < 0) at = 0;
    (out[at] as NetworkStatus).default = true;
  }
  return out.map(withExtras);
}

/** The annotation value for a list of entries (an indented JSON list, as multus writes it). */
export function formatNetworkStatus(statuses: readonly NetworkStatus[]): string {
  return JSON.stringify(statuses, null, 4);
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
