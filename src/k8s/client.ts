// The seam between plugins and the Kubernetes API: the few calls a delegating plugin makes (GET
// pod, GET/LIST NADs, the pod status update carrying network-status), namespaced custom
// resources for IPAM stores, and the error type every call fails with. The implementation on
// @kubernetes/client-node is in connect.ts; this file loads nothing.
import { CniError, ErrorCode } from '../spec/errors.js';

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

/** The object an event is about (core/v1 ObjectReference, fields in the API's order). */
export interface ObjectReference {
  kind: string;
  namespace?: string;
  name: string;
  uid?: string;
  apiVersion: string;
  resourceVersion?: string;
}

/** A core/v1 Event with the fields client-go's recorder fills in. */
export interface CoreEvent {
  kind: 'Event';
  apiVersion: 'v1';
  metadata: { name: string; namespace: string };
  involvedObject: ObjectReference;
  reason: string;
  message: string;
  source: { component: string; host?: string };
  /** RFC 3339, whole seconds (Kubernetes' metav1.Time). */
  firstTimestamp: string;
  lastTimestamp: string;
  count: number;
  type: 'Normal' | 'Warning';
  eventTime: null;
  reportingComponent: string;
  reportingInstance: string;
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
  /** POSTs a core/v1 Event (see `podEvent`) to `/api/v1/namespaces/<namespace>/events`. */
  createEvent(namespace: string, event: CoreEvent): Promise<void>;
  /**
   * Closes the connection's keep-alive sockets once no request is running (at once when none is).
   * The client stays usable: a later request opens a socket again. Optional: clients built by the
   * tests or by callers may hold nothing to close.
   */
  close?(): void;
  /** When a request last ran on it (Date.now() while one is in flight); optional like close. */
  lastActive?(): number;
}

/** Any API object: metadata plus whatever else the server sent. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  [key: string]: unknown;
}

/** Namespaced custom resources of one kind (e.g. whereabouts IPPools), as raw JSON objects. */
export interface CustomResources<T extends object = KubeObject> {
  get(namespace: string, name: string): Promise<T>;
  list(namespace: string): Promise<T[]>;
  /** Fails with 409 (reason AlreadyExists) when the name is taken. */
  create(namespace: string, obj: T): Promise<T>;
  /** Writes `obj` over `name`; fails with 409 (Conflict) when its metadata.resourceVersion is stale. */
  replace(namespace: string, name: string, obj: T): Promise<T>;
  delete(namespace: string, name: string): Promise<void>;
}

/** An open API connection from one kubeconfig: the delegator calls and custom resources. */
export interface KubeApi {
  /** API server URL of the current context. */
  readonly server: string;
  /** Namespace of the kubeconfig's current context, when it names one. */
  readonly namespace: string | undefined;
  readonly client: KubeClient;
  /** Access to `<plural>.<group>/<version>` objects. */
  customResources<T extends object = KubeObject>(
    group: string,
    version: string,
    plural: string,
  ): CustomResources<T>;
  /** As KubeClient.close (the same sockets): keep-alive connections closed once idle. */
  close?(): void;
  /** As KubeClient.lastActive. */
  lastActive?(): number;
}

/** An API answer other than 2xx, or no answer. `status` 0 means the server was not reached. */
export class KubeApiError extends CniError {
  readonly status: number;
  readonly reason: string | undefined;
  constructor(status: number, message: string, reason?: string) {
    // Unreachable or overloaded servers and lost write races are worth retrying; any other 4xx
    // is a configuration problem (credentials, RBAC, a missing object).
    super(
      status === 0 || status === 409 || status === 429 || status >= 500
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

/** Options of an API connection. */
export interface KubeClientOptions {
  /** Upper bound for one request including connect; default 10 s. */
  timeoutMs?: number;
  /** Attempts of an annotation update that the server answers with 409; default 5. */
  conflictRetries?: number;
  userAgent?: string;
  /** Replaces the server URL of the kubeconfig's current cluster (whereabouts `k8s_api_root`). */
  server?: string;
  /** A keep-alive socket unused this long is closed; default 60 s. */
  idleSocketMs?: number;
}
