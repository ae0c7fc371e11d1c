// bridge: connects a container to a host bridge through a veth pair, with IPAM, an optional gateway
// address on the bridge and IP masquerade. Config fields and result layout follow the reference
// plugin (interfaces: bridge, host veth, container veth; ips point at the container veth).
import {
  CniError,
  conf,
  ErrorCode,
  type Infer,
  type Interface,
  type PluginContext,
  type PluginSpec,
  type Result,
} from 'cni-kit';
import type { Address, Netlink, NetnsOps } from 'cni-kit/netlink';
import {
  addWithRollback,
  attachmentResult,
  checkAttachment,
  configureInterface,
  createVethPair,
  delAttachment,
  deleteLinkInNetns,
  type IptablesRunner,
  interfaceIndex,
  ipamPassthrough,
  mtuField,
  nftAvailable,
  nftMissing,
  requestedMac,
  requirePrevResult,
  setupIpMasq,
  setupMacSpoofCheck,
  setupNftMasq,
  teardownIpMasq,
  teardownMacSpoofCheck,
  teardownNftMasq,
} from 'cni-kit/netsetup';
import {
  formatCIDR,
  formatIP,
  ipAdd,
  ipamConfigured,
  ipFamily,
  parseCIDR,
  subnetNetwork,
  subnetsOverlap,
} from 'cni-kit/spec';
import {
  checkPortVlans,
  dropDefaultVlans,
  ensureVlanGateway,
  queuePortVlans,
  vlanFields,
  vlanGatewayName,
  wantsVlanFiltering,
} from './vlan.js';

/** The bridge plugin's own config fields, with the reference's defaults. */
export const bridgeConfig = conf
  .object({
    bridge: conf.ifname().default('cni0'),
    isGateway: conf.bool().default(false),
    isDefaultGateway: conf.bool().default(false),
    forceAddress: conf.bool().default(false),
    ipMasq: conf.bool().default(false),
    mtu: mtuField,
    hairpinMode: conf.bool().default(false),
    promiscMode: conf.bool().default(false),
    macspoofchk: conf.bool().default(false),
    /** Which firewall ipMasq writes its rules with, as the reference (plugins 1.5+). */
    ipMasqBackend: conf.enum(['iptables', 'nftables']).optional(),
    /** IPv6 duplicate address detection on the container's addresses (off by default, as the reference). */
    enabledad: conf.bool().default(false),
    /** Leave the container interface down (L2 only: refused together with ipam). */
    disableContainerInterface: conf.bool().default(false),
    /** Isolate the host veth as a bridge port (IFLA_BRPORT_ISOLATED): isolated ports only talk to non-isolated ones. */
    portIsolation: conf.bool().default(false),
    ...vlanFields,
  })
  .transform((c) => {
    // A default gateway must be a gateway, as in the reference.
    const out = { ...c, isGateway: c.isGateway || c.isDefaultGateway };
    // The reference only finds out when the kernel refuses the gateway link's name mid-ADD.
    if (out.vlan && out.isGateway && vlanGatewayName(out.bridge, out.vlan).length > 15)
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        `bridge: ${JSON.stringify(out.bridge)} with vlan ${out.vlan} needs a gateway interface named ${JSON.stringify(vlanGatewayName(out.bridge, out.vlan))}, longer than 15 characters`,
        `use a bridge name of at most ${14 - String(out.vlan).length} characters`,
      );
    return out;
  });

/** The bridge plugin's config, parsed. */
export type BridgeConf = Infer<typeof bridgeConfig>;

/** What the plugin needs from the outside world. */
export interface BridgeDeps {
  netlink: Netlink;
  /** iptables/nft seam for ipMasq and macspoofchk (default: the real binaries). */
  iptables?: IptablesRunner;
}

/** Fills in gateways (first address of the subnet) when the bridge is the gateway; adds default routes. */
function withGateways(result: Result, conf: BridgeConf): Result {
  if (!result.ips) return result;
  const ips = result.ips.map((ip) => {
    if (ip.gateway || !conf.isGateway) return ip;
    const { subnet } = parseCIDR(ip.address);
    return { ...ip, gateway: formatIP(ipAdd(subnetNetwork(subnet), 1n)) };
  });
  const routes = [...(result.routes ?? [])];
  if (conf.isDefaultGateway) {
    for (const fam of [4, 6] as const) {
      const gw = ips.find((ip) => ip.gateway && parseCIDR(ip.address).ip.family === fam)?.gateway;
      const dst = fam === 4 ? '0.0.0.0/0' : '::/0';
      if (gw && !routes.some((r) => r.dst === dst)) routes.push({ dst, gw });
    }
  }
  const { routes: _drop, ...rest } = result;
  return { ...rest, ips, ...(routes.length ? { routes } : {}) };
}

/**
 * Queues the gateway addresses for `target` (the bridge, or the VLAN's gateway link) given what it
 * has now, and pins the bridge's MAC. A different IPv4 address, or an overlapping IPv6 one, is an
 * error unless forceAddress replaces it.
 */
function queueGatewayAddrs(
  ns: NetnsOps,
  conf: BridgeConf,
  target: string,
  result: Result,
  have: Address[],
  brMac: string,
): void {
  // Setting the MAC the bridge had pins it; otherwise it follows its lowest port and changes
  // when that container leaves, breaking the other containers' ARP entry for the gateway.
  ns.setLink(conf.bridge, { mac: brMac });
  for (const ip of result.ips ?? []) {
    if (!ip.gateway) continue;
    const { subnet } = parseCIDR(ip.address);
    const want = formatCIDR(parseCIDR(`${ip.gateway}/${subnet.prefix}`).ip, subnet.prefix);
    if (!have.some((a) => a.cidr === want)) {
      for (const a of have) {
        const other = parseCIDR(a.cidr);
        if (other.ip.family !== subnet.family || (other.ip.family === 6 && a.scope === 'link')) continue;
        if (subnet.family === 6 && !subnetsOverlap(other.subnet, subnet)) continue;
        if (!conf.forceAddress) {
          throw new CniError(
            ErrorCode.Internal,
            `${target === conf.bridge ? 'bridge' : 'VLAN gateway'} ${target} already has address ${a.cidr}, which differs from the gateway address ${want}`,
            'set "forceAddress": true to replace it, or use another bridge',
          );
        }
        ns.deleteAddress(target, a.cidr, { missingOk: true });
      }
      ns.addAddress(target, want, { existsOk: true, noDad: true });
    }
    ns.setSysctl(subnet.family === 4 ? 'net/ipv4/ip_forward' : 'net/ipv6/conf/all/forwarding', 1);
  }
}

const notABridge = (name: string, kind: string | undefined) =>
  new CniError(
    ErrorCode.InvalidNetworkConfig,
    `bridge: ${JSON.stringify(name)} exists but is a ${kind ?? 'physical'} link, not a bridge`,
    'pick another bridge name',
  );

const filteringOff = (bridge: string) =>
  new CniError(
    ErrorCode.Internal,
    `bridge ${bridge} exists without vlan_filtering, so "vlan"/"vlanTrunk" would isolate nothing`,
    `enable it (ip link set ${bridge} type bridge vlan_filtering 1) or use a bridge name that does not exist yet`,
  );

const noVlanFiltering = (conf: BridgeConf) =>
  new CniError(
    ErrorCode.Internal,
    `${conf.vlan ? `vlan: ${conf.vlan}` : 'vlanTrunk'} needs bridge VLAN filtering, which this kernel does not have`,
    'use a kernel built with CONFIG_BRIDGE_VLAN_FILTERING, or drop "vlan"/"vlanTrunk"',
  );

/** Builds the bridge plugin over a netlink backend. */
export function createBridgePlugin(deps: BridgeDeps): PluginSpec<BridgeConf> {
  const { netlink } = deps;
  const masq = deps.iptables ? { runner: deps.iptables } : {};

  // Spawns are the cost of a call on Linux, so the host side is two batches (bridge + veth +
  // enslave with a read-back; then gateway addresses) and the container side one.
  async function add(ctx: PluginContext<BridgeConf>): Promise<Result> {
    const conf = ctx.conf;
    const vlans = wantsVlanFiltering(conf);
    const mac = requestedMac(ctx.config, ctx.args);
    if (conf.disableContainerInterface && ipamConfigured(ctx.config)) {
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        'disableContainerInterface: true leaves the container interface down, so it cannot carry the addresses of "ipam"',
        'drop "ipam" (an L2-only attachment) or set "disableContainerInterface": false',
      );
    }
    const nftMasq = conf.ipMasq && conf.ipMasqBackend === 'nftables';
    if (nftMasq && !(await nftAvailable(masq))) throw nftMissing();
    const host = netlink.open();
    // Refuse a name held by another kind of link before touching anything: the batch below would
    // set it up before enslaving into it failed.
    const existing = await host.findLink(conf.bridge);
    if (existing && existing.kind !== 'bridge') throw notABridge(conf.bridge, existing.kind);
    return addWithRollback(ctx, 'bridge', async (tx) => {
      const veth = await createVethPair(netlink, {
        netns: ctx.netns,
        ifname: ctx.ifname,
        ...(conf.mtu ? { mtu: conf.mtu } : {}),
        ...(mac ? { mac } : {}),
        before: (ns) => {
          ns.createLink(
            {
              kind: 'bridge',
              name: conf.bridge,
              ...(conf.mtu ? { mtu: conf.mtu } : {}),
              ...(vlans ? { vlanFiltering: true } : {}),
            },
            { existsOk: true },
          );
          ns.setLink(conf.bridge, { up: true, ...(conf.promiscMode ? { promisc: true } : {}) });
        },
        after: (ns, name) => {
          ns.setLink(name, { master: conf.bridge, up: true });
          if (conf.hairpinMode) ns.setLink(name, { hairpin: true });
          if (conf.portIsolation) ns.setLink(name, { isolated: true });
          queuePortVlans(ns, name, conf);
        },
      }).catch(async (e) => {
        // Enslaving fails when a non-bridge link holds the name; say so instead of "invalid argument".
        const l = await host.findLink(conf.bridge).catch(() => undefined);
        if (l && l.kind !== 'bridge') throw notABridge(conf.bridge, l.kind);
        if (vlans && !(await netlink.supportsBridgeVlans().catch(() => true))) throw noVlanFiltering(conf);
        throw e;
      });
      // Only a veth we created may go: the container may already own an interface of that name.
      tx.onRollback(() => deleteLinkInNetns(netlink, ctx.netns, ctx.ifname));
      const br = veth.hostLinks.find((l) => l.name === conf.bridge);
      if (br?.kind !== 'bridge') throw notABridge(conf.bridge, br?.kind);
      // An existing bridge keeps its settings; without filtering the port VLANs would isolate nothing.
      if (vlans && br.vlanFiltering === false) throw filteringOff(conf.bridge);
      if (vlans) await dropDefaultVlans(host, veth.host.name, conf);
      const interfaces: Interface[] = [
        { name: conf.bridge, mac: br.mac },
        { name: veth.host.name, mac: veth.host.mac },
        { name: ctx.ifname, sandbox: ctx.netns },
      ];
      const ipam = await tx.ipamAdd();
      const result = withGateways(attachmentResult(ctx.config, ipam, interfaces, 2), conf);
      const hasV6 = (result.ips ?? []).some((ip) => ipFamily(ip.address) === 6);
      const ct = await netlink.inNetns(ctx.netns, async (ns) => {
        // As the reference: DAD only with enabledad, and then enhanced DAD, which tells our own
        // solicitations echoed back by hairpin or promisc mode from a real duplicate.
        if (hasV6 && conf.enabledad) {
          ns.setSysctl(`net/ipv6/conf/${ctx.ifname}/enhanced_dad`, 1);
          ns.setSysctl(`net/ipv6/conf/${ctx.ifname}/accept_dad`, 1);
        } else if (hasV6) {
          ns.setSysctl(`net/ipv6/conf/${ctx.ifname}/accept_dad`, 0);
        }
        ns.setSysctl(`net/ipv4/conf/${ctx.ifname}/arp_notify`, 1);
        if (ipam) {
          await configureInterface(ns, ctx.ifname, result, { index: 2, skipDadWait: !conf.enabledad });
        } else if (!conf.disableContainerInterface) {
          ns.setLink(ctx.ifname, { up: true });
        }
        return ns.getLink(ctx.ifname);
      });
      let vlanGw: Interface | undefined;
      if (conf.isGateway) {
        let target = conf.bridge;
        if (conf.vlan) {
          const gw = await ensureVlanGateway(host, conf.bridge, { ...conf, vlan: conf.vlan }, veth.hostLinks);
          vlanGw = { name: gw.name, mac: gw.mac };
          target = gw.name;
        }
        const have = await host.addresses({ link: target });
        // The bridge MAC is pinned on a VLAN too: the gateway link's port must not change it.
        queueGatewayAddrs(host, conf, target, result, have, br.mac);
        await host.flush();
      }
      if (nftMasq) {
        const network = ctx.config.name;
        tx.onRollback(() => teardownNftMasq(network, ctx.ifname, ctx.containerId, masq));
        const addrs = (result.ips ?? []).map((ip) => ip.address);
        await setupNftMasq(addrs, network, ctx.ifname, ctx.containerId, masq);
      } else if (conf.ipMasq) {
        const network = ctx.config.name;
        tx.onRollback(() => teardownIpMasq(network, ctx.containerId, masq));
        for (const ip of result.ips ?? []) await setupIpMasq(ip.address, network, ctx.containerId, masq);
      }
      if (conf.macspoofchk) {
        tx.onRollback(() => teardownMacSpoofCheck(ctx.containerId, ctx.ifname, masq));
        await setupMacSpoofCheck(veth.host.name, ct.mac, ctx.containerId, ctx.ifname, masq);
      }
      // Same key order as the reference: name, mac, sandbox.
      // The VLAN gateway link comes last, as in the reference, so ips[].interface stays 2.
      result.interfaces = [
        ...interfaces.slice(0, 2),
        { name: ctx.ifname, mac: ct.mac, sandbox: ctx.netns },
        ...(vlanGw ? [vlanGw] : []),
      ];
      return result;
    });
  }

  async function check(ctx: PluginContext<BridgeConf>): Promise<void> {
    const conf = ctx.conf;
    const prev = requirePrevResult(ctx);
    const brIdx = interfaceIndex(prev, conf.bridge);
    if (brIdx < 0) {
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        `prevResult: interfaces must list bridge ${conf.bridge}`,
        'pass the result of the ADD for this network',
      );
    }
    const ct = await checkAttachment(ctx, netlink, { kind: 'veth' });
    await netlink.inNetns(undefined, async (ns) => {
      const br = await ns.findLink(conf.bridge);
      if (br?.kind !== 'bridge')
        throw new CniError(ErrorCode.Internal, `CHECK: bridge ${conf.bridge} is missing or not a bridge`);
      const brWant = prev.interfaces?.[brIdx]?.mac;
      if (brWant && brWant !== br.mac)
        throw new CniError(
          ErrorCode.Internal,
          `CHECK: bridge ${conf.bridge} has MAC ${br.mac}, prevResult says ${brWant}`,
        );
      const peer = ct.parentIndex !== undefined ? await ns.findLink(ct.parentIndex) : undefined;
      if (!peer || peer.master !== conf.bridge) {
        throw new CniError(
          ErrorCode.Internal,
          `CHECK: the host end of ${ctx.ifname} is not a port of bridge ${conf.bridge}`,
        );
      }
      if (!wantsVlanFiltering(conf)) return;
      if (br.vlanFiltering === false) throw filteringOff(conf.bridge);
      const bad = checkPortVlans(peer.name, await ns.bridgeVlans(peer.name), conf);
      if (bad) throw new CniError(ErrorCode.Internal, `CHECK: ${bad}`);
      if (conf.vlan && conf.isGateway && !(await ns.findLink(vlanGatewayName(conf.bridge, conf.vlan))))
        throw new CniError(
          ErrorCode.Internal,
          `CHECK: the gateway link ${vlanGatewayName(conf.bridge, conf.vlan)} of VLAN ${conf.vlan} is missing`,
        );
    });
  }

  return {
    about: 'bridge (cni-kit): connects containers to a host bridge through veth pairs',
    config: bridgeConfig,
    add,
    check,
    async del(ctx) {
      const conf = ctx.conf;
      await delAttachment(ctx, netlink, { kind: 'veth' });
      if (conf.ipMasq) {
        // Both backends, as the reference: the attachment may have been made under the other one.
        await teardownIpMasq(ctx.config.name, ctx.containerId, masq);
        await teardownNftMasq(ctx.config.name, ctx.ifname, ctx.containerId, masq);
      }
      if (conf.macspoofchk) await teardownMacSpoofCheck(ctx.containerId, ctx.ifname, masq);
    },
    ...ipamPassthrough(),
  };
}
