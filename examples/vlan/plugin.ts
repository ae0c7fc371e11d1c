// vlan: an 802.1q sub-interface of `master` with `vlanId`, moved into the container. IPAM is
// mandatory, as in the reference.
import { conf, type Infer, type PluginSpec } from 'cni-kit';
import type { Netlink } from 'cni-kit/netlink';
import {
  addSubLinkAttachment,
  checkAttachment,
  delAttachment,
  ipamPassthrough,
  masterFields,
  resolveMaster,
} from 'cni-kit/netsetup';

/** The vlan plugin's own config fields: unlike macvlan and ipvlan, master and ipam are required. */
export const vlanConfig = conf.object({
  ...masterFields,
  master: conf.string().min(1).fix('set it to the parent interface, e.g. "eth0"'),
  vlanId: conf.int(0, 4094).fix('set it to the 802.1q VLAN id (0-4094)'),
  ipam: conf.json().fix('vlan needs an IPAM plugin such as host-local or static'),
});

/** The vlan plugin's config, parsed. */
export type VlanConf = Infer<typeof vlanConfig>;

/** What the plugin needs from the outside world. */
export interface VlanDeps {
  netlink: Netlink;
}

/** Builds the vlan plugin over a netlink backend. */
export function createVlanPlugin({ netlink }: VlanDeps): PluginSpec<VlanConf> {
  return {
    about: 'vlan (cni-kit): an 802.1q VLAN sub-interface per container',
    config: vlanConfig,
    async add(ctx) {
      const c = ctx.conf;
      const parent = await resolveMaster(netlink, ctx.netns, c);
      const spec = { kind: 'vlan', parent, vlanId: c.vlanId, ...(c.mtu ? { mtu: c.mtu } : {}) } as const;
      return addSubLinkAttachment(ctx, netlink, spec, { linkInContainer: c.linkInContainer });
    },
    async check(ctx) {
      // A VLAN link takes its master's MAC, so prevResult's MAC is not the plugin's to keep.
      await checkAttachment(ctx, netlink, {
        kind: 'vlan',
        mac: false,
        expect: { vlanId: ctx.conf.vlanId },
      });
    },
    del: (ctx) => delAttachment(ctx, netlink, { kind: 'vlan' }),
    ...ipamPassthrough(),
  };
}
