// multus thick mode in the cni-kit daemon: the daemon-side config of upstream's multus-daemon
// (its daemon-config.json keys), the multus config it writes for the node (`multusConfigFile:
// auto`: the cluster network's conf wrapped in a multus-shim config), and the informer caches of
// the node's pods and of the NADs that the multus plugin reads instead of the API. The keys of the
// daemon config are written over every multus call's config, as upstream's daemon does, so the
// shim's small config and the daemon's agree on kubeconfig, chrootDir and the rest.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomicSync } from '../fs/atomic.js';
import {
  type NodeCaches,
  openKubeTransport,
  registerSharedKubeCache,
  sharedCacheOf,
  startNodeCaches,
} from '../k8s/informer.js';
import { CniError, ErrorCode } from '../spec/errors.js';
import { versionAtLeast } from '../spec/version.js';
import type { DaemonLogger } from './log.js';

/** The multus network name upstream writes unless overrideNetworkName is set. */
export const MULTUS_DEFAULT_NETWORK_NAME = 'multus-cni-network';

/** The daemon config (upstream's daemon-config.json), as far as the daemon reads it. */
export interface ThickConfig {
  /** Every key of the file; written over each multus call's config. */
  raw: Record<string, unknown>;
  /** Where the host's root is mounted in the daemon's container; delegates run chrooted there. */
  chrootDir: string | undefined;
  /** Where `multus.sock` is served (upstream's default /run/multus/). */
  socketDir: string;
  metricsPort: number | undefined;
  /** `auto`, a file to install as the node's multus config, or undefined (write none). */
  multusConfigFile: string | undefined;
  /** Where the generated config goes (upstream: cniConfigDir). */
  cniConfigDir: string;
  /** Where the cluster network's config is looked for (default: cniConfigDir). */
  multusAutoconfigDir: string;
  /** The cniVersion of the generated config; with forceCNIVersion also the delegate's. */
  cniVersion: string | undefined;
  forceCNIVersion: boolean;
  /** Name the generated network after the cluster network instead of multus-cni-network. */
  overrideNetworkName: boolean;
  readinessindicatorfile: string | undefined;
  kubeconfig: string | undefined;
  /** The node whose pods are cached: `nodeName`, else $NODE_NAME, else the host name. */
  nodeName: string;
  /** Cache NADs of these namespaces only (default all). */
  nadNamespaces: string[] | undefined;
}

const bad = (field: string, value: unknown, fix: string) =>
  new CniError(ErrorCode.InvalidNetworkConfig, `daemon config: ${field}: ${JSON.stringify(value)} ${fix}`);

/** Parses a daemon config file's text; errors name the field, the value and the fix. */
export function parseThickConfig(
  text: string,
  env: Record<string, string | undefined> = process.env,
): ThickConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new CniError(
      ErrorCode.DecodingFailure,
      `daemon config: not JSON (${(e as Error).message}); write one JSON object like {"socketDir": "/run/multus/", "multusConfigFile": "auto"}`,
    );
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw bad('(top level)', raw, 'is not a JSON object; write {"socketDir": "/run/multus/", ...}');
  const o = raw as Record<string, unknown>;
  const str = (k: string): string | undefined => {
    const v = o[k];
    if (v === undefined || v === null || v === '') return undefined;
    if (typeof v !== 'string') throw bad(k, v, 'is not a string; give a path or name in quotes');
    return v;
  };
  const bool = (k: string): boolean => {
    const v = o[k];
    if (v === undefined || v === null) return false;
    if (typeof v !== 'boolean') throw bad(k, v, 'is not true or false');
    return v;
  };
  const port = o.metricsPort;
  if (
    port !== undefined &&
    port !== null &&
    (!Number.isInteger(port) || (port as number) < 0 || (port as number) > 65535)
  )
    throw bad('metricsPort', port, 'is not a TCP port; use an integer from 0 to 65535');
  const nadNs = o.nadNamespaces;
  if (nadNs !== undefined && (!Array.isArray(nadNs) || nadNs.some((n) => typeof n !== 'string' || n === '')))
    throw bad(
      'nadNamespaces',
      nadNs,
      'is not a list of namespace names; use e.g. ["default", "kube-system"]',
    );
  const cniConfigDir = str('cniConfigDir') ?? '/etc/cni/net.d';
  const cniVersion = str('cniVersion');
  if (cniVersion !== undefined && !/^\d+\.\d+\.\d+$/.test(cniVersion))
    throw bad('cniVersion', cniVersion, 'is not a CNI version; use e.g. "1.0.0"');
  const forceCNIVersion = bool('forceCNIVersion');
  if (forceCNIVersion && !cniVersion)
    throw bad('forceCNIVersion', true, 'needs "cniVersion" (the version to force on the cluster network)');
  return {
    raw: o,
    chrootDir: str('chrootDir'),
    socketDir: str('socketDir') ?? '/run/multus/',
    metricsPort: (port as number | undefined) ?? undefined,
    multusConfigFile: str('multusConfigFile'),
    cniConfigDir,
    multusAutoconfigDir: str('multusAutoconfigDir') ?? cniConfigDir,
    cniVersion,
    forceCNIVersion,
    overrideNetworkName: bool('overrideNetworkName'),
    readinessindicatorfile: str('readinessindicatorfile'),
    kubeconfig: str('kubeconfig'),
    nodeName: str('nodeName') ?? (env.NODE_NAME || hostname()),
    nadNamespaces: nadNs as string[] | undefined,
  };
}

/** The file the cluster network's config is taken from: the first .conf/.conflist by name. */
export function findClusterNetworkFile(dir: string): string | undefined {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return undefined;
  }
  const first = names.filter((n) => !n.startsWith('00-multus') && /\.(conf|conflist)$/.test(n)).sort()[0];
  return first === undefined ? undefined : join(dir, first);
}

/** Capabilities the cluster network enables (of its plugins, for a list), for the multus config. */
function capabilitiesOf(conf: Record<string, unknown>): Record<string, boolean> {
  const out: Record<string, boolean> = {};
  const plugins = Array.isArray(conf.plugins) ? (conf.plugins as unknown[]) : [conf];
  for (const p of plugins) {
    const caps = (p as { capabilities?: unknown } | null)?.capabilities;
    if (typeof caps !== 'object' || caps === null) continue;
    for (const [k, v] of Object.entries(caps)) if (v === true) out[k] = true;
  }
  return out;
}

/**
 * The multus config for the node: a `multus-shim` network whose one delegate is the cluster
 * network's config (file), with the daemon config's settings. Throws when the versions cannot work
 * together (a delegate older than 0.4.0 under a multus config that sends CHECK).
 */
export function generateMultusConfig(cfg: ThickConfig, file: string): Record<string, unknown> {
  let primary: Record<string, unknown>;
  try {
    primary = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `cluster network config ${file}: ${(e as Error).message}; fix the file or set "multusConfigFile" to a multus config of your own`,
    );
  }
  if (typeof primary !== 'object' || primary === null || Array.isArray(primary))
    throw new CniError(ErrorCode.InvalidNetworkConfig, `cluster network config ${file}: not a JSON object`);
  const delegate = cfg.forceCNIVersion ? { ...primary, cniVersion: cfg.cniVersion } : primary;
  const version = cfg.cniVersion ?? (typeof primary.cniVersion === 'string' ? primary.cniVersion : '1.0.0');
  const dv = typeof delegate.cniVersion === 'string' ? delegate.cniVersion : '';
  if (versionAtLeast(version, '0.4.0') && !versionAtLeast(dv || '0.1.0', '0.4.0')) {
    throw new CniError(
      ErrorCode.IncompatibleCNIVersion,
      `cluster network config ${file}: cniVersion ${JSON.stringify(dv)} is older than 0.4.0 while the multus config is ${version}; set "forceCNIVersion": true with "cniVersion", or a "cniVersion" below 0.4.0`,
    );
  }
  const r = cfg.raw;
  const pick = (k: string) => (r[k] === undefined || r[k] === '' ? {} : { [k]: r[k] });
  return {
    cniVersion: version,
    name:
      cfg.overrideNetworkName && typeof primary.name === 'string'
        ? primary.name
        : MULTUS_DEFAULT_NETWORK_NAME,
    type: 'multus-shim',
    ...(Object.keys(capabilitiesOf(primary)).length ? { capabilities: capabilitiesOf(primary) } : {}),
    ...(cfg.kubeconfig ? { kubeconfig: cfg.kubeconfig } : {}),
    daemonSocketDir: cfg.socketDir,
    ...pick('logLevel'),
    ...pick('logFile'),
    ...pick('logToStderr'),
    ...pick('binDir'),
    ...pick('cniDir'),
    ...pick('namespaceIsolation'),
    ...pick('globalNamespaces'),
    ...(cfg.readinessindicatorfile ? { readinessindicatorfile: cfg.readinessindicatorfile } : {}),
    delegates: [delegate],
  };
}

/** Thick multus running inside the daemon. */
export interface ThickMultus {
  readonly config: ThickConfig;
  /** The daemon config keys written over each multus call's config. */
  readonly overrides: Record<string, unknown>;
  /** `<socketDir>/multus.sock`. */
  readonly socket: string;
  /** The node's generated multus config, once written. */
  generatedFile(): string | undefined;
  /** Why the daemon is not ready yet, or undefined. */
  notReady(): string | undefined;
  readonly caches: NodeCaches | undefined;
  /** Prometheus text: cache lookups of multus calls, informer sync, lists, watch restarts. */
  metricsText(): string;
  close(): Promise<void>;
}

/** Options of startThickMultus. */
export interface ThickMultusOptions {
  logger?: DaemonLogger | undefined;
  /** How often the config folder is looked at while no cluster network config is there (ms; default 1000). */
  pollMs?: number | undefined;
  /** Informer settings (tests shorten the backoff). */
  backoff?: { initialMs: number; maxMs: number } | undefined;
  resyncMs?: number | undefined;
}

/**
 * Starts thick mode: writes the node's multus config (auto, or the given file), starts the pod and
 * NAD caches when the config names a kubeconfig, and offers them to the multus plugin in-process.
 */
export async function startThickMultus(
  cfg: ThickConfig,
  opts: ThickMultusOptions = {},
): Promise<ThickMultus> {
  const log = opts.logger;
  const target = join(cfg.cniConfigDir, '00-multus.conf');
  let generated: string | undefined;
  let written: string | undefined;
  let configProblem: string | undefined;
  let timer: NodeJS.Timeout | undefined;
  const write = (): boolean => {
    if (cfg.multusConfigFile === undefined) return true;
    try {
      let text: string;
      if (cfg.multusConfigFile === 'auto') {
        const file = findClusterNetworkFile(cfg.multusAutoconfigDir);
        if (!file) {
          configProblem = `no cluster network config (*.conf, *.conflist) in ${cfg.multusAutoconfigDir} yet`;
          return false;
        }
        text = `${JSON.stringify(generateMultusConfig(cfg, file), null, 2)}\n`;
      } else {
        text = readFileSync(cfg.multusConfigFile, 'utf8');
      }
      // Rewritten only when it changes: the runtime watches the folder and reloads on every write.
      if (text !== written) {
        writeFileAtomicSync(target, text);
        written = text;
        log?.log('info', { msg: 'multus config written', file: target });
      }
      generated = target;
      configProblem = undefined;
      return true;
    } catch (e) {
      configProblem = `cannot write the multus config ${target}: ${(e as Error).message}`;
      log?.log('error', { msg: configProblem });
      return false;
    }
  };
  write();
  // Looked at again every second: the cluster network's DaemonSet may write (or rewrite) its config
  // after this one starts, and the node's multus config follows it (upstream watches the folder).
  if (cfg.multusConfigFile !== undefined) {
    const poll = () => {
      timer = setTimeout(() => {
        write();
        poll();
      }, opts.pollMs ?? 1000);
      timer.unref();
    };
    poll();
  }
  let caches: NodeCaches | undefined;
  let unregister = () => {};
  let shared: ReturnType<typeof sharedCacheOf> | undefined;
  let transport: Awaited<ReturnType<typeof openKubeTransport>> | undefined;
  if (cfg.kubeconfig) {
    transport = await openKubeTransport(cfg.kubeconfig, { userAgent: 'cni-kit-daemon' });
    caches = startNodeCaches(transport, {
      nodeName: cfg.nodeName,
      nadNamespaces: cfg.nadNamespaces,
      backoff: opts.backoff,
      resyncMs: opts.resyncMs,
      onError: (e) => log?.log('warn', { msg: 'informer', error: e.message }),
    });
    shared = sharedCacheOf(caches, cfg.nadNamespaces);
    unregister = registerSharedKubeCache(cfg.kubeconfig, shared);
  } else {
    log?.log('warn', {
      msg: 'daemon config has no kubeconfig: no pod or NAD caches, multus reads the API per call',
    });
  }
  return {
    config: cfg,
    overrides: cfg.raw,
    socket: join(cfg.socketDir, 'multus.sock'),
    generatedFile: () => generated,
    caches,
    notReady() {
      if (caches && !caches.synced())
        return 'waiting for the pod and NetworkAttachmentDefinition caches to sync';
      const f = cfg.readinessindicatorfile;
      if (f && !existsSync(f)) return `readiness indicator file ${f} is missing`;
      return configProblem;
    },
    metricsText() {
      if (!caches || !shared) return '';
      const c = shared.counts;
      const lookups = 'cni_kit_multus_cache_lookups_total';
      const out = [
        `# HELP ${lookups} Pod and NAD reads of multus calls: from the informer caches (hit) or a GET (miss).`,
        `# TYPE ${lookups} counter`,
        `${lookups}{kind="pod",result="hit"} ${c.podHits}`,
        `${lookups}{kind="pod",result="miss"} ${c.podMisses}`,
        `${lookups}{kind="nad",result="hit"} ${c.nadHits}`,
        `${lookups}{kind="nad",result="miss"} ${c.nadMisses}`,
      ];
      const inf = [
        ['pods', caches.pods],
        ['network-attachment-definitions', caches.nads],
      ] as const;
      const family = (
        name: string,
        type: string,
        help: string,
        value: (i: (typeof inf)[number][1]) => number,
      ) => {
        out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
        for (const [resource, i] of inf) out.push(`${name}{resource="${resource}"} ${value(i)}`);
      };
      family('cni_kit_informer_synced', 'gauge', '1 once the informer has listed.', (i) =>
        i.synced() ? 1 : 0,
      );
      family(
        'cni_kit_informer_lists_total',
        'counter',
        'LISTs: the first, resyncs, and after 410 Expired.',
        (i) => i.stats.lists,
      );
      family(
        'cni_kit_informer_expired_total',
        'counter',
        'Watches answered 410 Expired (each followed by a LIST).',
        (i) => i.stats.expired,
      );
      family(
        'cni_kit_informer_failures_total',
        'counter',
        'Failed LISTs and broken watches (each followed by a backoff).',
        (i) => i.stats.failures,
      );
      return `${out.join('\n')}\n`;
    },
    async close() {
      clearTimeout(timer);
      unregister();
      await caches?.close();
      transport?.close();
    },
  };
}
