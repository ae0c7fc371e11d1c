// Reads a kubeconfig file into what one HTTPS connection needs. @kubernetes/client-node 2.x does not
// load on Node 20 (its undici needs zlib zstd), and a delegator only needs server, CA and a
// credential, so this reads the file itself: JSON directly, YAML through js-yaml loaded lazily.
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { CniError, ErrorCode } from '../spec/errors.js';

/** Connection settings of the current context of a kubeconfig. */
export interface KubeConnection {
  /** API server URL, e.g. https://10.96.0.1:443. */
  server: string;
  /** PEM CA bundle; default: Node's trust store. */
  ca?: string;
  /** Client certificate and key (PEM). */
  cert?: string;
  key?: string;
  /** Bearer token. */
  token?: string;
  /** Basic auth. */
  username?: string;
  password?: string;
  insecureSkipTlsVerify?: boolean;
  tlsServerName?: string;
  /** Namespace of the current context, when it names one. */
  namespace?: string;
}

type Obj = Record<string, unknown>;

async function parseDocument(text: string, path: string): Promise<Obj> {
  let doc: unknown;
  try {
    if (text.trimStart().startsWith('{')) doc = JSON.parse(text);
    else {
      const yaml = (await import('js-yaml')) as { load(s: string): unknown };
      doc = yaml.load(text);
    }
  } catch (e) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `kubeconfig ${path}: cannot parse: ${(e as Error).message}`,
    );
  }
  if (typeof doc !== 'object' || doc === null) {
    throw new CniError(ErrorCode.InvalidNetworkConfig, `kubeconfig ${path}: not a kubeconfig document`);
  }
  return doc as Obj;
}

function named(doc: Obj, list: string, name: string | undefined, path: string): Obj {
  const items = Array.isArray(doc[list]) ? (doc[list] as Obj[]) : [];
  const hit = name === undefined ? items[0] : items.find((x) => x?.name === name);
  const inner = hit?.[list.slice(0, -1)];
  if (typeof inner !== 'object' || inner === null) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `kubeconfig ${path}: ${list} has no entry ${name === undefined ? '' : JSON.stringify(name)}; fix current-context or the ${list} list`,
    );
  }
  return inner as Obj;
}

async function pem(base: string, data: unknown, file: unknown, what: string): Promise<string | undefined> {
  if (typeof data === 'string' && data !== '') return Buffer.from(data, 'base64').toString('utf8');
  if (typeof file === 'string' && file !== '') {
    const p = isAbsolute(file) ? file : resolve(base, file);
    try {
      return await readFile(p, 'utf8');
    } catch (e) {
      throw new CniError(
        ErrorCode.IOFailure,
        `kubeconfig: cannot read ${what} ${p}: ${(e as Error).message}`,
      );
    }
  }
  return undefined;
}

/**
 * Loads the current context of a kubeconfig: server, CA, and a token, client certificate or basic
 * credentials. Exec and auth-provider credentials are refused with a message saying what to use.
 */
export async function loadKubeconfig(path: string): Promise<KubeConnection> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new CniError(
      ErrorCode.IOFailure,
      `kubeconfig ${path}: cannot read: ${(e as Error).message}; check the "kubeconfig" field of the multus config`,
    );
  }
  const doc = await parseDocument(text, path);
  const base = dirname(path);
  const ctxName = typeof doc['current-context'] === 'string' ? (doc['current-context'] as string) : undefined;
  const ctx = ctxName ? named(doc, 'contexts', ctxName, path) : undefined;
  const cluster = named(doc, 'clusters', ctx?.cluster as string | undefined, path);
  const user =
    Array.isArray(doc.users) && doc.users.length
      ? named(doc, 'users', ctx?.user as string | undefined, path)
      : {};
  if (typeof cluster.server !== 'string' || cluster.server === '') {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `kubeconfig ${path}: cluster.server is missing; set the API server URL`,
    );
  }
  if (user.exec || user['auth-provider']) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `kubeconfig ${path}: exec and auth-provider credentials are not supported by the CNI plugin; use a service-account token or a client certificate`,
    );
  }
  const conn: KubeConnection = { server: cluster.server.replace(/\/+$/, '') };
  if (typeof ctx?.namespace === 'string' && ctx.namespace !== '') conn.namespace = ctx.namespace;
  const ca = await pem(
    base,
    cluster['certificate-authority-data'],
    cluster['certificate-authority'],
    'certificate-authority',
  );
  if (ca) conn.ca = ca;
  if (cluster['insecure-skip-tls-verify'] === true) conn.insecureSkipTlsVerify = true;
  if (typeof cluster['tls-server-name'] === 'string') conn.tlsServerName = cluster['tls-server-name'];
  const cert = await pem(
    base,
    user['client-certificate-data'],
    user['client-certificate'],
    'client-certificate',
  );
  const key = await pem(base, user['client-key-data'], user['client-key'], 'client-key');
  if (cert) conn.cert = cert;
  if (key) conn.key = key;
  if (typeof user.token === 'string' && user.token !== '') conn.token = user.token;
  else if (typeof user.tokenFile === 'string' && user.tokenFile !== '') {
    conn.token = ((await pem(base, undefined, user.tokenFile, 'tokenFile')) ?? '').trim();
  }
  if (typeof user.username === 'string') conn.username = user.username;
  if (typeof user.password === 'string') conn.password = user.password;
  return conn;
}
