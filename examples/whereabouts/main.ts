// whereabouts-style cluster IPAM as a binary: whereabouts' config keys (range, ipRanges, exclude,
// network_name, enable_overlapping_ranges, datastore ...), a file store for one node, an etcd store
// and a Kubernetes (IPPool) store for a cluster, idempotent ADD per attachment and per pod, GC and
// STATUS. One call per process: each call closes its store connection when done.
import { ALL_VERSIONS, pluginMain } from 'cni-kit';
import { ipamPlugin, whereaboutsIpam } from 'cni-kit/ipam';
import { openKubeApi } from 'cni-kit/k8s';

pluginMain(
  ipamPlugin(whereaboutsIpam({ kube: openKubeApi }), {
    about: 'whereabouts IPAM (cni-kit): cluster-wide address allocation on a file, etcd or Kubernetes store',
    supportedVersions: ALL_VERSIONS,
  }),
);
