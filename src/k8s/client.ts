// The few Kubernetes API calls a delegating plugin makes (GET pod, GET/LIST NADs, the pod status
// update carrying network-status), over node:http(s) with a bounded time per request, because a
// CNI call that hangs on an unreachable API server blocks the whole sandbox (multus PR#1372).
import { request as httpRequest } from 'node:http';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import { CniError, ErrorCode } from '../spec/errors.js';
import type { KubeConnection } from './kubeconfig.js';

/** Object metadata fields the plugin reads or writes. */
export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  annotations?: Record<string, string>;
  [key: string]: unknown;
}

/** A pod, as far as the plugin cares; every other field is kept as received. */
export interface Pod {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  [key: string]: unknown;
}

/** A NetworkAttachmentDefinition (k8s.cni.cncf.io/v1). */
export interface NetworkAttachmentDefinition {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  /** `config` is CNI JSON text; absent or empty means "look it up by name in confDir". */
  spec?: { config?: string };
}

/** The API operations a delegator needs. */
export interface KubeClient {
  getPod(namespace: string, name: string): Promise<Pod>;
  getNetworkAttachmentDefinition(namespace: string, name: string): Promise<NetworkAttachmentDefinition>;
  listNetworkAttachmentDefinitions(namespace: string): Promise<NetworkAttachmentDefinition[]>;
  /**
   * Sets (string) or removes (null) pod annotations through the pod's status subresource, re-reading
   * the pod and retrying when the write loses a race (409 Conflict).
   */
  updatePodAnnotations(namespace: string, name: string, changes: Record<string, string | null>): Promise<Pod>;
}

/** An API answer other than 2xx, or no answer. `status` 0 means the server was not reached. */
export class KubeApiError extends CniError {
  readonly status: number;
  readonly reason: string | undefined;
  constructor(status: number, message: string, reason?: string) {
    // Unreachable or overloaded servers are worth retrying; a 4xx is a configuration problem.
    super(
      status === 0 || status === 429 || status >= 500
        ? ErrorCode.TryAgainLater
        : ErrorCode.InvalidNetworkConfig,
      message,
    );
    this.status = status;
    this.reason = reason;
  }
}

/** True for a 404 from the API server. */
export function isKubeNotFound(err: unknown): boolean {
  return err instanceof KubeApiError && err.status === 404;
}

/** Options of the HTTP client. */
export interface KubeClientOptions {
  /** Upper bound for one request including connect; default 10 s. */
  timeoutMs?: number;
  /** Attempts of the read-modify-write on 409; default 5. */
  conflictRetries?: number;
  userAgent?: string;
}

const NAD_PATH = '/apis/k8s.cni.cncf.io/v1';

/** One API request: method, path below the server URL, optional JSON body; resolves the decoded answer. */
export type KubeRequest = <T>(method: string, path: string, body?: unknown) => Promise<T>;

/** A raw requester for any API path (custom resources), with the same auth and time bound. */
export function httpKubeRequest(conn: KubeConnection, opts: KubeClientOptions = {}): KubeRequest {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const base = new URL(conn.server);
  const isHttps = base.protocol === 'https:';
  const headers: Record<string, string> = {
    Accept: 'application/json',
    'User-Agent': opts.userAgent ?? 'cni-kit-multus',
  };
  if (conn.token) headers.Authorization = `Bearer ${conn.token}`;
  else if (conn.username !== undefined) {
    headers.Authorization = `Basic ${Buffer.from(`${conn.username}:${conn.password ?? ''}`).toString('base64')}`;
  }

  return function call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const url = new URL(base.pathname.replace(/\/$/, '') + path, base);
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const ro: RequestOptions = {
      method,
      headers: {
        ...headers,
        ...(data ? { 'Content-Type': 'application/json', 'Content-Length': String(data.length) } : {}),
      },
      timeout: timeoutMs,
    };
    if (isHttps) {
      if (conn.ca) ro.ca = conn.ca;
      if (conn.cert) ro.cert = conn.cert;
      if (conn.key) ro.key = conn.key;
      if (conn.insecureSkipTlsVerify) ro.rejectUnauthorized = false;
      if (conn.tlsServerName) ro.servername = conn.tlsServerName;
    }
    const what = `${method} ${url.href}`;
    return new Promise<T>((resolvePromise, reject) => {
      const req = (isHttps ? httpsRequest : httpRequest)(url, ro, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const status = res.statusCode ?? 0;
          let json: unknown;
          try {
            json = text ? JSON.parse(text) : undefined;
          } catch {
            json = undefined;
          }
          if (status >= 200 && status < 300) {
            resolvePromise(json as T);
            return;
          }
          const st = json as { message?: string; reason?: string } | undefined;
          reject(
            new KubeApiError(status, `${what}: ${status} ${st?.message ?? text.slice(0, 200)}`, st?.reason),
          );
        });
        res.on('error', (e) => reject(new KubeApiError(0, `${what}: ${e.message}`)));
      });
      const timer = setTimeout(() => req.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      req.on('close', () => clearTimeout(timer));
      req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on('error', (e) =>
        reject(new KubeApiError(0, `${what}: ${e.message}; is the API server reachable?`)),
      );
      req.end(data);
    });
  };
}

/** A KubeClient talking to the API server described by `conn`. */
export function httpKubeClient(conn: KubeConnection, opts: KubeClientOptions = {}): KubeClient {
  const call = httpKubeRequest(conn, opts);
  const enc = encodeURIComponent;
  const podPath = (ns: string, name: string) => `/api/v1/namespaces/${enc(ns)}/pods/${enc(name)}`;
  return {
    getPod: (ns, name) => call<Pod>('GET', podPath(ns, name)),
    getNetworkAttachmentDefinition: (ns, name) =>
      call<NetworkAttachmentDefinition>(
        'GET',
        `${NAD_PATH}/namespaces/${enc(ns)}/network-attachment-definitions/${enc(name)}`,
      ),
    async listNetworkAttachmentDefinitions(ns) {
      const l = await call<{ items?: NetworkAttachmentDefinition[] }>(
        'GET',
        `${NAD_PATH}/namespaces/${enc(ns)}/network-attachment-definitions`,
      );
      return l?.items ?? [];
    },
    async updatePodAnnotations(ns, name, changes) {
      const attempts = opts.conflictRetries ?? 5;
      for (let i = 1; ; i++) {
        const pod = await call<Pod>('GET', podPath(ns, name));
        const annotations = { ...(pod.metadata.annotations ?? {}) };
        for (const [k, v] of Object.entries(changes)) {
          if (v === null) delete annotations[k];
          else annotations[k] = v;
        }
        pod.metadata.annotations = annotations;
        try {
          return await call<Pod>('PUT', `${podPath(ns, name)}/status`, pod);
        } catch (err) {
          if (!(err instanceof KubeApiError) || err.status !== 409 || i >= attempts) throw err;
        }
      }
    },
  };
}
