// Kubernetes API access on @kubernetes/client-node, so every kubeconfig users have works: tokens,
// token files, client certificates, exec credential plugins, auth providers, proxies. The library
// takes hundreds of milliseconds to load, so it is imported here, on the first connect, and never
// at module top level: a plugin without a kubeconfig never pays for it. Every request is bounded
// in time, because a CNI call hanging on an unreachable API server blocks the sandbox (multus
// PR#1372), and every failure becomes a KubeApiError (code 11 when retrying can help).
import { readFile, stat } from 'node:fs/promises';
import type { Agent as HttpAgent } from 'node:http';
import { dirname, resolve } from 'node:path';
import type * as K8s from '@kubernetes/client-node';
import { CniError, describeSystemError, ErrorCode, importOptionalPeer } from '../spec/errors.js';
import {
  type CustomResources,
  type KubeApi,
  KubeApiError,
  type KubeClient,
  type KubeClientOptions,
  type NetworkAttachmentDefinition,
  type Pod,
} from './client.js';

export type ClientNode = typeof K8s;

const NAD = { group: 'k8s.cni.cncf.io', version: 'v1', plural: 'network-attachment-definitions' };

/** A Status body's message and reason, from the text client-node keeps of an error answer. */
function statusOf(body: unknown): { message?: string; reason?: string } {
  let v = body;
  if (typeof body === 'string') {
    try {
      v = JSON.parse(body);
    } catch {
      return body.trim() ? { message: body.trim().slice(0, 200) } : {};
    }
  }
  if (typeof v !== 'object' || v === null) return {};
  const s = v as { message?: unknown; reason?: unknown };
  return {
    ...(typeof s.message === 'string' ? { message: s.message } : {}),
    ...(typeof s.reason === 'string' ? { reason: s.reason } : {}),
  };
}

const HINTS: Record<number, string> = {
  401: 'the credentials of the kubeconfig were refused; renew the token or certificate',
  403: "the kubeconfig's account lacks RBAC permission for this; grant it in a (Cluster)Role",
};

/** Turns whatever client-node threw into a KubeApiError naming the request and what to do. */
function toKubeError(k8s: ClientNode, err: unknown, what: string, kubeconfig: string, timeoutMs: number) {
  if (err instanceof CniError) return err;
  if (err instanceof k8s.ApiException) {
    const code = Number(err.code);
    const st = statusOf(err.body);
    const hint = HINTS[code];
    const text = st.message ?? st.reason ?? (code === 401 ? 'Unauthorized' : 'no Status in the answer');
    return new KubeApiError(code, `${what}: ${code} ${text}${hint ? `; ${hint}` : ''}`, st.reason);
  }
  const e = err as { name?: unknown; type?: unknown; message?: unknown } | undefined;
  const msg = typeof e?.message === 'string' ? e.message : String(err);
  if (err instanceof k8s.AbortError || e?.name === 'AbortError' || e?.name === 'TimeoutError') {
    return new KubeApiError(0, `${what}: no answer within ${timeoutMs} ms; is the API server reachable?`);
  }
  if (err instanceof k8s.FetchError) {
    return new KubeApiError(0, `${what}: ${msg}; is the API server reachable?`);
  }
  // Raised before any byte went out: an exec plugin or token file that failed, a bad certificate.
  return new KubeApiError(0, `${what}: cannot prepare the request from kubeconfig ${kubeconfig}: ${msg}`);
}

/** Reads the kubeconfig with client-node's own loader, turning its failures into CNI errors. */
export async function loadConfig(
  k8s: ClientNode,
  path: string,
  server: string | undefined,
): Promise<K8s.KubeConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new CniError(
      ErrorCode.IOFailure,
      `kubeconfig: ${describeSystemError(e) ?? `cannot read ${path}: ${(e as Error).message}`}; check the "kubeconfig" field of the plugin config`,
      undefined,
      { cause: e },
    );
  }
  const kc = new k8s.KubeConfig();
  try {
    kc.loadFromString(text);
    kc.makePathsAbsolute(dirname(path));
    await applyTokenFile(kc, path, text);
  } catch (e) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      // js-yaml appends a multi-line excerpt; CNI error messages stay on one line.
      `kubeconfig ${path}: ${((e as Error).message.split('\n')[0] ?? '').trim()}; fix the file`,
      undefined,
      { cause: e },
    );
  }
  const current = kc.getCurrentCluster();
  if (!current) {
    const ctx = kc.getCurrentContext();
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `kubeconfig ${path}: current-context ${JSON.stringify(ctx ?? '')} names no context with a known cluster; set current-context to one of ${JSON.stringify(kc.getContexts().map((c) => c.name))}`,
    );
  }
  const url = (server ?? current.server).replace(/\/+$/, '');
  if (!/^https?:\/\//.test(url)) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `kubeconfig ${path}: server ${JSON.stringify(url)} is not an http(s) URL; use e.g. https://10.96.0.1:443`,
    );
  }
  // client-node refuses http:// unless TLS verification is "skipped"; client-go (and so the Go
  // plugins) talk plain HTTP to such a server, e.g. `kubectl proxy`, so a kubeconfig that works
  // with them works here too. The flag has no other effect on a plain-HTTP cluster.
  const plain = url.startsWith('http:');
  const patched = { ...current, server: url, ...(plain ? { skipTLSVerify: true } : {}) };
  kc.clusters = kc.clusters.map((c) => (c.name === current.name ? patched : c));
  return kc;
}

/**
 * The client-node namespace. A CommonJS bundle of it (the binaries' sidecar) may expose its exports
 * only as `default` when imported, so both shapes are accepted.
 */
export async function loadClientNode(): Promise<ClientNode> {
  const mod = (await importOptionalPeer(
    '@kubernetes/client-node',
    'Kubernetes access (multus, the whereabouts Kubernetes store)',
    () => import('@kubernetes/client-node'),
  )) as ClientNode & { default?: ClientNode };
  return typeof mod.KubeConfig === 'function' ? mod : (mod.default ?? mod);
}

/** The auth-provider name under which a kubeconfig's `tokenFile` is served (see TokenFileAuth). */
const TOKEN_FILE_PROVIDER = 'cni-kit-token-file';

/**
 * A bearer token read from a file, and read again whenever the file changes (identity, size or
 * modification time; kubelet replaces a projected service-account token by swapping a symlink, so
 * the identity changes). Bound tokens expire (one hour by default, refreshed by kubelet at 80% of
 * their life): a long-lived process must follow the file, as client-go's cached file token source
 * does (it re-reads once a minute; here one stat per request notices the change at once).
 */
class TokenFileAuth {
  private token = '';
  private stamp = '';
  isAuthProvider(user: K8s.User | undefined): boolean {
    return user?.authProvider?.name === TOKEN_FILE_PROVIDER;
  }
  async applyAuthentication(user: K8s.User, opts: { headers?: Record<string, unknown> }): Promise<void> {
    const file = String(user.authProvider?.config?.path ?? '');
    let st: Awaited<ReturnType<typeof stat>>;
    try {
      st = await stat(file);
      const stamp = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
      if (stamp !== this.stamp) {
        const token = (await readFile(file, 'utf8')).trim();
        if (token === '') throw new Error('the file is empty');
        this.token = token;
        this.stamp = stamp;
      }
    } catch (e) {
      throw new Error(
        `token file ${file}: ${describeSystemError(e) ?? (e as Error).message}; the service-account token (or the kubeconfig's tokenFile) must be readable`,
      );
    }
    opts.headers ??= {};
    opts.headers.Authorization = `Bearer ${this.token}`;
  }
}

/**
 * client-go's `tokenFile` user field (client-node only knows a `token-file` spelling): the token is
 * read from the file, relative to the kubeconfig's directory, when the user has no other credential,
 * and read again whenever the file changes (TokenFileAuth).
 */
async function applyTokenFile(kc: K8s.KubeConfig, path: string, text: string): Promise<void> {
  const user = kc.getCurrentUser();
  if (!text.includes('tokenFile') || !user || user.token || user.exec || user.authProvider) return;
  const doc = (
    text.trimStart().startsWith('{')
      ? JSON.parse(text)
      : ((await import('js-yaml')) as { load(s: string): unknown }).load(text)
  ) as { users?: Array<{ name?: unknown; user?: { tokenFile?: unknown } }> };
  const file = doc.users?.find((u) => u?.name === user.name)?.user?.tokenFile;
  if (typeof file !== 'string' || file === '') return;
  const abs = resolve(dirname(path), file);
  // Read once here so that a missing file fails the load, naming the field.
  try {
    await readFile(abs, 'utf8');
  } catch (e) {
    throw new Error(
      `users[${JSON.stringify(user.name)}].tokenFile: ${describeSystemError(e) ?? `cannot read ${abs}: ${(e as Error).message}`}`,
    );
  }
  kc.addAuthenticator(new TokenFileAuth());
  kc.users = kc.users.map((u) =>
    u.name === user.name ? { ...u, authProvider: { name: TOKEN_FILE_PROVIDER, config: { path: abs } } } : u,
  );
}

/**
 * Opens the API server of a kubeconfig's current context: the delegator calls (pods, NADs) and
 * namespaced custom resources. Loads @kubernetes/client-node on first use.
 */
export async function openKubeApi(kubeconfig: string, opts: KubeClientOptions = {}): Promise<KubeApi> {
  const k8s = await loadClientNode();
  const kc = await loadConfig(k8s, kubeconfig, opts.server);
  const cluster = kc.getCurrentCluster() as K8s.Cluster;
  const timeoutMs = opts.timeoutMs ?? 10_000;
  // The agent closes only free sockets on this timeout; a request in flight is bounded by timeoutMs.
  const idleSocketMs = opts.idleSocketMs ?? 60_000;
  let kept: HttpAgent | undefined;
  const userAgent = opts.userAgent ?? 'cni-kit';
  const config = k8s.createConfiguration({
    baseServer: new k8s.ServerConfiguration(cluster.server, {}),
    authMethods: { default: kc },
    promiseMiddleware: [
      {
        async pre(ctx) {
          ctx.setSignal(AbortSignal.timeout(timeoutMs));
          ctx.setHeaderParam('User-Agent', userAgent);
          // The client builds a new agent (and so a new TLS connection) for every request; one
          // keep-alive agent with the same TLS settings serves every request of this connection.
          const agent = ctx.getAgent();
          if (agent) {
            kept ??= keepAliveLike(agent, idleSocketMs);
            ctx.setAgent(kept);
          }
          return ctx;
        },
        post: async (res) => res,
      },
    ],
  });
  const core = new k8s.CoreV1Api(config);
  const custom = new k8s.CustomObjectsApi(config);
  // Requests in flight, so that close() ends each keep-alive socket only once its request is done.
  let inflight = 0;
  let closing = false;
  let lastUsed = Date.now();
  // close() releases the sockets once no request is running; the client stays usable (a later
  // request opens a socket again, which its idle timeout ends if nobody closes it).
  const release = () => {
    if (closing && inflight === 0) {
      closing = false;
      kept?.destroy();
      kept = undefined;
    }
  };
  const lastActive = () => (inflight > 0 ? Date.now() : lastUsed);
  const run = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    inflight += 1;
    lastUsed = Date.now();
    try {
      return await fn();
    } catch (err) {
      throw toKubeError(k8s, err, what, kubeconfig, timeoutMs);
    } finally {
      inflight -= 1;
      lastUsed = Date.now();
      release();
    }
  };
  const close = () => {
    closing = true;
    release();
  };
  const mergePatch = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch);
  const conflictRetries = Math.max(1, opts.conflictRetries ?? 5);

  function customResources<T extends object>(
    group: string,
    version: string,
    plural: string,
  ): CustomResources<T> {
    const kind = `${plural}.${group}`;
    const base = { group, version, plural };
    return {
      get: (namespace, name) =>
        run(`GET ${kind} ${namespace}/${name}`, () =>
          custom.getNamespacedCustomObject({ ...base, namespace, name }),
        ) as Promise<T>,
      async list(namespace) {
        const l = (await run(`LIST ${kind} in ${namespace}`, () =>
          custom.listNamespacedCustomObject({ ...base, namespace }),
        )) as { items?: T[] } | undefined;
        return l?.items ?? [];
      },
      create: (namespace, body) =>
        run(`CREATE ${kind} in ${namespace}`, () =>
          custom.createNamespacedCustomObject({ ...base, namespace, body }),
        ) as Promise<T>,
      replace: (namespace, name, body) =>
        run(`UPDATE ${kind} ${namespace}/${name}`, () =>
          custom.replaceNamespacedCustomObject({ ...base, namespace, name, body }),
        ) as Promise<T>,
      async delete(namespace, name) {
        await run(`DELETE ${kind} ${namespace}/${name}`, () =>
          custom.deleteNamespacedCustomObject({ ...base, namespace, name }),
        );
      },
    };
  }

  const nads = customResources<NetworkAttachmentDefinition>(NAD.group, NAD.version, NAD.plural);
  const client: KubeClient = {
    getPod: (namespace, name) =>
      run(`GET pod ${namespace}/${name}`, () => core.readNamespacedPod({ namespace, name })) as Promise<Pod>,
    getNetworkAttachmentDefinition: (namespace, name) => nads.get(namespace, name),
    listNetworkAttachmentDefinitions: (namespace) => nads.list(namespace),
    async createEvent(namespace, event) {
      // Timestamps stay RFC 3339 strings (the serializer passes strings through), as client-go sends.
      const body = event as unknown as K8s.CoreV1Event;
      await run(`CREATE event in ${namespace}`, () => core.createNamespacedEvent({ namespace, body }));
    },
    async updatePodAnnotations(namespace, name, changes) {
      // A merge patch of the annotations alone: one round trip, no read-modify-write of the whole
      // pod (which would drop status fields this client version does not model), and other
      // writers' annotations are left alone. The server answers 409 only when its own retries
      // lost to concurrent writers, so trying again is right.
      const body = { metadata: { annotations: changes } };
      for (let i = 1; ; i++) {
        try {
          return (await run(`PATCH pod ${namespace}/${name} status`, () =>
            core.patchNamespacedPodStatus({ namespace, name, body }, mergePatch),
          )) as Pod;
        } catch (err) {
          if (!(err instanceof KubeApiError) || err.status !== 409 || i >= conflictRetries) throw err;
        }
      }
    },
    close,
    lastActive,
  };
  const ctxName = kc.getCurrentContext();
  return {
    server: cluster.server,
    namespace: kc.getContextObject(ctxName)?.namespace || undefined,
    client,
    customResources,
    close,
    lastActive,
  };
}

/** Loads a kubeconfig and returns the delegator's API client for its current context. */
export async function connectKube(kubeconfig: string, opts: KubeClientOptions = {}): Promise<KubeClient> {
  return (await openKubeApi(kubeconfig, { userAgent: 'cni-kit-multus', ...opts })).client;
}

/**
 * A keep-alive agent with the TLS settings of `agent` (CA, client certificate, server name); a
 * proxy agent is kept as it is.
 */
export function keepAliveLike(agent: HttpAgent, idleSocketMs?: number): HttpAgent {
  // Loaded here, not at the top: a plugin that never connects (VERSION) never pays for node:https.
  const http = process.getBuiltinModule('node:http');
  const https = process.getBuiltinModule('node:https');
  const options = {
    ...((agent as HttpAgent & { options?: object }).options ?? {}),
    keepAlive: true,
    // No per-host socket limit: a request queued behind a busy socket gets that socket the moment
    // the previous response ends, and node-fetch 2 then fails a chunked response with a spurious
    // "Premature close" (9 concurrent requests over 8 sockets lost one; 200 lost 192). Callers
    // bound their own concurrency (the daemon's queue); the idle sockets kept are bounded instead.
    maxSockets: Number.POSITIVE_INFINITY,
    maxFreeSockets: 8,
    // A kept socket unused this long is closed by the agent (it destroys free sockets on their
    // timeout), so a client nobody closes holds no connection for ever.
    ...(idleSocketMs === undefined ? {} : { timeout: idleSocketMs }),
  };
  if (agent instanceof https.Agent) return new https.Agent(options);
  if (agent.constructor === http.Agent) return new http.Agent(options);
  return agent;
}

/** A function opening a connection for a kubeconfig (openKubeApi, connectKube, or a test's own). */
export type KubeConnect<T> = (kubeconfig: string, opts: KubeClientOptions) => Promise<T>;

/** cachedKubeConnect's function, which can also close what it keeps. */
export type CachedKubeConnect<T> = KubeConnect<T> & {
  /** Closes every kept connection (gracefully: requests in flight end first) and forgets them. */
  close(): void;
  /** Connections kept now. */
  readonly size: number;
};

/** Options of cachedKubeConnect. */
export interface CachedKubeConnectOptions {
  /** A connection is opened again after this long (default 5 min: tokens and kubeconfig edits are picked up). */
  ttlMs?: number | undefined;
  /**
   * A connection nobody asked for and that ran no request (see KubeClient.lastActive) in this long
   * is closed (default 60 s): a caller holding it for its requests keeps it.
   */
  idleMs?: number | undefined;
}

/**
 * Every cachedKubeConnect holding connections, under a registered symbol shared by every SDK copy in
 * the process (the daemon and the bundles it loaded): the daemon closes them all when it stops.
 */
const KEPT_KEY = Symbol.for('cni-kit.kube-connections');
const keptSet = (): Set<() => void> => {
  const slot = globalThis as Record<symbol, Set<() => void> | undefined>;
  slot[KEPT_KEY] ??= new Set();
  return slot[KEPT_KEY];
};

/**
 * Closes the connections every cachedKubeConnect of this process keeps (the daemon calls this when
 * it stops; the bundles it serves each keep their own). Returns how many caches held some.
 */
export function closeKeptKubeConnections(): number {
  const all = [...keptSet()];
  for (const close of all) close();
  return all.length;
}

function closeConn(conn: Promise<unknown>): void {
  conn.then(
    (c) => (c as { close?: () => void } | null)?.close?.(),
    () => {},
  );
}

/**
 * `open` with its connections kept for reuse: a long-lived process (the daemon) then opens one
 * client per kubeconfig and options instead of one per call, and its HTTP keep-alive connections
 * serve the next call. An entry is reopened after `ttlMs` or when the kubeconfig file changes, and
 * the entry it replaces is closed (its sockets end once its requests have); one neither asked for
 * nor running requests for `idleMs` is closed and dropped; `close()` closes them all. A failed open is not kept. In a
 * plugin process (one call) it costs nothing. (A number as the second argument is `ttlMs`.)
 */
export function cachedKubeConnect<T>(
  open: KubeConnect<T>,
  options: number | CachedKubeConnectOptions = {},
): CachedKubeConnect<T> {
  const o = typeof options === 'number' ? { ttlMs: options } : options;
  const ttlMs = o.ttlMs ?? 300_000;
  const idleMs = o.idleMs ?? 60_000;
  const entries = new Map<string, { at: number; used: number; conn: Promise<T>; opened?: T }>();
  let sweeper: NodeJS.Timeout | undefined;
  const drop = (key: string) => {
    const e = entries.get(key);
    if (!e) return;
    entries.delete(key);
    closeConn(e.conn);
  };
  const sweep = () => {
    const now = Date.now();
    for (const [k, e] of entries) {
      const active = (e.opened as { lastActive?: () => number } | undefined)?.lastActive?.() ?? 0;
      if (now - Math.max(e.used, active) >= idleMs) drop(k);
    }
    settle();
  };
  // Registered and swept only while something is kept: an empty cache holds no timer and no slot.
  const settle = () => {
    if (entries.size === 0) {
      clearInterval(sweeper);
      sweeper = undefined;
      keptSet().delete(closeAll);
    } else {
      keptSet().add(closeAll);
      if (!sweeper) {
        sweeper = setInterval(sweep, Math.max(10, idleMs / 2));
        sweeper.unref();
      }
    }
  };
  function closeAll() {
    for (const k of [...entries.keys()]) drop(k);
    settle();
  }
  const connect = async (kubeconfig: string, opts: KubeClientOptions = {}) => {
    let stamp = '';
    try {
      const st = await stat(kubeconfig);
      stamp = `${st.mtimeMs}:${st.size}`;
    } catch {
      // open reports an unreadable kubeconfig in its own words.
    }
    const key = JSON.stringify([kubeconfig, stamp, opts]);
    const now = Date.now();
    const hit = entries.get(key);
    if (hit && now - hit.at < ttlMs) {
      hit.used = now;
      return hit.conn;
    }
    // The same kubeconfig and options under an older stamp is the file's previous content.
    const same = JSON.stringify(opts);
    for (const [k, e] of entries) {
      const [path, , o2] = JSON.parse(k) as [string, string, unknown];
      if (now - e.at >= ttlMs || (path === kubeconfig && JSON.stringify(o2) === same)) drop(k);
    }
    const conn = open(kubeconfig, opts);
    const entry: { at: number; used: number; conn: Promise<T>; opened?: T } = { at: now, used: now, conn };
    entries.set(key, entry);
    settle();
    conn.then(
      (c) => {
        entry.opened = c;
      },
      () => {},
    );
    conn.catch(() => {
      if (entries.get(key)?.conn === conn) {
        entries.delete(key);
        settle();
      }
    });
    return conn;
  };
  return Object.defineProperties(connect, {
    close: { value: closeAll },
    size: { get: () => entries.size },
  }) as CachedKubeConnect<T>;
}
