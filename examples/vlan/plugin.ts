// vlan: an 802.1q sub-interface of `master` with `vlanId`, moved into the container. IPAM is
// mandatory, as in the reference.
import {
  addSubLinkAttachment,
  checkAttachment,
  delAttachment,
  ipamPassthrough,
  missingField,
  type Netlink,
  optInt,
  type PluginSpec,
  parseMasterConf,
  resolveMaster,
} from 'cni-kit';

/** The vlan plugin's own config fields. */
export interface VlanConf {
  master: string;
  vlanId: number;
  mtu?: number;
  linkInContainer: boolean;
}

/** What the plugin needs from the outside world. */
export interface VlanDeps {
  netlink: Netlink;
}

function parseVlanConf(c: Record<string, unknown>): VlanConf {
  const { master, ...rest } = parseMasterConf(c);
  if (!master) throw missingField('master', 'set it to the parent interface, e.g. "eth0"');
  const vlanId = optInt(c, 'vlanId', 0, 4094);
  if (vlanId === undefined) throw missingField('vlanId', 'set it to the 802.1q VLAN id (0-4094)');
  if (!c.ipam) throw missingField('ipam', 'vlan needs an IPAM plugin such as host-local or static');
  return { ...rest, master, vlanId };
}

/** Builds the vlan plugin over a netlink backend. */
export function createVlanPlugin({ netlink }: VlanDeps): PluginSpec<VlanConf> {
  return {
    about: 'vlan (cni-kit): an 802.1q VLAN sub-interface per container',
    supportedVersions: ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'],
    parseConfig: (c) => parseVlanConf(c),
    async add(ctx) {
      const c = ctx.config;
      const parent = await resolveMaster(netlink, ctx.netns, c);
      const spec = { kind: 'vlan', parent, vlanId: c.vlanId, ...(c.mtu ? { mtu: c.mtu } : {}) } as const;
      return addSubLinkAttachment(ctx, netlink, spec, { linkInContainer: c.linkInContainer });
    },
    async check(ctx) {
      // A VLAN link takes its master's MAC, so prevResult's MAC is not the plugin's to keep.
      await checkAttachment(ctx, netlink, {
        kind: 'vlan',
        mac: false,
        expect: { vlanId: ctx.config.vlanId },
      });
    },
    del: (ctx) => delAttachment(ctx, netlink),
    ...ipamPassthrough(),
  };
}
