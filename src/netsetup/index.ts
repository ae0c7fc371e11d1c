// Public API of src/netsetup: building blocks main plugins share (interface configuration from an
// IPAM result, veth pairs, IP masquerade, config field readers, and the ADD/CHECK/GC/STATUS
// lifecycle with rollback). Built on src/netlink, src/ipam, src/plugin and src/spec.
export * from './conf.js';
export * from './configure.js';
export * from './ipmasq.js';
export * from './lifecycle.js';
export * from './links.js';
export * from './spoofchk.js';
export * from './sublink.js';
