import { CniError, ErrorCode } from './errors.js';

/** CNI_ARGS as ordered key/value pairs. */
export type CniArgs = Array<[string, string]>;

/**
 * Parses CNI_ARGS (`K=V;K=V`). Tolerant where the Go parser is brittle: a value may contain `=`
 * (split on the first one) and empty segments (a trailing `;`) are ignored.
 */
export function parseCniArgs(s: string | undefined): CniArgs {
  const out: CniArgs = [];
  if (!s) return out;
  for (const seg of s.split(';')) {
    if (seg === '') continue;
    const i = seg.indexOf('=');
    if (i <= 0) {
      throw new CniError(
        ErrorCode.InvalidEnvironmentVariables,
        `CNI_ARGS: ${JSON.stringify(seg)} is not KEY=VALUE; separate pairs with ';' as in "K8S_POD_NAME=web;IgnoreUnknown=1"`,
      );
    }
    out.push([seg.slice(0, i), seg.slice(i + 1)]);
  }
  return out;
}

/** CNI_ARGS as a runtime may hold them: raw `K=V;K=V` text or key/value pairs. */
export type CniArgsInput = string | Iterable<readonly [string, string]>;

/** Formats pairs as CNI_ARGS (text is passed through); refuses keys or values that could not be parsed back. */
export function formatCniArgs(pairs: CniArgsInput | undefined): string {
  if (pairs === undefined) return '';
  if (typeof pairs === 'string') return pairs;
  const parts: string[] = [];
  for (const [k, v] of pairs) {
    if (k === '' || k.includes('=') || k.includes(';')) {
      throw new CniError(
        ErrorCode.InvalidEnvironmentVariables,
        `CNI_ARGS: key ${JSON.stringify(k)} must be non-empty without '=' or ';'`,
      );
    }
    if (v.includes(';')) {
      throw new CniError(
        ErrorCode.InvalidEnvironmentVariables,
        `CNI_ARGS: value of ${k} (${JSON.stringify(v)}) must not contain ';'`,
      );
    }
    parts.push(`${k}=${v}`);
  }
  return parts.join(';');
}

/** The value of `key` in CNI_ARGS (the last one when repeated, as Go's loader does), or undefined. */
export function cniArgsGet(
  args: string | ReadonlyArray<readonly [string, string]> | undefined,
  key: string,
): string | undefined {
  const pairs = typeof args === 'string' || args === undefined ? parseCniArgs(args) : args;
  let v: string | undefined;
  for (const [k, val] of pairs) if (k === key) v = val;
  return v;
}

/** A Kubernetes pod, as the runtime names it in CNI_ARGS. */
export interface PodRef {
  namespace: string;
  name: string;
  /** K8S_POD_UID, when the runtime sent it. */
  uid?: string;
  /** K8S_POD_INFRA_CONTAINER_ID, when the runtime sent it. */
  infraContainerId?: string;
}

/**
 * The pod of a call, from CNI_ARGS K8S_POD_NAMESPACE and K8S_POD_NAME (both must be non-empty;
 * otherwise the call is not for a Kubernetes pod and the result is undefined). One rule for every
 * caller: IPAM owner records, multus and whereabouts all key pods the same way.
 */
export function podRef(
  args: string | ReadonlyArray<readonly [string, string]> | undefined,
): PodRef | undefined {
  const pairs = typeof args === 'string' || args === undefined ? parseCniArgs(args) : args;
  const get = (k: string) => cniArgsGet(pairs, k);
  const namespace = get('K8S_POD_NAMESPACE');
  const name = get('K8S_POD_NAME');
  if (!namespace || !name) return undefined;
  const ref: PodRef = { namespace, name };
  const uid = get('K8S_POD_UID');
  const infra = get('K8S_POD_INFRA_CONTAINER_ID');
  if (uid) ref.uid = uid;
  if (infra) ref.infraContainerId = infra;
  return ref;
}

/** `<namespace>/<name>`: how IPAM records and annotations name a pod. */
export function formatPodRef(ref: PodRef): string {
  return `${ref.namespace}/${ref.name}`;
}
