// tap: a persistent tap device in the container for a VM or userspace stack to open (KubeVirt's
// case), optionally a port of a bridge in the container, optionally addressed by IPAM. Its options
// are those of the reference: mac, mtu, multiQueue, owner, group, bridge and an SELinux context
// for the device (refused with code 7 where SELinux is not enabled).
import { existsSync } from 'node:fs';
import { CniError, conf, ErrorCode, type Infer, type PluginContext, type PluginSpec } from 'cni-kit';
import { isExists, type LinkSpec, type Netlink, NetlinkError } from 'cni-kit/netlink';
import {
  addWithRollback,
  attachmentResult,
  checkAttachment,
  configureInterface,
  delAttachment,
  deleteLinkInNetns,
  ipamPassthrough,
  mtuField,
  requireLink,
} from 'cni-kit/netsetup';

const uid = conf.int(0, 0xfffffffe);

/** The tap plugin's own config fields. */
export const tapConfig = conf.object({
  mac: conf.mac().optional(),
  /** The tap's MTU; 0 or unset keeps the kernel's 1500. A tap takes at most 65521. */
  mtu: mtuField,
  /** IFF_MULTI_QUEUE: the reader may attach several queues (one per vCPU). */
  multiQueue: conf.bool().default(false),
  /** uid allowed to open the device (TUNSETOWNER); unset: any process with CAP_NET_ADMIN. */
  owner: uid.optional(),
  /** gid allowed to open the device (TUNSETGROUP). */
  group: uid.optional(),
  /** SELinux context the device is created under (Go reads the key case-insensitively). */
  selinuxContext: conf.string().min(1).optional(),
  selinuxcontext: conf.string().min(1).optional(),
  /** A bridge in the container netns the tap becomes a port of. */
  bridge: conf.ifname().optional(),
  runtimeConfig: conf.object({ mac: conf.mac().optional() }).optional(),
});

/** The tap plugin's config, parsed. */
export type TapConf = Infer<typeof tapConfig>;

/** The tap device to create (what `createTap` receives). */
export type TapSpec = Extract<LinkSpec, { kind: 'tap' | 'tun' }> & { kind: 'tap' };

/** Creates a tap under an SELinux context in `netns` (see `labeledTapCreator`). */
export type LabeledTapCreator = (netns: string, spec: TapSpec, context: string) => Promise<void>;

/** What the plugin needs from the outside world. */
export interface TapDeps {
  netlink: Netlink;
  /** Whether SELinux is enabled on this host; default: selinuxfs is mounted at /sys/fs/selinux. */
  selinuxEnabled?: (() => boolean) | undefined;
  /** Creates the tap under an SELinux context; needed only when `selinuxContext` is set. */
  createLabeledTap?: LabeledTapCreator | undefined;
}

/** True when SELinux is enabled (its filesystem is mounted), as the reference's selinux library tests it. */
export function selinuxEnabledOnHost(): boolean {
  return existsSync('/sys/fs/selinux/enforce');
}

/**
 * The MAC in the reference's order: the config's `mac`, replaced by CNI_ARGS MAC, replaced by
 * runtimeConfig.mac.
 */
export function tapMac(c: TapConf, args: ReadonlyArray<readonly [string, string]>): string | undefined {
  const fromArgs = [...args].reverse().find(([k]) => k === 'MAC')?.[1];
  const viaArgs = fromArgs ? conf.mac().parse(fromArgs, { path: 'CNI_ARGS MAC' }) : undefined;
  return c.runtimeConfig?.mac ?? viaArgs ?? c.mac;
}

/** Builds the tap plugin over a netlink backend. */
export function createTapPlugin(deps: TapDeps): PluginSpec<TapConf> {
  const { netlink } = deps;
  const selinuxEnabled = deps.selinuxEnabled ?? selinuxEnabledOnHost;

  /** The SELinux context asked for, or code 7 where it cannot be honoured. */
  function labelOf(c: TapConf): string | undefined {
    const label = c.selinuxContext ?? c.selinuxcontext;
    if (label === undefined) return undefined;
    const field = c.selinuxContext !== undefined ? 'selinuxContext' : 'selinuxcontext';
    if (!selinuxEnabled())
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        `${field}: ${JSON.stringify(label)} cannot be applied: SELinux is not enabled on this host (no selinuxfs at /sys/fs/selinux)`,
        `remove ${field} from the config, or enable SELinux on the node`,
      );
    if (!deps.createLabeledTap)
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        `${field}: ${JSON.stringify(label)} cannot be applied: this build of the tap plugin has no way to create a labelled device`,
        `remove ${field}, or build the plugin with createLabeledTap`,
      );
    return label;
  }

  async function createTap(ctx: PluginContext<TapConf>, spec: TapSpec, label: string | undefined) {
    try {
      if (label !== undefined) await deps.createLabeledTap!(ctx.netns, spec, label);
      else await netlink.inNetns(ctx.netns, (ns) => ns.createLink(spec));
    } catch (e) {
      if (isExists(e))
        throw new CniError(
          ErrorCode.Internal,
          `interface "${ctx.ifname}" already exists in ${ctx.netns}`,
          'pick another CNI_IFNAME or delete the existing interface',
        );
      // The iproute2 engine reports a missing /dev/net/tun as `open: No such file or directory`.
      if (e instanceof NetlinkError && (e.errno === 'EOPNOTSUPP' || e.errno === 'ENOENT'))
        throw new CniError(
          ErrorCode.Internal,
          `this kernel cannot create tap devices (${e.message})`,
          'load the tun module (CONFIG_TUN) on the node so /dev/net/tun exists',
        );
      throw e;
    }
  }

  return {
    about: 'tap (cni-kit): a tap device in the container for a VM or userspace network stack',
    config: tapConfig,
    async add(ctx) {
      const c = ctx.conf;
      const label = labelOf(c);
      const mac = tapMac(c, ctx.args);
      if (c.mtu !== undefined && c.mtu > 65521)
        throw new CniError(
          ErrorCode.InvalidNetworkConfig,
          `mtu: ${c.mtu} is above 65521, the largest MTU a tap device takes; use at most 65521`,
        );
      const spec: TapSpec = {
        kind: 'tap',
        name: ctx.ifname,
        multiQueue: c.multiQueue,
        ...(c.mtu ? { mtu: c.mtu } : {}),
        ...(mac ? { mac } : {}),
        ...(c.owner !== undefined ? { owner: c.owner } : {}),
        ...(c.group !== undefined ? { group: c.group } : {}),
      };
      return addWithRollback(ctx, 'tap', async (tx) => {
        if (c.bridge) {
          const br = c.bridge;
          // Looked up first so a missing bridge fails before anything exists.
          await netlink.inNetns(ctx.netns, (ns) => requireLink(ns, br, 'bridge'));
        }
        await createTap(ctx, spec, label);
        tx.onRollback(() => deleteLinkInNetns(netlink, ctx.netns, ctx.ifname, { kind: 'tap' }));
        const link = await netlink.inNetns(ctx.netns, async (ns) => {
          if (c.bridge) ns.setLink(ctx.ifname, { master: c.bridge });
          ns.setLink(ctx.ifname, { up: true });
          return ns.getLink(ctx.ifname);
        });
        const ipam = await tx.ipamAdd();
        if (ipam && !ipam.ips?.length)
          throw new CniError(
            ErrorCode.Internal,
            `IPAM plugin ${ctx.ipam.type} returned no IPs for ${ctx.ifname}`,
          );
        const result = attachmentResult(
          ctx.config,
          ipam,
          [{ name: ctx.ifname, mac: link.mac, sandbox: ctx.netns }],
          0,
        );
        if (ipam) {
          // A tap has no carrier until its reader opens it, so IPv6 DAD cannot finish now: the
          // addresses settle once the VM attaches. The reference waits and fails instead.
          await netlink.inNetns(ctx.netns, (ns) =>
            configureInterface(ns, ctx.ifname, result, { index: 0, announce: true, skipDadWait: true }),
          );
        }
        return result;
      });
    },
    async check(ctx) {
      const c = ctx.conf;
      const link = await checkAttachment(ctx, netlink, { kind: 'tap' });
      const diffs: string[] = [];
      if (link.multiQueue !== undefined && link.multiQueue !== c.multiQueue)
        diffs.push(`multiQueue is ${link.multiQueue}, config says ${c.multiQueue}`);
      if (c.owner !== undefined && link.owner !== c.owner)
        diffs.push(`owner is ${link.owner ?? 'unset'}, config says ${c.owner}`);
      if (c.group !== undefined && link.group !== c.group)
        diffs.push(`group is ${link.group ?? 'unset'}, config says ${c.group}`);
      if (c.bridge && link.master !== c.bridge)
        diffs.push(`master is ${link.master ?? 'none'}, config says bridge ${c.bridge}`);
      if (diffs.length)
        throw new CniError(ErrorCode.Internal, `CHECK: ${ctx.ifname} in ${ctx.netns}: ${diffs.join('; ')}`);
    },
    del: (ctx) => delAttachment(ctx, netlink, { kind: 'tap' }),
    ...ipamPassthrough(),
  };
}
