// The one in-process Kubernetes API server of the tests and benches. It serves exactly what the
// SDK's clients call, with the real server's rules and Status bodies: GET of pods and merge /
// strategic-merge PATCH of their status subresource (409 when a write loses a race); and for the
// custom resources cni-kit uses (NetworkAttachmentDefinitions, whereabouts IPPools,
// OverlappingRangeIPReservations, NodeSlicePools and coordination.k8s.io Leases) GET, LIST, POST, PUT and DELETE, where PUT must carry the
// resourceVersion it read (422 without one, 409 when stale) and POST of an existing name is 409
// AlreadyExists; core/v1 Events POSTed to /api/v1/namespaces/<ns>/events, validated and kept.
// Collections (pods on every path a client uses, NADs namespaced and cluster-wide, Nodes) LIST with a
// resourceVersion and `fieldSelector=spec.nodeName=` and WATCH (`?watch=true`): a stream of
// ADDED/MODIFIED/DELETED events from the requested resourceVersion, BOOKMARKs when asked for, and an
// ERROR event carrying a 410 Expired Status for a resourceVersion older than the kept history.
// Requests need the bearer token; 401 otherwise. The token is the ServiceAccount of the shipped
// deploy/rbac.yaml, and every request is authorised against the rules bound to it as the real
// RBAC authoriser does (verb, API group, resource, subresource, resourceNames), answering 403 with
// the real Status body when denied: a test fails whenever code and manifest disagree.
// It serves HTTPS with a throwaway certificate (so clients' CA handling is exercised) when openssl
// is present. Whatever it does not implement fails loudly (404, 405, 501) rather than being faked.
// Over the 400-line guideline on purpose: the RBAC authoriser and the handlers share one store
// and one request log, and every test imports this single file.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dump, loadAll } from 'js-yaml';

type Obj = Record<string, unknown> & {
  spec?: unknown;
  metadata: Record<string, unknown> & {
    name: string;
    namespace?: string;
    resourceVersion?: string;
    annotations?: Record<string, string> | undefined;
  };
};

/** One change of a store, as watches see it. */
type WatchEvent = {
  rv: number;
  plural: string;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  obj: Obj;
  old?: Obj | undefined;
};
/** An open watch stream. */
type Watcher = { offer(ev: WatchEvent): void; bookmarks: boolean; bookmark(): void; res: ServerResponse };

/** What the handlers need of one request. */
type Req = { method: string; contentType: string; body: unknown; res: ServerResponse };

/** One request the server saw. */
export interface SeenRequest {
  method: string;
  path: string;
  contentType?: string;
  body?: unknown;
  /** The HTTP status it was answered with. */
  code?: number;
  /** The User-Agent header (which of several clients sent it). */
  userAgent?: string;
}

/** One PolicyRule of a (Cluster)Role. */
export interface RbacRule {
  apiGroups?: string[];
  resources?: string[];
  verbs: string[];
  resourceNames?: string[];
  nonResourceURLs?: string[];
}

/** The identity the token stands for and the rules bound to it (namespace: where a RoleBinding applies). */
export interface RbacPolicy {
  user: string;
  rules: Array<RbacRule & { namespace?: string }>;
}

/** The manifest shipped with cni-kit; its ServiceAccount is who the fake server's token is. */
export const SHIPPED_RBAC = fileURLToPath(new URL('../../deploy/rbac.yaml', import.meta.url));

type Doc = {
  kind?: string;
  metadata?: { name?: string; namespace?: string };
  rules?: RbacRule[];
  roleRef?: { kind?: string; name?: string };
  subjects?: Array<{ kind?: string; name?: string; namespace?: string }>;
};

/**
 * The policy of a manifest's first ServiceAccount: the rules of every ClusterRole or Role that a
 * ClusterRoleBinding or RoleBinding in the manifest binds to it.
 */
export function rbacPolicyFrom(manifest: string): RbacPolicy {
  const docs = (loadAll(manifest) as Doc[]).filter((d) => d && typeof d === 'object');
  const sa = docs.find((d) => d.kind === 'ServiceAccount');
  if (!sa?.metadata?.name) throw new Error('RBAC manifest: no ServiceAccount');
  const saNs = sa.metadata.namespace ?? 'default';
  const rules: RbacPolicy['rules'] = [];
  for (const b of docs.filter((d) => d.kind === 'ClusterRoleBinding' || d.kind === 'RoleBinding')) {
    const bound = (b.subjects ?? []).some(
      (x) => x.kind === 'ServiceAccount' && x.name === sa.metadata?.name && (x.namespace ?? saNs) === saNs,
    );
    if (!bound) continue;
    const role = docs.find(
      (d) =>
        d.kind === b.roleRef?.kind &&
        d.metadata?.name === b.roleRef?.name &&
        (d.kind === 'ClusterRole' || d.metadata?.namespace === b.metadata?.namespace),
    );
    if (!role) throw new Error(`RBAC manifest: ${b.kind} ${b.metadata?.name} refers to a missing role`);
    const ns = b.kind === 'RoleBinding' ? (b.metadata?.namespace ?? 'default') : undefined;
    for (const r of role.rules ?? []) rules.push(ns ? { ...r, namespace: ns } : { ...r });
  }
  return { user: `system:serviceaccount:${saNs}:${sa.metadata.name}`, rules };
}

/** What the authoriser sees of a request (Kubernetes' request attributes). */
export interface Attributes {
  verb: string;
  group: string;
  resource: string;
  subresource: string;
  name: string;
  namespace: string;
}

/** Request attributes of a resource path, or undefined for a non-resource URL. */
function attributesOf(method: string, url: URL): Attributes | undefined {
  const parts = url.pathname.split('/').filter(Boolean);
  let group: string;
  let rest: string[];
  if (parts[0] === 'api' && parts.length >= 3) [group, rest] = ['', parts.slice(2)];
  else if (parts[0] === 'apis' && parts.length >= 4) [group, rest] = [parts[1] ?? '', parts.slice(3)];
  else return undefined;
  let namespace = '';
  if (rest[0] === 'namespaces' && rest.length >= 3) [namespace, rest] = [rest[1] ?? '', rest.slice(2)];
  const [resource = '', name = '', subresource = ''] = rest;
  const watch = ['1', 'true'].includes(url.searchParams.get('watch') ?? '');
  const verb =
    method === 'GET'
      ? name
        ? 'get'
        : watch
          ? 'watch'
          : 'list'
      : method === 'POST'
        ? 'create'
        : method === 'PUT'
          ? 'update'
          : method === 'PATCH'
            ? 'patch'
            : method === 'DELETE'
              ? name
                ? 'delete'
                : 'deletecollection'
              : method.toLowerCase();
  return { verb, group, resource, subresource, name, namespace };
}

const has = (list: string[] | undefined, v: string) => !!list && (list.includes('*') || list.includes(v));

/** The RBAC authoriser's decision for one request. */
export function rbacAllows(policy: RbacPolicy, a: Attributes): boolean {
  const full = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  return policy.rules.some((r) => {
    if (r.namespace !== undefined && r.namespace !== a.namespace) return false;
    if (!has(r.verbs, a.verb) || !has(r.apiGroups, a.group)) return false;
    const res = r.resources ?? [];
    const resourceOk =
      res.includes('*') ||
      res.includes(full) ||
      (a.subresource !== '' && (res.includes(`${a.resource}/*`) || res.includes(`*/${a.subresource}`)));
    if (!resourceOk) return false;
    if (r.resourceNames?.length) return a.name !== '' && r.resourceNames.includes(a.name);
    return true;
  });
}

/** A running fake API server. */
export interface FakeK8s {
  url: string;
  /** PEM of the CA that signed the serving certificate (undefined when serving plain HTTP). */
  ca: string | undefined;
  requests: SeenRequest[];
  /** Adds or replaces a pod; metadata.uid and resourceVersion are filled in. */
  putPod(pod: {
    metadata: { name: string; namespace: string; annotations?: Record<string, string> };
    spec?: Record<string, unknown>;
  }): void;
  getPod(namespace: string, name: string): Obj | undefined;
  /** Adds or replaces a Node (cluster-scoped; served at /api/v1/nodes, LIST and WATCH). */
  putNode(name: string, labels?: Record<string, string>): void;
  /** Removes a Node, as a node that left the cluster. */
  deleteNode(name: string): void;
  /** Adds a NAD with `config` (JSON object or text; undefined = no spec). */
  putNad(namespace: string, name: string, config?: unknown, annotations?: Record<string, string>): void;
  /**
   * The live store of one resource (`pods`, `network-attachment-definitions`, `ippools`,
   * `overlappingrangeipreservations`, `nodeslicepools`), keyed `<namespace>/<name>`.
   */
  objects(plural: string): Map<string, Obj>;
  /** The next N pod status writes fail with 409 as if someone else wrote first. */
  conflictNext(n: number): void;
  /** TCP connections accepted so far (a keep-alive client makes one for many requests). */
  connections(): number;
  /** TCP connections open now (a client that closed its keep-alive sockets holds none). */
  openConnections(): number;
  /** Forgets the event history: a watch from an older resourceVersion then gets 410 Expired. */
  compact(): void;
  /** Sends a BOOKMARK to every watch that asked for them (allowWatchBookmarks=true). */
  bookmark(): void;
  /** Cuts every open watch stream, as a restarted API server or a dropped connection would. */
  dropWatches(): void;
  /** Open watch streams. */
  watches(): number;
  /** Writes a kubeconfig for this server (context namespace optional) and returns its path. */
  writeKubeconfig(path: string, form?: 'json' | 'yaml', namespace?: string): string;
  close(): Promise<void>;
}

/** The bearer token the server accepts. */
export const FAKE_K8S_TOKEN = 'fake-k8s-token';

/** The custom resources served, `<group>/<version>/<plural>` to kind; anything else is 404. */
const CUSTOM: Record<string, string> = {
  'k8s.cni.cncf.io/v1/network-attachment-definitions': 'NetworkAttachmentDefinition',
  'whereabouts.cni.cncf.io/v1alpha1/ippools': 'IPPool',
  'whereabouts.cni.cncf.io/v1alpha1/overlappingrangeipreservations': 'OverlappingRangeIPReservation',
  'whereabouts.cni.cncf.io/v1alpha1/nodeslicepools': 'NodeSlicePool',
  // Leader election of the whereabouts reconciler (served with the same resourceVersion rules).
  'coordination.k8s.io/v1/leases': 'Lease',
};

const JSON_TYPE = 'application/json';
const MERGE_PATCH = 'application/merge-patch+json';
const STRATEGIC_PATCH = 'application/strategic-merge-patch+json';
const JSON_PATCH = 'application/json-patch+json';

let tlsMaterial: { key: string; cert: string } | null | undefined;

/** A self-signed certificate for 127.0.0.1, made once per process; null without openssl. */
function serverTls(): { key: string; cert: string } | null {
  if (tlsMaterial !== undefined) return tlsMaterial;
  const dir = mkdtempSync(join(tmpdir(), `fakek8s${process.pid}-`));
  const [key, cert] = [join(dir, 'key.pem'), join(dir, 'cert.pem')];
  try {
    const args = [
      ...'req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2'.split(' '),
      ...'-subj /CN=fake-kube-apiserver -addext subjectAltName=IP:127.0.0.1'.split(' '),
    ];
    const r = spawnSync('openssl', [...args, '-keyout', key, '-out', cert], { stdio: 'ignore' });
    tlsMaterial =
      r.status === 0 ? { key: readFileSync(key, 'utf8'), cert: readFileSync(cert, 'utf8') } : null;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return tlsMaterial;
}

function send(res: ServerResponse, obj: unknown, code = 200): void {
  res.writeHead(code, { 'Content-Type': JSON_TYPE });
  res.end(JSON.stringify(obj));
}

function status(
  res: ServerResponse,
  code: number,
  reason: string,
  message: string,
  details?: Record<string, unknown>,
): void {
  send(
    res,
    {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message,
      reason,
      ...(details ? { details } : {}),
      code,
    },
    code,
  );
}

/** The API server's 403 for a request RBAC denies, message and details as it writes them. */
function forbidden(res: ServerResponse, user: string, a: Attributes): void {
  const qualified = a.group ? `${a.resource}.${a.group}` : a.resource;
  const what = a.name ? `${qualified} ${JSON.stringify(a.name)}` : qualified;
  const full = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  const scope = a.namespace ? ` in the namespace ${JSON.stringify(a.namespace)}` : ' at the cluster scope';
  const message = `${what} is forbidden: User ${JSON.stringify(user)} cannot ${a.verb} resource ${JSON.stringify(full)} in API group ${JSON.stringify(a.group)}${scope}`;
  const details: Record<string, unknown> = {};
  if (a.name) details.name = a.name;
  if (a.group) details.group = a.group;
  details.kind = a.resource;
  status(res, 403, 'Forbidden', message, details);
}

const conflict = (res: ServerResponse, what: string) =>
  status(
    res,
    409,
    'Conflict',
    `Operation cannot be fulfilled on ${what}: the object has been modified; please apply your changes to the latest version and try again`,
  );

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : undefined;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** RFC 7386: objects merge key by key, null deletes, anything else replaces. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return patch;
  const out: Record<string, unknown> = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/**
 * Applies a PATCH of a pod as the API server does for its content type, or answers and returns
 * undefined. Maps (annotations, labels) merge the same way under both merge flavours, and that is
 * all cni-kit patches. A resourceVersion inside the patch is a precondition, as on the real server.
 */
function patchPod(res: ServerResponse, cur: Obj, ct: string, body: unknown, what: string) {
  if (ct === JSON_PATCH)
    return void status(res, 501, 'NotImplemented', `fake-k8s does not implement ${ct}; add it if needed`);
  if (ct !== MERGE_PATCH && ct !== STRATEGIC_PATCH) {
    const accepted = [JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH];
    return void status(
      res,
      415,
      'UnsupportedMediaType',
      `the body of the request was in an unknown format - accepted media types include: ${accepted.join(', ')}`,
    );
  }
  const rv = (body as Obj | undefined)?.metadata?.resourceVersion;
  if (rv !== undefined && rv !== cur.metadata.resourceVersion) return void conflict(res, what);
  return mergePatch(cur, body) as Obj;
}

/**
 * Starts the server on 127.0.0.1 with a random port (HTTPS when it can make a certificate).
 * `rbac`: the manifest (text) whose rules the token gets; default the shipped deploy/rbac.yaml.
 */
export async function startFakeK8s(opts: { tls?: boolean; rbac?: string } = {}): Promise<FakeK8s> {
  const policy = rbacPolicyFrom(opts.rbac ?? readFileSync(SHIPPED_RBAC, 'utf8'));
  const stores = new Map<string, Map<string, Obj>>();
  const requests: SeenRequest[] = [];
  let version = 1;
  let conflictsToInject = 0;
  // Every change of every store, in resourceVersion order, for watches that start in the past.
  const history: WatchEvent[] = [];
  let floor = 0;
  const watchers = new Set<Watcher>();
  const emit = (plural: string, type: 'ADDED' | 'MODIFIED' | 'DELETED', obj: Obj, old?: Obj) => {
    // Each event has a resourceVersion of its own, as on the real server (a DELETE gets a new one).
    if (type === 'DELETED' || !(Number(obj.metadata.resourceVersion) > (history.at(-1)?.rv ?? 0)))
      obj = { ...obj, metadata: { ...obj.metadata, resourceVersion: String(++version) } };
    const ev: WatchEvent = { rv: Number(obj.metadata.resourceVersion), plural, type, obj, old };
    history.push(ev);
    for (const w of watchers) w.offer(ev);
    return obj;
  };
  /** A store whose every set and delete becomes a watch event. */
  class WatchedStore extends Map<string, Obj> {
    constructor(private readonly plural: string) {
      super();
    }
    override set(key: string, value: Obj): this {
      const old = super.get(key);
      super.set(key, value);
      const sent = emit(this.plural, old ? 'MODIFIED' : 'ADDED', value, old);
      if (sent !== value) super.set(key, sent);
      return this;
    }
    override delete(key: string): boolean {
      const old = super.get(key);
      if (!old || !super.delete(key)) return false;
      emit(this.plural, 'DELETED', old, old);
      return true;
    }
  }
  const objects = (plural: string) => {
    const s = stores.get(plural) ?? new WatchedStore(plural);
    stores.set(plural, s);
    return s;
  };

  /** LIST or WATCH of a collection (`ns` undefined: every namespace). */
  const collection = (
    res: ServerResponse,
    url: URL,
    plural: string,
    apiVersion: string,
    kind: string,
    ns?: string,
  ) => {
    const sel = url.searchParams.get('fieldSelector') ?? '';
    const node = /^spec\.nodeName=(.*)$/.exec(sel);
    if (sel && !node)
      return status(
        res,
        400,
        'BadRequest',
        `fake-k8s: field selector ${JSON.stringify(sel)} is not supported`,
      );
    const matches = (o: Obj | undefined) =>
      !!o &&
      (ns === undefined || o.metadata.namespace === ns) &&
      (!node || (o.spec as { nodeName?: string } | undefined)?.nodeName === node[1]);
    const items = () => [...objects(plural).values()].filter(matches);
    if (!['1', 'true'].includes(url.searchParams.get('watch') ?? '')) {
      return send(res, {
        apiVersion,
        kind: `${kind}List`,
        metadata: { resourceVersion: String(version) },
        items: items(),
      });
    }
    const from = url.searchParams.get('resourceVersion') ?? '';
    res.writeHead(200, { 'Content-Type': JSON_TYPE, 'Transfer-Encoding': 'chunked' });
    const write = (type: string, object: unknown) => res.write(`${JSON.stringify({ type, object })}\n`);
    if (from !== '' && from !== '0' && Number(from) < floor) {
      // The real server answers 200 and one ERROR event; the client must list again.
      write('ERROR', {
        kind: 'Status',
        apiVersion: 'v1',
        metadata: {},
        status: 'Failure',
        message: `too old resource version: ${from} (${floor})`,
        reason: 'Expired',
        code: 410,
      });
      return void res.end();
    }
    const deliver = (ev: WatchEvent) => {
      if (ev.plural !== plural) return;
      const now = matches(ev.obj);
      const before = matches(ev.old);
      // An object leaving a field selector is DELETED for this watch, one entering it ADDED.
      if (ev.type === 'DELETED') {
        if (before) write('DELETED', ev.obj);
      } else if (now) write(before ? 'MODIFIED' : 'ADDED', ev.obj);
      else if (before) write('DELETED', ev.obj);
    };
    if (from === '' || from === '0') for (const o of items()) write('ADDED', o);
    else for (const ev of history) if (ev.rv > Number(from)) deliver(ev);
    const w: Watcher = {
      offer: deliver,
      bookmarks: url.searchParams.get('allowWatchBookmarks') === 'true',
      bookmark: () => write('BOOKMARK', { kind, apiVersion, metadata: { resourceVersion: String(version) } }),
      res,
    };
    watchers.add(w);
    const t = Number(url.searchParams.get('timeoutSeconds') ?? 0);
    const timer = t > 0 ? setTimeout(() => res.end(), t * 1000) : undefined;
    res.on('close', () => {
      clearTimeout(timer);
      watchers.delete(w);
    });
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const path = url.pathname;
    const method = req.method ?? '';
    const contentType = (req.headers['content-type'] ?? '').split(';')[0]?.trim() ?? '';
    const hasBody = method === 'PUT' || method === 'POST' || method === 'PATCH';
    const body = hasBody ? await readBody(req) : undefined;
    const ua = req.headers['user-agent'];
    const seen: SeenRequest = {
      method,
      path,
      ...(ua ? { userAgent: ua } : {}),
      ...(hasBody ? { contentType } : {}),
      ...(body !== undefined ? { body } : {}),
    };
    requests.push(seen);
    res.on('finish', () => {
      seen.code = res.statusCode;
    });
    if (req.headers.authorization !== `Bearer ${FAKE_K8S_TOKEN}`)
      return status(res, 401, 'Unauthorized', 'Unauthorized');
    const attrs = attributesOf(method, url);
    if (attrs && !rbacAllows(policy, attrs)) return forbidden(res, policy.user, attrs);
    if ((method === 'PUT' || method === 'POST') && contentType !== JSON_TYPE) {
      const msg = `the body of the request was in an unknown format: ${contentType}`;
      return status(res, 415, 'UnsupportedMediaType', msg);
    }
    const r: Req = { method, contentType, body, res };
    const ev = /^\/api\/v1\/namespaces\/([^/]+)\/events$/.exec(path);
    if (ev && method === 'POST') return handleEvent(r, ev[1] ?? '');
    const pods = /^\/api\/v1(?:\/namespaces\/([^/]+))?\/pods$/.exec(path);
    if (pods && method === 'GET') return collection(res, url, 'pods', 'v1', 'Pod', pods[1]);
    if (path === '/apis/k8s.cni.cncf.io/v1/network-attachment-definitions' && method === 'GET')
      return collection(
        res,
        url,
        'network-attachment-definitions',
        'k8s.cni.cncf.io/v1',
        'NetworkAttachmentDefinition',
      );
    if (path === '/api/v1/nodes' && method === 'GET') return collection(res, url, 'nodes', 'v1', 'Node');
    const node = /^\/api\/v1\/nodes\/([^/]+)$/.exec(path);
    if (node && method === 'GET') {
      const n = objects('nodes').get(`/${node[1]}`);
      return n ? send(res, n) : status(res, 404, 'NotFound', `nodes "${node[1]}" not found`);
    }
    const pod = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)(\/status)?$/.exec(path);
    if (pod) return handlePod(r, pod[1] ?? '', pod[2] ?? '', pod[3]);
    const m = /^\/apis\/([^/]+\/[^/]+)\/namespaces\/([^/]+)\/([^/]+)(?:\/([^/]+))?$/.exec(path);
    const kind = m && CUSTOM[`${m[1]}/${m[3]}`];
    if (m && kind) return handleCustom(r, url, m[1] ?? '', kind, m[2] ?? '', m[3] ?? '', m[4]);
    status(res, 404, 'NotFound', 'the server could not find the requested resource');
  };

  const handlePod = ({ method, contentType, body, res }: Req, ns: string, name: string, sub?: string) => {
    const pod = objects('pods').get(`${ns}/${name}`);
    if (!pod) return status(res, 404, 'NotFound', `pods "${name}" not found`);
    if (method === 'GET' && !sub) return send(res, pod);
    if (method !== 'PATCH' || !sub) return status(res, 405, 'MethodNotAllowed', `${method} not allowed`);
    if (conflictsToInject > 0) {
      // Someone else wrote first; a PATCH loses too once the server's own retries run out.
      conflictsToInject--;
      pod.metadata.resourceVersion = String(++version);
      return conflict(res, `pods "${name}"`);
    }
    const next = patchPod(res, pod, contentType, body, `pods "${name}"`);
    if (!next) return;
    // The status subresource keeps spec but takes metadata annotations and status.
    const stored: Obj = {
      ...pod,
      metadata: {
        ...pod.metadata,
        annotations: next.metadata?.annotations,
        resourceVersion: String(++version),
      },
    };
    if (next.status !== undefined) stored.status = next.status;
    objects('pods').set(`${ns}/${name}`, stored);
    send(res, stored);
  };

  /** POST of a core/v1 Event: checked as the API server checks a legacy event, then kept. */
  const handleEvent = ({ body, res }: Req, ns: string) => {
    const e = body as Obj & { involvedObject?: { namespace?: string; kind?: string; name?: string } };
    if (!isObject(e) || (e.kind !== undefined && e.kind !== 'Event') || (e.apiVersion ?? 'v1') !== 'v1')
      return status(res, 400, 'BadRequest', 'the body is not a v1 Event');
    const name = e.metadata?.name;
    if (!name) return status(res, 422, 'Invalid', 'Event "" is invalid: metadata.name: Required value');
    if (e.metadata.namespace !== undefined && e.metadata.namespace !== ns)
      return status(
        res,
        400,
        'BadRequest',
        'the namespace of the provided object does not match the namespace sent on the request',
      );
    const inv = e.involvedObject;
    if (!isObject(inv) || !inv.kind || !inv.name)
      return status(res, 422, 'Invalid', `Event "${name}" is invalid: involvedObject: Required value`);
    if ((inv.namespace ?? '') !== ns)
      return status(
        res,
        422,
        'Invalid',
        `Event "${name}" is invalid: involvedObject.namespace: Invalid value: "${inv.namespace ?? ''}": does not match event.namespace`,
      );
    const store = objects('events');
    if (store.has(`${ns}/${name}`))
      return status(res, 409, 'AlreadyExists', `events "${name}" already exists`);
    const stored: Obj = {
      ...e,
      metadata: {
        ...e.metadata,
        namespace: ns,
        uid: `uid-event-${name}`,
        resourceVersion: String(++version),
      },
    };
    store.set(`${ns}/${name}`, stored);
    send(res, stored, 201);
  };

  const handleCustom = (
    { method, body, res }: Req,
    url: URL,
    apiVersion: string,
    kind: string,
    ns: string,
    plural: string,
    name: string | undefined,
  ) => {
    const store = objects(plural);
    const full = `${plural}.${apiVersion.split('/')[0]}`;
    if (name === undefined && method === 'GET') return collection(res, url, plural, apiVersion, kind, ns);
    if (name === undefined && method === 'POST') {
      const obj = body as Obj;
      const n = obj?.metadata?.name;
      if (!n)
        return status(res, 422, 'Invalid', `${full} "": metadata.name: Required value: name is required`);
      if (store.has(`${ns}/${n}`)) return status(res, 409, 'AlreadyExists', `${full} "${n}" already exists`);
      const meta = { ...obj.metadata, namespace: ns, uid: `uid-${plural}-${n}-${version}` };
      const stored: Obj = { ...obj, metadata: { ...meta, resourceVersion: String(++version) } };
      store.set(`${ns}/${n}`, stored);
      return send(res, stored, 201);
    }
    const cur = name === undefined ? undefined : store.get(`${ns}/${name}`);
    if (!cur || name === undefined) return status(res, 404, 'NotFound', `${full} "${name}" not found`);
    if (method === 'GET') return send(res, cur);
    if (method === 'DELETE') {
      store.delete(`${ns}/${name}`);
      return send(res, {
        kind: 'Status',
        apiVersion: 'v1',
        metadata: {},
        status: 'Success',
        details: { name },
      });
    }
    if (method !== 'PUT')
      return status(res, 405, 'MethodNotAllowed', `fake-k8s does not implement ${method}`);
    const next = body as Obj;
    // Custom resources allow no unconditional update: PUT must carry the version it read.
    const rv = next?.metadata?.resourceVersion;
    if (rv === undefined || rv === '') {
      const msg = `${full} "${name}" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update`;
      return status(res, 422, 'Invalid', msg);
    }
    if (rv !== cur.metadata.resourceVersion) return conflict(res, `${full} "${name}"`);
    const stored: Obj = {
      ...next,
      metadata: { ...next.metadata, namespace: ns, resourceVersion: String(++version) },
    };
    store.set(`${ns}/${name}`, stored);
    send(res, stored);
  };

  const tls = opts.tls === false ? null : serverTls();
  const listener = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((e) => status(res, 500, 'InternalError', String(e)));
  };
  const server: Server = tls ? createHttpsServer(tls, listener) : createServer(listener);
  let connections = 0;
  let open = 0;
  // TLS servers report the TCP socket here too, before the handshake.
  server.on('connection', (socket) => {
    connections += 1;
    open += 1;
    socket.once('close', () => {
      open -= 1;
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const caData = tls ? Buffer.from(tls.cert).toString('base64') : undefined;

  return {
    url,
    ca: tls?.cert,
    requests,
    connections: () => connections,
    openConnections: () => open,
    putPod(pod) {
      const ns = pod.metadata.namespace;
      objects('pods').set(`${ns}/${pod.metadata.name}`, {
        apiVersion: 'v1',
        kind: 'Pod',
        spec: { containers: [{ name: 'c', image: 'pause' }] },
        status: { phase: 'Pending' },
        ...pod,
        metadata: {
          uid: `uid-${ns}-${pod.metadata.name}`,
          ...pod.metadata,
          resourceVersion: String(++version),
        },
      });
    },
    getPod: (ns, name) => objects('pods').get(`${ns}/${name}`),
    putNode(name, labels) {
      objects('nodes').set(`/${name}`, {
        apiVersion: 'v1',
        kind: 'Node',
        metadata: {
          name,
          uid: `uid-node-${name}`,
          ...(labels ? { labels } : {}),
          resourceVersion: String(++version),
        },
        spec: {},
        status: { conditions: [{ type: 'Ready', status: 'True' }] },
      });
    },
    deleteNode(name) {
      objects('nodes').delete(`/${name}`);
    },
    putNad(ns, name, config, annotations) {
      const nad: Obj = {
        apiVersion: 'k8s.cni.cncf.io/v1',
        kind: 'NetworkAttachmentDefinition',
        metadata: { name, namespace: ns, uid: `nad-${ns}-${name}`, resourceVersion: String(++version) },
      };
      if (annotations) nad.metadata.annotations = annotations;
      if (config !== undefined)
        nad.spec = { config: typeof config === 'string' ? config : JSON.stringify(config) };
      objects('network-attachment-definitions').set(`${ns}/${name}`, nad);
    },
    objects,
    compact() {
      floor = version;
      history.length = 0;
    },
    bookmark() {
      for (const w of watchers) if (w.bookmarks) w.bookmark();
    },
    dropWatches() {
      for (const w of watchers) w.res.destroy();
    },
    watches: () => watchers.size,
    conflictNext(n) {
      conflictsToInject = n;
    },
    writeKubeconfig(path, form = 'json', namespace) {
      const config = {
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [
          {
            name: 'fake',
            cluster: { server: url, ...(caData ? { 'certificate-authority-data': caData } : {}) },
          },
        ],
        users: [{ name: 'multus', user: { token: FAKE_K8S_TOKEN } }],
        contexts: [
          {
            name: 'fake-ctx',
            context: { cluster: 'fake', user: 'multus', ...(namespace ? { namespace } : {}) },
          },
        ],
        'current-context': 'fake-ctx',
      };
      writeFileSync(path, form === 'json' ? JSON.stringify(config) : dump(config));
      return path;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const w of watchers) w.res.destroy();
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
