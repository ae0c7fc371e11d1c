/**
 * What a Kubernetes-aware delegator (multus-style) needs: the selection annotation, network-status,
 * NetworkAttachmentDefinition configs and API access on @kubernetes/client-node, which is loaded
 * only when a connection is opened; device IDs from kubelet's PodResources API (on @grpc/grpc-js,
 * loaded likewise) and the device-info files of SR-IOV and other device plugins.
 *
 * @module cni-kit/k8s
 */
export {
  DEFAULT_NETWORK_ANNOTATION,
  formatNetworkSelection,
  isSimpleSelection,
  NETWORK_STATUS_ANNOTATION,
  NETWORKS_ANNOTATION,
  type NetworkSelectionElement,
  parseNetworkSelection,
  RESOURCE_NAME_ANNOTATION,
} from './annotations.js';
export {
  type CoreEvent,
  type CustomResources,
  isKubeNotFound,
  type KubeApi,
  KubeApiError,
  type KubeClient,
  type KubeClientOptions,
  type KubeObject,
  type NetworkAttachmentDefinition,
  type ObjectMeta,
  type ObjectReference,
  type Pod,
} from './client.js';
export {
  type CachedKubeConnect,
  type CachedKubeConnectOptions,
  cachedKubeConnect,
  closeKeptKubeConnections,
  connectKube,
  type KubeConnect,
  openKubeApi,
} from './connect.js';
export {
  cniDeviceInfoPath,
  copyDpDeviceInfo,
  DEVICE_INFO_DIR,
  DEVICE_INFO_VERSION,
  type DeviceInformation,
  dpDeviceInfoPath,
  isPciAddress,
  type MemifDeviceInfo,
  type PciDeviceInfo,
  parseDeviceInfo,
  pciDeviceInfo,
  readDeviceInfo,
  removeDeviceInfo,
  type VdpaDeviceInfo,
  type VhostUserDeviceInfo,
  writeDeviceInfo,
} from './device-info.js';
export { podEvent } from './events.js';
export {
  type InClusterOptions,
  inClusterAvailable,
  inClusterKubeconfig,
  SERVICE_ACCOUNT_DIR,
  writeInClusterKubeconfig,
} from './in-cluster.js';
export {
  cachedKubeClient,
  Informer,
  type InformerOptions,
  type InformerStats,
  type KubeTransport,
  type NodeCacheOptions,
  type NodeCaches,
  openKubeTransport,
  registerSharedKubeCache,
  SHARED_CACHE_PROTOCOL,
  SHARED_CACHES_KEY,
  type SharedKubeCache,
  sharedCacheOf,
  sharedKubeCache,
  startNodeCaches,
  type WatchEvent,
} from './informer.js';
export {
  daemonSetLeaseTiming,
  type LeaderElectionOptions,
  type LeaderElector,
  type Lease,
  type LeaseTimingMs,
  microTime,
  startLeaderElection,
} from './lease.js';
export {
  type AttachmentConfig,
  configFromNad,
  isConfList,
  type NetworkByName,
  normalizeDelegateConfig,
  pluginsOf,
  withCniArgs,
} from './nad.js';
export {
  buildNetworkStatuses,
  type DeviceInfo,
  formatNetworkStatus,
  type NetworkStatus,
  parseNetworkStatus,
} from './network-status.js';
export {
  type ContainerDevices,
  type ContainerMemory,
  type ContainerResources,
  connectPodResources,
  type DynamicResource,
  decodeGetResponse,
  decodeListResponse,
  encodeGetRequest,
  KUBELET_POD_RESOURCES_SOCKET,
  type PodResources,
  type PodResourcesClient,
  type PodResourcesOptions,
  podDeviceIds,
  type TopologyInfo,
} from './podresources.js';
