// Result shapes of the three result families. Inside the SDK every result is a `Result` (1.x);
// the older shapes exist only at the edges, where conversion happens.

/** A DNS block, shared by every result family. */
export interface DNS {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

/** A route; the 1.1 fields (mtu, advmss, priority, table, scope) are optional everywhere. */
export interface Route {
  dst: string;
  gw?: string;
  mtu?: number;
  advmss?: number;
  priority?: number;
  table?: number;
  scope?: number;
}

/** A 1.x interface entry (mtu, socketPath and pciID are 1.1 additions). */
export interface Interface {
  name: string;
  mac?: string;
  mtu?: number;
  sandbox?: string;
  socketPath?: string;
  pciID?: string;
}

/** A 1.x IP entry: `address` is a CIDR that keeps its host bits ("10.1.2.3/24"). */
export interface IPConfig {
  interface?: number;
  address: string;
  gateway?: string;
}

/** The current (1.0.0 / 1.1.0) result: the only result type plugin callbacks see. */
export interface Result {
  cniVersion: string;
  interfaces?: Interface[];
  ips?: IPConfig[];
  routes?: Route[];
  dns?: DNS;
}

/**
 * What an ADD handler returns: a {@link Result} whose `cniVersion` may be left out. The SDK stamps
 * the current version on it, validates it and converts it to the config's `cniVersion`, so a
 * version set here is ignored.
 */
export type AddResult = Omit<Result, 'cniVersion'> & { cniVersion?: string | undefined };

/** A 0.3.x / 0.4.0 interface entry. */
export interface Interface040 {
  name: string;
  mac?: string;
  sandbox?: string;
}

/** A 0.3.x / 0.4.0 IP entry, which names its family. */
export interface IPConfig040 {
  version: '4' | '6';
  interface?: number;
  address: string;
  gateway?: string;
}

/** A 0.3.0, 0.3.1 or 0.4.0 result. */
export interface Result040 {
  cniVersion: string;
  interfaces?: Interface040[];
  ips?: IPConfig040[];
  routes?: Route[];
  dns: DNS;
}

/** The per-family IP block of a 0.1.0 / 0.2.0 result. */
export interface IPBlock020 {
  ip: string;
  gateway?: string;
  routes?: Route[];
}

/** A 0.1.0 or 0.2.0 result. */
export interface Result020 {
  cniVersion: string;
  ip4?: IPBlock020;
  ip6?: IPBlock020;
  dns: DNS;
}

/** A result of any version, as read from or written to the wire. */
export type AnyResult = Result | Result040 | Result020;
