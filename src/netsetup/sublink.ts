// ADD for plugins whose container interface hangs off a master link (macvlan, ipvlan, vlan): the
// master check, the link, IPAM, the result and the interface configuration, with rollback. The
// plugins differ only in the link spec and in where the master and the addresses come from.
import type { LinkSpec, Netlink } from '../netlink/types.js';
import type { PluginContext } from '../plugin/context.js';
import { CniError, ErrorCode } from '../spec/errors.js';
import type { Result } from '../spec/result/types.js';
import { conf, type InferShape } from '../spec/schema.js';
import { mtuField } from './conf.js';
import { configureInterface } from './configure.js';
import { addWithRollback, attachmentResult } from './lifecycle.js';
import { createSubLink, defaultRouteInterface, deleteLinkInNetns, requireLink } from './links.js';

type SubLinkKinds = Extract<LinkSpec, { kind: 'macvlan' | 'ipvlan' | 'vlan' }>;

/** The link spec of a sub-link; `name` is CNI_IFNAME, filled in by `addSubLinkAttachment`. */
export type SubLinkSpec =
  | Omit<Extract<LinkSpec, { kind: 'macvlan' }>, 'name'>
  | Omit<Extract<LinkSpec, { kind: 'ipvlan' }>, 'name'>
  | Omit<Extract<LinkSpec, { kind: 'vlan' }>, 'name'>;

/** The master config fields macvlan, ipvlan and vlan share; spread into a plugin's `conf.object`. */
export const masterFields = {
  /** The parent interface; default: the interface of the default route. */
  master: conf.string().min(1).fix('set it to the parent interface, e.g. "eth0"').optional(),
  /** The MTU the sub-link asks for; it may not exceed the master's. */
  mtu: mtuField,
  /** The master lives in the container netns, not in the host. */
  linkInContainer: conf.bool().default(false),
};

/** The master config fields, parsed. */
export type MasterConf = Partial<InferShape<typeof masterFields>>;

/**
 * The master of a sub-link, looked up in the host (or in `netns` with `linkInContainer`): `master`
 * or else the default route's interface. Code 7 when it does not exist or its MTU is below `mtu`.
 */
export async function resolveMaster(netlink: Netlink, netns: string, conf: MasterConf): Promise<string> {
  return netlink.inNetns(conf.linkInContainer ? netns : undefined, async (ns) => {
    const name = conf.master ?? (await defaultRouteInterface(ns));
    const link = await requireLink(ns, name, 'master');
    if (conf.mtu && conf.mtu > link.mtu) {
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        `mtu: ${conf.mtu} is larger than the MTU ${link.mtu} of master ${name}; use at most ${link.mtu}`,
      );
    }
    return name;
  });
}

/** Options for `addSubLinkAttachment`. */
export interface SubLinkAttachmentOptions {
  /** The master lives in the container netns. */
  linkInContainer?: boolean | undefined;
  /** Addresses to use when the config has no `ipam` (ipvlan chained after another plugin). */
  addresses?: Result | undefined;
  /** Announce the addresses (arp_notify/ndisc_notify): the container has a MAC neighbours may not know. */
  announce?: boolean | undefined;
}

/**
 * ADD of a sub-link attachment: creates `spec` as CNI_IFNAME in the container, runs IPAM (or takes
 * `addresses`), configures the interface and returns the result with the interface at index 0.
 * Without addresses the link is just brought up (L2 only). Any failure deletes the link and
 * releases the IPAM addresses again.
 */
export function addSubLinkAttachment<C>(
  ctx: PluginContext<C>,
  netlink: Netlink,
  spec: SubLinkSpec,
  opts: SubLinkAttachmentOptions = {},
): Promise<Result> {
  const plugin = ctx.config.type ?? spec.kind;
  return addWithRollback(ctx, plugin, async (tx) => {
    const link = await createSubLink(netlink, { ...spec, name: ctx.ifname } as SubLinkKinds, {
      netns: ctx.netns,
      ifname: ctx.ifname,
      ...(opts.linkInContainer ? { linkInContainer: true } : {}),
    });
    tx.onRollback(() => deleteLinkInNetns(netlink, ctx.netns, ctx.ifname));
    const addresses = (await tx.ipamAdd()) ?? opts.addresses;
    const iface = { name: ctx.ifname, mac: link.mac, sandbox: ctx.netns };
    const result = attachmentResult(ctx.config, addresses, [iface], 0);
    await netlink.inNetns(ctx.netns, async (ns) => {
      if (!addresses) return ns.setLink(ctx.ifname, { up: true });
      await configureInterface(ns, ctx.ifname, result, { index: 0, announce: opts.announce ?? false });
    });
    return result;
  });
}
