// Public API of src/netsetup: building blocks main plugins share (interface configuration from an
// IPAM result, veth pairs, IP masquerade, config field readers). Built on src/netlink and src/spec.
export * from './conf.js';
export * from './configure.js';
export * from './ipmasq.js';
export * from './links.js';
export * from './spoofchk.js';
