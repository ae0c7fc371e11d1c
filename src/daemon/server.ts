// The daemon: one long-lived process serving CNI calls for many plugin types over a Unix socket
// (protocol.ts). What it adds over exec mode is ordering and bounds, not behaviour: a call runs
// exactly as the plugin binary would run it (runPlugin), while the daemon serialises calls for one
// container and interface, bounds how many run at once, times them out, and drains on shutdown.
// Over the 400-line guideline on purpose: admission (slots, queue, memory), per-container order,
// timeouts and the drain all act on the same per-call state inside one handler.
import { randomBytes } from 'node:crypto';
import { chmodSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { resolve } from 'node:path';
import { closeKeptKubeConnections } from '../k8s/connect.js';
import { addLocalPluginLookup, type HostedPlugin } from '../plugin/host.js';
import { delegationChain } from '../spec/call.js';
import { CniError, ErrorCode } from '../spec/errors.js';
import { readShimTarget } from './loader.js';
import { KeyedMutex, Limiter } from './lock.js';
import { type DaemonLogger, jsonLogger } from './log.js';
import { DaemonMetrics, serveMetrics } from './metrics.js';
import {
  CALL_ID_HEADER,
  type CniRequest,
  errorBody,
  errorCode,
  errorMessage,
  MULTUS_RESULT_VERSION,
  parseCniRequest,
  type Reply,
  RequestError,
  readBody,
  replyFor,
} from './protocol.js';
import { prepareSocketPath, refuseLiveSocket } from './socket.js';
import { createProcessHelper, registerProcessHelper } from './spawner.js';

/** Where cni-kit's shim looks for the daemon unless told otherwise. */
export const DEFAULT_SOCKET = '/run/cni-kit/daemon.sock';

/** Options of startDaemon. */
export interface DaemonOptions {
  /** The plugins served, by type (loadPluginBundles, or hostedPlugin(spec) from `cni-kit`). */
  plugins: Record<string, HostedPlugin>;
  /** Other names a config's `type` may use for a served plugin, e.g. `{"multus-shim": "multus"}`. */
  aliases?: Record<string, string> | undefined;
  /** The Unix socket (default /run/cni-kit/daemon.sock); its folder is made 0700, the socket 0600. */
  socket?: string | undefined;
  /** More sockets served alike (multus compatibility: `<daemonSocketDir>/multus.sock`). */
  extraSockets?: readonly string[] | undefined;
  /** A call's time limit; it is cancelled (ctx.signal) and answered with code 11 (default 110 s). */
  callTimeoutMs?: number | undefined;
  /** Calls running at once, nested calls not counted (default 64). */
  maxConcurrentCalls?: number | undefined;
  /** Calls waiting for a slot; past that a call is refused with code 11 (default 1024). */
  maxQueuedCalls?: number | undefined;
  /** Largest request body (default 4 MiB); larger ones are refused with 413. */
  maxRequestBytes?: number | undefined;
  /** How long close() waits for in-flight calls before cancelling them (default: the call timeout plus 5 s, so every call ends on its own terms). */
  shutdownTimeoutMs?: number | undefined;
  /** Serve Prometheus metrics at http://<metricsAddress>:<metricsPort>/metrics. */
  metricsPort?: number | undefined;
  /** The metrics listener's address (default 127.0.0.1). */
  metricsAddress?: string | undefined;
  /**
   * Run a delegate in-process when its binary is a shim that would forward to this daemon (default
   * true); false makes every nested call go through the shim and the socket.
   */
  inProcessDelegates?: boolean | undefined;
  /**
   * Start delegate processes from a small helper process rather than from the daemon (default
   * true): fork() of the daemon, which holds far more memory, costs ~4 ms per delegate on its event
   * loop (spawner.ts).
   */
  processHelper?: boolean | undefined;
  /** The structured logger (default: JSON lines on stderr at level info). */
  logger?: DaemonLogger | undefined;
  /**
   * What still keeps the daemon from being ready (a sentence), or undefined once it is: `/readyz`
   * answers 500 with the sentence until then (thick multus: informer caches synced and the
   * readiness-indicator file present). Calls are served meanwhile.
   */
  notReady?: (() => string | undefined) | undefined;
  /**
   * The memory the daemon may use (resident set, bytes; default 256 MiB). A call arriving while
   * the daemon is above it is refused with code 11 and a message saying so, never dropped.
   */
  memoryLimitBytes?: number | undefined;
  /** Measures the resident set (default process.memoryUsage.rss); tests stand in their own. */
  rss?: (() => number) | undefined;
  /**
   * How long a measurement of the resident set stands for (ms, default 50): a call arriving within
   * it reuses the last one (measuring costs about 0.03 ms, a few per cent of the CPU of a short
   * call), except near the limit (above 15/16 of it: a burst of 200 ADDs grew the resident set by under 10 MiB per 50 ms), where every call measures again.
   */
  rssSampleMs?: number | undefined;
  /**
   * Keys written over the config of every top-level call of a plugin type (thick multus: the
   * daemon config's keys win over the shim's, as upstream's daemon does).
   */
  configOverrides?: Record<string, Record<string, unknown>> | undefined;
}

/** The default of DaemonOptions.memoryLimitBytes. */
export const DEFAULT_MEMORY_LIMIT = 256 * 1024 * 1024;

/** A running daemon. */
export interface Daemon {
  /** The sockets listened on. */
  readonly sockets: readonly string[];
  /** The metrics listener's port, when one was asked for (port 0 picks a free one). */
  readonly metricsPort: number | undefined;
  readonly metrics: DaemonMetrics;
  /** Calls running now. */
  inflight(): number;
  /**
   * Stops accepting calls (the sockets go away, so shims fall back to exec mode), lets in-flight
   * calls finish for up to shutdownTimeoutMs, cancels what is left, and resolves when all is done.
   */
  close(): Promise<void>;
}

/** Grace after a call's signal is aborted before the reply stops waiting for it. */
const CANCEL_GRACE_MS = 5_000;
const COMMANDS = new Set(['ADD', 'DEL', 'CHECK', 'GC', 'STATUS', 'VERSION', '']);

/** Starts serving; resolves once every socket listens. */
export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  const logger = opts.logger ?? jsonLogger();
  const metrics = new DaemonMetrics();
  const callTimeoutMs = opts.callTimeoutMs ?? 110_000;
  const maxRequestBytes = opts.maxRequestBytes ?? 4 * 1024 * 1024;
  const shutdownTimeoutMs = opts.shutdownTimeoutMs ?? callTimeoutMs + CANCEL_GRACE_MS;
  const limiter = new Limiter(opts.maxConcurrentCalls ?? 64, opts.maxQueuedCalls ?? 1024);
  const memoryLimit = opts.memoryLimitBytes ?? DEFAULT_MEMORY_LIMIT;
  const measureRss = opts.rss ?? (() => process.memoryUsage.rss());
  const rssSampleMs = opts.rssSampleMs ?? 50;
  let rssAt = Number.NEGATIVE_INFINITY;
  let rssLast = 0;
  const rss = (): number => {
    const now = performance.now();
    // Far from the limit a burst cannot cross it within one sample's life (a call holds a few
    // KiB); near it, every call looks again, so refusals start as soon as it is crossed.
    if (now - rssAt >= rssSampleMs || rssLast > memoryLimit - memoryLimit / 16) {
      rssLast = measureRss();
      rssAt = now;
    }
    return rssLast;
  };
  const mutex = new KeyedMutex();
  const plugins = new Map(Object.entries(opts.plugins));
  const aliases = new Map(Object.entries(opts.aliases ?? {}));
  const boot = randomBytes(3).toString('hex');
  let seq = 0;
  let draining = false;
  const running = new Map<string, { abort: AbortController; done: Promise<unknown> }>();

  const send = (res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}) => {
    if (res.headersSent || res.destroyed) return;
    const bytes = Buffer.from(body);
    res.writeHead(status, {
      'Content-Type': 'application/json',
      'Content-Length': String(bytes.length),
      Connection: 'close',
      ...headers,
    });
    res.end(bytes);
  };

  const refuse = (res: ServerResponse, e: RequestError, cniVersion?: string) => {
    metrics.refuse(e.reason);
    logger.log('warn', {
      msg: 'request refused',
      reason: e.reason,
      status: e.status,
      error: e.error.message,
    });
    send(res, e.status, errorBody(e.error, cniVersion));
  };

  const pick = (r: CniRequest): { type: string; plugin: HostedPlugin } | RequestError => {
    // The plugin the runtime exec'd, as its shim names it: an IPAM plugin's stdin is its parent's
    // config, whose type is the parent's (bridge → host-local). multus-shim names none: its
    // config's type says (multus-shim, an alias of multus).
    const named = r.pluginHint ?? r.type;
    const type = named === undefined ? undefined : (aliases.get(named) ?? named);
    const plugin = type === undefined ? undefined : plugins.get(type);
    if (type !== undefined && plugin) return { type, plugin };
    const served = [...plugins.keys(), ...aliases.keys()].sort().join(', ');
    return new RequestError(
      400,
      new CniError(
        ErrorCode.InvalidNetworkConfig,
        named === undefined
          ? 'type: missing in the config, and the request does not name a plugin (X-Cni-Kit-Plugin)'
          : `type: ${JSON.stringify(named)} is not served by this daemon (it serves ${served || 'nothing'})`,
        'put the plugin bundle in the daemon’s --plugins folder and restart it, or stop the daemon to run plugins in exec mode',
      ),
      'unknown-type',
    );
  };

  /** A 503 with CNI error 11: the call may succeed when tried again. */
  const tryAgain = (
    reason: string,
    msg: string,
    fix = 'try again; a restarted daemon or exec mode serves the call',
  ) => new RequestError(503, new CniError(ErrorCode.TryAgainLater, msg, fix), reason);

  async function serveCni(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (draining) {
      refuse(res, tryAgain('shutting-down', 'the cni-kit daemon is shutting down'));
      return;
    }
    let body: Buffer;
    let r: CniRequest;
    try {
      body = await readBody(req, maxRequestBytes);
      r = parseCniRequest(body, req.headers);
    } catch (e) {
      if (e instanceof RequestError) refuse(res, e);
      else res.destroy();
      return;
    }
    const picked = pick(r);
    if (picked instanceof RequestError) {
      refuse(res, picked, r.cniVersion);
      return;
    }
    const command = r.env.CNI_COMMAND ?? '';
    const depth = delegationChain(r.env).length;
    const overrides = depth === 0 ? opts.configOverrides?.[picked.type] : undefined;
    if (overrides) {
      try {
        const conf = JSON.parse(Buffer.from(r.stdin).toString('utf8')) as Record<string, unknown>;
        r = { ...r, stdin: Buffer.from(JSON.stringify({ ...conf, ...overrides })) };
      } catch {
        // Not a JSON object: the plugin reports it in its own words.
      }
    }
    const containerId = r.env.CNI_CONTAINERID ?? '';
    const ifname = r.env.CNI_IFNAME ?? '';
    // Nested calls (a meta plugin's delegate, a plugin's IPAM through a shim) run while their
    // parent holds its slot and its lock: making them wait for either would deadlock.
    // The caller may leave (the runtime's timeout) at any point from here: a call that has not
    // started by then is not started at all, a running one sees ctx.signal aborted.
    const abort = new AbortController();
    const gone = () => {
      if (!res.writableFinished) abort.abort(new Error('the caller closed the connection'));
    };
    res.on('close', gone);
    let release: (() => void) | undefined;
    if (depth === 0) {
      // The bound on memory is the bound on admission: a call that would queue while the daemon is
      // over its limit is refused (code 11, the runtime retries), so a burst cannot grow the heap
      // without limit (upstream's OOM kills under bursts of pod creation).
      const used = rss();
      if (used > memoryLimit) {
        const mib = (n: number) => `${Math.round(n / 1048576)} MiB`;
        refuse(
          res,
          tryAgain(
            'memory',
            `the cni-kit daemon is over its memory limit: ${mib(used)} resident, limit ${mib(memoryLimit)} (${limiter.inFlight} calls running, ${limiter.queued} waiting)`,
            'try again shortly; raise --memory-limit-mib (and the container limit) if bursts this large are expected',
          ),
          r.cniVersion,
        );
        res.off('close', gone);
        return;
      }
      const slot = limiter.acquire();
      if (!slot) {
        refuse(
          res,
          tryAgain(
            'busy',
            `the cni-kit daemon is busy: ${limiter.inFlight} calls running and ${limiter.queued} waiting`,
            'try again later; raise --max-concurrent-calls or --max-queued-calls if bursts are expected',
          ),
          r.cniVersion,
        );
        res.off('close', gone);
        return;
      }
      release = await slot;
      // Waited for a slot while the daemon began shutting down, or while the caller left.
      if (draining || abort.signal.aborted || res.destroyed) {
        release();
        res.off('close', gone);
        refuse(
          res,
          draining
            ? tryAgain('shutting-down', 'the cni-kit daemon is shutting down')
            : tryAgain('caller-left', 'the caller left before the call started'),
          r.cniVersion,
        );
        return;
      }
    }
    const callId = `${boot}-${(++seq).toString(36)}`;
    const started = process.hrtime.bigint();
    const lines: string[] = [];
    const logLine = (line: string) => {
      if (lines.length < 200) lines.push(line);
      if (logger.enabled('debug'))
        logger.log('debug', { msg: line, callId, plugin: picked.type, source: 'plugin' });
    };
    const serialise = depth === 0 && containerId !== '' && ['ADD', 'DEL', 'CHECK'].includes(command);
    const exec = async () => {
      // Cancelled (caller gone, timed out) while it waited for the lock: the plugin never starts.
      if (abort.signal.aborted) {
        return {
          stdout: errorBody(
            new CniError(
              ErrorCode.TryAgainLater,
              `${picked.type} ${command}: cancelled before it started (${(abort.signal.reason as Error)?.message ?? 'aborted'})`,
              'an earlier call for the same container and interface was still running; try again',
            ),
            r.cniVersion,
          ),
          stderr: '',
          exitCode: 1,
        };
      }
      return picked.plugin.run({
        env: r.env,
        stdin: r.stdin,
        signal: abort.signal,
        log: logLine,
        ...(r.fromShim || command !== 'ADD' ? {} : { resultVersion: MULTUS_RESULT_VERSION }),
      });
    };
    metrics.inflight += 1;
    const done = (serialise ? mutex.run(`${containerId}\0${ifname}`, exec) : exec()).finally(() => {
      metrics.inflight -= 1;
      release?.();
      running.delete(callId);
    });
    running.set(callId, { abort, done });
    let timer: NodeJS.Timeout | undefined;
    let grace: NodeJS.Timeout | undefined;
    const timedOut = new Promise<{ stdout: string; exitCode: number; timedOut: true }>((resolve) => {
      timer = setTimeout(() => {
        abort.abort(new Error(`the call took longer than ${callTimeoutMs} ms`));
        grace = setTimeout(
          () =>
            resolve({
              stdout: errorBody(
                new CniError(
                  ErrorCode.TryAgainLater,
                  `${picked.type} ${command}: no answer within ${callTimeoutMs} ms; the call was cancelled`,
                  `call ${callId} in the daemon log; raise --call-timeout-ms if the plugin needs longer`,
                ),
                r.cniVersion,
              ),
              exitCode: 1,
              timedOut: true,
            }),
          CANCEL_GRACE_MS,
        );
      }, callTimeoutMs);
    });
    let outcome: { stdout: string; exitCode: number };
    try {
      outcome = await Promise.race([done, timedOut]);
    } catch (e) {
      // HostedPlugin.run never throws; a plugin built with a broken SDK could.
      outcome = {
        stdout: errorBody(new CniError(ErrorCode.Internal, `cni-kit daemon: ${String(e)}`), r.cniVersion),
        exitCode: 1,
      };
    } finally {
      clearTimeout(timer);
      clearTimeout(grace);
      res.off('close', gone);
    }
    let reply: Reply;
    try {
      reply = replyFor(r, command, outcome);
    } catch (e) {
      reply = {
        status: 400,
        body: errorBody(
          new CniError(ErrorCode.Internal, `cni-kit daemon: unreadable result: ${String(e)}`),
          r.cniVersion,
        ),
      };
    }
    send(res, reply.status, reply.body, { [CALL_ID_HEADER]: callId });
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const code = outcome.exitCode === 0 ? undefined : errorCode(outcome.stdout);
    metrics.observe(picked.type, COMMANDS.has(command) ? command || 'none' : 'other', seconds, code);
    logger.log(outcome.exitCode === 0 ? 'info' : 'error', {
      msg: outcome.exitCode === 0 ? 'call done' : 'call failed',
      callId,
      plugin: picked.type,
      command,
      containerId,
      ifname,
      ...(depth > 0 ? { depth } : {}),
      durationMs: Math.round(seconds * 1e6) / 1e3,
      ...(code === undefined
        ? {}
        : { code, error: errorMessage(outcome.stdout), pluginLog: lines.slice(-50) }),
      ...(r.fromShim ? {} : { client: 'multus-shim' }),
    });
  }

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz' || path === '/readyz') {
      if (req.method !== 'GET' && req.method !== 'POST') {
        send(res, 405, '{"error":"method not allowed"}');
        return;
      }
      const why = path === '/healthz' ? undefined : draining ? 'shutting down' : opts.notReady?.();
      send(res, why ? 500 : 200, JSON.stringify({ status: why ?? 'ok' }));
      return;
    }
    if (path !== '/cni') {
      send(res, 404, '{"error":"not found: the daemon serves POST /cni, GET /healthz, GET /readyz"}');
      return;
    }
    if (req.method !== 'POST') {
      send(res, 405, '{"error":"method not allowed: POST /cni"}');
      return;
    }
    serveCni(req, res).catch((e) => {
      logger.log('error', { msg: 'request handler failed', error: String(e) });
      send(res, 500, errorBody(new CniError(ErrorCode.Internal, `cni-kit daemon: ${String(e)}`), undefined));
    });
  };

  const socketPaths = [opts.socket ?? DEFAULT_SOCKET, ...(opts.extraSockets ?? [])];
  const servers: Server[] = [];
  try {
    for (const path of socketPaths) {
      await refuseLiveSocket(path);
      prepareSocketPath(path, logger);
      const server = createServer({ requestTimeout: 0, headersTimeout: 10_000 }, handler);
      // A connection limit beyond what the limiter queues: a burst of clients past it is refused by
      // the kernel's backlog instead of costing memory here.
      server.maxConnections = limiter.max + limiter.maxQueued + 256;
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => {
          server.off('error', reject);
          resolve();
        });
      });
      chmodSync(path, 0o600);
      servers.push(server);
    }
  } catch (e) {
    for (const s of servers) s.close();
    throw e;
  }
  const metricsServer =
    opts.metricsPort === undefined
      ? undefined
      : await serveMetrics(metrics, opts.metricsPort, opts.metricsAddress);
  const metricsPort = metricsServer?.port;
  logger.log('info', {
    msg: 'serving',
    sockets: socketPaths,
    plugins: [...plugins.keys()].sort(),
    ...(metricsPort === undefined ? {} : { metricsPort }),
  });

  // A delegate whose binary is a shim that would call this daemon runs in-process (no exec, no
  // socket round trip), as the nested call it is: past the lock and the limit its parent holds.
  // The shim's own choice of socket decides: CNI_KIT_DAEMON_SOCKET, its trailer's, the default.
  const ours = new Set(socketPaths.map((p) => resolve(p)));
  const removeLookup =
    opts.inProcessDelegates === false
      ? () => {}
      : addLocalPluginLookup((path, env) => {
          const shim = readShimTarget(path);
          if (!shim) return undefined;
          const socket = env.CNI_KIT_DAEMON_SOCKET || shim.socket || DEFAULT_SOCKET;
          if (!ours.has(resolve(socket))) return undefined;
          const type = aliases.get(shim.type) ?? shim.type;
          return plugins.get(type)?.run;
        });

  const helper = opts.processHelper === false ? undefined : createProcessHelper();
  const removeHelper = helper ? registerProcessHelper(helper) : () => {};

  let closing: Promise<void> | undefined;
  return {
    sockets: socketPaths,
    metricsPort,
    metrics,
    inflight: () => running.size,
    close() {
      closing ??= (async () => {
        draining = true;
        logger.log('info', { msg: 'shutting down', inflight: running.size });
        // Closing a listening Unix socket removes its file: new shims fall back to exec mode.
        const stopped = Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
        const all = () => Promise.allSettled([...running.values()].map((c) => c.done));
        const deadline = new Promise<'timeout'>((r) =>
          setTimeout(() => r('timeout'), shutdownTimeoutMs).unref(),
        );
        if ((await Promise.race([all(), deadline])) === 'timeout') {
          logger.log('warn', {
            msg: 'cancelling calls still running at the shutdown deadline',
            inflight: running.size,
          });
          for (const c of running.values()) c.abort.abort(new Error('the daemon is shutting down'));
          await Promise.race([all(), new Promise((r) => setTimeout(r, CANCEL_GRACE_MS).unref())]);
        }
        for (const s of servers) s.closeAllConnections();
        await stopped;
        await metricsServer?.close();
        removeLookup();
        removeHelper();
        helper?.close();
        // The API connections the served plugins kept (multus' clients, whereabouts' Kubernetes
        // store): their keep-alive sockets would otherwise outlive the daemon's sockets.
        closeKeptKubeConnections();
        logger.log('info', { msg: 'stopped' });
      })();
      return closing;
    },
  };
}
