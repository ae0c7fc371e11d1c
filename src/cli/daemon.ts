// `cni-kit daemon`: serve every plugin bundle of a folder from one process (daemon mode), or probe a
// running daemon's /healthz or /readyz (the DaemonSet's exec probes).
import { mkdirSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { dirname, join } from 'node:path';
import {
  DEFAULT_SOCKET,
  isLogLevel,
  jsonLogger,
  loadPluginBundles,
  parseThickConfig,
  startDaemon,
  startThickMultus,
  type ThickMultus,
} from '../daemon/index.js';
import { inClusterAvailable, writeInClusterKubeconfig } from '../k8s/in-cluster.js';
import { CliUsageError, parseVerbArgs, type Verb } from './args.js';
import { type DaemonNodeSlices, startDaemonNodeSlices } from './whereabouts-node-slices.js';
import { type DaemonReconciler, startDaemonReconciler } from './whereabouts-reconciler.js';

const HELP = `usage: cni-kit daemon [options]

Serves CNI calls for every cni-kit plugin bundle in the --plugins folders from one long-lived
process, over a Unix socket. The runtime execs the shim installed under each plugin's name
(cni-kit build --shim); the shim forwards the call here, and runs the plugin's bundle itself
(exec mode) whenever no daemon listens. Logs are JSON lines on stderr. SIGTERM stops accepting
calls, lets running ones finish and exits 0.

options:
      --plugins <dir>            a folder of plugin bundles (repeatable; default /opt/cni/bin/cni-kit)
      --socket <path>            the socket (default $CNI_KIT_DAEMON_SOCKET or ${DEFAULT_SOCKET})
      --multus                   also serve unmodified multus-shim: <multus-socket-dir>/multus.sock,
                                 and "type": "multus-shim" runs multus
      --multus-socket-dir <dir>  multus-shim's daemonSocketDir (default /run/multus/)
      --multus-config <file>     multus thick mode from upstream's daemon config (implies --multus):
                                 socketDir, chrootDir, metricsPort, multusConfigFile ("auto"
                                 writes <cniConfigDir>/00-multus.conf from the cluster network's
                                 config), cniVersion, forceCNIVersion, overrideNetworkName,
                                 readinessindicatorfile, kubeconfig (pod and NAD caches: /readyz
                                 is 500 until they have synced and the indicator file exists;
                                 without kubeconfig, in a pod: the in-cluster config);
                                 every key is written over each multus call's config
      --memory-limit-mib <n>     refuse calls with code 11 while the resident set is above this
                                 (default 256)
      --metrics-port <n>         serve Prometheus metrics on this TCP port (/metrics)
      --metrics-address <addr>   the metrics listener's address (default 127.0.0.1)
      --call-timeout-ms <n>      cancel a call after this long (default 110000)
      --max-concurrent-calls <n> calls running at once (default 64)
      --max-queued-calls <n>     calls waiting beyond that before refusing with code 11 (default 1024)
      --max-request-bytes <n>    largest request (default 4194304)
      --shutdown-timeout-ms <n>  how long SIGTERM waits for running calls (default: the call
                                 timeout + 5000, so that every call ends on its own)
      --whereabouts-reconciler <kubeconfig|in-cluster>
                                 also run the whereabouts reconciler: frees addresses whose pod is
                                 gone (this node's pod deletions, and a full pass on the schedule
                                 by whichever daemon holds the whereabouts-reconciler Lease)
      --whereabouts-reconciler-cron <expr>
                                 the full pass's five-field cron schedule, UTC (default "30 4 * * *")
      --whereabouts-node-slices <kubeconfig|in-cluster>
                                 also run the node-slice controller (node_slice_size): the daemon
                                 holding the whereabouts-node-slice-controller Lease watches Nodes
                                 and NADs and gives every node a slice; the others wait
      in-cluster: the pod's service account (KUBERNETES_SERVICE_HOST/PORT and the token and CA in
      /var/run/secrets/kubernetes.io/serviceaccount, re-read when kubelet rotates the token)
      --no-process-helper        start delegate processes from the daemon itself instead of from a
                                 small helper process (fork() of the big daemon is slower)
      --log-level <level>        error, warn, info (default) or debug (plugin log lines too)
      --probe <healthz|readyz>   ask a running daemon instead; exit 0 when it answers 200
  -h, --help                     this help`;

const int = (name: string, v: string | undefined, min = 0): number | undefined => {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min)
    throw new CliUsageError(`--${name}: ${JSON.stringify(v)} is not an integer >= ${min}`);
  return n;
};

/** GETs /<what> over the socket; resolves with the HTTP status (0 when nothing answers). */
export function probeDaemon(socket: string, what: 'healthz' | 'readyz', timeoutMs = 5_000): Promise<number> {
  return new Promise((resolve) => {
    const req = request(
      { socketPath: socket, path: `/${what}`, method: 'GET', timeout: timeoutMs },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
    req.end();
  });
}

/** Where the in-cluster kubeconfig is written: beside the daemon's socket (a 0700 folder). */
export function inClusterKubeconfigPath(socket: string): string {
  return join(dirname(socket), 'in-cluster.kubeconfig');
}

/**
 * The kubeconfig a flag names; `in-cluster` (or nothing) is the pod's service account, written out
 * as a kubeconfig beside the socket and refreshed every minute (a rotated CA), as client-go's
 * in-cluster config reads the files.
 */
function kubeconfigFor(flag: string, value: string, socket: string, timers: NodeJS.Timeout[]): string {
  if (value !== '' && value !== 'in-cluster') return value;
  const path = inClusterKubeconfigPath(socket);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  try {
    writeInClusterKubeconfig(path);
  } catch (e) {
    throw new CliUsageError(`${flag}: ${(e as Error).message}`);
  }
  if (timers.length === 0) {
    const t = setInterval(() => {
      try {
        writeInClusterKubeconfig(path);
      } catch {
        // Kept as it was: the token file is read per request and reports itself.
      }
    }, 60_000);
    t.unref();
    timers.push(t);
  }
  return path;
}

export const daemonVerb: Verb = {
  help: HELP,
  async run(argv) {
    const { values, positionals } = parseVerbArgs(argv, {
      plugins: { type: 'string', multiple: true },
      socket: { type: 'string' },
      multus: { type: 'boolean' },
      'multus-socket-dir': { type: 'string' },
      'multus-config': { type: 'string' },
      'memory-limit-mib': { type: 'string' },
      'metrics-port': { type: 'string' },
      'metrics-address': { type: 'string' },
      'call-timeout-ms': { type: 'string' },
      'max-concurrent-calls': { type: 'string' },
      'max-queued-calls': { type: 'string' },
      'max-request-bytes': { type: 'string' },
      'shutdown-timeout-ms': { type: 'string' },
      'log-level': { type: 'string' },
      'whereabouts-reconciler': { type: 'string' },
      'whereabouts-reconciler-cron': { type: 'string' },
      'whereabouts-node-slices': { type: 'string' },
      'no-process-helper': { type: 'boolean' },
      probe: { type: 'string' },
    });
    if (positionals.length > 0)
      throw new CliUsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
    const socket = values.socket ?? (process.env.CNI_KIT_DAEMON_SOCKET || DEFAULT_SOCKET);
    if (values.probe !== undefined) {
      if (values.probe !== 'healthz' && values.probe !== 'readyz') {
        throw new CliUsageError(`--probe: ${JSON.stringify(values.probe)} is not healthz or readyz`);
      }
      const status = await probeDaemon(socket, values.probe);
      process.stdout.write(`${values.probe}: ${status === 0 ? `no daemon answers at ${socket}` : status}\n`);
      return status === 200 ? 0 : 1;
    }
    const level = values['log-level'] ?? 'info';
    if (!isLogLevel(level))
      throw new CliUsageError(`--log-level: ${JSON.stringify(level)} is not error, warn, info or debug`);
    const logger = jsonLogger(level);
    const dirs = values.plugins?.length ? values.plugins : ['/opt/cni/bin/cni-kit'];
    const { plugins, skipped } = loadPluginBundles(dirs);
    for (const s of skipped) logger.log('warn', { msg: 'bundle not served', file: s.file, reason: s.reason });
    if (plugins.length === 0) {
      throw new Error(`no cni-kit plugin bundles in ${dirs.join(', ')}; build them with cni-kit build`);
    }
    const served = Object.fromEntries(plugins.map((p) => [p.type, p.plugin]));
    const timers: NodeJS.Timeout[] = [];
    let thick: ThickMultus | undefined;
    if (values['multus-config'] !== undefined) {
      const file = values['multus-config'];
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (e) {
        throw new CliUsageError(`--multus-config: cannot read ${file}: ${(e as Error).message}`);
      }
      const cfg = parseThickConfig(text);
      if (values['multus-socket-dir'] !== undefined) cfg.socketDir = values['multus-socket-dir'];
      // As upstream's daemon: no kubeconfig in its config means the pod's own service account.
      if (cfg.kubeconfig === undefined && inClusterAvailable())
        cfg.kubeconfig = kubeconfigFor('--multus-config', 'in-cluster', socket, timers);
      if (cfg.kubeconfig !== undefined) cfg.raw = { ...cfg.raw, kubeconfig: cfg.kubeconfig };
      thick = await startThickMultus(cfg, { logger });
    }
    const multus = values.multus === true || thick !== undefined;
    if (multus && !served.multus) {
      await thick?.close();
      throw new Error('--multus: no multus bundle in the --plugins folders');
    }
    const memoryMib = int('memory-limit-mib', values['memory-limit-mib'], 16);
    const daemon = await startDaemon({
      plugins: served,
      aliases: multus ? { 'multus-shim': 'multus' } : {},
      socket,
      extraSockets: thick
        ? [thick.socket]
        : multus
          ? [join(values['multus-socket-dir'] ?? '/run/multus/', 'multus.sock')]
          : [],
      ...(thick ? { configOverrides: { multus: thick.overrides }, notReady: () => thick.notReady() } : {}),
      ...(memoryMib === undefined ? {} : { memoryLimitBytes: memoryMib * 1024 * 1024 }),
      callTimeoutMs: int('call-timeout-ms', values['call-timeout-ms'], 1),
      maxConcurrentCalls: int('max-concurrent-calls', values['max-concurrent-calls'], 1),
      maxQueuedCalls: int('max-queued-calls', values['max-queued-calls']),
      maxRequestBytes: int('max-request-bytes', values['max-request-bytes'], 1024),
      shutdownTimeoutMs: int('shutdown-timeout-ms', values['shutdown-timeout-ms']),
      processHelper: values['no-process-helper'] !== true,
      metricsPort: int('metrics-port', values['metrics-port']) ?? thick?.config.metricsPort,
      metricsAddress: values['metrics-address'],
      logger,
    });
    if (thick) daemon.metrics.extra.push(() => thick.metricsText());
    let reconciler: DaemonReconciler | undefined;
    if (values['whereabouts-reconciler'] !== undefined) {
      try {
        reconciler = await startDaemonReconciler({
          kubeconfig: kubeconfigFor(
            '--whereabouts-reconciler',
            values['whereabouts-reconciler'],
            socket,
            timers,
          ),
          cronExpression: values['whereabouts-reconciler-cron'],
          log: (lvl, fields) => logger.log(lvl, fields),
        });
      } catch (e) {
        await daemon.close();
        await thick?.close();
        throw e;
      }
    }
    let nodeSlices: DaemonNodeSlices | undefined;
    if (values['whereabouts-node-slices'] !== undefined) {
      try {
        nodeSlices = await startDaemonNodeSlices({
          kubeconfig: kubeconfigFor(
            '--whereabouts-node-slices',
            values['whereabouts-node-slices'],
            socket,
            timers,
          ),
          log: (lvl, fields) => logger.log(lvl, fields),
        });
      } catch (e) {
        await reconciler?.close();
        await daemon.close();
        await thick?.close();
        throw e;
      }
    }
    // A plugin's stray rejected promise must not take every other call down with it.
    process.on('unhandledRejection', (e) =>
      logger.log('error', { msg: 'unhandled rejection', error: String(e) }),
    );
    await new Promise<void>((resolve) => {
      const stop = (sig: string) => {
        logger.log('info', { msg: `${sig} received` });
        daemon
          .close()
          .then(() => reconciler?.close())
          .then(() => nodeSlices?.close())
          .then(() => thick?.close())
          .finally(() => {
            for (const t of timers) clearInterval(t);
          })
          .then(resolve, resolve);
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    });
    return 0;
  },
};
