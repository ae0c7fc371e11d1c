// An in-process Kubernetes API server with exactly the endpoints a multus-style delegator uses:
// GET pod, PUT pod status (resourceVersion-checked, 409 on a stale write), GET and LIST
// NetworkAttachmentDefinitions, and 404/401 Status objects shaped like the real server's; plus
// GET/LIST/POST/PUT/DELETE of whereabouts IPPools and OverlappingRangeIPReservations.
import { writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

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
  body?: unknown;
}

/** A running fake API server. */
export interface FakeK8s {
  url: string;
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

const TOKEN = 'fake-k8s-token';

function status(res: ServerResponse, code: number, reason: string, message: string): void {
  res.writeHead(code, { 'Content-Type': 'application/json' });
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

function send(res: ServerResponse, obj: unknown): void {
  res.writeHead(200, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(obj));
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : undefined;
}

/** Starts the server on 127.0.0.1 with a random port. */
export async function startFakeK8s(): Promise<FakeK8s> {
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
    const body = req.method === 'PUT' || req.method === 'POST' ? await readBody(req) : undefined;
    requests.push({ method: req.method ?? '', path, ...(body !== undefined ? { body } : {}) });
    if (req.headers.authorization !== `Bearer ${TOKEN}`) {
      status(res, 401, 'Unauthorized', 'Unauthorized');
      return;
    }
    let m = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)(\/status)?$/.exec(path);
    if (m) {
      const [, ns = '', name = '', sub] = m;
      const pod = pods.get(key(ns, name));
      if (!pod) return status(res, 404, 'NotFound', `pods "${name}" not found`);
      if (req.method === 'GET' && !sub) return send(res, pod);
      if (req.method === 'PUT' && sub) {
        const next = body as Obj;
        if (conflicts > 0) {
          conflicts--;
          pod.metadata.resourceVersion = String(++version);
        }
        if (next?.metadata?.resourceVersion !== pod.metadata.resourceVersion) {
          return status(
            res,
            409,
            'Conflict',
            `Operation cannot be fulfilled on pods "${name}": the object has been modified; please apply your changes to the latest version and try again`,
          );
        }
        // The status subresource keeps spec but takes metadata annotations and status.
        const stored: Obj = {
          ...pod,
          metadata: {
            ...pod.metadata,
            annotations: next.metadata.annotations,
            resourceVersion: String(++version),
          },
        };
        if (next.status !== undefined) stored.status = next.status;
        pods.set(key(ns, name), stored);
        return send(res, stored);
      }
      return status(res, 405, 'MethodNotAllowed', `${req.method} not allowed`);
    }
    m =
      /^\/apis\/k8s\.cni\.cncf\.io\/v1\/namespaces\/([^/]+)\/network-attachment-definitions(?:\/([^/]+))?$/.exec(
        path,
      );
    if (m && req.method === 'GET') {
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
    if (m) return handleCustom(req.method ?? '', m[1] ?? '', m[2] ?? '', m[3], body, res);
    status(res, 404, 'NotFound', 'the server could not find the requested resource');
  };

  const handleCustom = (
    method: string,
    ns: string,
    plural: string,
    name: string | undefined,
    body: unknown,
    res: ServerResponse,
  ) => {
    const k = (n: string) => `${plural}/${ns}/${n}`;
    if (name === undefined && method === 'GET') {
      const items = [...custom.entries()]
        .filter(([key]) => key.startsWith(`${plural}/${ns}/`))
        .map(([, v]) => v);
      return send(res, { apiVersion: 'whereabouts.cni.cncf.io/v1alpha1', kind: 'List', metadata: {}, items });
    }
    if (name === undefined && method === 'POST') {
      const obj = body as Obj;
      const n = obj?.metadata?.name;
      if (!n) return status(res, 422, 'Invalid', 'metadata.name: Required value');
      if (custom.has(k(n)))
        return status(res, 409, 'AlreadyExists', `${plural}.whereabouts.cni.cncf.io "${n}" already exists`);
      const stored: Obj = {
        ...obj,
        metadata: { ...obj.metadata, namespace: ns, resourceVersion: String(++version) },
      };
      custom.set(k(n), stored);
      res.writeHead(201, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(stored));
      return;
    }
    const cur = name === undefined ? undefined : custom.get(k(name));
    if (!cur || name === undefined)
      return status(res, 404, 'NotFound', `${plural}.whereabouts.cni.cncf.io "${name}" not found`);
    if (method === 'GET') return send(res, cur);
    if (method === 'DELETE') {
      custom.delete(k(name));
      return send(res, { kind: 'Status', apiVersion: 'v1', status: 'Success' });
    }
    if (method === 'PUT') {
      const next = body as Obj;
      if (next?.metadata?.resourceVersion !== cur.metadata.resourceVersion) {
        return status(
          res,
          409,
          'Conflict',
          `Operation cannot be fulfilled on ${plural}.whereabouts.cni.cncf.io "${name}": the object has been modified`,
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

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((e) => status(res, 500, 'InternalError', String(e)));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url,
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
            clusters: [{ name: 'fake', cluster: { server: url } }],
            users: [{ name: 'multus', user: { token: TOKEN } }],
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
            'users:',
            '- name: multus',
            '  user:',
            `    token: "${TOKEN}"`,
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
