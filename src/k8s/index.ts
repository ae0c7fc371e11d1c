// Public API of src/k8s: what a Kubernetes-aware delegator (multus-style) needs: the selection
// annotation, network-status, NetworkAttachmentDefinition resolution and API access on
// @kubernetes/client-node, which is loaded only when a connection is opened.
export * from './annotations.js';
export * from './client.js';
export * from './connect.js';
export * from './nad.js';
export * from './network-status.js';
