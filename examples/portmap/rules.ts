// What both backends of portmap build their rules from: the mappings, the container's addresses
// (one per family, picked from prevResult as the reference does) and the masquerade settings.
import type { Result } from 'cni-kit';
import { formatIP, ipFamily, tryParseIP } from 'cni-kit/spec';

/** An IP family. */
export type Family = 4 | 6;

/** One port mapping, validated: protocol lower-case, hostIP normalised. */
export interface Mapping {
  hostPort: number;
  containerPort: number;
  protocol: 'tcp' | 'udp' | 'sctp';
  hostIP?: string | undefined;
}

/** The inputs of rule generation for one container. */
export interface PortmapRules {
  network: string;
  containerId: string;
  mappings: Mapping[];
  snat: boolean;
  masqAll: boolean;
  markMasqBit: number;
  externalSetMarkChain?: string | undefined;
  conditionsV4?: string[] | undefined;
  conditionsV6?: string[] | undefined;
}

/** The family of a host IP ("::ffff:a.b.c.d" counts as IPv4, as in the reference). */
export function hostIpFamily(ip: string): Family {
  return ipFamily(ip) === 6 ? 6 : 4;
}

/** Whether a mapping applies to a family: a hostIP of the other family skips it there. */
export function mappingApplies(m: Mapping, family: Family): boolean {
  return m.hostIP === undefined || hostIpFamily(m.hostIP) === family;
}

/** "0.0.0.0" or "::": any local address, so no destination match. */
export function isUnspecified(ip: string): boolean {
  return tryParseIP(ip)?.value === 0n;
}

/** The canonical text of a host IP, as iptables and nft print it back. */
export function normalizeIp(ip: string): string {
  const p = tryParseIP(ip.trim());
  return p ? formatIP(p) : ip;
}

/**
 * The container's address per family ("10.1.0.5/24"): the first of each family in prevResult.ips
 * whose interface, when it names one that prevResult lists, is `ifname` inside a sandbox (the
 * reference's choice: host-side interfaces such as the bridge are skipped).
 */
export function containerAddresses(prev: Result, ifname: string): { 4?: string; 6?: string } {
  const out: { 4?: string; 6?: string } = {};
  const ifaces = prev.interfaces ?? [];
  for (const ip of prev.ips ?? []) {
    const fam = ipFamily(ip.address);
    if (fam === undefined || out[fam] !== undefined) continue;
    const i = ip.interface;
    if (i !== undefined && i >= 0 && i < ifaces.length) {
      const iface = ifaces[i];
      if (iface?.name !== ifname || !iface.sandbox) continue;
    }
    out[fam] = ip.address;
  }
  return out;
}
