// Public API of src/k8s: what a Kubernetes-aware delegator (multus-style) needs: the selection
// annotation, network-status, NetworkAttachmentDefinition resolution and a small API client.
// Nothing here loads a Kubernetes client library; YAML kubeconfigs load js-yaml on first use.
export * from './annotations.js';
export * from './client.js';
export * from './connect.js';
export * from './kubeconfig.js';
export * from './nad.js';
export * from './network-status.js';
