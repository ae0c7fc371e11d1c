// macvlan: gives the container its own MAC on a host (or in-container) master interface.
// master defaults to the interface of the default route, as in the reference.
import { conf, type Infer, type PluginSpec } from 'cni-kit';
import type { Netlink } from 'cni-kit/netlink';
import {
  addSubLinkAttachment,
  checkAttachment,
  delAttachment,
  ipamPassthrough,
  masterFields,
  requestedMac,
  resolveMaster,
} from 'cni-kit/netsetup';

/** The macvlan plugin's own config fields. */
export const macvlanConfig = conf.object({
  ...masterFields,
  mode: conf.enum(['bridge', 'private', 'vepa', 'passthru']).default('bridge'),
});

/** The macvlan plugin's config, parsed. */
export type MacvlanConf = Infer<typeof macvlanConfig>;

/** What the plugin needs from the outside world. */
export interface MacvlanDeps {
  netlink: Netlink;
}

/** Builds the macvlan plugin over a netlink backend. */
export function createMacvlanPlugin({ netlink }: MacvlanDeps): PluginSpec<MacvlanConf> {
  return {
    about: 'macvlan (cni-kit): a macvlan sub-interface per container',
    supportedVersions: ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'],
    config: macvlanConfig,
    async add(ctx) {
      const c = ctx.conf;
      const mac = requestedMac(ctx.config, ctx.args);
      const parent = await resolveMaster(netlink, ctx.netns, c);
      const spec = {
        kind: 'macvlan',
        parent,
        mode: c.mode,
        ...(mac ? { mac } : {}),
        ...(c.mtu ? { mtu: c.mtu } : {}),
      } as const;
      return addSubLinkAttachment(ctx, netlink, spec, { linkInContainer: c.linkInContainer, announce: true });
    },
    async check(ctx) {
      await checkAttachment(ctx, netlink, { kind: 'macvlan', expect: { macvlanMode: ctx.conf.mode } });
    },
    del: (ctx) => delAttachment(ctx, netlink, { kind: 'macvlan' }),
    ...ipamPassthrough(),
  };
}
