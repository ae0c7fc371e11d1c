// An in-process Kubernetes API server with exactly the endpoints a multus-style delegator uses:
// GET pod, PUT and PATCH of the pod status subresource (resourceVersion-checked PUT, merge /
// strategic-merge / JSON patches, 409 when a write loses a race), GET and LIST
// NetworkAttachmentDefinitions, and 401/404/409/415/422 Status objects shaped like the real
// server's; plus GET/LIST/POST/PUT/PATCH/DELETE of whereabouts IPPools and
// OverlappingRangeIPReservations. It serves HTTPS with a throwaway CA (as real API servers do, so
// the client's CA handling is exercised) when openssl is present, else plain HTTP.
// Over 400 lines on purpose: one server whose handlers share its stores; splitting it would only
// spread the same state over several files.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

type Obj = Record<string, unknown> & {
  metadata: Record<string, unknown> & {
    name: string;
    namespace?: string;
    annotations?: Record<string, string>;
  };
};

/** One request the server saw. */
export interface SeenRequest {
  method: string;
  path: string;
  contentType?: string;
  body?: unknown;
}

/** A running fake API server. */
export interface FakeK8s {
  url: string;
  /** PEM of the CA that signed the serving certificate (undefined when serving plain HTTP). */
  ca: string | undefined;
  requests: SeenRequest[];
  /** Adds or replaces a pod; metadata.uid and resourceVersion are filled in. */
  putPod(pod: { metadata: { name: string; namespace: string; annotations?: Record<string, string> } }): void;
  getPod(namespace: string, name: string): Obj | undefined;
  deletePod(namespace: string, name: string): void;
  /** Adds a NAD with `config` (JSON object or text; undefined = no spec). */
  putNad(namespace: string, name: string, config?: unknown, annotations?: Record<string, string>): void;
  /** A whereabouts custom resource (`ippools` or `overlappingrangeipreservations`), if stored. */
  getCustom(plural: string, namespace: string, name: string): Obj | undefined;
  /** Every stored custom resource of a kind in a namespace. */
  listCustom(plural: string, namespace: string): Obj[];
  /** The next N pod status writes fail with 409 as if someone else wrote first. */
  conflictNext(n: number): void;
  /** Writes a kubeconfig pointing at this server and returns its path. */
  writeKubeconfig(path: string, form?: 'json' | 'yaml'): string;
  close(): Promise<void>;
}

/** The bearer token the server accepts. */
export const FAKE_K8S_TOKEN = 'fake-k8s-token';

const JSON_TYPE = 'application/json';
const MERGE_PATCH = 'application/merge-patch+json';
const STRATEGIC_PATCH = 'application/strategic-merge-patch+json';
const JSON_PATCH = 'application/json-patch+json';

let tlsMaterial: { key: string; cert: string } | null | undefined;

/** A self-signed certificate for 127.0.0.1, made once per process; null without openssl. */
function serverTls(): { key: string; cert: string } | null {
  if (tlsMaterial !== undefined) return tlsMaterial;
  const dir = mkdtempSync(join(tmpdir(), `fakek8s${process.pid}-`));
  try {
    const r = spawnSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-days',
        '2',
        '-subj',
        '/CN=fake-kube-apiserver',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    tlsMaterial =
      r.status === 0
        ? {
            key: readFileSync(join(dir, 'key.pem'), 'utf8'),
            cert: readFileSync(join(dir, 'cert.pem'), 'utf8'),
          }
        : null;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return tlsMaterial;
}

function status(res: ServerResponse, code: number, reason: string, message: string): void {
  res.writeHead(code, { 'Content-Type': JSON_TYPE });
  res.end(
    JSON.stringify({
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message,
      reason,
      code,
    }),
  );
}

function send(res: ServerResponse, obj: unknown, code = 200): void {
  res.writeHead(code, { 'Content-Type': JSON_TYPE });
  res.end(JSON.stringify(obj));
}

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

/** RFC 6902 add/remove/replace/test on object paths; a failed test or bad path throws. */
function jsonPatch(target: unknown, ops: unknown): unknown {
  if (!Array.isArray(ops)) throw new Error('a JSON patch must be a list of operations');
  const doc = structuredClone(target) as Record<string, unknown>;
  for (const op of ops as Array<{ op: string; path: string; value?: unknown }>) {
    const parts = op.path
      .split('/')
      .slice(1)
      .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
    const last = parts.pop();
    if (last === undefined) throw new Error(`bad path ${op.path}`);
    let at: Record<string, unknown> = doc;
    for (const p of parts) {
      const next = at[p];
      if (!isObject(next)) throw new Error(`path ${op.path}: ${p} does not exist`);
      at = next;
    }
    if (op.op === 'add' || op.op === 'replace') {
      if (op.op === 'replace' && !(last in at)) throw new Error(`replace ${op.path}: no such key`);
      at[last] = op.value;
    } else if (op.op === 'remove') {
      if (!(last in at)) throw new Error(`remove ${op.path}: no such key`);
      delete at[last];
    } else if (op.op === 'test') {
      if (JSON.stringify(at[last]) !== JSON.stringify(op.value)) throw new Error(`test ${op.path} failed`);
    } else throw new Error(`unsupported op ${op.op}`);
  }
  return doc;
}

/**
 * Applies a PATCH body the way the API server does for its content type; `strategic` says whether
 * the resource supports strategic merge (built-in kinds do, custom resources answer 415).
 */
function applyPatch(
  res: ServerResponse,
  cur: Obj,
  contentType: string,
  body: unknown,
  strategic: boolean,
): Obj | undefined {
  try {
    // Maps (annotations, labels) merge the same way under both merge flavours; that is all a
    // CNI plugin patches.
    if (contentType === MERGE_PATCH || (strategic && contentType === STRATEGIC_PATCH))
      return mergePatch(cur, body) as Obj;
    if (contentType === JSON_PATCH) return jsonPatch(cur, body) as Obj;
  } catch (e) {
    status(res, 422, 'Invalid', `the patch could not be applied: ${(e as Error).message}`);
    return undefined;
  }
  status(
    res,
    415,
    'UnsupportedMediaType',
    `the body of the request was in an unknown format - accepted media types include: ${[JSON_PATCH, MERGE_PATCH, ...(strategic ? [STRATEGIC_PATCH] : [])].join(', ')}`,
  );
  return undefined;
}

/** Starts the server on 127.0.0.1 with a random port (HTTPS when it can make a certificate). */
export async function startFakeK8s(opts: { tls?: boolean } = {}): Promise<FakeK8s> {
  const pods = new Map<string, Obj>();
  const nads = new Map<string, Obj>();
  const requests: SeenRequest[] = [];
  /** whereabouts.cni.cncf.io custom resources, keyed `<plural>/<ns>/<name>`. */
  const custom = new Map<string, Obj>();
  let version = 1;
  let conflicts = 0;
  const key = (ns: string, name: string) => `${ns}/${name}`;

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const method = req.method ?? '';
    const contentType = (req.headers['content-type'] ?? '').split(';')[0]?.trim() ?? '';
    const hasBody = method === 'PUT' || method === 'POST' || method === 'PATCH';
    const body = hasBody ? await readBody(req) : undefined;
    requests.push({
      method,
      path,
      ...(hasBody ? { contentType } : {}),
      ...(body !== undefined ? { body } : {}),
    });
    if (req.headers.authorization !== `Bearer ${FAKE_K8S_TOKEN}`) {
      status(res, 401, 'Unauthorized', 'Unauthorized');
      return;
    }
    if ((method === 'PUT' || method === 'POST') && contentType !== JSON_TYPE) {
      status(
        res,
        415,
        'UnsupportedMediaType',
        `the body of the request was in an unknown format: ${contentType}`,
      );
      return;
    }
    let m = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)(\/status)?$/.exec(path);
    if (m) {
      const [, ns = '', name = '', sub] = m;
      const pod = pods.get(key(ns, name));
      if (!pod) return status(res, 404, 'NotFound', `pods "${name}" not found`);
      if (method === 'GET' && !sub) return send(res, pod);
      if ((method === 'PUT' || method === 'PATCH') && sub) {
        const conflict = () =>
          status(
            res,
            409,
            'Conflict',
            `Operation cannot be fulfilled on pods "${name}": the object has been modified; please apply your changes to the latest version and try again`,
          );
        if (conflicts > 0) {
          // Someone else wrote first; a PATCH loses too once the server's own retries run out.
          conflicts--;
          pod.metadata.resourceVersion = String(++version);
          return conflict();
        }
        let next: Obj | undefined;
        if (method === 'PUT') {
          next = body as Obj;
          // Pods allow unconditional updates: only a resourceVersion that is present is checked.
          const rv = next?.metadata?.resourceVersion;
          if (rv !== undefined && rv !== '' && rv !== pod.metadata.resourceVersion) return conflict();
        } else {
          next = applyPatch(res, pod, contentType, body, true);
          if (!next) return;
          // A resourceVersion or uid inside a patch is a precondition, as on the real server.
          const rv = (body as Obj | undefined)?.metadata?.resourceVersion;
          if (rv !== undefined && rv !== pod.metadata.resourceVersion) return conflict();
          const uid = (body as Obj | undefined)?.metadata?.uid;
          if (uid !== undefined && uid !== pod.metadata.uid) {
            return status(
              res,
              409,
              'Conflict',
              `Operation cannot be fulfilled on pods "${name}": Precondition failed: UID in precondition: ${uid}, UID in object meta: ${pod.metadata.uid}`,
            );
          }
        }
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
        pods.set(key(ns, name), stored);
        return send(res, stored);
      }
      return status(res, 405, 'MethodNotAllowed', `${method} not allowed`);
    }
    m =
      /^\/apis\/k8s\.cni\.cncf\.io\/v1\/namespaces\/([^/]+)\/network-attachment-definitions(?:\/([^/]+))?$/.exec(
        path,
      );
    if (m && method === 'GET') {
      const [, ns = '', name] = m;
      if (name === undefined) {
        const items = [...nads.values()].filter((n) => n.metadata.namespace === ns);
        return send(res, {
          apiVersion: 'k8s.cni.cncf.io/v1',
          kind: 'NetworkAttachmentDefinitionList',
          metadata: { resourceVersion: String(version) },
          items,
        });
      }
      const nad = nads.get(key(ns, name));
      if (!nad) {
        return status(
          res,
          404,
          'NotFound',
          `network-attachment-definitions.k8s.cni.cncf.io "${name}" not found`,
        );
      }
      return send(res, nad);
    }
    m =
      /^\/apis\/whereabouts\.cni\.cncf\.io\/v1alpha1\/namespaces\/([^/]+)\/(ippools|overlappingrangeipreservations)(?:\/([^/]+))?$/.exec(
        path,
      );
    if (m) return handleCustom(method, m[1] ?? '', m[2] ?? '', m[3], contentType, body, res);
    status(res, 404, 'NotFound', 'the server could not find the requested resource');
  };

  const handleCustom = (
    method: string,
    ns: string,
    plural: string,
    name: string | undefined,
    contentType: string,
    body: unknown,
    res: ServerResponse,
  ) => {
    const k = (n: string) => `${plural}/${ns}/${n}`;
    const full = `${plural}.whereabouts.cni.cncf.io`;
    if (name === undefined && method === 'GET') {
      const items = [...custom.entries()]
        .filter(([key]) => key.startsWith(`${plural}/${ns}/`))
        .map(([, v]) => v);
      return send(res, {
        apiVersion: 'whereabouts.cni.cncf.io/v1alpha1',
        kind: plural === 'ippools' ? 'IPPoolList' : 'OverlappingRangeIPReservationList',
        metadata: { resourceVersion: String(version) },
        items,
      });
    }
    if (name === undefined && method === 'POST') {
      const obj = body as Obj;
      const n = obj?.metadata?.name;
      if (!n)
        return status(res, 422, 'Invalid', `${full} "": metadata.name: Required value: name is required`);
      if (custom.has(k(n))) return status(res, 409, 'AlreadyExists', `${full} "${n}" already exists`);
      const stored: Obj = {
        ...obj,
        metadata: {
          ...obj.metadata,
          namespace: ns,
          uid: `uid-${plural}-${n}-${version}`,
          resourceVersion: String(++version),
        },
      };
      custom.set(k(n), stored);
      return send(res, stored, 201);
    }
    const cur = name === undefined ? undefined : custom.get(k(name));
    if (!cur || name === undefined) return status(res, 404, 'NotFound', `${full} "${name}" not found`);
    if (method === 'GET') return send(res, cur);
    if (method === 'DELETE') {
      custom.delete(k(name));
      return send(res, {
        kind: 'Status',
        apiVersion: 'v1',
        metadata: {},
        status: 'Success',
        details: { name },
      });
    }
    if (method === 'PUT' || method === 'PATCH') {
      let next: Obj | undefined;
      if (method === 'PUT') {
        next = body as Obj;
        // Custom resources allow no unconditional update: PUT must carry the version it read.
        const rv = next?.metadata?.resourceVersion;
        if (rv === undefined || rv === '') {
          return status(
            res,
            422,
            'Invalid',
            `${full} "${name}" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update`,
          );
        }
      } else {
        next = applyPatch(res, cur, contentType, body, false);
        if (!next) return;
      }
      if (next.metadata?.resourceVersion !== cur.metadata.resourceVersion) {
        return status(
          res,
          409,
          'Conflict',
          `Operation cannot be fulfilled on ${full} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
        );
      }
      const stored: Obj = {
        ...next,
        metadata: { ...next.metadata, namespace: ns, resourceVersion: String(++version) },
      };
      custom.set(k(name), stored);
      return send(res, stored);
    }
    return status(res, 405, 'MethodNotAllowed', `${method} not allowed`);
  };

  const tls = opts.tls === false ? null : serverTls();
  const listener = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((e) => status(res, 500, 'InternalError', String(e)));
  };
  const server: Server = tls ? createHttpsServer(tls, listener) : createServer(listener);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const caData = tls ? Buffer.from(tls.cert).toString('base64') : undefined;

  return {
    url,
    ca: tls?.cert,
    requests,
    putPod(pod) {
      const ns = pod.metadata.namespace;
      pods.set(key(ns, pod.metadata.name), {
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
    getPod: (ns, name) => pods.get(key(ns, name)),
    deletePod: (ns, name) => {
      pods.delete(key(ns, name));
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
      nads.set(key(ns, name), nad);
    },
    getCustom: (plural, ns, name) => custom.get(`${plural}/${ns}/${name}`),
    listCustom: (plural, ns) =>
      [...custom.entries()].filter(([key]) => key.startsWith(`${plural}/${ns}/`)).map(([, v]) => v),
    conflictNext(n) {
      conflicts = n;
    },
    writeKubeconfig(path, form = 'json') {
      if (form === 'json') {
        writeFileSync(
          path,
          JSON.stringify({
            apiVersion: 'v1',
            kind: 'Config',
            clusters: [
              {
                name: 'fake',
                cluster: { server: url, ...(caData ? { 'certificate-authority-data': caData } : {}) },
              },
            ],
            users: [{ name: 'multus', user: { token: FAKE_K8S_TOKEN } }],
            contexts: [{ name: 'fake-ctx', context: { cluster: 'fake', user: 'multus' } }],
            'current-context': 'fake-ctx',
          }),
        );
      } else {
        writeFileSync(
          path,
          [
            'apiVersion: v1',
            'kind: Config',
            'clusters:',
            '- name: fake',
            '  cluster:',
            `    server: ${url}`,
            ...(caData ? [`    certificate-authority-data: ${caData}`] : []),
            'users:',
            '- name: multus',
            '  user:',
            `    token: "${FAKE_K8S_TOKEN}"`,
            'contexts:',
            '- name: fake-ctx',
            '  context:',
            '    cluster: fake',
            '    user: multus',
            'current-context: fake-ctx',
            '',
          ].join('\n'),
        );
      }
      return path;
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
