// ipvlan binary: the plugin logic over the real netlink backend. whereabouts (the usual cluster-wide
// IPAM for ipvlan) runs in-process too, next to the built-in host-local and static.
import { ipamFactory, pluginMain } from 'cni-kit';
import { builtinIpam, whereaboutsIpam } from 'cni-kit/ipam';
import { cachedKubeConnect, openKubeApi } from 'cni-kit/k8s';
import { linuxNetlink } from 'cni-kit/netlink';
import { createIpvlanPlugin } from './plugin.js';

pluginMain(createIpvlanPlugin({ netlink: linuxNetlink() }), {
  ipam: ipamFactory(
    builtinIpam().register('whereabouts', whereaboutsIpam({ kube: cachedKubeConnect(openKubeApi) })),
  ),
});
