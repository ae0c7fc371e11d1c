// A tiny in-process Kubernetes API server for custom resources: GET / POST / PUT / DELETE on
// /apis/<group>/<version>/namespaces/<ns>/<plural>[/<name>] with real resourceVersion semantics
// (PUT with a stale resourceVersion is 409 Conflict, POST of an existing name 409 AlreadyExists)
// and real Status bodies. Enough for stores that read and write CRs; it is not a general server.
import { writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';

/** A running fake API server. */
export interface FakeKubeApi {
  url: string;
  /** Writes a kubeconfig for it into `dir` and returns the path. */
  kubeconfig(dir: string, namespace: string): string;
  /** The stored objects of one resource, by `<ns>/<name>`. */
  objects(plural: string): Map<string, Record<string, unknown>>;
  /** Count of requests answered with 409. */
  conflicts(): number;
  close(): Promise<void>;
}

type Obj = Record<string, unknown> & { metadata: Record<string, unknown> };

function status(res: ServerResponse, code: number, reason: string, message: string): void {
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(
    JSON.stringify({
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: code < 400 ? 'Success' : 'Failure',
      message,
      reason,
      code,
    }),
  );
}

/** Starts the server on a free loopback port. */
export async function startFakeKubeApi(): Promise<FakeKubeApi> {
  const store = new Map<string, Map<string, Obj>>();
  let rv = 1000;
  let conflicts = 0;
  const bucket = (plural: string) => {
    let b = store.get(plural);
    if (!b) {
      b = new Map();
      store.set(plural, b);
    }
    return b;
  };
  const handle = (req: IncomingMessage, res: ServerResponse, body: string) => {
    const m = /^\/apis\/([^/]+)\/([^/]+)\/namespaces\/([^/]+)\/([^/?]+)(?:\/([^/?]+))?/.exec(req.url ?? '');
    if (!m)
      return status(res, 404, 'NotFound', `the server could not find the requested resource ${req.url}`);
    const [, , , ns, plural, name] = m as unknown as [
      string,
      string,
      string,
      string,
      string,
      string | undefined,
    ];
    const b = bucket(plural);
    const key = `${ns}/${name}`;
    const send = (code: number, o: unknown) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(o));
    };
    if (req.method === 'GET' && name) {
      const o = b.get(key);
      return o ? send(200, o) : status(res, 404, 'NotFound', `${plural} "${name}" not found`);
    }
    if (req.method === 'POST' && !name) {
      const o = JSON.parse(body) as Obj;
      const n = String(o.metadata?.name ?? '');
      if (b.has(`${ns}/${n}`)) {
        conflicts++;
        return status(res, 409, 'AlreadyExists', `${plural} "${n}" already exists`);
      }
      o.metadata = { ...o.metadata, namespace: ns, resourceVersion: String(++rv), uid: `uid-${rv}` };
      b.set(`${ns}/${n}`, o);
      return send(201, o);
    }
    if (req.method === 'PUT' && name) {
      const cur = b.get(key);
      if (!cur) return status(res, 404, 'NotFound', `${plural} "${name}" not found`);
      const o = JSON.parse(body) as Obj;
      if (o.metadata?.resourceVersion !== cur.metadata.resourceVersion) {
        conflicts++;
        return status(
          res,
          409,
          'Conflict',
          `Operation cannot be fulfilled on ${plural} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
        );
      }
      o.metadata = { ...o.metadata, namespace: ns, resourceVersion: String(++rv) };
      b.set(key, o);
      return send(200, o);
    }
    if (req.method === 'DELETE' && name) {
      if (!b.delete(key)) return status(res, 404, 'NotFound', `${plural} "${name}" not found`);
      return status(res, 200, '', 'deleted');
    }
    return status(res, 405, 'MethodNotAllowed', `${req.method} is not supported here`);
  };
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => {
      body += c.toString();
    });
    req.on('end', () => handle(req, res, body));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  const url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  return {
    url,
    kubeconfig(dir, namespace) {
      const path = join(dir, `kubeconfig-${namespace}.json`);
      writeFileSync(
        path,
        JSON.stringify({
          apiVersion: 'v1',
          kind: 'Config',
          clusters: [{ name: 'fake', cluster: { server: url } }],
          users: [{ name: 'fake', user: { token: 'fake-token' } }],
          contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'fake', namespace } }],
          'current-context': 'fake',
        }),
      );
      return path;
    },
    objects: (plural) => bucket(plural) as Map<string, Record<string, unknown>>,
    conflicts: () => conflicts,
    close: () => new Promise((r) => server.close(() => r())),
  };
}
