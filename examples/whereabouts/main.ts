// whereabouts-style cluster IPAM as a binary: whereabouts' config keys (range, ipRanges, exclude,
// network_name, enable_overlapping_ranges, datastore ...) completed from whereabouts' flat file
// (configuration_path, /etc/cni/net.d/whereabouts.d/whereabouts.conf ...), the Kubernetes (IPPool)
// store by default, an etcd store, and a file store for one node when asked for by name;
// idempotent ADD per attachment and per pod, GC and STATUS. One call per process: each call closes
// its store connection when done.
import { pluginMain } from 'cni-kit';
import { ipamPlugin, whereaboutsIpam } from 'cni-kit/ipam';
import { cachedKubeConnect, openKubeApi } from 'cni-kit/k8s';

pluginMain(
  ipamPlugin(whereaboutsIpam({ kube: cachedKubeConnect(openKubeApi) }), {
    about:
      'whereabouts IPAM (cni-kit): cluster-wide address allocation on a Kubernetes, etcd or (one node) file store',
  }),
);
