// Public API of src/ipam; re-exported from the package root.
export * from './dns.js';
export { createHostLocal, HostLocalAllocator, roundRobin } from './host-local/allocator.js';
export {
  DEFAULT_HOST_LOCAL_DATA_DIR,
  type HostLocalConfig,
  parseHostLocalConfig,
  requestedIPs,
} from './host-local/config.js';
export {
  type AllocationKey,
  contentMatches,
  fileContent,
  HostLocalStore,
  type HostLocalStoreOptions,
  type StoredAllocation,
} from './host-local/store.js';
export * from './ip.js';
export * from './lock.js';
export * from './range.js';
export * from './registry.js';
export * from './routes.js';
export { createStatic, type StaticAddress, StaticAllocator, staticAddresses } from './static/allocator.js';
export type * from './types.js';
export * from './whereabouts/index.js';
