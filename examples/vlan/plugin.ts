// vlan: an 802.1q sub-interface of `master` with `vlanId`, moved into the container. IPAM is
// mandatory, as in the reference.
import {
  CniError,
  checkInterfaceIps,
  checkRoutes,
  configureInterface,
  createSubLink,
  deleteLinkInNetns,
  ErrorCode,
  ipamAdd,
  ipamCheck,
  ipamDel,
  ipamGc,
  ipamStatus,
  ipsOfInterface,
  missingField,
  type Netlink,
  optBool,
  optInt,
  optString,
  type PluginContext,
  type PluginSpec,
  type Result,
  requireLink,
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
  const master = optString(c, 'master');
  if (!master) throw missingField('master', 'set it to the parent interface, e.g. "eth0"');
  const vlanId = optInt(c, 'vlanId', 0, 4094);
  if (vlanId === undefined) throw missingField('vlanId', 'set it to the 802.1q VLAN id (0-4094)');
  if (!c.ipam) throw missingField('ipam', 'vlan needs an IPAM plugin such as host-local or static');
  const conf: VlanConf = { master, vlanId, linkInContainer: optBool(c, 'linkInContainer') ?? false };
  const mtu = optInt(c, 'mtu', 0, 65535, true);
  if (mtu !== undefined) conf.mtu = mtu;
  return conf;
}

/** Builds the vlan plugin over a netlink backend. */
export function createVlanPlugin({ netlink }: VlanDeps): PluginSpec<VlanConf> {
  async function add(ctx: PluginContext<VlanConf>): Promise<Result> {
    const c = ctx.config;
    await netlink.inNetns(c.linkInContainer ? ctx.netns : undefined, async (ns) => {
      const m = await requireLink(ns, c.master, 'master');
      if (c.mtu && c.mtu > m.mtu)
        throw new CniError(
          ErrorCode.InvalidNetworkConfig,
          `mtu: ${c.mtu} is larger than the MTU ${m.mtu} of master ${c.master}`,
        );
    });
    const link = await createSubLink(
      netlink,
      {
        kind: 'vlan',
        name: ctx.ifname,
        parent: c.master,
        vlanId: c.vlanId,
        ...(c.mtu ? { mtu: c.mtu } : {}),
      },
      { netns: ctx.netns, ifname: ctx.ifname, linkInContainer: c.linkInContainer },
    );
    let ipamDone = false;
    try {
      const r = await ipamAdd(ctx, c);
      ipamDone = true;
      const result: Result = {
        ...r,
        cniVersion: '1.1.0',
        interfaces: [{ name: ctx.ifname, mac: link.mac, sandbox: ctx.netns }],
        ips: (r.ips ?? []).map((ip) => ({ ...ip, interface: 0 })),
      };
      await netlink.inNetns(ctx.netns, (ns) => configureInterface(ns, ctx.ifname, result, { index: 0 }));
      if (c.dns && Object.keys(c.dns).length) result.dns = c.dns;
      return result;
    } catch (e) {
      try {
        await deleteLinkInNetns(netlink, ctx.netns, ctx.ifname);
        if (ipamDone) await ipamDel(ctx, c);
      } catch (u) {
        ctx.log(`vlan: rollback after failed ADD: ${String(u)}`);
      }
      throw e;
    }
  }

  return {
    about: 'vlan (cni-kit): an 802.1q VLAN sub-interface per container',
    supportedVersions: ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'],
    parseConfig: (c) => parseVlanConf(c),
    add,
    async check(ctx) {
      const prev = ctx.config.prevResult;
      if (!prev)
        throw new CniError(
          ErrorCode.InvalidNetworkConfig,
          'prevResult: missing; CHECK needs the result of ADD',
        );
      await ipamCheck(ctx, ctx.config);
      const idx = (prev.interfaces ?? []).findIndex((i) => i.name === ctx.ifname && i.sandbox === ctx.netns);
      if (idx < 0)
        throw new CniError(
          ErrorCode.InvalidNetworkConfig,
          `prevResult: no interface ${ctx.ifname} in ${ctx.netns}`,
        );
      await netlink.inNetns(ctx.netns, async (ns) => {
        const l = await ns.findLink(ctx.ifname);
        if (l?.kind !== 'vlan')
          throw new CniError(
            ErrorCode.Internal,
            `CHECK: ${ctx.ifname} in ${ctx.netns} is missing or not a vlan`,
          );
        if (l.vlanId !== undefined && l.vlanId !== ctx.config.vlanId)
          throw new CniError(
            ErrorCode.Internal,
            `CHECK: ${ctx.ifname} has VLAN id ${l.vlanId}, config says ${ctx.config.vlanId}`,
          );
        const ips = ipsOfInterface(prev, idx);
        await checkInterfaceIps(ns, ctx.ifname, ips);
        await checkRoutes(ns, prev.routes ?? [], ips);
      });
    },
    async del(ctx) {
      await ipamDel(ctx, ctx.config);
      await deleteLinkInNetns(netlink, ctx.netns, ctx.ifname);
    },
    async gc(ctx) {
      await ipamGc(ctx, ctx.config, ctx.validAttachments);
    },
    async status(ctx) {
      await ipamStatus(ctx, ctx.config);
    },
  };
}
