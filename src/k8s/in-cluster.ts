// In-cluster Kubernetes access, as client-go's rest.InClusterConfig gives it to a process running in
// a pod: the API server from KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT (always https),
// the pod's ServiceAccount token and the cluster CA from the service-account folder. It is written
// out as a kubeconfig file, so that everything keyed by a kubeconfig path works unchanged (the
// daemon's caches offered to plugin bundles, the cached connections, plugins built with an older
// cni-kit). The token is referenced (tokenFile), never copied: every request reads the current one
// (see TokenFileAuth in connect.ts), since bound tokens expire and kubelet rotates them.
import { readFileSync } from 'node:fs';
import { isIPv6 } from 'node:net';
import { join } from 'node:path';
import { writeFileAtomicSync } from '../fs/atomic.js';
import { CniError, describeSystemError, ErrorCode } from '../spec/errors.js';

/** Where kubelet mounts a pod's ServiceAccount token, CA and namespace. */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** Where to look (tests and unusual mounts). */
export interface InClusterOptions {
  /** Default process.env. */
  env?: Record<string, string | undefined>;
  /** Default $CNI_KIT_SERVICE_ACCOUNT_DIR, else SERVICE_ACCOUNT_DIR. */
  dir?: string | undefined;
}

const readFileIfExists = (path: string): string | undefined => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
};

const FIX =
  'run this inside a pod whose ServiceAccount token is mounted (automountServiceAccountToken, the default), or give a kubeconfig file';

/** True when the environment looks like a pod's (both service variables set). */
export function inClusterAvailable(env: Record<string, string | undefined> = process.env): boolean {
  return !!env.KUBERNETES_SERVICE_HOST && !!env.KUBERNETES_SERVICE_PORT;
}

/**
 * The kubeconfig (JSON text) of in-cluster access. Throws a code-7 CniError naming the missing
 * variable or file and the fix.
 */
export function inClusterKubeconfig(opts: InClusterOptions = {}): string {
  const env = opts.env ?? process.env;
  const dir = opts.dir ?? (env.CNI_KIT_SERVICE_ACCOUNT_DIR || SERVICE_ACCOUNT_DIR);
  const host = env.KUBERNETES_SERVICE_HOST ?? '';
  const port = env.KUBERNETES_SERVICE_PORT ?? '';
  const missing = [
    ...(host ? [] : ['KUBERNETES_SERVICE_HOST']),
    ...(port ? [] : ['KUBERNETES_SERVICE_PORT']),
  ];
  if (missing.length > 0) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `in-cluster Kubernetes config: ${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} not set (kubelet sets both in every pod); ${FIX}`,
    );
  }
  const read = (name: 'token' | 'ca.crt', what: string) => {
    const file = join(dir, name);
    try {
      const text = readFileSync(file, 'utf8');
      if (text.trim() === '') throw new Error('the file is empty');
      return text;
    } catch (e) {
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        `in-cluster Kubernetes config: the ${what} ${file}: ${describeSystemError(e) ?? (e as Error).message}; ${FIX}`,
      );
    }
  };
  read('token', 'service-account token');
  const ca = read('ca.crt', 'cluster CA');
  // As clientcmd's in-cluster namespace: $POD_NAMESPACE, else the pod's own namespace.
  const namespace = env.POD_NAMESPACE || readFileIfExists(join(dir, 'namespace'))?.trim() || undefined;
  const server = `https://${isIPv6(host) ? `[${host}]` : host}:${port}`;
  return `${JSON.stringify(
    {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        {
          name: 'in-cluster',
          // The CA is embedded: client-node would otherwise read the file on every request.
          cluster: { server, 'certificate-authority-data': Buffer.from(ca).toString('base64') },
        },
      ],
      users: [{ name: 'service-account', user: { tokenFile: join(dir, 'token') } }],
      contexts: [
        {
          name: 'in-cluster',
          context: { cluster: 'in-cluster', user: 'service-account', ...(namespace ? { namespace } : {}) },
        },
      ],
      'current-context': 'in-cluster',
    },
    null,
    2,
  )}\n`;
}

/**
 * Writes the in-cluster kubeconfig to `path` (0600; rewritten only when it changes, e.g. a rotated
 * CA) and returns `path`. Throws as inClusterKubeconfig.
 */
export function writeInClusterKubeconfig(path: string, opts: InClusterOptions = {}): string {
  const text = inClusterKubeconfig(opts);
  if (readFileIfExists(path) !== text) writeFileAtomicSync(path, text, { mode: 0o600 });
  return path;
}
