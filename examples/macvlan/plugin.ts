// macvlan: gives the container its own MAC on a host (or in-container) master interface.
// master defaults to the interface of the default route, as in the reference.
import { CniError, conf, ErrorCode, type Infer, type PluginSpec } from 'cni-kit';
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
  // 'source' parses so that DEL of such a config still succeeds; ADD refuses it (see below).
  mode: conf.enum(['bridge', 'private', 'vepa', 'passthru', 'source']).default('bridge'),
  /** IFLA_MACVLAN_BC_QUEUE_LEN: the broadcast/multicast queue length; 0 or unset keeps the kernel's 1000. */
  bcqueuelen: conf.int(0, 0xffffffff).optional(),
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
    config: macvlanConfig,
    async add(ctx) {
      const c = ctx.conf;
      if (c.mode === 'source') {
        // A source-mode macvlan receives only frames from a list of source MACs, which a CNI config
        // cannot give; the reference refuses the mode too.
        throw new CniError(
          ErrorCode.InvalidNetworkConfig,
          'mode: "source" is not supported: a source-mode macvlan only receives from a list of source MACs that the config cannot set, so the container would get no traffic',
          'use "bridge" (the default), "private", "vepa" or "passthru"',
        );
      }
      const mac = requestedMac(ctx.config, ctx.args);
      const parent = await resolveMaster(netlink, ctx.netns, c);
      const spec = {
        kind: 'macvlan',
        parent,
        mode: c.mode,
        ...(mac ? { mac } : {}),
        ...(c.mtu ? { mtu: c.mtu } : {}),
        ...(c.bcqueuelen ? { bcQueueLen: c.bcqueuelen } : {}),
      } as const;
      return addSubLinkAttachment(ctx, netlink, spec, { linkInContainer: c.linkInContainer, announce: true });
    },
    async check(ctx) {
      const expect = {
        macvlanMode: ctx.conf.mode,
        ...(ctx.conf.bcqueuelen ? { bcQueueLen: ctx.conf.bcqueuelen } : {}),
      };
      await checkAttachment(ctx, netlink, { kind: 'macvlan', expect });
    },
    del: (ctx) => delAttachment(ctx, netlink, { kind: 'macvlan' }),
    ...ipamPassthrough(),
  };
}
