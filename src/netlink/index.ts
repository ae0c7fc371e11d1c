/**
 * One `Netlink` interface, a Linux backend (rtnetlink in-process through the FFI package, or
 * iproute2 + nsenter where that cannot load) and an in-memory backend with kernel-like semantics
 * for unit tests.
 *
 * @module cni-kit/netlink
 */

export type { KernelPath } from '../sys/libc.js';
export { ERRNOS } from './errno.js';
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
export { withNetns } from './native/netns.js';
export { currentNetnsPath, isNetnsPath } from './netns.js';
export {
  type Address,
  type AddressOptions,
  type BridgeVlan,
  type DadWaitOptions,
  type Family,
  type IpvlanMode,
  LINK_KINDS,
  type Link,
  type LinkKind,
  type LinkSettings,
  type LinkSpec,
  type LinkSpecBase,
  type MacvlanMode,
  type Netlink,
  type NetnsOps,
  type Qdisc,
  type RouteEntry,
  type RouteFilter,
  type RouteNexthop,
  type RouteProtocol,
  type RouteSpec,
  type RuleEntry,
  type RuleSpec,
  type TbfSpec,
  type TempNetns,
} from './types.js';
