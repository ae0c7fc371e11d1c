/**
 * The plugin kit. What a plugin author needs to write, run and test a CNI plugin; every layer has
 * its own subpath for the rest (cni-kit/spec, /netlink, /ipam, /netsetup, /delegate, /runtime,
 * /k8s). Loading this entry loads no runtime, Kubernetes, whereabouts or etcd code.
 *
 * @module cni-kit
 */
export { hostedPlugin, ipamFactory, pluginMain, runPlugin } from './kit.js';
export type {
  CallInfo,
  GcContext,
  IpamClient,
  IpamFactory,
  PluginContext,
  PluginHandlers,
  PluginOptions,
  PluginSpec,
} from './plugin/context.js';
export type { HostedPlugin } from './plugin/host.js';
export { DEFAULT_SUPPORTED_VERSIONS, type PluginInput, type PluginOutcome } from './plugin/run.js';
export { type CniArgs, cniArgsGet, formatPodRef, type PodRef, podRef } from './spec/args.js';
export type { Command, Env, HandlerCommand } from './spec/call.js';
export type { Attachment, IpamConf, NetConf, PluginConf } from './spec/config.js';
export { CniError, type CniErrorJson, ErrorCode, type ErrorCodeValue } from './spec/errors.js';
export { convertResult, parseResult, toCurrentResult, validateResult } from './spec/result/convert.js';
export type {
  AddResult,
  AnyResult,
  DNS,
  Interface,
  IPConfig,
  Result,
  Result020,
  Result040,
  Route,
} from './spec/result/types.js';
export type { CapabilityArgs, RuntimeConfig } from './spec/runtime-config.js';
export { conf, type Infer, type InferShape, Schema } from './spec/schema.js';
export { ALL_VERSIONS, CURRENT_VERSION, type SpecVersion, versionsFrom } from './spec/version.js';
