// Shared informers: a local copy of the API objects a long-lived process asks about on every call
// (the pods of its node, NetworkAttachmentDefinitions), kept current by LIST then WATCH from the
// list's resourceVersion, as client-go's reflector does. A watch that ends is resumed from the last
// resourceVersion seen (events and BOOKMARKs advance it); a 410 Expired (the server no longer has
// that history) makes it LIST again; a failed request waits with exponential backoff. A periodic
// LIST (resync) replaces the store, so a lost event cannot outlive one period. Readers never wait
// for the API: a miss is for the caller to resolve (see cachedKubeClient: a GET).
//
// The caches are offered to plugin bundles through a registered-symbol global (like the plugin
// host in src/plugin/host.ts): a bundle carries its own copy of this SDK, so what crosses is a plain
// object with a protocol number, never a class instance.
// Over the 400-line guideline on purpose: the transport, the reflector, the node's two caches, the
// cross-copy registry and the cache-backed client are one mechanism, read and changed together.
import type { Agent, IncomingMessage } from 'node:http';
import type { RequestOptions } from 'node:https';
import {
  isKubeNotFound,
  KubeApiError,
  type KubeClient,
  type KubeClientOptions,
  type KubeObject,
  type NetworkAttachmentDefinition,
  type ObjectMeta,
  type Pod,
} from './client.js';
import { keepAliveLike, loadClientNode, loadConfig } from './connect.js';

/** One line of a watch stream (`object` is a Status for ERROR). */
export interface WatchEvent<T = KubeObject> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: T;
}

/** What an informer needs of the API: a JSON GET and a streamed GET of newline-separated JSON. */
export interface KubeTransport {
  readonly server: string;
  /** GETs `path` with `query`; rejects with KubeApiError on any answer but 2xx. */
  getJson(path: string, query: Record<string, string>, signal?: AbortSignal): Promise<unknown>;
  /**
   * GETs `path` as a stream and calls `onEvent` per line; resolves when the server ends the stream
   * (or `signal` aborts it), rejects when it cannot be opened or breaks.
   */
  stream(
    path: string,
    query: Record<string, string>,
    onEvent: (ev: WatchEvent) => void,
    signal: AbortSignal,
  ): Promise<void>;
  /** Closes the kept connections. */
  close(): void;
}

/**
 * A transport on a kubeconfig (every credential form @kubernetes/client-node supports), over one
 * keep-alive agent: LISTs reuse one connection; each open watch holds one stream.
 */
export async function openKubeTransport(
  kubeconfig: string,
  opts: Pick<KubeClientOptions, 'timeoutMs' | 'userAgent' | 'server'> = {},
): Promise<KubeTransport> {
  const k8s = await loadClientNode();
  const kc = await loadConfig(k8s, kubeconfig, opts.server);
  const server = (kc.getCurrentCluster() as { server: string }).server;
  const base = new URL(server);
  const lib =
    base.protocol === 'https:'
      ? process.getBuiltinModule('node:https')
      : (process.getBuiltinModule('node:http') as unknown as typeof import('node:https'));
  const timeoutMs = opts.timeoutMs ?? 10_000;
  let kept: Agent | undefined;
  const open = async (path: string, query: Record<string, string>, signal?: AbortSignal) => {
    const url = new URL(path, base);
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
    const o: RequestOptions = {
      method: 'GET',
      headers: { Accept: 'application/json', 'User-Agent': opts.userAgent ?? 'cni-kit-informer' },
    };
    // Applied per request: exec plugins and token files hand out short-lived tokens.
    await kc.applyToHTTPSOptions(o);
    if (o.agent) kept ??= keepAliveLike(o.agent as Agent);
    o.agent = kept ?? false;
    return new Promise<IncomingMessage>((resolve, reject) => {
      if (signal?.aborted) return reject(new KubeApiError(0, `GET ${url.pathname}: aborted`));
      const req = lib.request(url, o, (res) => {
        // A stream cut by `signal` reports its error to the reader; nothing may stay unhandled.
        res.on('error', () => undefined);
        resolve(res);
      });
      const cut = () => req.destroy();
      signal?.addEventListener('abort', cut, { once: true });
      req.on('close', () => signal?.removeEventListener('abort', cut));
      req.on('error', (e) => reject(new KubeApiError(0, `GET ${url.pathname}: ${e.message}`)));
      req.end();
    });
  };

  const failure = async (res: IncomingMessage, path: string) => {
    let text = '';
    for await (const c of res) text += c;
    let st: { message?: string; reason?: string } = {};
    try {
      st = JSON.parse(text);
    } catch {
      // not a Status body
    }
    return new KubeApiError(
      res.statusCode ?? 0,
      `GET ${path}: ${res.statusCode} ${st.message ?? text.slice(0, 200)}`,
      st.reason,
    );
  };
  return {
    server,
    async getJson(path, query, signal) {
      const s = signal
        ? AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)])
        : AbortSignal.timeout(timeoutMs);
      const res = await open(path, query, s);
      if ((res.statusCode ?? 0) >= 300) throw await failure(res, path);
      let text = '';
      for await (const c of res) text += c;
      return JSON.parse(text);
    },
    async stream(path, query, onEvent, signal) {
      const res = await open(path, query, signal);
      if ((res.statusCode ?? 0) >= 300) throw await failure(res, path);
      let rest = '';
      try {
        for await (const chunk of res) {
          rest += chunk;
          for (let nl = rest.indexOf('\n'); nl >= 0; nl = rest.indexOf('\n')) {
            const line = rest.slice(0, nl).trim();
            rest = rest.slice(nl + 1);
            if (line) onEvent(JSON.parse(line) as WatchEvent);
          }
        }
      } catch (e) {
        if (signal.aborted) return;
        throw new KubeApiError(0, `watch ${path}: the stream broke: ${(e as Error).message}`);
      }
    },
    close: () => kept?.destroy(),
  };
}

/** Settings of one informer. */
export interface InformerOptions {
  /** The collection, e.g. `/api/v1/pods` or `/apis/k8s.cni.cncf.io/v1/network-attachment-definitions`. */
  path: string;
  /** A field selector, e.g. `spec.nodeName=node-1`. */
  fieldSelector?: string | undefined;
  /** A full LIST this often (ms; default 30 min; 0: never). */
  resyncMs?: number | undefined;
  /** How long the server keeps one watch open (s; default 300, with up to 10% more at random). */
  watchTimeoutSeconds?: number | undefined;
  /** Backoff after a failed LIST or watch: first delay and cap in ms (default 200 and 30,000). */
  backoff?: { initialMs: number; maxMs: number } | undefined;
  /** Told about each failure before the backoff (default: nothing). */
  onError?: ((err: Error) => void) | undefined;
}

/** Counters of one informer, for tests and metrics. */
export interface InformerStats {
  lists: number;
  watches: number;
  events: number;
  /** LISTs caused by a 410 Expired. */
  expired: number;
  failures: number;
}

const keyOf = (o: { metadata: ObjectMeta }) => `${o.metadata.namespace ?? ''}/${o.metadata.name}`;

/** A reflector and its store: list, then watch from the list's resourceVersion, for ever. */
export class Informer<T extends { metadata: ObjectMeta } = KubeObject> {
  private readonly store = new Map<string, T>();
  private resourceVersion = '';
  private hasSynced = false;
  private readonly stop = new AbortController();
  private running: Promise<void> | undefined;
  private readonly syncWaiters = new Set<() => void>();
  private generation = 0;
  readonly stats: InformerStats = { lists: 0, watches: 0, events: 0, expired: 0, failures: 0 };

  constructor(
    private readonly transport: KubeTransport,
    private readonly opts: InformerOptions,
  ) {}

  /** Starts listing and watching (once); returns at once. */
  start(): this {
    this.running ??= this.loop().catch(() => undefined);
    return this;
  }

  /** True once the first LIST is in the store. */
  synced(): boolean {
    return this.hasSynced;
  }

  /** Resolves true once synced, false after `timeoutMs`. */
  waitForSync(timeoutMs: number): Promise<boolean> {
    if (this.hasSynced) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.syncWaiters.delete(done);
        resolve(this.hasSynced);
      };
      const t = setTimeout(done, timeoutMs);
      this.syncWaiters.add(done);
    });
  }

  /** The cached object, or undefined (not there, or not synced yet). */
  get(namespace: string, name: string): T | undefined {
    return this.store.get(`${namespace}/${name}`);
  }

  /** The cached objects of a namespace (all namespaces when undefined). */
  list(namespace?: string): T[] {
    const all = [...this.store.values()];
    return namespace === undefined ? all : all.filter((o) => o.metadata.namespace === namespace);
  }

  /** Grows with every change of the store: a lookup that missed at one generation may hit at the next. */
  version(): number {
    return this.generation;
  }

  /** Stops watching; the store stays readable. */
  async close(): Promise<void> {
    this.stop.abort();
    for (const w of this.syncWaiters) w();
    await this.running;
  }

  private query(extra: Record<string, string>): Record<string, string> {
    return { ...(this.opts.fieldSelector ? { fieldSelector: this.opts.fieldSelector } : {}), ...extra };
  }

  private async relist(): Promise<void> {
    this.stats.lists += 1;
    const list = (await this.transport.getJson(this.opts.path, this.query({}), this.stop.signal)) as {
      metadata?: { resourceVersion?: string };
      items?: T[];
    };
    this.store.clear();
    for (const o of list.items ?? []) this.store.set(keyOf(o), o);
    this.resourceVersion = list.metadata?.resourceVersion ?? '';
    this.generation += 1;
    if (!this.hasSynced) {
      this.hasSynced = true;
      for (const w of [...this.syncWaiters]) w();
    }
  }

  private apply(ev: WatchEvent<T>): 'expired' | undefined {
    this.stats.events += 1;
    if (ev.type === 'ERROR') {
      const st = ev.object as unknown as { code?: number; message?: string; reason?: string };
      if (st.code === 410) return 'expired';
      throw new KubeApiError(
        st.code ?? 0,
        `watch ${this.opts.path}: ${st.message ?? 'error event'}`,
        st.reason,
      );
    }
    const rv = ev.object?.metadata?.resourceVersion;
    if (rv) this.resourceVersion = rv;
    if (ev.type === 'BOOKMARK') return undefined;
    if (ev.type === 'DELETED') this.store.delete(keyOf(ev.object));
    else this.store.set(keyOf(ev.object), ev.object);
    this.generation += 1;
    return undefined;
  }

  private async loop(): Promise<void> {
    const backoff = this.opts.backoff ?? { initialMs: 200, maxMs: 30_000 };
    const resyncMs = this.opts.resyncMs ?? 30 * 60_000;
    const timeout = this.opts.watchTimeoutSeconds ?? 300;
    let delay = backoff.initialMs;
    let needList = true;
    let listedAt = 0;
    const signal = this.stop.signal;
    while (!signal.aborted) {
      try {
        if (needList || (resyncMs > 0 && Date.now() - listedAt >= resyncMs)) {
          await this.relist();
          listedAt = Date.now();
          needList = false;
        }
        this.stats.watches += 1;
        // The watch ends by itself at the resync point, so a resync never waits for an event.
        const left =
          resyncMs > 0 ? Math.max(1, Math.ceil((listedAt + resyncMs - Date.now()) / 1000)) : Infinity;
        const seconds = Math.min(left, Math.round(timeout * (1 + Math.random() / 10)));
        let expired = false;
        const watchAbort = new AbortController();
        const both = AbortSignal.any([signal, watchAbort.signal]);
        await this.transport.stream(
          this.opts.path,
          this.query({
            watch: 'true',
            resourceVersion: this.resourceVersion,
            allowWatchBookmarks: 'true',
            timeoutSeconds: String(seconds),
          }),
          (ev) => {
            if (expired) return;
            if (this.apply(ev as WatchEvent<T>) === 'expired') {
              expired = true;
              watchAbort.abort();
            }
          },
          both,
        );
        if (expired) {
          this.stats.expired += 1;
          needList = true;
        }
        delay = backoff.initialMs;
      } catch (err) {
        if (signal.aborted) break;
        this.stats.failures += 1;
        if (err instanceof KubeApiError && err.status === 410) {
          this.stats.expired += 1;
          needList = true;
          continue;
        }
        this.opts.onError?.(err as Error);
        await new Promise<void>((resolve) => {
          const wake = () => {
            clearTimeout(t);
            signal.removeEventListener('abort', wake);
            resolve();
          };
          const t = setTimeout(wake, delay * (0.8 + Math.random() * 0.4));
          signal.addEventListener('abort', wake, { once: true });
        });
        delay = Math.min(backoff.maxMs, delay * 2);
      }
    }
  }
}

/** The pods of one node and the NADs, as a daemon keeps them. */
export interface NodeCaches {
  pods: Informer<Pod>;
  nads: Informer<NetworkAttachmentDefinition>;
  /** True once both are synced. */
  synced(): boolean;
  /** Resolves true once both are synced, false after `timeoutMs`. */
  waitForSync(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}

/** Settings of startNodeCaches. */
export interface NodeCacheOptions extends Omit<InformerOptions, 'path' | 'fieldSelector'> {
  /** The node whose pods are kept (spec.nodeName). */
  nodeName: string;
  /** Keep only the NADs of these namespaces (default: every namespace, one watch). */
  nadNamespaces?: readonly string[] | undefined;
}

const NAD_PATH = '/apis/k8s.cni.cncf.io/v1';

/** Starts the pod informer of a node and the NAD informer over one transport. */
export function startNodeCaches(transport: KubeTransport, opts: NodeCacheOptions): NodeCaches {
  const { nodeName, nadNamespaces, ...common } = opts;
  const pods = new Informer<Pod>(transport, {
    ...common,
    path: '/api/v1/pods',
    fieldSelector: `spec.nodeName=${nodeName}`,
  }).start();
  // One namespace: its own collection path; several or all: the cluster-wide one, filtered on read.
  const one = nadNamespaces?.length === 1 ? nadNamespaces[0] : undefined;
  const nads = new Informer<NetworkAttachmentDefinition>(transport, {
    ...common,
    path: one
      ? `${NAD_PATH}/namespaces/${one}/network-attachment-definitions`
      : `${NAD_PATH}/network-attachment-definitions`,
  }).start();
  return {
    pods,
    nads,
    synced: () => pods.synced() && nads.synced(),
    async waitForSync(timeoutMs) {
      const [a, b] = await Promise.all([pods.waitForSync(timeoutMs), nads.waitForSync(timeoutMs)]);
      return a && b;
    },
    async close() {
      await Promise.all([pods.close(), nads.close()]);
    },
  };
}

/** The registered-symbol global under which a daemon offers its caches to plugin bundles. */
export const SHARED_CACHES_KEY: unique symbol = Symbol.for('cni-kit.k8s-caches') as never;

/** The version of the object below; readers ignore entries of another protocol. */
export const SHARED_CACHE_PROTOCOL = 1;

/** What crosses from the daemon to a bundle: plain functions over the stores. */
export interface SharedKubeCache {
  protocol: typeof SHARED_CACHE_PROTOCOL;
  synced(): boolean;
  pod(namespace: string, name: string): Pod | undefined;
  nad(namespace: string, name: string): NetworkAttachmentDefinition | undefined;
  /** Every NAD of a namespace, or undefined when the cache cannot answer (not synced, not kept). */
  nads(namespace: string): NetworkAttachmentDefinition[] | undefined;
  /** Remembers that the API said 404 for a NAD; forgotten at the next change of the NAD store. */
  noteMissingNad(namespace: string, name: string): void;
  /** True when the API said 404 for this NAD and no NAD changed since. */
  knownMissingNad(namespace: string, name: string): boolean;
  /** Hits and misses so far. */
  counts: { podHits: number; podMisses: number; nadHits: number; nadMisses: number };
}

const registry = () => {
  const g = globalThis as Record<symbol, Map<string, SharedKubeCache> | undefined>;
  g[SHARED_CACHES_KEY] ??= new Map();
  return g[SHARED_CACHES_KEY];
};

/** Wraps NodeCaches for sharing (see SharedKubeCache). */
export function sharedCacheOf(caches: NodeCaches, nadNamespaces?: readonly string[]): SharedKubeCache {
  const missing = new Map<string, number>();
  const kept = (ns: string) => !nadNamespaces?.length || nadNamespaces.includes(ns);
  return {
    protocol: SHARED_CACHE_PROTOCOL,
    synced: caches.synced,
    pod: (ns, name) => (caches.pods.synced() ? caches.pods.get(ns, name) : undefined),
    nad: (ns, name) => (caches.nads.synced() ? caches.nads.get(ns, name) : undefined),
    nads: (ns) => (caches.nads.synced() && kept(ns) ? caches.nads.list(ns) : undefined),
    noteMissingNad: (ns, name) => {
      if (caches.nads.synced() && kept(ns)) missing.set(`${ns}/${name}`, caches.nads.version());
    },
    knownMissingNad: (ns, name) => missing.get(`${ns}/${name}`) === caches.nads.version(),
    counts: { podHits: 0, podMisses: 0, nadHits: 0, nadMisses: 0 },
  };
}

/** Offers `cache` to every SDK copy in this process for calls using `kubeconfig`; returns its removal. */
export function registerSharedKubeCache(kubeconfig: string, cache: SharedKubeCache): () => void {
  const path = process.getBuiltinModule('node:path').resolve(kubeconfig);
  registry().set(path, cache);
  return () => {
    if (registry().get(path) === cache) registry().delete(path);
  };
}

/** The cache a host offers for `kubeconfig`, if any (never in a plugin process of its own). */
export function sharedKubeCache(kubeconfig: string): SharedKubeCache | undefined {
  const g = (globalThis as Record<symbol, Map<string, SharedKubeCache> | undefined>)[SHARED_CACHES_KEY];
  if (!g) return undefined;
  const c = g.get(process.getBuiltinModule('node:path').resolve(kubeconfig));
  return c?.protocol === SHARED_CACHE_PROTOCOL ? c : undefined;
}

/**
 * `base` with reads served from `cache`: a pod or NAD found there costs no request; a miss (a pod
 * created a moment ago, a NAD the watch has not delivered yet) is a GET through `base`. A pod whose
 * cached uid differs from `podUid` (re-created under its name) is a miss too. Writes go to `base`.
 */
export function cachedKubeClient(base: KubeClient, cache: SharedKubeCache, podUid?: string): KubeClient {
  return {
    async getPod(ns, name) {
      const hit = cache.pod(ns, name);
      if (hit && (!podUid || hit.metadata.uid === podUid)) {
        cache.counts.podHits += 1;
        // A copy: the caller may change what it got; the store is shared by every call.
        return structuredClone(hit);
      }
      cache.counts.podMisses += 1;
      return base.getPod(ns, name);
    },
    async getNetworkAttachmentDefinition(ns, name) {
      const hit = cache.nad(ns, name);
      if (hit) {
        cache.counts.nadHits += 1;
        return structuredClone(hit);
      }
      if (cache.knownMissingNad(ns, name)) {
        cache.counts.nadHits += 1;
        throw new KubeApiError(
          404,
          `GET network-attachment-definitions.k8s.cni.cncf.io ${ns}/${name}: 404 network-attachment-definitions.k8s.cni.cncf.io "${name}" not found`,
          'NotFound',
        );
      }
      cache.counts.nadMisses += 1;
      try {
        return await base.getNetworkAttachmentDefinition(ns, name);
      } catch (err) {
        if (isKubeNotFound(err)) cache.noteMissingNad(ns, name);
        throw err;
      }
    },
    async listNetworkAttachmentDefinitions(ns) {
      return cache.nads(ns) ?? base.listNetworkAttachmentDefinitions(ns);
    },
    updatePodAnnotations: (ns, name, changes) => base.updatePodAnnotations(ns, name, changes),
    createEvent: (ns, ev) => base.createEvent(ns, ev),
  };
}
