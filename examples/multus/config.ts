// The multus NetConf (thin mode): the reference's fields, defaults and load errors.
import { CniError, ErrorCode, type NetConf } from 'cni-kit';

/** Parsed multus configuration with defaults applied. */
export interface MultusConf {
  kubeconfig?: string;
  clusterNetwork?: string;
  defaultNetworks: string[];
  /** Inline delegate configs (conf or conflist objects); [0] is the cluster network. */
  delegates: Array<Record<string, unknown>>;
  confDir: string;
  cniDir: string;
  binDir: string;
  logFile?: string;
  logLevel: 'debug' | 'verbose' | 'error' | 'panic';
  logToStderr: boolean;
  namespaceIsolation: boolean;
  /** Namespaces whose NADs any pod may use when isolation is on. */
  globalNamespaces: string[];
  systemNamespaces: string[];
  multusNamespace: string;
  readinessindicatorfile: string;
  retryDeleteOnError: boolean;
}

const LEVELS = ['debug', 'verbose', 'error', 'panic'] as const;

function bad(field: string, value: unknown, fix: string): CniError {
  return new CniError(
    ErrorCode.InvalidNetworkConfig,
    `multus config: ${field}: ${JSON.stringify(value)} ${fix}`,
  );
}

function str(conf: NetConf, field: string): string | undefined {
  const v = conf[field];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw bad(field, v, 'must be a string');
  return v;
}

function bool(conf: NetConf, field: string, dflt: boolean): boolean {
  const v = conf[field];
  if (v === undefined || v === null) return dflt;
  if (typeof v === 'boolean') return v;
  if (typeof v === 'string' && /^(true|false)$/i.test(v)) return v.toLowerCase() === 'true';
  throw bad(field, v, 'must be true or false');
}

function strList(conf: NetConf, field: string, dflt: string[]): string[] {
  const v = conf[field];
  if (v === undefined || v === null) return dflt;
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) {
    throw bad(field, v, 'must be a list of strings, e.g. ["kube-system"]');
  }
  return v as string[];
}

/** Reads and checks the multus fields of a config (used as pluginMain's parseConfig). */
export function parseMultusConf(conf: NetConf): MultusConf {
  const delegates = conf.delegates ?? [];
  if (
    !Array.isArray(delegates) ||
    delegates.some((d) => typeof d !== 'object' || d === null || Array.isArray(d))
  ) {
    throw bad('delegates', delegates, 'must be a list of CNI config objects');
  }
  const clusterNetwork = str(conf, 'clusterNetwork');
  const kubeconfig = str(conf, 'kubeconfig');
  if (!clusterNetwork && delegates.length === 0) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      'multus config: at least one delegate/clusterNetwork must be specified; set "clusterNetwork" or add the cluster network to "delegates"',
    );
  }
  const logLevel = str(conf, 'logLevel') ?? 'panic';
  if (!(LEVELS as readonly string[]).includes(logLevel)) {
    throw bad('logLevel', logLevel, `must be one of ${LEVELS.join(', ')}`);
  }
  const globals = str(conf, 'globalNamespaces');
  const out: MultusConf = {
    defaultNetworks: strList(conf, 'defaultNetworks', []),
    delegates: delegates as Array<Record<string, unknown>>,
    confDir: str(conf, 'confDir') ?? '/etc/cni/multus/net.d',
    cniDir: str(conf, 'cniDir') ?? '/var/lib/cni/multus',
    binDir: str(conf, 'binDir') ?? '/opt/cni/bin',
    logLevel: logLevel as MultusConf['logLevel'],
    logToStderr: bool(conf, 'logToStderr', true),
    namespaceIsolation: bool(conf, 'namespaceIsolation', false),
    // The reference takes a comma-separated string here, not a list; "default" only when unset.
    globalNamespaces: globals
      ? globals
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
      : ['default'],
    systemNamespaces: strList(conf, 'systemNamespaces', ['kube-system']),
    multusNamespace: str(conf, 'multusNamespace') ?? 'kube-system',
    readinessindicatorfile: str(conf, 'readinessindicatorfile') ?? '',
    retryDeleteOnError: bool(conf, 'retryDeleteOnError', false),
  };
  if (kubeconfig) out.kubeconfig = kubeconfig;
  if (clusterNetwork) out.clusterNetwork = clusterNetwork;
  const logFile = str(conf, 'logFile');
  if (logFile) out.logFile = logFile;
  return out;
}
