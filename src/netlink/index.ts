// Public API of src/netlink: one `Netlink` interface, a Linux backend (iproute2 + nsenter, batched)
// and an in-memory backend with kernel-like semantics for unit tests.

export { type Errno, isExists, isNotFound, NetlinkError } from './errors.js';
export type { SpawnTrace } from './linux/engine.js';
export {
  type KernelProbe,
  type LinuxNetlink,
  type LinuxNetlinkOptions,
  linuxNetlink,
  probeKernel,
  probeLinkKinds,
} from './linux/index.js';
export {
  type MemoryNetlink,
  type MemoryNetlinkOptions,
  type MemoryNetnsState,
  memoryNetlink,
} from './memory/index.js';
export { currentNetnsPath, isNetnsPath } from './netns.js';
export type * from './types.js';
export { LINK_KINDS } from './types.js';
