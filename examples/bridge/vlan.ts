// Bridge VLANs for the bridge plugin, with the reference's semantics (plugins 1.8+). `vlan` alone
// makes the container's bridge port an access port (the VLAN is its PVID and leaves untagged).
// `vlanTrunk` makes it a trunk: its VLANs leave tagged, and the native VLAN (PVID, untagged) is
// `vlan` when both are given, else VLAN 1. Either needs vlan_filtering on the bridge, without which
// the kernel stores port VLANs but never enforces them. A gateway on a VLAN cannot live on the
// bridge itself, so, as in the reference, it goes on a host veth "<bridge>.<vlan>" whose peer is an
// access port of that VLAN (never a trunk).
import { CniError, conf, ErrorCode, type InferShape } from 'cni-kit';
import { type BridgeVlan, isExists, type Link, type NetnsOps } from 'cni-kit/netlink';
import { randomVethName } from 'cni-kit/netsetup';

const invalid = (msg: string, fix: string) => new CniError(ErrorCode.InvalidNetworkConfig, msg, fix);
const TRUNK_EXAMPLE = 'write it as a list like [{"id": 10}, {"minID": 20, "maxID": 29}]';
const vid = conf.int(1, 4094).fix('use a VLAN ID from 1 to 4094').optional();

/** One `vlanTrunk` entry, {"id": N} and/or {"minID": A, "maxID": B}, as the VLAN IDs it names. */
const trunkEntry = conf
  .object({ id: vid, minID: vid, maxID: vid })
  .fix(TRUNK_EXAMPLE)
  .transform(({ id, minID, maxID }, at) => {
    const hasMin = minID !== undefined;
    if (hasMin !== (maxID !== undefined))
      throw invalid(
        `${at}: ${hasMin ? 'minID' : 'maxID'} is set without ${hasMin ? 'maxID' : 'minID'}`,
        'a range needs both minID and maxID; a single VLAN is {"id": N}',
      );
    const out: number[] = [];
    if (minID !== undefined && maxID !== undefined) {
      if (minID > maxID)
        throw invalid(`${at}: minID ${minID} is greater than maxID ${maxID}`, 'swap them or fix the range');
      for (let v = minID; v <= maxID; v++) out.push(v);
    }
    if (id !== undefined) out.push(id);
    else if (!hasMin) throw invalid(`${at}: {} names no VLAN`, TRUNK_EXAMPLE);
    return out;
  });

/** The VLAN fields of the bridge config; spread into its `conf.object`. */
export const vlanFields = {
  /** Access VLAN of the port, or the native VLAN of a trunk (PVID, untagged); 0 or absent: none. */
  vlan: conf
    .int(0, 4094)
    .fix('use a VLAN ID from 1 to 4094, or 0 for none')
    .optional()
    .transform((v) => v || undefined),
  /** Tagged VLANs of the container's port, ascending and unique; empty: not a trunk. */
  vlanTrunk: conf
    .array(trunkEntry)
    .fix(TRUNK_EXAMPLE)
    .default([])
    .transform((lists) => [...new Set(lists.flat())].sort((a, b) => a - b)),
  /**
   * Keep the VLANs a new port starts with (the bridge's default PVID) next to the configured ones;
   * default false, as in the reference since plugins 1.8 (full isolation unless asked otherwise).
   */
  preserveDefaultVlan: conf.bool().default(false),
};

/** The VLAN part of the bridge config, parsed. */
export type VlanConf = InferShape<typeof vlanFields>;

/** The VLAN part of the bridge config on its own (the bridge config includes it). */
export const vlanConfig = conf.object(vlanFields);

/** Whether the config puts the port in any VLAN, so the bridge needs vlan_filtering. */
export const wantsVlanFiltering = (c: VlanConf): boolean => !!c.vlan || c.vlanTrunk.length > 0;

/** The name of the host veth that carries the gateway address of VLAN `vlan` on `bridge`. */
export const vlanGatewayName = (bridge: string, vlan: number): string => `${bridge}.${vlan}`;

/** The native VLAN of a trunk configured without `vlan`, as in the reference. */
export const DEFAULT_NATIVE_VLAN = 1;

/** The port's untagged PVID VLAN: `vlan`, else VLAN 1 on a trunk, else none. */
export const nativeVlan = (conf: VlanConf): number | undefined =>
  conf.vlan || (conf.vlanTrunk.length ? DEFAULT_NATIVE_VLAN : undefined);

/**
 * The VLANs a port must have for `conf`, ascending: the native VLAN (PVID, untagged) and the trunk's
 * VLANs (tagged). A trunk range that covers the native VLAN leaves it native: the reference's
 * documented meaning of `vlan` on a trunk (its own order of kernel calls would retag it when `vlan`
 * is set, but keep it native when it is the default VLAN 1; one rule here for both).
 */
export function wantedPortVlans(conf: VlanConf): BridgeVlan[] {
  const native = nativeVlan(conf);
  const out: BridgeVlan[] = conf.vlanTrunk
    .filter((v) => v !== native)
    .map((v) => ({ vid: v, pvid: false, untagged: false }));
  if (native !== undefined) out.push({ vid: native, pvid: true, untagged: true });
  return out.sort((a, b) => a.vid - b.vid);
}

/** Queues the port's VLANs (the native VLAN takes over the PVID; trunk VLANs are tagged). */
export function queuePortVlans(ns: NetnsOps, port: string, conf: VlanConf): void {
  for (const v of wantedPortVlans(conf))
    ns.addBridgeVlan(port, v.vid, {
      ...(v.pvid ? { pvid: true } : {}),
      ...(v.untagged ? { untagged: true } : {}),
    });
}

/**
 * Without `preserveDefaultVlan`, removes the VLANs the port started with (read back, since the
 * bridge's default PVID need not be 1) and flushes; otherwise does nothing.
 */
export async function dropDefaultVlans(ns: NetnsOps, port: string, conf: VlanConf): Promise<void> {
  if (conf.preserveDefaultVlan) return;
  const keep = new Set(wantedPortVlans(conf).map((v) => v.vid));
  const extra = (await ns.bridgeVlans(port)).filter((v) => !keep.has(v.vid));
  if (!extra.length) return;
  for (const v of extra) ns.deleteBridgeVlan(port, v.vid, { missingOk: true });
  await ns.flush();
}

/**
 * The gateway link of the config's VLAN, created when missing: a host veth pair whose named end
 * holds the gateway address and whose other end is an access port of the VLAN. It is shared by
 * every container on that VLAN, so DEL and a failed ADD leave it, as they leave the bridge.
 */
export async function ensureVlanGateway(
  host: NetnsOps,
  bridge: string,
  conf: VlanConf & { vlan: number; mtu?: number },
  hostLinks: readonly Link[],
): Promise<Link> {
  const name = vlanGatewayName(bridge, conf.vlan);
  // The gateway's port is an access port of the VLAN, never a trunk, as in the reference.
  const access: VlanConf = { vlan: conf.vlan, vlanTrunk: [], preserveDefaultVlan: conf.preserveDefaultVlan };
  const found = hostLinks.find((l) => l.name === name);
  if (found) return found;
  const port = randomVethName();
  host.createLink({ kind: 'veth', name: port, peerName: name, ...(conf.mtu ? { mtu: conf.mtu } : {}) });
  host.setLink(port, { master: bridge, up: true });
  queuePortVlans(host, port, access);
  host.setLink(name, { up: true });
  try {
    const link = await host.getLink(name);
    await dropDefaultVlans(host, port, access);
    return link;
  } catch (e) {
    // A concurrent ADD on the same VLAN made it first: use theirs.
    const theirs = isExists(e) ? await host.findLink(name) : undefined;
    if (theirs) return theirs;
    // A half-configured gateway link would be picked up as-is by every later ADD on this VLAN. On
    // EEXIST the pair was never made (and `port` may be someone else's link), so nothing to undo.
    if (!isExists(e)) {
      host.deleteLink(port, { missingOk: true });
      await host.flush().catch(() => {});
    }
    throw e;
  }
}

/** CHECK of a port's VLANs: the wanted ones with the right flags, and no others without preserveDefaultVlan. */
export function checkPortVlans(
  port: string,
  have: readonly BridgeVlan[],
  conf: VlanConf,
): string | undefined {
  const show = (v: BridgeVlan) => `${v.vid}${v.pvid ? ' PVID' : ''}${v.untagged ? ' untagged' : ' tagged'}`;
  for (const want of wantedPortVlans(conf)) {
    const got = have.find((v) => v.vid === want.vid);
    if (!got) return `port ${port} is not in VLAN ${want.vid}`;
    if (got.pvid !== want.pvid || got.untagged !== want.untagged)
      return `port ${port} has VLAN ${show(got)}, config wants ${show(want)}`;
  }
  if (!conf.preserveDefaultVlan) {
    const keep = new Set(wantedPortVlans(conf).map((v) => v.vid));
    const extra = have.filter((v) => !keep.has(v.vid));
    if (extra.length)
      return `port ${port} is also in VLAN ${extra.map(show).join(', ')}, which preserveDefaultVlan: false removes`;
  }
  return undefined;
}
