// ptp: a veth pair routed at L3. The container gets its address with only a /32 (/128) route to the
// gateway, which lives on the host end of the veth; the host routes the container address to it.
import {
  CniError,
  conf,
  ErrorCode,
  type Infer,
  type PluginContext,
  type PluginSpec,
  type Result,
} from 'cni-kit';
import type { Netlink } from 'cni-kit/netlink';
import {
  addWithRollback,
  attachmentResult,
  checkAttachment,
  configureInterface,
  createVethPair,
  delAttachment,
  deleteLinkInNetns,
  type IptablesRunner,
  ipamPassthrough,
  mtuField,
  setupIpMasq,
  teardownIpMasq,
} from 'cni-kit/netsetup';
import { formatSubnet, ipFamily, parseCIDR } from 'cni-kit/spec';

/** The ptp plugin's own config fields. */
export const ptpConfig = conf.object({
  ipMasq: conf.bool().default(false),
  mtu: mtuField,
  ipam: conf.json().fix('ptp needs an IPAM plugin such as host-local'),
});

/** The ptp plugin's config, parsed. */
export type PtpConf = Infer<typeof ptpConfig>;

/** What the plugin needs from the outside world. */
export interface PtpDeps {
  netlink: Netlink;
  iptables?: IptablesRunner;
}

/** Builds the ptp plugin over a netlink backend. */
export function createPtpPlugin(deps: PtpDeps): PluginSpec<PtpConf> {
  const { netlink } = deps;
  const masq = deps.iptables ? { runner: deps.iptables } : {};

  const add = (ctx: PluginContext<PtpConf>): Promise<Result> =>
    addWithRollback(ctx, 'ptp', async (tx) => {
      const c = ctx.conf;
      // The host end's entry is filled in once the veth exists; the IPs belong to the container end.
      const container = { name: ctx.ifname, sandbox: ctx.netns };
      const result = attachmentResult(ctx.config, await tx.ipamAdd(), [{ name: '' }, container], 1);
      const ips = result.ips ?? [];
      if (ips.length === 0) throw new CniError(ErrorCode.Internal, 'IPAM returned no address for ptp');
      for (const ip of ips) {
        if (!ip.gateway) {
          throw new CniError(
            ErrorCode.InvalidNetworkConfig,
            `ipam: the address ${ip.address} came without a gateway; ptp routes through it, so configure one`,
          );
        }
      }
      const veth = await createVethPair(netlink, {
        netns: ctx.netns,
        ifname: ctx.ifname,
        ...(c.mtu ? { mtu: c.mtu } : {}),
        before: (ns) => {
          for (const fam of new Set(ips.map((ip) => ipFamily(ip.address) ?? 4)))
            ns.setSysctl(fam === 4 ? 'net/ipv4/ip_forward' : 'net/ipv6/conf/all/forwarding', 1);
        },
        // The host end carries the gateway address and routes the container address to the veth.
        after: (ns, hostVeth) => {
          ns.setLink(hostVeth, { up: true });
          for (const ip of ips) {
            const bits = ipFamily(ip.address) === 6 ? 128 : 32;
            ns.addAddress(hostVeth, `${ip.gateway}/${bits}`, { existsOk: true, noDad: true });
            const dst = `${ip.address.split('/')[0]}/${bits}`;
            ns.addRoute({ dst, dev: hostVeth, scope: 'host' }, { existsOk: true });
          }
        },
      });
      tx.onRollback(() => deleteLinkInNetns(netlink, ctx.netns, ctx.ifname));
      const ct = await netlink.inNetns(ctx.netns, async (ns) => {
        await configureInterface(ns, ctx.ifname, result, { index: 1 });
        for (const ip of ips) {
          const { ip: addr, subnet } = parseCIDR(ip.address);
          const me = ip.address.split('/')[0] ?? '';
          const bits = addr.family === 4 ? 32 : 128;
          // Replace the on-link subnet route with a host route to the gateway and the subnet via it,
          // so every packet goes through the host end.
          ns.deleteRoute({ dst: formatSubnet(subnet), dev: ctx.ifname }, { missingOk: true });
          ns.addRoute(
            { dst: `${ip.gateway}/${bits}`, dev: ctx.ifname, scope: 'link', src: me },
            { existsOk: true },
          );
          if (subnet.prefix < bits)
            ns.addRoute(
              { dst: formatSubnet(subnet), gw: ip.gateway, dev: ctx.ifname, src: me },
              { existsOk: true },
            );
        }
        return ns.getLink(ctx.ifname);
      });
      result.interfaces = [
        { name: veth.host.name, mac: veth.host.mac },
        { name: ctx.ifname, mac: ct.mac, sandbox: ctx.netns },
      ];
      if (c.ipMasq) {
        const network = ctx.config.name;
        tx.onRollback(() => teardownIpMasq(network, ctx.containerId, masq));
        for (const ip of ips) await setupIpMasq(ip.address, network, ctx.containerId, masq);
      }
      return result;
    });

  return {
    about: 'ptp (cni-kit): a routed veth pair per container',
    config: ptpConfig,
    add,
    async check(ctx) {
      await checkAttachment(ctx, netlink, { kind: 'veth' });
    },
    async del(ctx) {
      await delAttachment(ctx, netlink, { kind: 'veth' });
      if (ctx.conf.ipMasq) await teardownIpMasq(ctx.config.name, ctx.containerId, masq);
    },
    ...ipamPassthrough(),
  };
}
