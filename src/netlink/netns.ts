// Network-namespace paths: which process netns we are in, whether a path really is a netns, and the
// names `ip netns` uses. No spawns here; creating and deleting netns lives in the backends.
import { statfsSync, statSync } from 'node:fs';

/** statfs magic of nsfs, the filesystem namespace handles live on. */
const NSFS_MAGIC = 0x6e736673;

/** Directory `ip netns add` bind-mounts named namespaces into. */
export const NETNS_RUN_DIR = '/var/run/netns';

/** Path of the calling process's own network namespace. */
export function currentNetnsPath(): string {
  return `/proc/${process.pid}/ns/net`;
}

/** True when `path` exists and is a network-namespace handle (nsfs), not a stale file. */
export function isNetnsPath(path: string): boolean {
  try {
    return statfsSync(path).type === NSFS_MAGIC;
  } catch {
    return false;
  }
}

/** True when two paths are handles on the same namespace (same nsfs inode). */
export function sameNetns(a: string, b: string): boolean {
  if (a === b) return true;
  try {
    const x = statSync(a);
    const y = statSync(b);
    return x.ino === y.ino && x.dev === y.dev;
  } catch {
    return false;
  }
}

/** The `ip netns` name of a path under /var/run/netns or /run/netns, else undefined. */
export function netnsName(path: string): string | undefined {
  return /^\/(?:var\/)?run\/netns\/([^/]+)$/.exec(path)?.[1];
}

/** A fresh, collision-free netns name with a recognisable prefix (for cleanup after crashes). */
export function tempNetnsName(prefix = 'cnikit'): string {
  return `${prefix}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
}
