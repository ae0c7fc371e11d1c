/**
 * What main plugins share: configure a container interface from an IPAM result and CHECK it, veth
 * pairs and sub-links (macvlan/ipvlan/vlan), IP masquerade and the MAC spoof check, and the
 * ADD/CHECK/DEL lifecycle with rollback. Built on netlink, ipam (through ctx.ipam) and the plugin
 * context.
 *
 * @module cni-kit/netsetup
 */
export { mtuField, requestedMac } from './conf.js';
export {
  type ConfigureOptions,
  checkInterfaceIps,
  checkRoutes,
  configureInterface,
  interfaceIndex,
  ipsOfInterface,
  routeSpec,
} from './configure.js';
export {
  type IpMasqOptions,
  type IptablesRunner,
  masqChainName,
  masqComment,
  setupIpMasq,
  spawnIptables,
  teardownIpMasq,
} from './ipmasq.js';
export {
  NFT_MASQ_TABLE,
  type NftMasqOptions,
  nftAvailable,
  nftMasqComment,
  nftMasqTag,
  nftMissing,
  setupNftMasq,
  teardownNftMasq,
} from './ipmasq-nft.js';
export {
  type AddRollback,
  type AttachmentCheck,
  addWithRollback,
  attachmentResult,
  checkAttachment,
  delAttachment,
  ipamPassthrough,
  requirePrevResult,
} from './lifecycle.js';
export {
  createSubLink,
  createVethPair,
  type DeleteLinkOptions,
  defaultRouteInterface,
  deleteLinkInNetns,
  inNetnsIfExists,
  randomVethName,
  requireLink,
  type SubLinkOptions,
  type VethOptions,
  type VethPair,
} from './links.js';
export {
  type SpoofCheckOptions,
  setupMacSpoofCheck,
  spoofChainName,
  teardownMacSpoofCheck,
} from './spoofchk.js';
export {
  addSubLinkAttachment,
  type MasterConf,
  masterFields,
  resolveMaster,
  type SubLinkAttachmentOptions,
  type SubLinkSpec,
} from './sublink.js';
