// The whereabouts-style allocator's entry points: a factory for an IpamRegistry, and the store
// opener. Kubernetes access is injected (`kube`), so this module loads no Kubernetes code.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { formatIP, type IPFamily } from '../../spec/addr.js';
import type { Env } from '../../spec/call.js';
import { CniError, ErrorCode } from '../../spec/errors.js';
import type { AllocatorFactory, IpamNetConf } from '../types.js';
import { type PoolWalks, WhereaboutsAllocator, type WhereaboutsAllocatorOptions } from './allocator.js';
import {
  type DatastoreConfig,
  DEFAULT_FILE_DIR,
  parseWhereaboutsConfig,
  type WhereaboutsConfigOptions,
} from './config.js';
import { WhereaboutsLog } from './log.js';
import type { Store } from './store.js';
import { openEtcdStore } from './stores/etcd.js';
import { type FileStoreOptions, openFileStore } from './stores/file.js';
import { type KubeAccess, type KubeOpener, openKubernetesStore } from './stores/kubernetes.js';

const fmt = (a: bigint, family: IPFamily): string => formatIP({ family, value: a });

/** How whereabouts stores are opened. */
export interface WhereaboutsStoreOptions {
  /** fsync file-store records (default true; benches on tmpfs may turn it off). */
  fsync?: boolean | undefined;
  /** Kubernetes access for `datastore: kubernetes` (cni-kit/k8s `openKubeApi`, or an open connection). */
  kube?: KubeOpener | KubeAccess | undefined;
  /** Where DEL looks when no store resolves (earlier versions' default); default /var/lib/cni/whereabouts. @internal */
  legacyFileDir?: string | undefined;
  /** Crash tests: called after each durable step of the file store. @internal */
  onFileStoreStep?: FileStoreOptions['onStep'];
  /** Where etcd and Kubernetes stores are kept between calls (whereaboutsIpam shares one per factory). @internal */
  sharedStores?: SharedStores | undefined;
}

/**
 * etcd and Kubernetes stores kept open between calls of one factory: a long-lived process (the
 * daemon) then holds one etcd connection per datastore config instead of dialling etcd for every
 * call, and one IPPool writer per pool, which batches concurrent calls' claims. A store is
 * replaced after `ttlMs` (certificates and endpoints edited on disk are picked up); the one it
 * replaces is closed a minute later, once the calls using it are done.
 */
export class SharedStores {
  private readonly entries = new Map<string, { at: number; store: Promise<Store>; real: Promise<Store> }>();
  constructor(private readonly ttlMs = 300_000) {}

  /** The open store for `ds`, opening it with `open` when there is none (or it is too old). */
  get(ds: DatastoreConfig, open: () => Promise<Store>): Promise<Store> {
    const key = JSON.stringify(ds);
    const now = Date.now();
    const hit = this.entries.get(key);
    if (hit && now - hit.at < this.ttlMs) return hit.store;
    if (hit) {
      // The real store: the one handed to calls has a close that does nothing.
      const old = hit.real;
      setTimeout(() => old.then((s) => s.close()).catch(() => {}), 60_000).unref();
    }
    const real = open();
    const store = real.then((s) => ({ ...s, close: async () => {} }));
    this.entries.set(key, { at: now, store, real });
    store.catch(() => {
      if (this.entries.get(key)?.store === store) this.entries.delete(key);
    });
    return store;
  }

  /** Closes every store held (a process shutting down, tests). */
  async close(): Promise<void> {
    const all = [...this.entries.values()];
    this.entries.clear();
    await Promise.all(all.map((e) => e.real.then((s) => s.close()).catch(() => {})));
  }
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
    case 'file': {
      const o: FileStoreOptions = { dir: ds.dir };
      if (opts.fsync !== undefined) o.fsync = opts.fsync;
      if (opts.onFileStoreStep) o.onStep = opts.onFileStoreStep;
      return openFileStore(o, fmt);
    }
    case 'etcd':
      return openEtcdStore(ds, fmt);
    case 'kubernetes':
      return openKubernetesStore(ds, fmt, opts.kube);
    case 'none':
      throw new CniError(ErrorCode.InvalidNetworkConfig, ds.message);
  }
}

/** Options of a whereabouts allocator. */
export type WhereaboutsOptions = Omit<
  WhereaboutsAllocatorOptions,
  'cniVersion' | 'log' | 'releaseStore' | 'nodeName' | 'sliceSetName'
> &
  WhereaboutsStoreOptions &
  WhereaboutsConfigOptions & {
    /** The call's environment: node slices read NODENAME from it. */
    env?: Env | undefined;
    /** Node slices: the host-name file read last (default /etc/hostname). @internal */
    hostnameFile?: string | undefined;
  };

/**
 * This node's name as whereabouts finds it: NODENAME, else the `nodename` file beside the flat
 * file (the installer writes it), else the host name file.
 */
export function resolveNodeName(
  env: Env | undefined,
  flatFile: string | undefined,
  hostnameFile = '/etc/hostname',
): string {
  const fromEnv = env?.NODENAME?.trim();
  if (fromEnv) return fromEnv;
  for (const f of [flatFile ? join(dirname(flatFile), 'nodename') : undefined, hostnameFile]) {
    if (!f) continue;
    try {
      const name = readFileSync(f, 'utf8').trim();
      if (name) return name;
    } catch {
      // next source
    }
  }
  return '';
}

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
  const {
    fsync,
    kube,
    onFileStoreStep,
    flatFilePaths,
    legacyFileDir,
    sharedStores,
    env,
    hostnameFile,
    ...rest
  } = opts;
  const cfg = parseWhereaboutsConfig(config.ipam, { flatFilePaths });
  const log = new WhereaboutsLog(cfg.log);
  log.debug(
    `IPAM configuration read for network ${JSON.stringify(config.name)}: store ${cfg.datastore.kind}, flat file ${cfg.flat.path ?? `none (searched ${cfg.flat.searched.join(', ')})`}`,
  );
  for (const [k, v] of Object.entries(cfg.controllerFields)) {
    log.verbose(
      `ipam.${k}: ${JSON.stringify(v)} accepted; it configures whereabouts' controllers (ip-reconciler, leader election, race testing), which this IPAM binary does not run`,
    );
  }
  const storeOpts: WhereaboutsStoreOptions = {
    ...(fsync === undefined ? {} : { fsync }),
    ...(kube === undefined ? {} : { kube }),
    ...(onFileStoreStep === undefined ? {} : { onFileStoreStep }),
  };
  const open = () => openWhereaboutsStore(cfg.datastore, storeOpts);
  // etcd: one connection per datastore; Kubernetes: one writer per pool, so that concurrent calls'
  // claims share PUTs (the connection itself is shared by the `kube` opener, cachedKubeConnect).
  const shared = cfg.datastore.kind === 'etcd' || cfg.datastore.kind === 'kubernetes';
  const openStore = sharedStores && shared ? () => sharedStores.get(cfg.datastore, open) : open;
  let node: string | undefined;
  return new WhereaboutsAllocator(cfg, openStore, {
    ...rest,
    nodeName: () => {
      node ??= resolveNodeName(env, cfg.flat.path, hostnameFile);
      return node;
    },
    sliceSetName: cfg.networkName || config.name,
    cniVersion: config.cniVersion,
    log,
    releaseStore: () => legacyReleaseStore(cfg.datastore, legacyFileDir ?? DEFAULT_FILE_DIR, storeOpts),
  });
}

/**
 * The store a DEL uses when the config resolves none: the node-local file store at its default
 * directory, where versions that defaulted to it kept their pools, when it exists; else none
 * (nothing can be held, DEL succeeds).
 */
async function legacyReleaseStore(
  ds: DatastoreConfig,
  dir: string,
  opts: WhereaboutsStoreOptions,
): Promise<Store | undefined> {
  if (ds.kind !== 'none' || !existsSync(join(dir, 'spaces'))) return undefined;
  return openWhereaboutsStore({ kind: 'file', dir }, opts);
}

/**
 * The registry factory for `whereabouts`: one allocator per call, which closes its store after the
 * call, except etcd and Kubernetes stores, which the factory keeps for its next calls (SharedStores):
 * `builtinIpam().register('whereabouts', whereaboutsIpam({ kube: cachedKubeConnect(openKubeApi) }))`.
 */
export function whereaboutsIpam(opts: Omit<WhereaboutsOptions, 'closeAfterEachCall'> = {}): AllocatorFactory {
  const sharedStores = opts.sharedStores ?? new SharedStores();
  // Calls served at once by one process (the daemon) see each other's ADDs and spread their first try.
  const inflight = opts.inflight ?? new Map<string, number>();
  // ... and wait for one walk through a held run they all meet.
  const walks = opts.walks ?? new Map<string, PoolWalks>();
  // ... and read the addresses around the last cursor seen with their first reads.
  const hints = opts.hints ?? new Map<string, bigint>();
  return (config, call) =>
    createWhereaboutsAllocator(config, {
      ...opts,
      sharedStores,
      inflight,
      walks,
      hints,
      closeAfterEachCall: true,
      ...(call?.env ? { env: call.env } : {}),
    });
}
