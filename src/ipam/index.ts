/**
 * IPAM allocators (host-local, static, whereabouts-style), the dhcp daemon and its client, and how
 * a plugin's ctx.ipam chooses between them and an exec'd IPAM plugin. Allocators depend on a store, never on the delegate or
 * Kubernetes layers: exec and Kubernetes access are passed in.
 *
 * @module cni-kit/ipam
 */

export {
  type Clock,
  callDhcpDaemon,
  DEFAULT_DHCP_SOCKET,
  DEFAULT_TIMING,
  type Destination,
  type DhcpCall,
  type DhcpDaemon,
  type DhcpDaemonOptions,
  type DhcpIpamConf,
  type DhcpNet,
  type DhcpOp,
  type DhcpTransport,
  dhcpIpamConfig,
  getDhcpDaemon,
  isGoRpcDaemon,
  type LeaseInfo,
  type LeaseLog,
  type LeaseState,
  type LeaseTiming,
  LinkGoneError,
  linuxDhcpNet,
  parseDhcpConfig,
  type Received,
  realClock,
  START_HINT,
  startDhcpDaemon,
  stderrLeaseLog,
} from './dhcp/index.js';
export { HostLocalAllocator } from './host-local/allocator.js';
export { DEFAULT_HOST_LOCAL_DATA_DIR, type HostLocalConfig } from './host-local/config.js';
export type { HostLocalStoreOptions } from './host-local/store.js';
export { type FileLock, type FileLockOptions, lockFile, withFileLock } from './lock.js';
export type { IPRange, RangeSet } from './range.js';
export {
  builtinIpam,
  createIpamFactory,
  type IpamExec,
  type IpamExecRequest,
  type IpamFactoryOptions,
  IpamRegistry,
  ipamPlugin,
  ipamRequest,
} from './registry.js';
export { StaticAllocator } from './static/allocator.js';
export type {
  AllocatorFactory,
  IpamAllocator,
  IpamEnv,
  IpamGcReport,
  IpamNetConf,
  IpamPoolStatus,
  IpamRequest,
  IpamStatus,
} from './types.js';
export {
  type Random,
  WhereaboutsAllocator,
  type WhereaboutsAllocatorOptions,
} from './whereabouts/allocator.js';
export type {
  DatastoreConfig,
  FlatFileInfo,
  Interval,
  WhereaboutsConfig,
  WhereaboutsConfigOptions,
  WhereaboutsRange,
} from './whereabouts/config.js';
export {
  createWhereaboutsAllocator,
  openWhereaboutsStore,
  type WhereaboutsOptions,
  type WhereaboutsStoreOptions,
  whereaboutsIpam,
} from './whereabouts/index.js';
export type { WhereaboutsLog } from './whereabouts/log.js';
export type { Allocation, ClaimOutcome, PoolRef, PoolSession, Store } from './whereabouts/store.js';
export type { EtcdStoreOptions } from './whereabouts/stores/etcd.js';
export type {
  CustomResources,
  KubeAccess,
  KubeOpener,
  KubernetesStoreOptions,
} from './whereabouts/stores/kubernetes.js';
