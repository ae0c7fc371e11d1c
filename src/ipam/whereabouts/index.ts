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
import { openEtcdConnection, openEtcdStore } from './stores/etcd.js';
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
 * A connection SharedStores keeps, with the stores of the datastore configs that share it (etcd:
 * one client per endpoint set, credentials and TLS files, with a store per prefix on top).
 */
export interface SharedConnection {
  /** The store for `ds` on this connection; its close must leave the connection open. */
  store(ds: DatastoreConfig): Store;
  /** Closes the connection. */
  close(): Promise<void>;
}

/** What makes two datastore configs share a connection: everything but the etcd prefix. */
export function connectionKey(ds: DatastoreConfig): string {
  if (ds.kind !== 'etcd') return JSON.stringify(ds);
  const { etcd_prefix: _prefix, ...conn } = ds;
  return JSON.stringify(conn);
}

interface SharedConnectionEntry {
  opened: number;
  conn: Promise<SharedConnection>;
  stores: Map<string, { used: number; store: Promise<Store> }>;
}

/**
 * etcd and Kubernetes stores kept open between calls of one factory: a long-lived process (the
 * daemon) then holds one etcd connection per endpoint set and credentials, whatever the number of
 * prefixes (networks) it serves, instead of dialling etcd for every call, and one IPPool writer per
 * pool, which batches concurrent calls' claims. A connection is replaced after `ttlMs`
 * (certificates and endpoints edited on disk are picked up); a store nobody asked for during
 * `ttlMs` is dropped, and a connection left without stores is closed. A connection replaced or
 * dropped is closed `graceMs` later, once the calls using it are done.
 */
export class SharedStores {
  private readonly entries = new Map<string, SharedConnectionEntry>();
  private sweeper: ReturnType<typeof setInterval> | undefined;
  constructor(
    private readonly ttlMs = 300_000,
    private readonly graceMs = 60_000,
  ) {}

  /** The open store for `ds`, connecting with `connect` when no connection for it is kept (or it is too old). */
  get(ds: DatastoreConfig, connect: () => Promise<SharedConnection>): Promise<Store> {
    const ck = connectionKey(ds);
    const sk = JSON.stringify(ds);
    const now = Date.now();
    let entry = this.entries.get(ck);
    if (entry && now - entry.opened >= this.ttlMs) {
      this.retire(ck, entry);
      entry = undefined;
    }
    if (!entry) {
      const conn = connect();
      const fresh: SharedConnectionEntry = { opened: now, conn, stores: new Map() };
      entry = fresh;
      this.entries.set(ck, fresh);
      conn.catch(() => {
        if (this.entries.get(ck) === fresh) this.entries.delete(ck);
      });
      this.sweep();
    }
    let held = entry.stores.get(sk);
    if (!held) {
      // The store handed to calls has a close that does nothing: the connection outlives the call.
      const store = entry.conn.then((c) => ({ ...c.store(ds), close: async () => {} }));
      held = { used: now, store };
      entry.stores.set(sk, held);
    }
    held.used = now;
    return held.store;
  }

  /** Connections open (or opening) now. */
  get connections(): number {
    return this.entries.size;
  }

  /** Stores kept now, over all connections. */
  get stores(): number {
    let n = 0;
    for (const e of this.entries.values()) n += e.stores.size;
    return n;
  }

  /** Closes every connection held (a process shutting down, tests). */
  async close(): Promise<void> {
    const all = [...this.entries.values()];
    this.entries.clear();
    this.sweep();
    await Promise.all(all.map((e) => e.conn.then((c) => c.close()).catch(() => {})));
  }

  private retire(key: string, entry: SharedConnectionEntry): void {
    if (this.entries.get(key) === entry) this.entries.delete(key);
    const close = () => entry.conn.then((c) => c.close()).catch(() => {});
    setTimeout(close, this.graceMs).unref();
  }

  /** Drops stores idle for the TTL and connections left without stores; runs while any is kept. */
  private sweep(): void {
    const now = Date.now();
    for (const [key, entry] of this.entries) {
      for (const [sk, held] of entry.stores) if (now - held.used >= this.ttlMs) entry.stores.delete(sk);
      if (entry.stores.size === 0 && now - entry.opened >= this.ttlMs) this.retire(key, entry);
    }
    if (this.entries.size === 0) {
      if (this.sweeper) clearInterval(this.sweeper);
      this.sweeper = undefined;
    } else if (!this.sweeper) {
      this.sweeper = setInterval(() => this.sweep(), Math.max(10, Math.min(this.ttlMs / 2, 30_000)));
      this.sweeper.unref();
    }
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
  // etcd: one connection per endpoint set and credentials, a store per prefix on it; Kubernetes:
  // one writer per pool, so that concurrent calls' claims share PUTs (the connection itself is
  // shared by the `kube` opener, cachedKubeConnect).
  const ds = cfg.datastore;
  const connect =
    ds.kind === 'etcd'
      ? async (): Promise<SharedConnection> => {
          const conn = await openEtcdConnection(ds);
          return {
            store: (d) => conn.store(d.kind === 'etcd' ? d.etcd_prefix : undefined, fmt),
            close: () => conn.close(),
          };
        }
      : ds.kind === 'kubernetes'
        ? async (): Promise<SharedConnection> => {
            const store = await open();
            return { store: () => store, close: () => store.close() };
          }
        : undefined;
  const openStore = sharedStores && connect ? () => sharedStores.get(ds, connect) : open;
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
