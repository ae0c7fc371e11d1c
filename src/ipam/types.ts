// The allocator interface every IPAM backend implements (host-local, static, whereabouts, user types).
// An allocator is built for one network config and serves allocate / release / check / gc / status,
// keyed by (containerId, ifname) with an optional pod reference.
import type { Env } from '../spec/call.js';
import type { Attachment } from '../spec/config.js';
import type { Result } from '../spec/result/types.js';

/** The network config fields IPAM reads; the spec layer's NetConf is assignable to it. */
export interface IpamNetConf {
  cniVersion: string;
  name: string;
  type?: string;
  ipam?: { type: string; [key: string]: unknown };
  runtimeConfig?: { [key: string]: unknown };
  args?: { [key: string]: unknown };
  prevResult?: unknown;
  [key: string]: unknown;
}

/** What one ADD / DEL / CHECK asks of an allocator. */
export interface IpamRequest {
  containerId: string;
  ifname: string;
  /** "namespace/name" of the pod when the runtime passed K8S_POD_NAMESPACE and K8S_POD_NAME. */
  podRef?: string;
  /** CNI_ARGS pairs, in order. */
  args?: ReadonlyArray<readonly [string, string]>;
  /** The previous result (CHECK), already converted to the current type. */
  prevResult?: Result;
}

/** What a GC pass did. */
export interface IpamGcReport {
  /** Addresses released because no valid attachment holds them. */
  released: string[];
}

/** Free-address accounting of one range set (or pool); counts are decimal strings (an IPv6 /64 holds 2^64). */
export interface IpamPoolStatus {
  ranges: string;
  capacity: string;
  used: number;
  free: string;
}

/** STATUS details; `status()` also throws CniError 50 when ADD cannot currently succeed. */
export interface IpamStatus {
  pools: IpamPoolStatus[];
}

/** One IPAM backend instance, bound to one network config. */
export interface IpamAllocator {
  /** ADD: returns the IPAM result (no interfaces, no ips[].interface); repeated calls return the same. */
  allocate(req: IpamRequest): Promise<Result>;
  /** DEL: frees everything held by (containerId, ifname); missing state is success. */
  release(req: IpamRequest): Promise<void>;
  /** CHECK: throws CniError when the attachment's addresses are not held as expected. */
  check(req: IpamRequest): Promise<void>;
  /** GC: frees every allocation not held by one of `valid` (an empty list frees all). */
  gc(valid: readonly Attachment[]): Promise<IpamGcReport>;
  /** STATUS: accounting; throws CniError 50 (PluginNotAvailable) when no address is left. */
  status(): Promise<IpamStatus>;
}

/** Process-edge facts an allocator may need (the plugin's environment and CNI_PATH). */
export interface IpamEnv {
  env?: Env | undefined;
  path?: readonly string[] | undefined;
}

/** Builds an allocator for a config; validate the config here and throw CniError 7 on bad input. */
export type AllocatorFactory = (config: IpamNetConf, env: IpamEnv) => IpamAllocator | Promise<IpamAllocator>;
