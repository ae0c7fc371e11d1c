// The whereabouts-style allocator's entry points: a factory for an IpamRegistry, and the store
// opener. Kubernetes access is injected (`kube`), so this module loads no Kubernetes code.
import { formatIP, type IPFamily } from '../../spec/addr.js';
import { CniError, ErrorCode } from '../../spec/errors.js';
import type { AllocatorFactory, IpamNetConf } from '../types.js';
import { WhereaboutsAllocator, type WhereaboutsAllocatorOptions } from './allocator.js';
import { type DatastoreConfig, parseWhereaboutsConfig } from './config.js';
import type { Store } from './store.js';
import { openEtcdStore } from './stores/etcd.js';
import { openFileStore } from './stores/file.js';
import { type KubeAccess, type KubeOpener, openKubernetesStore } from './stores/kubernetes.js';

const fmt = (a: bigint, family: IPFamily): string => formatIP({ family, value: a });

/** How whereabouts stores are opened. */
export interface WhereaboutsStoreOptions {
  /** fsync file-store records (default true; benches on tmpfs may turn it off). */
  fsync?: boolean | undefined;
  /** Kubernetes access for `datastore: kubernetes` (cni-kit/k8s `openKubeApi`, or an open connection). */
  kube?: KubeOpener | KubeAccess | undefined;
}

// The store modules are imported statically (they are small); each loads its heavy client (etcd3,
// @kubernetes/client-node) only when opened. A dynamic import() of a module of ours would break in
// the bundled binaries (esbuild drops its initialiser under "sideEffects": false).
/** Opens the datastore a config names; etcd3 and the Kubernetes client load only when chosen. */
export async function openWhereaboutsStore(
  ds: DatastoreConfig,
  opts: WhereaboutsStoreOptions = {},
): Promise<Store> {
  switch (ds.kind) {
    case 'file':
      return openFileStore(
        opts.fsync === undefined ? { dir: ds.dir } : { dir: ds.dir, fsync: opts.fsync },
        fmt,
      );
    case 'etcd':
      return openEtcdStore(ds, fmt);
    case 'kubernetes':
      return openKubernetesStore(ds, fmt, opts.kube);
  }
}

/** Options of a whereabouts allocator. */
export type WhereaboutsOptions = Omit<WhereaboutsAllocatorOptions, 'cniVersion'> & WhereaboutsStoreOptions;

/** Builds a whereabouts allocator for a config; call `close()` when done unless `closeAfterEachCall` is set. */
export function createWhereaboutsAllocator(
  config: IpamNetConf,
  opts: WhereaboutsOptions = {},
): WhereaboutsAllocator {
  if (config.ipam?.type !== undefined && config.ipam.type !== 'whereabouts') {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `ipam.type: ${JSON.stringify(config.ipam.type)} is not "whereabouts"; this allocator serves only "type": "whereabouts"`,
    );
  }
  const cfg = parseWhereaboutsConfig(config.ipam);
  const { fsync, kube, ...rest } = opts;
  const storeOpts: WhereaboutsStoreOptions = {
    ...(fsync === undefined ? {} : { fsync }),
    ...(kube === undefined ? {} : { kube }),
  };
  return new WhereaboutsAllocator(cfg, () => openWhereaboutsStore(cfg.datastore, storeOpts), {
    ...rest,
    cniVersion: config.cniVersion,
  });
}

/**
 * The registry factory for `whereabouts`, one allocator per call that closes its store after the
 * call: `builtinIpam().register('whereabouts', whereaboutsIpam({ kube: openKubeApi }))`.
 */
export function whereaboutsIpam(opts: Omit<WhereaboutsOptions, 'closeAfterEachCall'> = {}): AllocatorFactory {
  return (config) => createWhereaboutsAllocator(config, { ...opts, closeAfterEachCall: true });
}
