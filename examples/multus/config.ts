// The multus NetConf (thin mode): the reference's fields, defaults and load errors, as a schema.
import { CniError, conf, ErrorCode, type Infer } from 'cni-kit';

const strings = (fix: string) => conf.array(conf.string()).fix(fix);

const LOG_OPTIONS = ['maxAge', 'maxSize', 'maxBackups', 'compress'];

/** multus reads "true"/"false" strings as booleans where the Go struct has a bool. */
const flag = conf.boolish();

/** The multus plugin's config, with the reference's defaults. */
export const multusConfig = conf
  .object({
    /** The wire config's version and capabilities (kept so delegates can use them). */
    cniVersion: conf.string(),
    runtimeConfig: conf.json().optional(),
    kubeconfig: conf.string().optional(),
    clusterNetwork: conf.string().optional(),
    defaultNetworks: strings('use a list of strings, e.g. ["macvlan-conf"]').default([]),
    /** Inline delegate configs (conf or conflist objects); [0] is the cluster network. */
    delegates: conf.array(conf.json()).fix('use a list of CNI config objects').default([]),
    confDir: conf.string().default('/etc/cni/multus/net.d'),
    cniDir: conf.string().default('/var/lib/cni/multus'),
    binDir: conf.string().default('/opt/cni/bin'),
    logFile: conf.string().optional(),
    /** Rotation of logFile (lumberjack's settings); multus's defaults apply when logFile is set. */
    logOptions: conf
      .object({
        maxAge: conf.int(0).fix('use a number of days (0 keeps old files regardless of age)').optional(),
        maxSize: conf.int(0).fix('use a number of megabytes').optional(),
        maxBackups: conf.int(0).fix('use a number of files (0 keeps them all)').optional(),
        compress: conf.bool().optional(),
      })
      .fix('use an object like {"maxSize": 100, "maxAge": 5, "maxBackups": 5, "compress": true}')
      .transform((o, path) => {
        for (const k of Object.keys(o)) {
          if (!LOG_OPTIONS.includes(k)) {
            throw new CniError(
              ErrorCode.InvalidNetworkConfig,
              `${path}: unknown field ${JSON.stringify(k)}; logOptions takes ${LOG_OPTIONS.join(', ')}`,
            );
          }
        }
        return o;
      })
      .optional(),
    /** multus's auxiliary chain from `<dir of clusterNetwork>/<name>/` (see plugin.ts). */
    auxiliaryCNIChainName: conf.string().optional(),
    logLevel: conf.enum(['debug', 'verbose', 'error', 'panic']).default('panic'),
    logToStderr: flag.default(true),
    namespaceIsolation: flag.default(false),
    /** The reference takes a comma-separated string here, not a list; "default" only when unset. */
    globalNamespaces: conf
      .string()
      .optional()
      .transform((v) =>
        v
          ? v
              .split(',')
              .map((s) => s.trim())
              .filter(Boolean)
          : ['default'],
      ),
    systemNamespaces: strings('use a list of strings, e.g. ["kube-system"]').default(['kube-system']),
    multusNamespace: conf.string().default('kube-system'),
    readinessindicatorfile: conf.string().default(''),
    /** Thick mode (from the daemon config): delegates are found and exec'd chrooted into this root. */
    chrootDir: conf.string().optional(),
    retryDeleteOnError: flag.default(false),
    /** kubelet's PodResources socket, for NADs with a resourceName (cni-kit's own; default kubelet's). */
    kubeletSocket: conf.string().optional(),
    /** The device-info spec's directory (cni-kit's own; default the spec's). */
    deviceInfoDir: conf.string().optional(),
  })
  .transform((c) => {
    if (!c.clusterNetwork && c.delegates.length === 0) {
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        'at least one delegate/clusterNetwork must be specified; set "clusterNetwork" or add the cluster network to "delegates"',
      );
    }
    return c;
  });

/** Parsed multus configuration with defaults applied. */
export type MultusConf = Infer<typeof multusConfig>;
