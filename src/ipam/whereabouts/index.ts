// Public API of the whereabouts-style allocator; re-exported by src/ipam/index.ts. Names carry a
// Whereabouts prefix because they land in the package root next to every other layer's exports.
import { CniError, ErrorCode } from '../../spec/errors.js';
import { formatIP, type IPFamily } from '../ip.js';
import type { IpamEnv, IpamFactory, IpamNetConf } from '../types.js';
import { WhereaboutsAllocator, type WhereaboutsAllocatorOptions } from './allocator.js';
import { type DatastoreConfig, parseWhereaboutsConfig } from './config.js';
import type { Store } from './store.js';
import { openEtcdStore } from './stores/etcd.js';
import { openFileStore } from './stores/file.js';
import { openKubernetesStore } from './stores/kubernetes.js';

export type { WhereaboutsAllocatorOptions } from './allocator.js';
export { WhereaboutsAllocator } from './allocator.js';
export type {
  DatastoreConfig as WhereaboutsDatastore,
  WhereaboutsConfig,
  WhereaboutsRange,
} from './config.js';
export {
  DEFAULT_FILE_DIR as DEFAULT_WHEREABOUTS_DIR,
  parseWhereaboutsConfig,
  poolName as whereaboutsPoolName,
} from './config.js';
export type {
  Allocation as WhereaboutsAllocation,
  ClaimOutcome as WhereaboutsClaimOutcome,
  PoolRef as WhereaboutsPoolRef,
  PoolSession as WhereaboutsPoolSession,
  Store as WhereaboutsStore,
} from './store.js';

const fmt = (a: bigint, family: IPFamily): string => formatIP({ family, value: a });

// The store modules are imported statically (they are small); each loads its heavy client (etcd3,
// @kubernetes/client-node) with import() only when opened. A dynamic import() of a module of ours
// would break in the bundled binaries (esbuild drops its initialiser under "sideEffects": false).
/** Opens the datastore a config names; etcd3 and the Kubernetes client load only when chosen. */
export async function openWhereaboutsStore(
  ds: DatastoreConfig,
  opts: { fsync?: boolean } = {},
): Promise<Store> {
  switch (ds.kind) {
    case 'file': {
      return openFileStore(
        opts.fsync === undefined ? { dir: ds.dir } : { dir: ds.dir, fsync: opts.fsync },
        fmt,
      );
    }
    case 'etcd': {
      return openEtcdStore(ds, fmt);
    }
    case 'kubernetes': {
      return openKubernetesStore(ds, fmt);
    }
  }
}

/** Builds a whereabouts allocator for a network config (the IPAM registry's factory for `whereabouts`). */
export const whereaboutsFactory: IpamFactory = (config: IpamNetConf, _env: IpamEnv) => {
  return createWhereaboutsAllocator(config, { closeAfterEachCall: true });
};

/** Builds a whereabouts allocator; call `close()` when done unless `closeAfterEachCall` is set. */
export function createWhereaboutsAllocator(
  config: IpamNetConf,
  opts: Omit<WhereaboutsAllocatorOptions, 'cniVersion'> & { fsync?: boolean } = {},
): WhereaboutsAllocator {
  if (config.ipam?.type !== undefined && config.ipam.type !== 'whereabouts') {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `ipam.type: ${JSON.stringify(config.ipam.type)} is not "whereabouts"; this allocator serves only "type": "whereabouts"`,
    );
  }
  const cfg = parseWhereaboutsConfig(config.ipam);
  const { fsync, ...rest } = opts;
  return new WhereaboutsAllocator(
    cfg,
    () => openWhereaboutsStore(cfg.datastore, fsync === undefined ? {} : { fsync }),
    {
      ...rest,
      cniVersion: config.cniVersion,
    },
  );
}
