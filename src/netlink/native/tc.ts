// Traffic control over rtnetlink: the tbf root qdisc, the ingress qdisc, a u32 match-all filter
// with a mirred redirect, and reading qdiscs/redirects back. Pure encoders and decoders; the caller
// resolves names to ifindexes and owns the socket.
//
// Layouts are the kernel uapi ones (linux/rtnetlink.h, pkt_sched.h, pkt_cls.h, tc_act/tc_mirred.h).
// The numbers sent and the numbers read back follow what tc(8) computes and prints, so that this
// backend and the iproute2 one agree to the byte/microsecond, rounding included.
import { readFileSync } from 'node:fs';
import type { Qdisc, TbfSpec } from '../types.js';
import { NLM_F, NlAttrs, type NlMessage, NlWriter } from './nlmsg.js';

/** rtnetlink message types. */
export const RTM = {
  NEWQDISC: 36,
  DELQDISC: 37,
  GETQDISC: 38,
  NEWTFILTER: 44,
  DELTFILTER: 45,
  GETTFILTER: 46,
} as const;

/** Special parent/handle values (pkt_sched.h). */
export const TC_H_ROOT = 0xffffffff;
export const TC_H_INGRESS = 0xfffffff1;
const HANDLE_TBF = 0x00010000; // 1:0
const HANDLE_INGRESS = 0xffff0000; // ffff:0

const TCMSG_LEN = 20;
const TCA_KIND = 1;
const TCA_OPTIONS = 2;

const TCA_TBF_PARMS = 1;
const TCA_TBF_RATE64 = 4;
const TCA_TBF_PRATE64 = 5;
const TCA_TBF_BURST = 6;
const TC_LINKLAYER_ETHERNET = 1;
const TC_TBF_QOPT_LEN = 36; // two 12-byte tc_ratespec + limit, buffer, mtu

const TCA_U32_SEL = 5;
const TCA_U32_ACT = 7;
const TC_U32_TERMINAL = 1;
const TCA_ACT_KIND = 1;
const TCA_ACT_OPTIONS = 2;
const TCA_MIRRED_PARMS = 2;
const TCA_EGRESS_REDIR = 1;
const TC_ACT_STOLEN = 4;
const ETH_P_ALL = 0x0003;
const ENOENT = 2;
const EINVAL = 22;

/** Where each classifier keeps its action list (TCA_<KIND>_ACT), for reading filters back. */
const ACT_ATTR: Record<string, number> = { u32: 7, matchall: 2, flower: 3, basic: 3, bpf: 1, fw: 4 };

/** struct tcmsg: family, pad, ifindex, handle, parent, info. */
function tcmsg(ifindex: number, handle: number, parent: number, info = 0): Buffer {
  const b = Buffer.alloc(TCMSG_LEN); // tcm_family AF_UNSPEC (0)
  b.writeInt32LE(ifindex, 4);
  b.writeUInt32LE(handle >>> 0, 8);
  b.writeUInt32LE(parent >>> 0, 12);
  b.writeUInt32LE(info >>> 0, 16);
  return b;
}

// --- tc's arithmetic ----------------------------------------------------------------------------

/**
 * C's double → unsigned int conversion as tc's build does it. In range it truncates; out of range
 * it is undefined in C, and what the compiled tc really does differs by CPU: x86 converts through
 * a 64-bit integer and keeps the low 32 bits (0 from 2^63 on), arm64 saturates. Matching that keeps
 * the limit/burst numbers identical to tc's even for specs that overflow.
 */
export function cU32(x: number): number {
  if (!(x > 0)) return 0;
  if (x < 2 ** 32) return Math.trunc(x);
  if (process.arch === 'arm64') return 0xffffffff;
  if (x >= 2 ** 63) return 0;
  return Number(BigInt(Math.trunc(x)) & 0xffffffffn);
}

let ticksPerUs: number | undefined;

/**
 * Packet-scheduler ticks per microsecond as tc derives them from /proc/net/psched (read once). The
 * kernel has printed 1000, 64, 1000000 there for years (ticks of 64 ns), hence the 15.625 default.
 */
export function pschedTicksPerUs(): number {
  if (ticksPerUs !== undefined) return ticksPerUs;
  ticksPerUs = 15.625;
  try {
    const f = readFileSync('/proc/net/psched', 'utf8').trim().split(/\s+/);
    let t2us = Number.parseInt(f[0] ?? '', 16);
    const us2t = Number.parseInt(f[1] ?? '', 16);
    const clockRes = Number.parseInt(f[2] ?? '', 16);
    if (t2us > 0 && us2t > 0 && clockRes > 0) {
      // tc's compatibility rule: a nanosecond clock advertises 1000 where it means 1.
      if (clockRes === 1e9) t2us = us2t;
      ticksPerUs = (t2us / us2t) * (clockRes / 1e6);
    }
  } catch {
    // Not Linux or /proc not mounted: keep the default.
  }
  return ticksPerUs;
}

const time2tick = (us: number): number => cU32(cU32(us) * pschedTicksPerUs());
const tick2time = (ticks: number): number => cU32(ticks / pschedTicksPerUs());

/** The numbers `tc qdisc replace … tbf rate Rbit burst Bb latency Lms` puts in its request. */
export interface TbfParams {
  /** Bytes per second. */
  rate64: bigint;
  /** tc_ratespec.rate: the byte rate capped at 2^32 - 1 (the rest goes in TCA_TBF_RATE64). */
  rate32: number;
  burst: number;
  /** Bytes the queue may hold: rate × latency + burst. */
  limit: number;
  /** The bucket in scheduler ticks (the kernel recomputes it from TCA_TBF_BURST). */
  buffer: number;
}

/** Validates a spec the way tc's parser would and derives the request's numbers. */
export function tbfParams(spec: TbfSpec): TbfParams {
  const { rateBits, burstBytes, latencyMs } = spec;
  if (!Number.isFinite(rateBits) || rateBits < 0) throw new RangeError(`tbf: bad rate ${rateBits} bit/s`);
  // tc: bits → bytes by dividing by 8 in floating point, then truncating to an integer.
  const rateBytes = Math.trunc(rateBits / 8);
  if (rateBytes < 1 || rateBytes >= 2 ** 64)
    throw new RangeError(`tbf: rate ${rateBits} bit/s is out of range`);
  if (!Number.isInteger(burstBytes) || burstBytes < 1 || burstBytes > 0xffffffff)
    throw new RangeError(`tbf: burst ${burstBytes} B must be an integer in 1..2^32-1`);
  if (!Number.isFinite(latencyMs) || latencyMs < 0) throw new RangeError(`tbf: bad latency ${latencyMs} ms`);
  const latencyUs = cU32(latencyMs * 1000);
  if (latencyUs === 0) throw new RangeError(`tbf: latency ${latencyMs} ms rounds to 0 µs`);
  const rate32 = rateBytes >= 2 ** 32 ? 0xffffffff : rateBytes;
  return {
    rate64: BigInt(rateBytes),
    rate32,
    burst: burstBytes,
    limit: cU32((rateBytes * latencyUs) / 1e6 + burstBytes),
    // tc computes the ticks from the capped 32-bit rate.
    buffer: time2tick(1e6 * (burstBytes / rate32)),
  };
}

/** struct tc_tbf_qopt with an ethernet-linklayer rate and no peak rate. */
function tbfQopt(p: TbfParams): Buffer {
  const b = Buffer.alloc(TC_TBF_QOPT_LEN);
  // rate: cell_log, linklayer, overhead, cell_align, mpu, rate. cell_log 3 / cell_align -1 are what
  // tc's rate-table helper leaves there; the kernel only reads them along with a rate table.
  b.writeUInt8(3, 0);
  b.writeUInt8(TC_LINKLAYER_ETHERNET, 1);
  b.writeInt16LE(-1, 4);
  b.writeUInt32LE(p.rate32, 8);
  // peakrate (12..23) stays zero: no peak rate.
  b.writeUInt32LE(p.limit, 24);
  b.writeUInt32LE(p.buffer, 28);
  return b;
}

// --- requests -----------------------------------------------------------------------------------

/**
 * `tc qdisc replace dev X root handle 1: tbf rate Rbit burst Bb latency Lms`. A linklayer-aware
 * ratespec makes the kernel skip the rate table (it only looks one up for TC_LINKLAYER_UNAWARE and
 * has computed rates itself since 3.8), so no TCA_TBF_RTAB is sent.
 */
export function tbfReplace(ifindex: number, spec: TbfSpec): NlWriter {
  const p = tbfParams(spec);
  const w = new NlWriter(RTM.NEWQDISC, NLM_F.REQUEST | NLM_F.ACK | NLM_F.CREATE | NLM_F.REPLACE);
  w.struct(tcmsg(ifindex, HANDLE_TBF, TC_H_ROOT));
  w.str(TCA_KIND, 'tbf');
  w.begin(TCA_OPTIONS);
  w.attr(TCA_TBF_PARMS, tbfQopt(p));
  w.u32(TCA_TBF_BURST, p.burst);
  if (p.rate64 >= 1n << 32n) w.u64(TCA_TBF_RATE64, p.rate64);
  return w.end();
}

/** `tc qdisc add dev X handle ffff: ingress` (EEXIST when one is there). */
export function ingressAdd(ifindex: number): NlWriter {
  const w = new NlWriter(RTM.NEWQDISC, NLM_F.REQUEST | NLM_F.ACK | NLM_F.CREATE | NLM_F.EXCL);
  w.struct(tcmsg(ifindex, HANDLE_INGRESS, TC_H_INGRESS));
  return w.str(TCA_KIND, 'ingress');
}

/**
 * `tc qdisc del dev X root|ingress`, the same request tc sends. For ingress that includes the
 * handle ffff: and the kind, so a clsact qdisc (which shares the parent) is refused with EINVAL
 * rather than deleted. See qdiscDelMissing for telling "nothing to delete" apart.
 */
export function qdiscDel(ifindex: number, which: 'root' | 'ingress'): NlWriter {
  const w = new NlWriter(RTM.DELQDISC, NLM_F.REQUEST | NLM_F.ACK);
  if (which === 'root') {
    w.struct(tcmsg(ifindex, 0, TC_H_ROOT));
    return w;
  }
  w.struct(tcmsg(ifindex, HANDLE_INGRESS, TC_H_INGRESS));
  return w.str(TCA_KIND, 'ingress');
}

/**
 * Whether a failed `qdiscDel` means there was nothing to delete (what a caller tolerating a missing
 * qdisc should accept). ENOENT always does: no ingress queue yet, or only the kernel's default
 * root (handle 0). But once an ingress qdisc has been deleted the kernel leaves a placeholder
 * (noop, handle 0) in its place, and a later delete naming handle ffff: gets EINVAL with the
 * extended ack "Invalid handle" (tc gets the same). A clsact in the way gives EINVAL "Invalid
 * qdisc name" instead, which is not "missing"; without an extended ack EINVAL stays ambiguous
 * and is not taken as missing.
 */
export function qdiscDelMissing(
  which: 'root' | 'ingress',
  err: { errno: number; extack?: string | undefined },
): boolean {
  if (err.errno === ENOENT) return true;
  return which === 'ingress' && err.errno === EINVAL && /invalid handle/i.test(err.extack ?? '');
}

/**
 * `tc filter add dev X parent ffff: protocol all prio 1 u32 match u32 0 0 action mirred egress
 * redirect dev Y`: one u32 key matching everything, terminal, redirecting to Y's egress.
 */
export function redirectAdd(ifindex: number, toIfindex: number): NlWriter {
  const w = new NlWriter(RTM.NEWTFILTER, NLM_F.REQUEST | NLM_F.ACK | NLM_F.CREATE | NLM_F.EXCL);
  // tcm_info: prio in the upper 16 bits, the protocol in network order in the lower 16.
  const proto = ((ETH_P_ALL & 0xff) << 8) | (ETH_P_ALL >> 8);
  w.struct(tcmsg(ifindex, 0, HANDLE_INGRESS, (1 << 16) | proto));
  w.str(TCA_KIND, 'u32');
  w.begin(TCA_OPTIONS);
  // tc_u32_sel (16 bytes) + one tc_u32_key (16 bytes) of zeros: mask 0 matches any packet.
  const sel = Buffer.alloc(32);
  sel.writeUInt8(TC_U32_TERMINAL, 0);
  sel.writeUInt8(1, 2); // nkeys
  w.attr(TCA_U32_SEL, sel);
  w.begin(TCA_U32_ACT);
  w.begin(1); // the action's position in the list
  w.str(TCA_ACT_KIND, 'mirred');
  w.begin(TCA_ACT_OPTIONS);
  // tc_mirred: index, capab, action, refcnt, bindcnt, eaction, ifindex.
  const m = Buffer.alloc(28);
  m.writeInt32LE(TC_ACT_STOLEN, 8);
  m.writeInt32LE(TCA_EGRESS_REDIR, 20);
  m.writeUInt32LE(toIfindex >>> 0, 24);
  w.attr(TCA_MIRRED_PARMS, m);
  return w.end().end().end().end();
}

/** Dump of every qdisc in the netns (`tc qdisc show`). */
export function qdiscDump(): NlWriter {
  const w = new NlWriter(RTM.GETQDISC, NLM_F.REQUEST | NLM_F.DUMP);
  w.struct(tcmsg(0, 0, 0));
  return w;
}

/** Dump of the filters on `ifindex`'s ingress qdisc (`tc filter show dev X parent ffff:`). */
export function filterDump(ifindex: number): NlWriter {
  const w = new NlWriter(RTM.GETTFILTER, NLM_F.REQUEST | NLM_F.DUMP);
  w.struct(tcmsg(ifindex, 0, HANDLE_INGRESS));
  return w;
}

// --- replies ------------------------------------------------------------------------------------

/** A tbf's options as `tc -j qdisc show` prints them: rate B/s, burst B, lat µs (absent if < 0). */
function tbfReadback(opts: NlAttrs): Pick<Qdisc, 'rateBytes' | 'burstBytes' | 'latencyUs'> | undefined {
  const q = opts.get(TCA_TBF_PARMS);
  if (!q || q.length < TC_TBF_QOPT_LEN) return undefined;
  const rate64 = opts.get(TCA_TBF_RATE64);
  const rate = rate64 && rate64.length >= 8 ? Number(rate64.readBigUInt64LE(0)) : q.readUInt32LE(8);
  const limit = q.readUInt32LE(24);
  const buffer = q.readUInt32LE(28);
  const out: Pick<Qdisc, 'rateBytes' | 'burstBytes' | 'latencyUs'> = {
    rateBytes: rate,
    burstBytes: cU32((rate * tick2time(buffer)) / 1e6),
  };
  if (rate === 0) return out;
  // tc prints the time the queue takes to drain `limit` bytes beyond the bucket; with a peak rate
  // (never set by this SDK, but a tbf may come from elsewhere) the larger of the two.
  let lat = 1e6 * (limit / rate) - tick2time(buffer);
  const prate64 = opts.get(TCA_TBF_PRATE64);
  const prate = prate64 && prate64.length >= 8 ? Number(prate64.readBigUInt64LE(0)) : q.readUInt32LE(20);
  if (prate) lat = Math.max(lat, 1e6 * (limit / prate) - tick2time(q.readUInt32LE(32)));
  if (lat >= 0) out.latencyUs = Math.trunc(lat);
  return out;
}

/**
 * The qdiscs of a `qdiscDump()` reply, shaped like the iproute2 backend's parseQdiscs: kernel
 * defaults (handle 0:) left out, handles printed as tc does ('1:', 'ffff:').
 */
export function parseQdiscs(msgs: NlMessage[], nameOf: (ifindex: number) => string | undefined): Qdisc[] {
  const out: Qdisc[] = [];
  for (const m of msgs) {
    if (m.type !== RTM.NEWQDISC || m.body.length < TCMSG_LEN) continue;
    const ifindex = m.body.readInt32LE(4);
    const major = m.body.readUInt32LE(8) >>> 16;
    const parent = m.body.readUInt32LE(12);
    if (major === 0) continue;
    const attrs = new NlAttrs(m.body, TCMSG_LEN);
    const kind = attrs.str(TCA_KIND);
    if (kind === undefined) continue;
    const q: Qdisc = {
      // tc names an index it cannot resolve "if<N>".
      link: nameOf(ifindex) ?? `if${ifindex}`,
      kind,
      handle: `${major.toString(16)}:`,
      root: parent === TC_H_ROOT,
    };
    if (kind === 'tbf') {
      const opts = attrs.nested(TCA_OPTIONS);
      const t = opts && tbfReadback(opts);
      if (t) Object.assign(q, t);
    }
    out.push(q);
  }
  return out;
}

/** Names of the devices the mirred actions of a `filterDump()` reply send to, in dump order. */
export function parseRedirects(msgs: NlMessage[], nameOf: (ifindex: number) => string | undefined): string[] {
  const out: string[] = [];
  for (const m of msgs) {
    if (m.type !== RTM.NEWTFILTER || m.body.length < TCMSG_LEN) continue;
    const attrs = new NlAttrs(m.body, TCMSG_LEN);
    const actType = ACT_ATTR[attrs.str(TCA_KIND) ?? ''];
    const acts = actType === undefined ? undefined : attrs.nested(TCA_OPTIONS)?.nested(actType);
    if (!acts) continue;
    // Entries are nested attributes numbered by position; the kernel dumps them in order.
    for (const a of acts.all) {
      const act = new NlAttrs(a.value);
      if (act.str(TCA_ACT_KIND) !== 'mirred') continue;
      const parms = act.nested(TCA_ACT_OPTIONS)?.get(TCA_MIRRED_PARMS);
      if (!parms || parms.length < 28) continue;
      const to = parms.readUInt32LE(24);
      out.push(nameOf(to) ?? `if${to}`);
    }
  }
  return out;
}
