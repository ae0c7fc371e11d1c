// The plugin ↔ daemon protocol: JSON over HTTP on a Unix socket. Ours, not the reference's (the Go
// daemon speaks Go net/rpc with gob encoding); the plugin recognises a Go daemon on the socket and
// says so. Requests carry the call as the plugin received it, with the netns path made absolute.
import { request } from 'node:http';
import { connect } from 'node:net';
import type { Attachment } from '../../spec/config.js';
import { CniError, ErrorCode } from '../../spec/errors.js';
import type { Result } from '../../spec/result/types.js';

/** The operations: ADD, CHECK, DEL, GC. */
export type DhcpOp = 'allocate' | 'check' | 'release' | 'gc';

/** One call, as the plugin sends it. */
export interface DhcpCall {
  containerId: string;
  /** Absolute path of the container's netns ("" on GC, and on DEL when the runtime gave none). */
  netns: string;
  ifname: string;
  /** CNI_ARGS as the runtime passed it (for `provide[].fromArg`). */
  args: string;
  /** The network config, byte for byte (stdin). */
  config: string;
  /** CHECK: the previous result. */
  prevResult?: Result | undefined;
  /** GC: the attachments that stay. */
  validAttachments?: Attachment[] | undefined;
}

/** The body of a failed call: a CNI error. */
export interface DhcpWireError {
  code: number;
  msg: string;
  details?: string;
}

/** The command that starts our daemon, for error messages. */
export const START_HINT =
  'start the daemon with `cni-kit dhcp-daemon` (as root, on every node, before containers start)';

interface Reply {
  status: number;
  body: string;
  contentType: string;
}

function send(
  socketPath: string,
  method: string,
  path: string,
  body: string | undefined,
  signal?: AbortSignal,
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath,
        method,
        path,
        headers:
          body === undefined
            ? {}
            : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        ...(signal ? { signal } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks).toString('utf8'),
            contentType: String(res.headers['content-type'] ?? ''),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * True when a Go net/rpc HTTP server (the reference daemon) answers on the socket. Spoken raw: Go
 * answers CONNECT with bare-LF line ends, which Node's HTTP parser refuses.
 */
export function isGoRpcDaemon(socketPath: string, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    let got = '';
    const s = connect(socketPath);
    const done = (v: boolean) => {
      s.destroy();
      resolve(v);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.on('connect', () => s.write('CONNECT /_goRPC_ HTTP/1.0\n\n'));
    s.on('data', (c: Buffer) => {
      got += c.toString('latin1');
      if (got.includes('\n')) done(/^HTTP\/1\.[01] 200 Connected to Go RPC/.test(got));
    });
    s.on('error', () => done(false));
    s.on('end', () => done(false));
  });
}

/** A CNI error for a daemon that cannot be reached (code 11: try again once it runs). */
export function unreachable(socketPath: string, err: NodeJS.ErrnoException): CniError {
  const why =
    err.code === 'ENOENT'
      ? 'no such socket'
      : err.code === 'ECONNREFUSED'
        ? 'nothing listens on it'
        : (err.code ?? err.message);
  return new CniError(
    ErrorCode.TryAgainLater,
    `dhcp: cannot reach the DHCP daemon at ${socketPath} (${why})`,
    `${START_HINT}, or set ipam.daemonSocketPath to the socket it listens on`,
  );
}

/**
 * Sends one call to the daemon at `socketPath` and returns its reply body. Errors become CniErrors:
 * the daemon's own, code 11 when nothing listens, and a message naming the Go daemon when that is
 * what answers.
 */
export async function callDhcpDaemon(
  socketPath: string,
  op: DhcpOp,
  call: DhcpCall,
  signal?: AbortSignal,
): Promise<{ result?: Result }> {
  let reply: Reply;
  try {
    reply = await send(socketPath, 'POST', `/v1/${op}`, JSON.stringify(call), signal);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED' || err.code === 'ENOTSOCK')
      throw unreachable(socketPath, err);
    throw new CniError(
      ErrorCode.IOFailure,
      `dhcp: the call to the DHCP daemon at ${socketPath} failed: ${err.message}`,
      START_HINT,
    );
  }
  if (reply.contentType.startsWith('application/json')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(reply.body);
    } catch {
      parsed = undefined;
    }
    if (parsed && typeof parsed === 'object') {
      if (reply.status === 200) return parsed as { result?: Result };
      const w = parsed as Partial<DhcpWireError>;
      if (typeof w.code === 'number' && typeof w.msg === 'string')
        throw new CniError(w.code, w.msg, w.details);
    }
  }
  if (await isGoRpcDaemon(socketPath)) {
    throw new CniError(
      ErrorCode.PluginNotAvailable,
      `dhcp: the daemon at ${socketPath} is the Go dhcp daemon (it speaks Go net/rpc), which cni-kit's dhcp plugin cannot talk to`,
      `use the Go dhcp plugin binary with it, or stop it and ${START_HINT}`,
    );
  }
  throw new CniError(
    ErrorCode.IOFailure,
    `dhcp: ${socketPath} answered HTTP ${reply.status} with something that is not the cni-kit DHCP daemon: ${JSON.stringify(reply.body.slice(0, 200))}`,
    START_HINT,
  );
}

/** GETs a daemon path; resolves with the status and body (status 0 when nothing answers). */
export async function getDhcpDaemon(
  socketPath: string,
  path: string,
): Promise<{ status: number; body: string }> {
  try {
    const r = await send(socketPath, 'GET', path, undefined);
    return { status: r.status, body: r.body };
  } catch {
    return { status: 0, body: '' };
  }
}
