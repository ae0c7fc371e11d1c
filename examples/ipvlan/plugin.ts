// ipvlan: the container shares the master's MAC and gets its own IPs (l2, l3 or l3s). Chained
// without ipam, the master is the single interface of prevResult and the IPs come from it.
import {
  CniError,
  checkInterfaceIps,
  checkRoutes,
  configureInterface,
  createSubLink,
  defaultRouteInterface,
  deleteLinkInNetns,
  ErrorCode,
  type IpvlanMode,
  ipamAdd,
  ipamCheck,
  ipamDel,
  ipamGc,
  ipamStatus,
  ipsOfInterface,
  type Netlink,
  optBool,
  optInt,
  optString,
  type PluginContext,
  type PluginSpec,
  type Result,
  requireLink,
} from 'cni-kit';

/** The ipvlan plugin's own config fields. */
export interface IpvlanConf {
  master?: string;
  mode: IpvlanMode;
  mtu?: number;
  linkInContainer: boolean;
}

/** What the plugin needs from the outside world. */
export interface IpvlanDeps {
  netlink: Netlink;
}

function parseIpvlanConf(c: Record<string, unknown>): IpvlanConf {
  const conf: IpvlanConf = {
    mode: (optString(c, 'mode', ['l2', 'l3', 'l3s']) ?? 'l2') as IpvlanMode,
    linkInContainer: optBool(c, 'linkInContainer') ?? false,
  };
  const master = optString(c, 'master');
  if (master) conf.master = master;
  const mtu = optInt(c, 'mtu', 0, 65535, true);
  if (mtu !== undefined) conf.mtu = mtu;
  return conf;
}

/** The master when the config names none: prevResult's single named interface, else the default route's. */
async function pickMaster(netlink: Netlink, ctx: PluginContext<IpvlanConf>): Promise<string> {
  const c = ctx.config;
  if (c.master) return c.master;
  const prev = c.prevResult;
  if (!prev)
    return netlink.inNetns(c.linkInContainer ? ctx.netns : undefined, (ns) => defaultRouteInterface(ns));
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

/** Builds the ipvlan plugin over a netlink backend. */
export function createIpvlanPlugin({ netlink }: IpvlanDeps): PluginSpec<IpvlanConf> {
  async function add(ctx: PluginContext<IpvlanConf>): Promise<Result> {
    const c = ctx.config;
    const prev = c.prevResult;
    if (!c.ipam && !prev?.ips?.length) {
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        'ipam: missing, and there is no prevResult with IPs to use instead',
      );
    }
    const master = await pickMaster(netlink, ctx);
    await netlink.inNetns(c.linkInContainer ? ctx.netns : undefined, async (ns) => {
      const link = await requireLink(ns, master, 'master');
      if (c.mtu && c.mtu > link.mtu)
        throw new CniError(
          ErrorCode.InvalidNetworkConfig,
          `mtu: ${c.mtu} is larger than the MTU ${link.mtu} of master ${master}`,
        );
    });
    const link = await createSubLink(
      netlink,
      { kind: 'ipvlan', name: ctx.ifname, parent: master, mode: c.mode, ...(c.mtu ? { mtu: c.mtu } : {}) },
      { netns: ctx.netns, ifname: ctx.ifname, linkInContainer: c.linkInContainer },
    );
    let ipamDone = false;
    try {
      const r = c.ipam ? await ipamAdd(ctx, c) : (prev as Result);
      ipamDone = !!c.ipam;
      const result: Result = {
        ...r,
        cniVersion: '1.1.0',
        interfaces: [{ name: ctx.ifname, mac: link.mac, sandbox: ctx.netns }],
        ips: (r.ips ?? []).map((ip) => ({ ...ip, interface: 0 })),
      };
      await netlink.inNetns(ctx.netns, async (ns) => {
        ns.setSysctl(`net/ipv4/conf/${ctx.ifname}/arp_notify`, 1);
        if (result.ips?.some((ip) => ip.address.includes(':')))
          ns.setSysctl(`net/ipv6/conf/${ctx.ifname}/ndisc_notify`, 1);
        await configureInterface(ns, ctx.ifname, result, { index: 0 });
      });
      if (c.dns && Object.keys(c.dns).length) result.dns = c.dns;
      return result;
    } catch (e) {
      try {
        await deleteLinkInNetns(netlink, ctx.netns, ctx.ifname);
        if (ipamDone) await ipamDel(ctx, c);
      } catch (u) {
        ctx.log(`ipvlan: rollback after failed ADD: ${String(u)}`);
      }
      throw e;
    }
  }

  return {
    about: 'ipvlan (cni-kit): an ipvlan sub-interface per container',
    supportedVersions: ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'],
    parseConfig: (c) => parseIpvlanConf(c),
    add,
    async check(ctx) {
      const prev = ctx.config.prevResult;
      if (!prev)
        throw new CniError(
          ErrorCode.InvalidNetworkConfig,
          'prevResult: missing; CHECK needs the result of ADD',
        );
      if (ctx.config.ipam) await ipamCheck(ctx, ctx.config);
      const idx = (prev.interfaces ?? []).findIndex((i) => i.name === ctx.ifname && i.sandbox === ctx.netns);
      if (idx < 0)
        throw new CniError(
          ErrorCode.InvalidNetworkConfig,
          `prevResult: no interface ${ctx.ifname} in ${ctx.netns}`,
        );
      await netlink.inNetns(ctx.netns, async (ns) => {
        const l = await ns.findLink(ctx.ifname);
        if (l?.kind !== 'ipvlan')
          throw new CniError(
            ErrorCode.Internal,
            `CHECK: ${ctx.ifname} in ${ctx.netns} is missing or not an ipvlan`,
          );
        if (l.ipvlanMode && l.ipvlanMode !== ctx.config.mode)
          throw new CniError(
            ErrorCode.Internal,
            `CHECK: ${ctx.ifname} is in mode ${l.ipvlanMode}, config says ${ctx.config.mode}`,
          );
        const ips = ipsOfInterface(prev, idx);
        await checkInterfaceIps(ns, ctx.ifname, ips);
        await checkRoutes(ns, prev.routes ?? [], ips);
      });
    },
    async del(ctx) {
      if (ctx.config.ipam) await ipamDel(ctx, ctx.config);
      await deleteLinkInNetns(netlink, ctx.netns, ctx.ifname);
    },
    async gc(ctx) {
      if (ctx.config.ipam) await ipamGc(ctx, ctx.config, ctx.validAttachments);
    },
    async status(ctx) {
      if (ctx.config.ipam) await ipamStatus(ctx, ctx.config);
    },
  };
}
