// macvlan: gives the container its own MAC on a host (or in-container) master interface.
// master defaults to the interface of the default route, as in the reference.
import {
  CniError,
  checkInterfaceIps,
  checkRoutes,
  configureInterface,
  createSubLink,
  defaultRouteInterface,
  deleteLinkInNetns,
  ErrorCode,
  ipamAdd,
  ipamCheck,
  ipamDel,
  ipamGc,
  ipamStatus,
  ipsOfInterface,
  type MacvlanMode,
  type Netlink,
  optBool,
  optInt,
  optString,
  type PluginContext,
  type PluginSpec,
  type Result,
  requestedMac,
  requireLink,
} from 'cni-kit';

/** The macvlan plugin's own config fields. */
export interface MacvlanConf {
  master?: string;
  mode: MacvlanMode;
  mtu?: number;
  linkInContainer: boolean;
}

/** What the plugin needs from the outside world. */
export interface MacvlanDeps {
  netlink: Netlink;
}

const MODES = ['bridge', 'private', 'vepa', 'passthru'] as const;

function parseMacvlanConf(c: Record<string, unknown>): MacvlanConf {
  const conf: MacvlanConf = {
    mode: (optString(c, 'mode', MODES) ?? 'bridge') as MacvlanMode,
    linkInContainer: optBool(c, 'linkInContainer') ?? false,
  };
  const master = optString(c, 'master');
  if (master) conf.master = master;
  const mtu = optInt(c, 'mtu', 0, 65535, true);
  if (mtu !== undefined) conf.mtu = mtu;
  return conf;
}

/** Builds the macvlan plugin over a netlink backend. */
export function createMacvlanPlugin({ netlink }: MacvlanDeps): PluginSpec<MacvlanConf> {
  async function add(ctx: PluginContext<MacvlanConf>): Promise<Result> {
    const c = ctx.config;
    const mac = requestedMac(c, ctx.args);
    const where = c.linkInContainer ? ctx.netns : undefined;
    const master = await netlink.inNetns(where, async (ns) => {
      const name = c.master ?? (await defaultRouteInterface(ns));
      const link = await requireLink(ns, name, 'master');
      if (c.mtu && c.mtu > link.mtu) {
        throw new CniError(
          ErrorCode.InvalidNetworkConfig,
          `mtu: ${c.mtu} is larger than the MTU ${link.mtu} of master ${name}; use at most ${link.mtu}`,
        );
      }
      return name;
    });
    const link = await createSubLink(
      netlink,
      {
        kind: 'macvlan',
        name: ctx.ifname,
        parent: master,
        mode: c.mode,
        ...(mac ? { mac } : {}),
        ...(c.mtu ? { mtu: c.mtu } : {}),
      },
      { netns: ctx.netns, ifname: ctx.ifname, linkInContainer: c.linkInContainer },
    );
    let ipamDone = false;
    try {
      const result: Result = {
        cniVersion: '1.1.0',
        interfaces: [{ name: ctx.ifname, mac: link.mac, sandbox: ctx.netns }],
      };
      if (c.ipam) {
        const r = await ipamAdd(ctx, c);
        ipamDone = true;
        Object.assign(result, r, {
          interfaces: result.interfaces,
          ips: (r.ips ?? []).map((ip) => ({ ...ip, interface: 0 })),
        });
      }
      await netlink.inNetns(ctx.netns, async (ns) => {
        if (!c.ipam) return ns.setLink(ctx.ifname, { up: true });
        // Announce the new MAC so neighbours drop stale entries for a reused address.
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
        ctx.log(`macvlan: rollback after failed ADD: ${String(u)}`);
      }
      throw e;
    }
  }

  return {
    about: 'macvlan (cni-kit): a macvlan sub-interface per container',
    supportedVersions: ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'],
    parseConfig: (c) => parseMacvlanConf(c),
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
        if (l?.kind !== 'macvlan')
          throw new CniError(
            ErrorCode.Internal,
            `CHECK: ${ctx.ifname} in ${ctx.netns} is missing or not a macvlan`,
          );
        if (l.macvlanMode && l.macvlanMode !== ctx.config.mode)
          throw new CniError(
            ErrorCode.Internal,
            `CHECK: ${ctx.ifname} is in mode ${l.macvlanMode}, config says ${ctx.config.mode}`,
          );
        const want = prev.interfaces?.[idx]?.mac;
        if (want && want !== l.mac)
          throw new CniError(
            ErrorCode.Internal,
            `CHECK: ${ctx.ifname} has MAC ${l.mac}, prevResult says ${want}`,
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
