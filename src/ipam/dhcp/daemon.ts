// The DHCP daemon: holds one lease per attachment (keyed containerID/netName/ifName, as the
// reference), serves the plugin's calls over a Unix socket and keeps the leases alive between
// them. Calls for one key run one at a time; different keys run concurrently.

import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, type Server } from 'node:net';
import { dirname, isAbsolute } from 'node:path';
import { CniError, ErrorCode } from '../../spec/errors.js';
import type { Result } from '../../spec/result/types.js';
import {
  type Clock,
  DEFAULT_TIMING,
  DhcpLease,
  type LeaseInfo,
  type LeaseLog,
  type LeaseTiming,
  realClock,
} from './lease.js';
import { type DhcpNet, LinkGoneError } from './link.js';
import { clientId, clientIdOption, DEFAULT_DHCP_SOCKET, leaseOptions, parseDhcpConfig } from './options.js';
import type { DhcpCall, DhcpOp, DhcpWireError } from './wire.js';

/** How to run the daemon. */
export interface DhcpDaemonOptions {
  /** The socket (default /run/cni/dhcp.sock), under `hostPrefix`. */
  socketPath?: string | undefined;
  /** Prefix of the host's root where the daemon runs in a container (the reference's -hostprefix): applies to the socket and to netns paths. */
  hostPrefix?: string | undefined;
  /** Absolute path to write the daemon's pid to (removed on close). */
  pidfile?: string | undefined;
  timing?: Partial<LeaseTiming> | undefined;
  /** The host side; default AF_PACKET sockets through the FFI (`packetNet`). */
  net: DhcpNet;
  clock?: Clock | undefined;
  log?: LeaseLog | undefined;
  random?: (() => number) | undefined;
}

/** A running daemon. */
export interface DhcpDaemon {
  /** The socket it listens on. */
  readonly socketPath: string;
  /** The leases held now. */
  leases(): LeaseInfo[];
  /** Stops serving and stops every lease's upkeep (without releasing them, as the reference exits), removes socket and pidfile. */
  close(): Promise<void>;
}

/** JSON lines on stderr: what `cni-kit dhcp-daemon` logs. */
export function stderrLeaseLog(): LeaseLog {
  return (level, msg, fields) => {
    process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields })}\n`);
  };
}

class Daemon {
  readonly leases = new Map<string, DhcpLease>();
  private readonly queues = new Map<string, Promise<unknown>>();

  constructor(
    private readonly opts: DhcpDaemonOptions,
    private readonly timing: LeaseTiming,
    private readonly log: LeaseLog,
  ) {}

  /** Runs `fn` after every earlier call for `key` has finished. */
  private serial<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.queues.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.queues.set(key, tail);
    void tail.then(() => {
      if (this.queues.get(key) === tail) this.queues.delete(key);
    });
    return next;
  }

  private netnsPath(netns: string): string {
    return `${this.opts.hostPrefix ?? ''}${netns}`;
  }

  async call(op: DhcpOp, call: DhcpCall, signal: AbortSignal): Promise<{ result?: Result }> {
    let config: { name?: unknown; ipam?: unknown; cniVersion?: unknown };
    try {
      config = JSON.parse(call.config) as typeof config;
    } catch (e) {
      throw new CniError(
        ErrorCode.DecodingFailure,
        `dhcp: the network config is not JSON: ${(e as Error).message}`,
      );
    }
    const name = typeof config.name === 'string' ? config.name : '';
    if (op === 'gc') return this.gc(name, call);
    const key = clientId(call.containerId, name, call.ifname);
    // DEL needs no option: a config that does not parse cannot stop a lease from being released.
    const ipam = op === 'release' ? undefined : parseDhcpConfig(config);
    return this.serial(key, async () => {
      if (op === 'release' || !ipam) {
        const l = this.leases.get(key);
        if (l) {
          this.leases.delete(key);
          await l.release();
        }
        return {};
      }
      if (op === 'check') return this.check(key, call);
      const held = this.leases.get(key);
      if (held?.active) {
        this.log('info', 'lease already held', { key });
        return { result: { cniVersion: '1.1.0', ...held.result(ipam.priority) } };
      }
      if (!call.netns)
        throw new CniError(
          ErrorCode.InvalidEnvironmentVariables,
          'dhcp: CNI_NETNS is empty; ADD needs the container netns',
        );
      const options = leaseOptions(ipam, call.args);
      const lease = await DhcpLease.acquire(
        {
          key,
          netns: this.netnsPath(call.netns),
          ifname: call.ifname,
          params: { clientId: clientIdOption(key), options },
        },
        {
          net: this.opts.net,
          clock: this.opts.clock ?? realClock,
          timing: this.timing,
          log: this.log,
          ...(this.opts.random ? { random: this.opts.random } : {}),
        },
        signal,
        (ended) => {
          if (this.leases.get(key) === ended) this.leases.delete(key);
        },
      ).catch((e: unknown) => {
        if (e instanceof CniError) throw e;
        if (e instanceof LinkGoneError)
          throw new CniError(
            ErrorCode.InvalidNetNS,
            `dhcp: ${e.message}`,
            'the interface must exist in the container netns before IPAM runs',
          );
        throw new CniError(
          ErrorCode.TryAgainLater,
          `dhcp: no lease for ${call.ifname} in ${call.netns}: ${(e as Error).message}`,
          'check that a DHCP server answers on that network (and the daemon flags --timeout/--resend-timeout)',
        );
      });
      let result: Result;
      try {
        result = { cniVersion: '1.1.0', ...lease.result(ipam.priority) };
      } catch (e) {
        await lease.release();
        throw e;
      }
      this.leases.set(key, lease);
      return { result };
    });
  }

  private check(key: string, call: DhcpCall): { result?: Result } {
    const l = this.leases.get(key);
    if (!l?.active) {
      throw new CniError(
        ErrorCode.UnknownContainer,
        `dhcp: the daemon holds no lease for ${key}; it was never added, was released, or the daemon restarted`,
        'delete and add the attachment again',
      );
    }
    const ips = call.prevResult?.ips ?? [];
    if (ips.length > 0 && !ips.some((ip) => ip.address.split('/')[0] === l.address)) {
      throw new CniError(
        ErrorCode.Internal,
        `dhcp: the lease for ${key} holds ${l.address}, not ${ips.map((i) => i.address).join(', ')} from prevResult`,
      );
    }
    return {};
  }

  private async gc(name: string, call: DhcpCall): Promise<{ result?: Result }> {
    const keep = new Set((call.validAttachments ?? []).map((a) => clientId(a.containerId, name, a.ifname)));
    const prefix = `/${name}/`;
    for (const [key, l] of this.leases) {
      // The key is containerID/netName/ifName: GC of one network touches only its own leases.
      if (keep.has(key) || !key.includes(prefix)) continue;
      await this.serial(key, async () => {
        if (this.leases.get(key) !== l) return;
        this.leases.delete(key);
        this.log('info', 'GC releases a lease', { key });
        await l.release();
      });
    }
    return {};
  }
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const OPS = new Set<DhcpOp>(['allocate', 'check', 'release', 'gc']);

function readBody(req: IncomingMessage, limit = 4 << 20): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new CniError(ErrorCode.InvalidNetworkConfig, `dhcp: request over ${limit} bytes`));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** Resolves true when something accepts connections on the socket. */
function listening(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.on('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

/** Starts the DHCP daemon; refuses when another process already serves the socket. */
export async function startDhcpDaemon(opts: DhcpDaemonOptions): Promise<DhcpDaemon> {
  const socketPath = `${opts.hostPrefix ?? ''}${opts.socketPath ?? DEFAULT_DHCP_SOCKET}`;
  const log = opts.log ?? stderrLeaseLog();
  const timing = { ...DEFAULT_TIMING, ...opts.timing };
  if (opts.pidfile !== undefined && !isAbsolute(opts.pidfile))
    throw new Error(`pidfile: ${JSON.stringify(opts.pidfile)} is not an absolute path`);
  const d = new Daemon(opts, timing, log);
  mkdirSync(dirname(socketPath), { recursive: true, mode: 0o700 });
  if (await listening(socketPath))
    throw new Error(`${socketPath}: another daemon already listens on it; stop it first`);
  rmSync(socketPath, { force: true });
  const server: Server = createHttpServer(async (req, res) => {
    const url = req.url ?? '/';
    if (req.method === 'GET' && url === '/healthz')
      return reply(res, 200, { ok: true, leases: d.leases.size });
    if (req.method === 'GET' && url === '/v1/leases')
      return reply(
        res,
        200,
        [...d.leases.values()].map((l) => l.info()),
      );
    const op = url.startsWith('/v1/') ? (url.slice(4) as DhcpOp) : undefined;
    if (req.method !== 'POST' || !op || !OPS.has(op))
      return reply(res, 404, {
        code: ErrorCode.Internal,
        msg: `dhcp daemon: no ${req.method} ${url}`,
      } satisfies DhcpWireError);
    // A plugin that goes away (the runtime killed it) cancels its acquisition.
    const abort = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) abort.abort(new Error('the plugin went away'));
    });
    try {
      const call = JSON.parse(await readBody(req)) as DhcpCall;
      reply(res, 200, await d.call(op, call, abort.signal));
    } catch (e) {
      const err =
        e instanceof CniError ? e : new CniError(ErrorCode.Internal, `dhcp daemon: ${(e as Error).message}`);
      if (!(e instanceof CniError))
        log('error', 'call failed', { op, error: (e as Error).stack ?? String(e) });
      reply(res, err.code === ErrorCode.Internal ? 500 : 400, {
        code: err.code,
        msg: err.message,
        ...(err.details ? { details: err.details } : {}),
      });
    }
  });
  // A request's socket is kept only as long as the call runs.
  (server as unknown as { keepAliveTimeout: number }).keepAliveTimeout = 1000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  chmodSync(socketPath, 0o600);
  if (opts.pidfile) writeFileSync(opts.pidfile, `${process.pid}`);
  log('info', 'dhcp daemon listening', { socket: socketPath });
  let closing: Promise<void> | undefined;
  return {
    socketPath,
    leases: () => [...d.leases.values()].map((l) => l.info()),
    close() {
      closing ??= (async () => {
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
        });
        await Promise.all([...d.leases.values()].map((l) => l.halt()));
        d.leases.clear();
        rmSync(socketPath, { force: true });
        if (opts.pidfile) rmSync(opts.pidfile, { force: true });
      })();
      return closing;
    },
  };
}
