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

/** Formats pairs as CNI_ARGS; refuses keys or values that could not be parsed back. */
export function formatCniArgs(pairs: Iterable<readonly [string, string]>): string {
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
export function cniArgsGet(args: string | CniArgs | undefined, key: string): string | undefined {
  const pairs = typeof args === 'string' || args === undefined ? parseCniArgs(args) : args;
  let v: string | undefined;
  for (const [k, val] of pairs) if (k === key) v = val;
  return v;
}
