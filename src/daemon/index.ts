// cni-kit/daemon: serve plugins from one long-lived process over a Unix socket (daemon mode). The
// `cni-kit daemon` command is this, over the bundles of a folder; a plugin author can serve their
// own plugins the same way: `startDaemon({ plugins: { mine: hostedPlugin(createMyPlugin(...)) } })`.
export type { HostedPlugin } from '../plugin/host.js';
export {
  type LoadedPlugin,
  type LoadReport,
  loadPluginBundle,
  loadPluginBundles,
  type SkippedBundle,
} from './loader.js';
export { KeyedMutex, Limiter } from './lock.js';
export { type DaemonLogger, isLogLevel, jsonLogger, type LogLevel, type LogRecord } from './log.js';
export { DaemonMetrics } from './metrics.js';
export { CALL_ID_HEADER, MULTUS_RESULT_VERSION, PLUGIN_HEADER, SHIM_HEADER } from './protocol.js';
export {
  type Daemon,
  type DaemonOptions,
  DEFAULT_MEMORY_LIMIT,
  DEFAULT_SOCKET,
  startDaemon,
} from './server.js';
export {
  findClusterNetworkFile,
  generateMultusConfig,
  MULTUS_DEFAULT_NETWORK_NAME,
  parseThickConfig,
  startThickMultus,
  type ThickConfig,
  type ThickMultus,
  type ThickMultusOptions,
} from './thick.js';
