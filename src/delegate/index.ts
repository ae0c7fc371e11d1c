/**
 * Running other plugins (Go's pkg/invoke): find on CNI_PATH, exec with the reference's error and
 * version rules, and the `delegate*` calls a meta or main plugin makes.
 *
 * @module cni-kit/delegate
 */
export {
  DEFAULT_EXEC_TIMEOUT_MS,
  EXEC_TIMEOUT_ENV,
  type ExecCall,
  type ExecOptions,
  type ExecOutput,
  type ExitInfo,
  execPlugin,
  execPluginResult,
  execTimeout,
  PluginExecError,
} from './exec.js';
export { cniKitBinaryType, findInPath, lookPath, validatePluginType } from './find.js';
export {
  type DelegateConfig,
  type DelegateNoResult,
  type DelegateOptions,
  delegateAdd,
  delegateCheck,
  delegateDel,
  delegateGC,
  delegateStatus,
} from './invoke.js';
export { decodeVersionInfo, getVersionInfo, type PluginVersionInfo } from './version-info.js';
