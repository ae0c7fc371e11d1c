// cni-kit public API, grouped by layer (see docs/ and ../shared/DESIGN.md).

export * from './delegate/index.js';
export * from './ipam/index.js';
export * from './k8s/index.js';
export * from './netlink/index.js';
export * from './netsetup/index.js';
export * from './plugin/index.js';
export * from './spec/index.js';
