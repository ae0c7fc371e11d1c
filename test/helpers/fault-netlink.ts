// Fault injection for plugin tests on the in-memory netlink backend: a backend whose write number
// `failAt` throws, counted only while armed (so a test's own set-up writes do not count), and what
// host-local still holds afterwards.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { type MemoryNetlink, memoryNetlink } from 'cni-kit/netlink';

export interface FailingNetlink {
  nl: MemoryNetlink;
  /** Runs `fn` with the failure armed; writes before and after it are not counted. */
  armed<T>(fn: () => Promise<T>): Promise<T>;
}

/** A memory netlink whose write `failAt` (0 is the first armed write) throws an injected error. */
export function failingAtWrite(failAt: number): FailingNetlink {
  let writes = -1;
  let armed = false;
  const nl = memoryNetlink({
    beforeOp: () => {
      if (armed && ++writes === failAt) throw new Error(`injected failure at write ${failAt}`);
    },
  });
  return {
    nl,
    async armed(fn) {
      armed = true;
      try {
        return await fn();
      } finally {
        armed = false;
      }
    },
  };
}

/** The addresses host-local holds for `network` under `dataDir` (its per-address files). */
export function heldAddresses(dataDir: string, network: string): string[] {
  const dir = join(dataDir, network);
  return existsSync(dir) ? readdirSync(dir).filter((f) => /^[0-9a-f]+[.:]/.test(f)) : [];
}
