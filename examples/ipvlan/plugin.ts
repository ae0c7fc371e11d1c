// ipvlan: the container shares the master's MAC and gets its own IPs (l2, l3 or l3s). Chained
// without ipam, the master is the single interface of prevResult and the IPs come from it.
import { CniError, conf, ErrorCode, type Infer, type PluginSpec, type Result } from 'cni-kit';
import type { Netlink } from 'cni-kit/netlink';
import {
  addSubLinkAttachment,
  checkAttachment,
  delAttachment,
  ipamPassthrough,
  masterFields,
  resolveMaster,
} from 'cni-kit/netsetup';
import { ipamConfigured } from 'cni-kit/spec';

/** The ipvlan plugin's own config fields. */
export const ipvlanConfig = conf.object({
  ...masterFields,
  mode: conf.enum(['l2', 'l3', 'l3s']).default('l2'),
});

/** The ipvlan plugin's config, parsed. */
export type IpvlanConf = Infer<typeof ipvlanConfig>;

/** What the plugin needs from the outside world. */
export interface IpvlanDeps {
  netlink: Netlink;
}

/** The master of a chained ipvlan that names none: prevResult's single named interface. */
function masterFromPrev(prev: Result): string {
  const named = (prev.interfaces ?? []).filter((i) => i.name);
  if (named.length !== 1 || !named[0]) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `master: not set, and prevResult has ${named.length} named interfaces instead of exactly one to use as master`,
      'set "master" explicitly',
    );
  }
  return named[0].name;
}

/**
 * CHECK's error when the container's ipvlan is no longer in the configured mode. The mode belongs to
 * the master (the kernel's ipvlan port), not to each link: creating an ipvlan with another mode on
 * the same master is not refused, it switches every ipvlan already on that master to the new mode.
 */
function modeSwitched(ifname: string, want: string, got: string, master: string | undefined): CniError {
  const on = master ? `master ${master}` : 'its master';
  return new CniError(
    ErrorCode.Internal,
    `mode: this network says "${want}", but ${ifname} is now an ipvlan in mode "${got}": the kernel keeps one ipvlan mode per master, and an ipvlan created later on ${on} with mode "${got}" switched every ipvlan on it`,
    `give every ipvlan network on ${on} the same mode (or each mode a master of its own), then re-create the attachments made with the other mode`,
  );
}

/** Builds the ipvlan plugin over a netlink backend. */
export function createIpvlanPlugin({ netlink }: IpvlanDeps): PluginSpec<IpvlanConf> {
  return {
    about: 'ipvlan (cni-kit): an ipvlan sub-interface per container',
    config: ipvlanConfig,
    async add(ctx) {
      const c = ctx.conf;
      const prev = ctx.config.prevResult;
      if (!ipamConfigured(ctx.config) && !prev?.ips?.length) {
        throw new CniError(
          ErrorCode.InvalidNetworkConfig,
          'ipam: missing, and there is no prevResult with IPs to use instead',
          'add an "ipam" block or chain ipvlan after a plugin that assigns IPs',
        );
      }
      const master = c.master ?? (prev ? masterFromPrev(prev) : undefined);
      const parent = await resolveMaster(netlink, ctx.netns, { ...c, ...(master ? { master } : {}) });
      const spec = { kind: 'ipvlan', parent, mode: c.mode, ...(c.mtu ? { mtu: c.mtu } : {}) } as const;
      return addSubLinkAttachment(ctx, netlink, spec, {
        linkInContainer: c.linkInContainer,
        announce: true,
        ...(prev ? { addresses: prev } : {}),
      });
    },
    async check(ctx) {
      // An ipvlan link shares its master's MAC, so prevResult's MAC is not the plugin's to keep.
      const link = await checkAttachment(ctx, netlink, { kind: 'ipvlan', mac: false });
      if (link.ipvlanMode !== undefined && link.ipvlanMode !== ctx.conf.mode)
        throw modeSwitched(ctx.ifname, ctx.conf.mode, link.ipvlanMode, ctx.conf.master);
    },
    del: (ctx) => delAttachment(ctx, netlink, { kind: 'ipvlan' }),
    ...ipamPassthrough(),
  };
}
