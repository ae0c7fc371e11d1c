/**
 * The libcni equivalent for runtimes and meta plugins: run network configuration lists against
 * containers with libcni's chaining, capability and cache rules, and load config directories. The
 * file I/O lives here; parsing config bytes is cni-kit/spec's.
 *
 * @module cni-kit/runtime
 */
export { type CachedAttachment, DEFAULT_CACHE_DIR } from './cache.js';
export {
  CONF_EXTENSIONS,
  DEFAULT_CONF_DIR,
  type LoadedConf,
  loadConfFile,
  loadConfFiles,
  loadConfList,
  loadConfLists,
} from './conf-files.js';
export {
  type CallOptions,
  CniAggregateError,
  CniRuntime,
  type CniRuntimeOptions,
  type GCArgs,
  type NetworkInput,
  type NetworkListInput,
  type RuntimeConf,
} from './runtime.js';
