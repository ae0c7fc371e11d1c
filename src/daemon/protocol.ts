// The wire protocol, compatible with multus' thick mode: HTTP/1.1 over a Unix socket,
// `POST /cni` with `{"env": {...}, "config": "<stdin, base64>"}`. cni-kit's shim marks its
// requests (X-Cni-Kit-Shim) and gets the plugin's stdout back verbatim, already in the config's
// version; an unmodified multus-shim gets multus' own envelope, `{"Result": <1.0.0 result>}`.
import type { IncomingMessage } from 'node:http';
import { CniError, ErrorCode } from '../spec/errors.js';
import { CURRENT_VERSION, normalizeVersion } from '../spec/version.js';

/** The header cni-kit's shim sets on every request. */
export const SHIM_HEADER = 'x-cni-kit-shim';
/** The plugin the shim was installed as: the one the runtime exec'd, which the daemon runs. */
export const PLUGIN_HEADER = 'x-cni-kit-plugin';
/** The reply header naming the call in the daemon's log. */
export const CALL_ID_HEADER = 'x-cni-kit-call-id';
/** The version multus-shim expects its ADD result in (it converts to the config's itself). */
export const MULTUS_RESULT_VERSION = '1.0.0';

/** One decoded `/cni` request. */
export interface CniRequest {
  env: Record<string, string>;
  /** The plugin's stdin, as the runtime wrote it. */
  stdin: Uint8Array;
  /** Sent by cni-kit's shim (stdout verbatim) rather than multus-shim (the Result envelope). */
  fromShim: boolean;
  /** X-Cni-Kit-Plugin, when sent. */
  pluginHint: string | undefined;
  /** The config's `type` and `cniVersion`, when stdin is a JSON object that has them. */
  type: string | undefined;
  cniVersion: string | undefined;
}

/** A request the daemon refuses: HTTP status plus the CNI error it prints. */
export class RequestError extends Error {
  constructor(
    readonly status: number,
    readonly error: CniError,
    readonly reason: string,
  ) {
    super(error.message);
  }
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

const bad = (msg: string, details?: string) =>
  new RequestError(400, new CniError(ErrorCode.DecodingFailure, msg, details), 'malformed');

/** Decodes a `/cni` body; throws RequestError (code 6) naming what is wrong. */
export function parseCniRequest(
  body: Uint8Array,
  headers: Record<string, string | string[] | undefined>,
): CniRequest {
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(body).toString('utf8'));
  } catch (e) {
    throw bad(
      `request body: not JSON (${(e as Error).message})`,
      'send {"env": {"CNI_COMMAND": ..., ...}, "config": "<the plugin stdin, base64>"}',
    );
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) {
    throw bad('request body: not a JSON object', 'send {"env": {...}, "config": "<base64>"}');
  }
  const { env, config } = doc as { env?: unknown; config?: unknown };
  if (!env || typeof env !== 'object' || Array.isArray(env)) {
    throw bad(
      'request env: missing or not an object',
      'env maps each CNI_* variable name to its string value',
    );
  }
  const vars: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (typeof v !== 'string') {
      throw bad(`request env.${k}: ${JSON.stringify(v)} is not a string`, 'environment values are strings');
    }
    // A plain assignment would drop a variable named __proto__ (it sets the prototype instead).
    Object.defineProperty(vars, k, { value: v, enumerable: true, writable: true, configurable: true });
  }
  if (typeof config !== 'string' || !BASE64.test(config) || config.length % 4 !== 0) {
    throw bad(
      `request config: ${config === undefined ? 'missing' : 'not standard base64'}`,
      'config carries the plugin stdin encoded as standard base64 with padding (Go encodes []byte so)',
    );
  }
  const stdin = Buffer.from(config, 'base64');
  let type: string | undefined;
  let cniVersion: string | undefined;
  try {
    const net = JSON.parse(stdin.toString('utf8')) as { type?: unknown; cniVersion?: unknown } | null;
    if (net && typeof net === 'object') {
      if (typeof net.type === 'string' && net.type !== '') type = net.type;
      if (typeof net.cniVersion === 'string') cniVersion = net.cniVersion;
    }
  } catch {
    // The plugin reports a config it cannot parse, in its own words.
  }
  const hint = headers[PLUGIN_HEADER];
  return {
    env: vars,
    stdin,
    fromShim: headers[SHIM_HEADER] !== undefined,
    pluginHint: typeof hint === 'string' && hint !== '' ? hint : undefined,
    type,
    cniVersion,
  };
}

/** Reads a request body of at most `max` bytes; past it, a RequestError 413 (code 6). */
export function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const tooBig = () =>
      new RequestError(
        413,
        new CniError(
          ErrorCode.DecodingFailure,
          `request body: over ${max} bytes`,
          'the daemon takes configs up to its --max-request-bytes; raise it or shorten the config',
        ),
        'too-large',
      );
    if (Number(req.headers['content-length'] ?? '0') > max) {
      reject(tooBig());
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > max) {
        req.removeAllListeners('data');
        req.pause();
        reject(tooBig());
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** The HTTP reply to a call that ran: status and body. */
export interface Reply {
  status: number;
  body: string;
}

/** Maps a plugin's outcome to the reply its caller expects. */
export function replyFor(
  req: CniRequest,
  command: string,
  outcome: { stdout: string; exitCode: number },
): Reply {
  if (outcome.exitCode !== 0) return { status: 400, body: outcome.stdout };
  if (req.fromShim) return { status: 200, body: outcome.stdout };
  if (command !== 'ADD' || outcome.stdout.trim() === '') return { status: 200, body: '' };
  return { status: 200, body: JSON.stringify({ Result: JSON.parse(outcome.stdout) }) };
}

/** The CNI error JSON of a refused request, in the config's version where it names one. */
export function errorBody(err: CniError, cniVersion: string | undefined): string {
  const v = (cniVersion !== undefined && normalizeVersion(cniVersion)) || CURRENT_VERSION;
  return JSON.stringify(err.toJSON(v));
}

/** The code of a CNI error JSON (999 when it is not one). */
export function errorCode(stdout: string): number {
  try {
    const code = (JSON.parse(stdout) as { code?: unknown }).code;
    return typeof code === 'number' ? code : ErrorCode.Internal;
  } catch {
    return ErrorCode.Internal;
  }
}

/** The msg and details of a CNI error JSON, for the log. */
export function errorMessage(stdout: string): string | undefined {
  try {
    const e = JSON.parse(stdout) as { msg?: unknown; details?: unknown };
    return [e.msg, e.details].filter((x) => typeof x === 'string' && x !== '').join('; ');
  } catch {
    return stdout.slice(0, 500);
  }
}
