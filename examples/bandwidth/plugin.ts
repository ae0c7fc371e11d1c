// bandwidth: token-bucket shaping of a container's traffic on the host side of its veth, chained
// after a plugin that made the veth (bridge, ptp). Traffic towards the container (ingress) is shaped
// by a tbf root qdisc on the host veth; traffic from the container (egress) arrives on the host
// veth's ingress, so it is redirected into an ifb device whose root tbf shapes it, as the reference
// does. Rates and bursts are in bits, as in the reference and kubelet's bandwidth capability.
import { createHash } from 'node:crypto';
import {
  CniError,
  conf,
  ErrorCode,
  type Infer,
  type Interface,
  type PluginContext,
  type PluginSpec,
  type Result,
  versionsFrom,
} from 'cni-kit';
import type { Link, Netlink, NetnsOps, Qdisc } from 'cni-kit/netlink';
import { addWithRollback, inNetnsIfExists } from 'cni-kit/netsetup';

/** The queueing latency bound of every tbf the plugin installs, in ms (the reference's). */
export const LATENCY_MS = 25;
/** The largest burst in bits: the kernel keeps the bucket in bytes as a u32 (the reference's "4GB"). */
export const MAX_BURST_BITS = 8 * (2 ** 32 - 1) - 1;
/** Rates are kept as JS numbers: exact up to 2^53 bit/s (about 9 Pbit/s). */
const MAX_RATE_BITS = Number.MAX_SAFE_INTEGER;

const bits = (max: number) => conf.int(0, max).optional();

/** One set of limits, at the top level or under `runtimeConfig.bandwidth`. */
const entryShape = {
  /** Rate in bit/s of traffic towards the container; 0: no limit. */
  ingressRate: bits(MAX_RATE_BITS),
  /** Bucket size in bits for ingressRate. */
  ingressBurst: bits(MAX_RATE_BITS),
  /** Rate in bit/s of traffic from the container; 0: no limit. */
  egressRate: bits(MAX_RATE_BITS),
  /** Bucket size in bits for egressRate. */
  egressBurst: bits(MAX_RATE_BITS),
  /** Subnets to shape, the rest unshaped (reference 1.5.x only; see refuseSubnets). */
  shapedSubnets: conf.array(conf.cidr()).optional(),
  /** Subnets to leave unshaped (reference 1.5.x only). */
  unshapedSubnets: conf.array(conf.cidr()).optional(),
};

/** The bandwidth plugin's own config fields. */
export const bandwidthConfig = conf.object({
  ...entryShape,
  runtimeConfig: conf.object({ bandwidth: conf.object(entryShape).optional() }).optional(),
});

/** The bandwidth plugin's config, parsed. */
export type BandwidthConf = Infer<typeof bandwidthConfig>;

/** The limits of one call, with where they came from (for error messages). */
export interface BandwidthEntry {
  ingressRate: number;
  ingressBurst: number;
  egressRate: number;
  egressBurst: number;
  shapedSubnets: string[];
  unshapedSubnets: string[];
  /** '' for the top level, 'runtimeConfig.bandwidth.' otherwise. */
  path: string;
}

/** What the plugin needs from the outside world. */
export interface BandwidthDeps {
  netlink: Netlink;
}

const ENTRY_KEYS = ['ingressRate', 'ingressBurst', 'egressRate', 'egressBurst'] as const;

/**
 * The limits that apply, as the reference picks them: the top-level fields when any is set,
 * otherwise `runtimeConfig.bandwidth` (what kubelet fills from the pod's annotations).
 */
export function bandwidthEntry(c: BandwidthConf): BandwidthEntry | undefined {
  const topSet = [...ENTRY_KEYS, 'shapedSubnets', 'unshapedSubnets'].some(
    (k) => c[k as keyof BandwidthConf] !== undefined,
  );
  const rc = c.runtimeConfig?.bandwidth;
  const src = topSet ? c : rc;
  if (!src) return undefined;
  return {
    ingressRate: src.ingressRate ?? 0,
    ingressBurst: src.ingressBurst ?? 0,
    egressRate: src.egressRate ?? 0,
    egressBurst: src.egressBurst ?? 0,
    shapedSubnets: src.shapedSubnets ?? [],
    unshapedSubnets: src.unshapedSubnets ?? [],
    path: topSet ? '' : 'runtimeConfig.bandwidth.',
  };
}

const invalid = (msg: string) => new CniError(ErrorCode.InvalidNetworkConfig, msg);

function checkPair(e: BandwidthEntry, dir: 'ingress' | 'egress'): void {
  const rate = e[`${dir}Rate`];
  const burst = e[`${dir}Burst`];
  const r = `${e.path}${dir}Rate`;
  const b = `${e.path}${dir}Burst`;
  if (rate !== 0 && burst === 0)
    throw invalid(`${b}: unset while ${r} is ${rate}; if a rate is set, its burst must be set too (in bits)`);
  if (rate === 0 && burst !== 0)
    throw invalid(
      `${r}: unset while ${b} is ${burst}; if a burst is set, its rate must be set too (in bit/s)`,
    );
  if (burst > MAX_BURST_BITS)
    throw invalid(
      `${b}: ${burst} is more than 4 GB (the kernel keeps the bucket in bytes as 32 bits); use at most ${MAX_BURST_BITS}`,
    );
  // tc shapes in bytes: a rate or bucket under one byte would be 0 (the reference divides by it).
  if (rate !== 0 && rate < 8) throw invalid(`${r}: ${rate} is less than one byte per second; use at least 8`);
  if (burst !== 0 && burst < 8) throw invalid(`${b}: ${burst} is less than one byte; use at least 8`);
}

/**
 * Validates the limits as the reference does (each rate with its burst, the 4 GB bucket) and the
 * subnet lists; returns undefined when there is nothing to shape.
 */
export function validBandwidth(c: BandwidthConf): BandwidthEntry | undefined {
  const e = bandwidthEntry(c);
  if (!e) return undefined;
  checkPair(e, 'ingress');
  checkPair(e, 'egress');
  if (e.shapedSubnets.length && e.unshapedSubnets.length)
    throw invalid(
      `${e.path}shapedSubnets: set together with unshapedSubnets; the two are mutually exclusive, keep one of them`,
    );
  // The reference shaped per subnet only in 1.5.x (an htb tree instead of tbf) and reverted it in
  // 1.6.0; shaping everything while the config says otherwise would be wrong, so say so.
  for (const k of ['shapedSubnets', 'unshapedSubnets'] as const) {
    if (e[k].length)
      throw invalid(
        `${e.path}${k}: ${JSON.stringify(e[k])} is not supported: per-subnet shaping existed only in the reference's 1.5 releases and was removed in 1.6.0; remove ${k} to shape all traffic`,
      );
  }
  return e.ingressRate === 0 && e.egressRate === 0 ? undefined : e;
}

/** The ifb device of an attachment, named as the reference names it: "bwp" + sha512(network+id). */
export function ifbName(network: string, containerId: string): string {
  return `bwp${createHash('sha512')
    .update(network + containerId)
    .digest('hex')}`.slice(0, 15);
}

/** The tbf bucket in bytes for a burst in bits (the reference divides, dropping the remainder). */
export const burstBytes = (burstBits: number): number => Math.floor(burstBits / 8);

function requirePrev(ctx: PluginContext<BandwidthConf>): Result {
  const prev = ctx.config.prevResult;
  if (!prev)
    throw invalid(
      'prevResult: missing; bandwidth must run chained after a plugin that creates a veth (bridge, ptp)',
    );
  return prev;
}

/**
 * The host end of the container interface's veth, found as the reference finds it: the peer index
 * of CNI_IFNAME in the container, looked up in the host netns, and listed in prevResult without a
 * sandbox.
 */
export async function hostInterface(
  netlink: Netlink,
  ctx: PluginContext<BandwidthConf>,
  interfaces: readonly Interface[],
): Promise<Link> {
  if (!interfaces.length)
    throw new CniError(
      ErrorCode.Internal,
      'prevResult: lists no interfaces; bandwidth needs the host end of the veth listed there',
    );
  const c = await netlink.inNetns(ctx.netns, (ns) => ns.findLink(ctx.ifname));
  if (c?.kind !== 'veth' || !c.parentIndex)
    throw new CniError(
      ErrorCode.Internal,
      `container interface ${ctx.ifname} ${c ? `is ${c.kind ? `a ${c.kind}` : 'not a veth'}` : 'does not exist'}, so it has no veth peer to shape; chain bandwidth after a plugin that makes a veth (bridge, ptp)`,
    );
  const peer = c.parentIndex;
  const host = await netlink.inNetns(undefined, (ns) => ns.findLink(peer));
  if (!host)
    throw new CniError(
      ErrorCode.Internal,
      `veth peer of ${ctx.ifname} (index ${peer}) is not in the host netns`,
    );
  if (!interfaces.some((i) => !i.sandbox && i.name === host.name))
    throw new CniError(
      ErrorCode.Internal,
      `no veth peer of container interface ${ctx.ifname} found in prevResult: the host end ${host.name} is not listed there without a sandbox`,
    );
  return host;
}

/**
 * Compares a root tbf with the limits. The kernel keeps the bucket as a time at the rate, so the
 * burst read back may differ from the one asked by the rounding of one scheduler tick.
 */
export function tbfDiffers(q: Qdisc | undefined, link: string, rateBits: number, burstBits: number): string {
  if (!q) return `${link} has no root qdisc`;
  if (q.kind !== 'tbf') return `${link} has a root ${q.kind} qdisc, not tbf`;
  const rate = Math.floor(rateBits / 8);
  const burst = burstBytes(burstBits);
  if (q.rateBytes !== undefined && q.rateBytes !== rate)
    return `${link} tbf rate is ${q.rateBytes} B/s, config says ${rate} B/s (${rateBits} bit/s)`;
  // The reference rounds the bucket time down to whole µs (up to rate/1e6 bytes less); a kernel
  // tick is 64 ns, and the read-back drops a fraction of a byte.
  const slack = Math.max(1, Math.ceil(rate / 1e6)) + 1;
  if (q.burstBytes !== undefined && Math.abs(q.burstBytes - burst) > slack)
    return `${link} tbf burst is ${Math.round(q.burstBytes)} B, config says ${burst} B (${burstBits} bits)`;
  return '';
}

/** Builds the bandwidth plugin over a netlink backend. */
export function createBandwidthPlugin({ netlink }: BandwidthDeps): PluginSpec<BandwidthConf> {
  async function add(ctx: PluginContext<BandwidthConf>): Promise<Result> {
    const prev = requirePrev(ctx);
    const bw = validBandwidth(ctx.conf);
    const out: Result = { ...prev, cniVersion: '1.1.0' };
    if (!bw) return out;
    const host = await hostInterface(netlink, ctx, prev.interfaces ?? []);
    return addWithRollback(ctx, 'bandwidth', async (tx) => {
      if (bw.ingressRate > 0) {
        await netlink.inNetns(undefined, (ns) => {
          ns.setTbf(host.name, tbf(bw.ingressRate, bw.ingressBurst));
        });
        tx.onRollback(() =>
          netlink.inNetns(undefined, (ns) => ns.deleteQdisc(host.name, 'root', { missingOk: true })),
        );
      }
      if (bw.egressRate > 0) {
        const ifb = ifbName(ctx.config.name, ctx.containerId);
        const made = await netlink.inNetns(undefined, async (ns) => {
          ns.createLink({ kind: 'ifb', name: ifb, mtu: host.mtu });
          await ns.flush();
          return ns.getLink(ifb);
        });
        tx.onRollback(() => netlink.inNetns(undefined, (ns) => ns.deleteLink(ifb, { missingOk: true })));
        out.interfaces = [...(out.interfaces ?? []), { name: ifb, mac: made.mac }];
        await netlink.inNetns(undefined, (ns) => {
          // Queue length 0 as the reference leaves it: the tbf's own limit bounds the queue.
          ns.setLink(ifb, { up: true, txqlen: 0 });
          ns.addIngressQdisc(host.name);
        });
        tx.onRollback(() =>
          netlink.inNetns(undefined, (ns) => ns.deleteQdisc(host.name, 'ingress', { missingOk: true })),
        );
        await netlink.inNetns(undefined, (ns) => {
          ns.redirectIngress(host.name, ifb);
          ns.setTbf(ifb, tbf(bw.egressRate, bw.egressBurst));
        });
      }
      return out;
    });
  }

  async function check(ctx: PluginContext<BandwidthConf>): Promise<void> {
    const prev = requirePrev(ctx);
    const bw = validBandwidth(ctx.conf);
    const host = await hostInterface(netlink, ctx, prev.interfaces ?? []);
    if (!bw) return;
    const diffs = await netlink.inNetns(undefined, async (ns) => {
      const out: string[] = [];
      const rootOf = async (link: string) => (await ns.qdiscs(link)).find((q) => q.root);
      if (bw.ingressRate > 0)
        out.push(tbfDiffers(await rootOf(host.name), host.name, bw.ingressRate, bw.ingressBurst));
      if (bw.egressRate > 0) {
        const ifb = ifbName(ctx.config.name, ctx.containerId);
        if (!(await ns.findLink(ifb))) out.push(`ifb device ${ifb} does not exist`);
        else {
          out.push(tbfDiffers(await rootOf(ifb), ifb, bw.egressRate, bw.egressBurst));
          const redirects = await ns.ingressRedirects(host.name);
          if (!redirects.includes(ifb))
            out.push(
              `ingress of ${host.name} is not redirected to ${ifb} (redirects: ${redirects.join(', ') || 'none'})`,
            );
        }
      }
      return out.filter(Boolean);
    });
    if (diffs.length)
      throw new CniError(ErrorCode.Internal, `CHECK: shaping differs from the config: ${diffs.join('; ')}`);
  }

  async function del(ctx: PluginContext<BandwidthConf>): Promise<void> {
    const ifb = ifbName(ctx.config.name, ctx.containerId);
    await netlink.inNetns(undefined, (ns) => ns.deleteLink(ifb, { missingOk: true }));
    // The host veth's qdiscs go with the veth when the main plugin deletes it; when the veth
    // outlives this DEL (a DEL of bandwidth alone), take our qdiscs off it too.
    const prev = ctx.config.prevResult;
    if (!prev?.interfaces?.length || !ctx.netns) return;
    const peer = await inNetnsIfExists(netlink, ctx.netns, async (ns) => {
      const c = await ns.findLink(ctx.ifname);
      return c?.kind === 'veth' ? c.parentIndex : undefined;
    });
    if (!peer) return;
    await netlink.inNetns(undefined, async (ns) => {
      const host = await ns.findLink(peer);
      if (!host || !prev.interfaces?.some((i) => !i.sandbox && i.name === host.name)) return;
      await removeOurQdiscs(ns, host.name);
    });
  }

  return {
    about: 'bandwidth (cni-kit): tbf shaping of a container veth, ingress and (through an ifb) egress',
    supportedVersions: versionsFrom('0.3.0'),
    config: bandwidthConfig,
    add,
    check,
    del,
  };
}

function tbf(rateBits: number, burstBits: number) {
  return { rateBits, burstBytes: burstBytes(burstBits), latencyMs: LATENCY_MS };
}

/** Deletes the root tbf (handle 1:) and the ingress qdisc bandwidth adds to a host veth, if there. */
async function removeOurQdiscs(ns: NetnsOps, link: string): Promise<void> {
  const qs = await ns.qdiscs(link);
  if (qs.some((q) => q.root && q.kind === 'tbf' && q.handle === '1:'))
    ns.deleteQdisc(link, 'root', { missingOk: true });
  if (qs.some((q) => q.kind === 'ingress')) ns.deleteQdisc(link, 'ingress', { missingOk: true });
  await ns.flush();
}
