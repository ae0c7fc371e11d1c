/**
 * The pure protocol model, no I/O: versions, the config envelope and lists, results and their
 * conversion, errors, CNI_ARGS and the call environment, identifiers, capabilities, the one IP/CIDR
 * module (addr) and the config-schema builder (conf).
 *
 * @module cni-kit/spec
 */
export {
  type CidrAddress,
  compareIP,
  familyBits,
  formatCIDR,
  formatIP,
  formatSubnet,
  type IP,
  type IPFamily,
  ipAdd,
  ipEquals,
  ipFamily,
  isIPv4Address,
  type MappedOption,
  parseCIDR,
  parseIP,
  parseSubnet,
  prefixMask,
  type Subnet,
  sameFamily,
  subnetBroadcast,
  subnetContains,
  subnetLast,
  subnetNetwork,
  subnetSize,
  subnetsOverlap,
  tryParseIP,
} from './addr.js';
export {
  type CniArgs,
  type CniArgsInput,
  cniArgsGet,
  formatCniArgs,
  formatPodRef,
  type PodRef,
  parseCniArgs,
  podRef,
} from './args.js';
export {
  buildCniEnv,
  buildDelegateEnv,
  type CallParams,
  type Command,
  type Env,
  type HandlerCommand,
  splitCniPath,
} from './call.js';
export {
  type Attachment,
  type AttachmentJson,
  attachmentsJson,
  confListFromConf,
  decodeJsonObject,
  type IpamConf,
  isKnownConfigVersion,
  type NetConf,
  type NetConfList,
  type PluginConf,
  parseNetConf,
  parseNetConfList,
  validAttachments,
} from './config.js';
export { CniError, type CniErrorJson, ErrorCode, type ErrorCodeValue, isCniErrorJson } from './errors.js';
export { isValidIfName, validateContainerId, validateIfName, validateNetworkName } from './identifiers.js';
export { convertResult, parseResult, toCurrentResult, validateResult } from './result/convert.js';
export type {
  AddResult,
  AnyResult,
  DNS,
  Interface,
  Interface040,
  IPBlock020,
  IPConfig,
  IPConfig040,
  Result,
  Result020,
  Result040,
  Route,
} from './result/types.js';
export {
  type BandwidthCapability,
  type CapabilityArgs,
  type DnsCapability,
  type IPRangeCapability,
  injectRuntimeConfig,
  normalizeDnsCapability,
  type PortMapping,
  type RuntimeConfig,
  WELL_KNOWN_CAPABILITIES,
  type WellKnownCapabilities,
} from './runtime-config.js';
export {
  ArraySchema,
  conf,
  type Infer,
  type InferShape,
  ObjectSchema,
  type ParseOptions,
  Schema,
  type SchemaIssue,
  type Shape,
  StringSchema,
} from './schema.js';
export {
  ALL_VERSIONS,
  CURRENT_VERSION,
  compareVersions,
  isSpecVersion,
  normalizeVersion,
  parseVersion,
  pickVersion,
  type ResultFamily,
  resultFamily,
  type SpecVersion,
  type VersionTriple,
  versionAtLeast,
  versionsFrom,
} from './version.js';
