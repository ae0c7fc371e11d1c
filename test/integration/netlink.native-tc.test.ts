// The native backend's traffic-control and bridge-VLAN messages (src/netlink/native/tc.ts and
// bridge-vlan.ts) against the real kernel and against iproute2:
//  - each request decodes to the uapi layout, and (with strace) matches what tc/bridge send;
//  - after a native request and the equivalent tc command the kernel dumps identical options, and
//    the native parsers read back exactly what the iproute2 parsers read from `tc -j` output;
//  - errors: what deleting a missing qdisc returns, and that it is an errno meaning "missing".
// Everything runs in throwaway network namespaces removed in afterAll.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Errno, errnoFromText, MISSING_ERRNOS } from '../../src/netlink/errors.js';
import {
  parseQdiscs as ipParseQdiscs,
  parseRedirects as ipParseRedirects,
  parseVlans as ipParseVlans,
} from '../../src/netlink/linux/parse.js';
import {
  BRIDGE_VLAN_INFO,
  parseVlans,
  vlanAdd,
  vlanDel,
  vlanDump,
} from '../../src/netlink/native/bridge-vlan.js';
import { withNetnsSync } from '../../src/netlink/native/netns.js';
import { NlAttrs, type NlMessage, NlWriter, splitMessages } from '../../src/netlink/native/nlmsg.js';
import { AF } from '../../src/netlink/native/rtnl.js';
import { KernelError, RtnlSocket } from '../../src/netlink/native/socket.js';
import {
  filterDump,
  ingressAdd,
  parseQdiscs,
  parseRedirects,
  pschedTicksPerUs,
  qdiscDel,
  qdiscDelMissing,
  qdiscDump,
  RTM,
  redirectAdd,
  TC_H_INGRESS,
  TC_H_ROOT,
  tbfParams,
  tbfReplace,
} from '../../src/netlink/native/tc.js';
import type { TbfSpec } from '../../src/netlink/types.js';
import { ERRNO_NAMES, type Libc, loadLibc } from '../../src/sys/libc.js';
import { runFence } from '../helpers/bounded-runs.js';

const PID = process.pid;
const isRoot = process.getuid?.() === 0;
const need = (ctx: { skip(m: string): void }) => {
  if (!isRoot) ctx.skip('needs root for network namespaces');
};
const hasStrace = spawnSync('strace', ['-V'], { stdio: 'ignore' }).status === 0;
const ENOENT = 2;
const EEXIST = 17;
const EINVAL = 22;

const nsName = (tag: string) => `cnikit-tc-${PID}-${Math.random().toString(36).slice(2, 8)}${tag}`;

interface Run {
  ok: boolean;
  out: string;
  err: string;
}
function run(cmd: string, args: string[]): Run {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { ok: r.status === 0, out: r.stdout ?? '', err: r.stderr ?? '' };
}

/** A throwaway netns with a netlink socket opened inside it. */
class TestNetns {
  readonly name: string;
  readonly path: string;
  private sock: RtnlSocket | undefined;

  constructor(tag: string) {
    this.name = nsName(tag);
    execFileSync('ip', ['netns', 'add', this.name]);
    this.path = `/var/run/netns/${this.name}`;
  }
  ip(...args: string[]): string {
    return execFileSync('ip', ['-n', this.name, ...args], { encoding: 'utf8' });
  }
  tc(...args: string[]): Run {
    return run('tc', ['-n', this.name, ...args]);
  }
  bridge(...args: string[]): Run {
    return run('bridge', ['-n', this.name, ...args]);
  }
  open(libc: Libc): void {
    this.sock = withNetnsSync(this.path, () => new RtnlSocket(libc), libc);
  }
  req(w: NlWriter): void {
    this.sock!.request(w);
  }
  /** The kernel's error for a request, undefined when it succeeded. */
  errOf(w: NlWriter): KernelError | undefined {
    try {
      this.req(w);
      return undefined;
    } catch (e) {
      if (e instanceof KernelError) return e;
      throw e;
    }
  }
  errnoOf(w: NlWriter): number | undefined {
    return this.errOf(w)?.errno;
  }
  dump(w: NlWriter): NlMessage[] {
    return this.sock!.dump(w);
  }
  private links(): Array<{ ifname: string; ifindex: number }> {
    return JSON.parse(this.ip('-j', 'link', 'show'));
  }
  index(name: string): number {
    const l = this.links().find((x) => x.ifname === name);
    if (!l) throw new Error(`no link ${name} in ${this.name}`);
    return l.ifindex;
  }
  readonly nameOf = (i: number): string | undefined => this.links().find((x) => x.ifindex === i)?.ifname;
  remove(): void {
    try {
      this.sock?.close();
    } finally {
      run('ip', ['netns', 'del', this.name]);
    }
  }
}

/** The one message a writer produces. */
function decode(w: NlWriter): NlMessage {
  const msgs = splitMessages(Buffer.from(w.finish(1)));
  expect(msgs).toHaveLength(1);
  return msgs[0]!;
}

/** Which attributes hold nested attributes, per level ('*': any type). */
interface Nest {
  [type: string]: Nest;
}
type Tree = Array<[number, string | Tree]>;
/** Attributes as a type-sorted tree (nested flag ignored, leaves in hex) for layout comparisons. */
function tree(buf: Buffer, nest: Nest): Tree {
  return new NlAttrs(buf).all
    .map(({ type, value }): [number, string | Tree] => {
      const sub = nest[type] ?? nest['*'];
      return [type, sub ? tree(value, sub) : value.toString('hex')];
    })
    .sort((a, b) => a[0] - b[0]);
}
function canon(m: NlMessage, fixed: number, nest: Nest) {
  return {
    type: m.type,
    flags: m.flags,
    fixed: m.body.subarray(0, fixed).toString('hex'),
    attrs: tree(m.body.subarray(fixed), nest),
  };
}

/**
 * The netlink requests `tool` sends, captured with strace's hex dump of sendmsg data. Dump
 * requests (sendto) and the replies are not captured.
 */
function capture(tool: string, args: string[]): { res: Run; msgs: NlMessage[] } {
  const dir = mkdtempSync(join(tmpdir(), 'cnikit-tc-strace-'));
  try {
    const log = join(dir, 'log');
    const res = run('strace', [
      '-qq',
      '-e',
      'trace=sendmsg',
      '-e',
      'write=3,4,5,6,7,8',
      '-o',
      log,
      tool,
      ...args,
    ]);
    const msgs: NlMessage[] = [];
    let cur: number[] | undefined;
    const flush = () => {
      if (cur) msgs.push(...splitMessages(Buffer.from(cur)));
      cur = undefined;
    };
    for (const line of readFileSync(log, 'utf8').split('\n')) {
      if (/^ \* \d+ bytes in buffer 0/.test(line)) {
        flush();
        cur = [];
      } else if (cur && line.startsWith(' | ')) {
        for (const h of line.slice(10, 59).match(/[0-9a-f]{2}/g) ?? []) cur.push(Number.parseInt(h, 16));
      }
    }
    flush();
    return { res, msgs };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const TCMSG = 20;
const IFINFOMSG = 16;
const NEST_TBF: Nest = { 2: {} };
const NEST_U32: Nest = { 2: { 7: { '*': { 2: {} } } } };
const NEST_VLAN: Nest = { 26: {} };

// --- encoders, no kernel needed -----------------------------------------------------------------

describe('tc encoders', () => {
  it('tbf: RTM_NEWQDISC replace, handle 1: at the root, tc_tbf_qopt + burst', () => {
    const m = decode(tbfReplace(7, { rateBits: 1_000_000, burstBytes: 15_000, latencyMs: 25 }));
    expect(m.type).toBe(RTM.NEWQDISC);
    expect(m.flags).toBe(0x1 | 0x4 | 0x400 | 0x100);
    expect(m.body.readUInt8(0)).toBe(0); // AF_UNSPEC
    expect(m.body.readInt32LE(4)).toBe(7);
    expect(m.body.readUInt32LE(8)).toBe(0x10000);
    expect(m.body.readUInt32LE(12)).toBe(TC_H_ROOT);
    expect(m.body.readUInt32LE(16)).toBe(0);
    const a = new NlAttrs(m.body, TCMSG);
    expect(a.str(1)).toBe('tbf');
    const o = a.nested(2)!;
    expect(o.all.map((x) => x.type)).toEqual([1, 6]); // PARMS, BURST; no RTAB, no RATE64
    const q = o.get(1)!;
    expect(q).toHaveLength(36);
    expect(q.readUInt8(1)).toBe(1); // TC_LINKLAYER_ETHERNET: no rate table needed
    expect(q.readUInt32LE(8)).toBe(125_000); // bytes/s
    expect(q.subarray(12, 24).equals(Buffer.alloc(12))).toBe(true); // no peak rate
    expect(q.readUInt32LE(24)).toBe(125_000 * 0.025 + 15_000); // limit = rate × latency + burst
    // 15000 B at 125000 B/s = 120000 µs, in 64 ns ticks (psched 15.625 ticks/µs here).
    expect(q.readUInt32LE(28)).toBe(Math.trunc(120_000 * pschedTicksPerUs()));
    expect(q.readUInt32LE(32)).toBe(0);
    expect(o.u32(6)).toBe(15_000);
  });

  it('tbf: a byte rate from 2^32 up caps the 32-bit field and adds TCA_TBF_RATE64', () => {
    const m = decode(tbfReplace(3, { rateBits: 40_000_000_000, burstBytes: 15_000, latencyMs: 25 }));
    const o = new NlAttrs(m.body, TCMSG).nested(2)!;
    expect(o.get(1)!.readUInt32LE(8)).toBe(0xffffffff);
    expect(o.u64(4)).toBe(5_000_000_000n);
    // Just below: 32-bit field only.
    const n = decode(tbfReplace(3, { rateBits: (2 ** 32 - 1) * 8, burstBytes: 1, latencyMs: 1 }));
    const p = new NlAttrs(n.body, TCMSG).nested(2)!;
    expect(p.has(4)).toBe(false);
    expect(p.get(1)!.readUInt32LE(8)).toBe(2 ** 32 - 1);
  });

  it('tbf: refuses what tc refuses', () => {
    expect(() => tbfParams({ rateBits: 7, burstBytes: 1, latencyMs: 1 })).toThrow(RangeError);
    for (const burstBytes of [0, 1.5, 2 ** 32])
      expect(() => tbfParams({ rateBits: 8, burstBytes, latencyMs: 1 })).toThrow(RangeError);
    expect(() => tbfParams({ rateBits: 8, burstBytes: 1, latencyMs: 0 })).toThrow(RangeError);
  });

  it('ingress, delete and dump requests', () => {
    const i = decode(ingressAdd(4));
    expect([i.type, i.flags]).toEqual([RTM.NEWQDISC, 0x1 | 0x4 | 0x400 | 0x200]);
    expect([i.body.readInt32LE(4), i.body.readUInt32LE(8), i.body.readUInt32LE(12)]).toEqual([
      4,
      0xffff0000,
      TC_H_INGRESS,
    ]);
    expect(new NlAttrs(i.body, TCMSG).str(1)).toBe('ingress');
    const root = decode(qdiscDel(4, 'root'));
    expect([root.type, root.flags, root.body.length]).toEqual([RTM.DELQDISC, 0x5, TCMSG]);
    expect([root.body.readInt32LE(4), root.body.readUInt32LE(8), root.body.readUInt32LE(12)]).toEqual([
      4,
      0,
      TC_H_ROOT,
    ]);
    const ing = decode(qdiscDel(4, 'ingress'));
    expect([ing.type, ing.flags]).toEqual([RTM.DELQDISC, 0x5]);
    expect([ing.body.readInt32LE(4), ing.body.readUInt32LE(8), ing.body.readUInt32LE(12)]).toEqual([
      4,
      0xffff0000,
      TC_H_INGRESS,
    ]);
    // The kind makes the kernel refuse a clsact rather than delete it, as with tc.
    expect(new NlAttrs(ing.body, TCMSG).all.map((a) => a.type)).toEqual([1]);
    expect(new NlAttrs(ing.body, TCMSG).str(1)).toBe('ingress');
    const q = decode(qdiscDump());
    expect([q.type, q.flags, q.body.toString('hex')]).toEqual([RTM.GETQDISC, 0x301, '00'.repeat(TCMSG)]);
    const f = decode(filterDump(9));
    expect([f.type, f.flags, f.body.readInt32LE(4), f.body.readUInt32LE(12)]).toEqual([
      RTM.GETTFILTER,
      0x301,
      9,
      0xffff0000,
    ]);
  });

  it('redirect: u32 match-all, terminal, mirred egress redirect (stolen)', () => {
    const m = decode(redirectAdd(3, 9));
    expect([m.type, m.flags]).toEqual([RTM.NEWTFILTER, 0x1 | 0x4 | 0x400 | 0x200]);
    expect(m.body.readInt32LE(4)).toBe(3);
    expect(m.body.readUInt32LE(8)).toBe(0); // the kernel picks the filter handle
    expect(m.body.readUInt32LE(12)).toBe(0xffff0000);
    expect(m.body.readUInt16LE(18)).toBe(1); // prio
    expect(m.body.readUInt16BE(16)).toBe(0x0003); // ETH_P_ALL, network order
    const a = new NlAttrs(m.body, TCMSG);
    expect(a.str(1)).toBe('u32');
    const o = a.nested(2)!;
    const sel = o.get(5)!;
    expect(sel).toHaveLength(16 + 16);
    expect([sel.readUInt8(0), sel.readUInt8(2)]).toEqual([1, 1]); // TC_U32_TERMINAL, one key
    expect(sel.subarray(3).equals(Buffer.alloc(29))).toBe(true); // key val 0 mask 0
    const acts = o.nested(7)!;
    expect(acts.all.map((x) => x.type)).toEqual([1]);
    const act = new NlAttrs(acts.all[0]!.value);
    expect(act.str(1)).toBe('mirred');
    const p = act.nested(2)!.get(2)!;
    expect(p).toHaveLength(28);
    expect([p.readInt32LE(8), p.readInt32LE(20), p.readUInt32LE(24)]).toEqual([4, 1, 9]);
  });

  it('parseQdiscs names unknown indexes as tc does and skips handle 0:', () => {
    const msg = (ifindex: number, handle: number, parent: number, kind: string): NlMessage => {
      const w = new NlWriter(RTM.NEWQDISC, 0);
      const t = Buffer.alloc(TCMSG);
      t.writeInt32LE(ifindex, 4);
      t.writeUInt32LE(handle, 8);
      t.writeUInt32LE(parent, 12);
      w.struct(t);
      w.str(1, kind);
      return splitMessages(Buffer.from(w.finish(1)))[0]!;
    };
    const got = parseQdiscs(
      [msg(1, 0, TC_H_ROOT, 'noqueue'), msg(2, 0xffff0000, TC_H_INGRESS, 'ingress'), msg(9, 0x10000, 1, 'x')],
      (i) => (i === 2 ? 'eth0' : undefined),
    );
    expect(got).toEqual([
      { link: 'eth0', kind: 'ingress', handle: 'ffff:', root: false },
      { link: 'if9', kind: 'x', handle: '1:', root: false },
    ]);
  });
});

describe('bridge vlan encoders', () => {
  it('vlanAdd: RTM_SETLINK AF.BRIDGE, IFLA_AF_SPEC { flags SELF, vlan info }', () => {
    const m = decode(vlanAdd(5, 10, { pvid: true, untagged: true, self: true }));
    expect([m.type, m.flags]).toEqual([19, 0x5]);
    // ifinfomsg: family, pad, type, index, flags, change.
    expect(m.body.subarray(0, IFINFOMSG).toString('hex')).toBe('07000000050000000000000000000000');
    // Exact bytes of IFLA_AF_SPEC: nested header, u16 flags attr (padded), 4-byte vlan info.
    expect(m.body.subarray(IFINFOMSG).toString('hex')).toBe(
      [
        '1400',
        '1a80', // IFLA_AF_SPEC (26) | NLA_F_NESTED, 20 bytes
        '0600',
        '0000',
        '0200',
        '0000', // IFLA_BRIDGE_FLAGS = BRIDGE_FLAGS_SELF, padded
        '0800',
        '0200',
        '0600',
        '0a00', // IFLA_BRIDGE_VLAN_INFO { PVID|UNTAGGED, vid 10 }
      ].join(''),
    );
    const spec = new NlAttrs(m.body, IFINFOMSG).nested(26)!;
    expect(spec.u16(0)).toBe(2);
    const info = spec.get(2)!;
    expect([info.readUInt16LE(0), info.readUInt16LE(2)]).toEqual([
      BRIDGE_VLAN_INFO.PVID | BRIDGE_VLAN_INFO.UNTAGGED,
      10,
    ]);
  });

  it('vlanAdd on a port leaves out IFLA_BRIDGE_FLAGS (the kernel then acts on the master)', () => {
    const m = decode(vlanAdd(5, 4094, {}));
    const spec = new NlAttrs(m.body, IFINFOMSG).nested(26)!;
    expect(spec.all.map((a) => a.type)).toEqual([2]);
    expect(spec.get(2)!.toString('hex')).toBe('0000fe0f');
    expect(m.body.length).toBe(IFINFOMSG + 4 + 8);
  });

  it('vlanDel: RTM_DELLINK with the same attributes; vids outside 1..4094 are refused', () => {
    const m = decode(vlanDel(5, 20, { self: true }));
    expect([m.type, m.flags, m.body.readUInt8(0), m.body.readInt32LE(4)]).toEqual([17, 0x5, AF.BRIDGE, 5]);
    const spec = new NlAttrs(m.body, IFINFOMSG).nested(26)!;
    expect(spec.u16(0)).toBe(2);
    expect(spec.get(2)!.toString('hex')).toBe('00001400');
    for (const vid of [0, 4095, 1.5]) expect(() => vlanAdd(5, vid, {})).toThrow(RangeError);
  });

  it('vlanDump: RTM_GETLINK dump, AF.BRIDGE, IFLA_EXT_MASK = RTEXT_FILTER_BRVLAN', () => {
    const m = decode(vlanDump());
    expect([m.type, m.flags, m.body.readUInt8(0), m.body.readInt32LE(4)]).toEqual([18, 0x301, AF.BRIDGE, 0]);
    expect(new NlAttrs(m.body, IFINFOMSG).all).toEqual([{ type: 29, value: Buffer.from([2, 0, 0, 0]) }]);
  });

  it('parseVlans: this port only, ranges expanded with the end entry flags, sorted', () => {
    const link = (family: number, index: number, vlans: Array<[number, number]>): NlMessage => {
      const w = new NlWriter(16, 0x2);
      const h = Buffer.alloc(IFINFOMSG);
      h.writeUInt8(family, 0);
      h.writeInt32LE(index, 4);
      w.struct(h);
      w.str(3, 'p0');
      w.begin(26);
      w.u16(0, 0);
      for (const [flags, vid] of vlans) {
        const b = Buffer.alloc(4);
        b.writeUInt16LE(flags, 0);
        b.writeUInt16LE(vid, 2);
        w.attr(2, b);
      }
      w.end();
      return splitMessages(Buffer.from(w.finish(1)))[0]!;
    };
    const { PVID, UNTAGGED, RANGE_BEGIN: B, RANGE_END: E } = BRIDGE_VLAN_INFO;
    const got = parseVlans(
      [
        link(AF.BRIDGE, 3, [[0, 99]]),
        link(AF.BRIDGE, 4, [
          [0, 300],
          [B | UNTAGGED, 20],
          [E | UNTAGGED, 22],
          [PVID | UNTAGGED, 1],
        ]),
        link(0, 4, [[0, 7]]),
      ],
      4,
    );
    expect(got).toEqual([
      { vid: 1, pvid: true, untagged: true },
      { vid: 20, pvid: false, untagged: true },
      { vid: 21, pvid: false, untagged: true },
      { vid: 22, pvid: false, untagged: true },
      { vid: 300, pvid: false, untagged: false },
    ]);
  });
});

// --- the kernel ---------------------------------------------------------------------------------

describe('native tc on the kernel, checked against tc', () => {
  let libc: Libc;
  let ns: TestNetns | undefined;
  const N = () => ns!;

  beforeAll(async () => {
    if (!isRoot) return;
    libc = await loadLibc();
    ns = new TestNetns('');
    const n = N();
    n.ip('link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1');
    for (const l of ['ifb0', 'ifb1', 'ifb2']) n.ip('link', 'add', l, 'type', 'ifb');
    for (const l of ['v0', 'v1', 'ifb0', 'ifb1']) n.ip('link', 'set', l, 'up'); // ifb2 stays down
    n.open(libc);
  });
  afterAll(() => ns?.remove());

  const idx = (l: string) => N().index(l);
  const nativeQdiscs = () => parseQdiscs(N().dump(qdiscDump()), N().nameOf);
  const tcQdiscs = () => ipParseQdiscs(N().tc('-j', 'qdisc', 'show').out);
  /** The kernel's dump of a link's root tbf options, in hex. */
  const rawTbf = (link: string): string | undefined => {
    const i = idx(link);
    for (const m of N().dump(qdiscDump())) {
      if (m.body.readInt32LE(4) !== i || m.body.readUInt32LE(12) !== TC_H_ROOT) continue;
      const a = new NlAttrs(m.body, TCMSG);
      if (a.str(1) === 'tbf') return a.get(2)?.toString('hex');
    }
    return undefined;
  };
  const tcTbf = (link: string, s: TbfSpec) =>
    N().tc(
      ...`qdisc replace dev ${link} root handle 1: tbf rate ${s.rateBits}bit burst ${s.burstBytes}b latency ${s.latencyMs}ms`.split(
        ' ',
      ),
    );

  /**
   * Native tbf on v0, tc on v1: both succeed or fail alike; on success the kernel holds the same
   * options on both and both parsers read the same. Returns v0's reading.
   */
  function tbfBoth(spec: TbfSpec) {
    const errno = N().errnoOf(tbfReplace(idx('v0'), spec));
    const r = tcTbf('v1', spec);
    expect(errno !== undefined, `${JSON.stringify(spec)}: native errno ${errno}, tc: ${r.err}`).toBe(!r.ok);
    if (errno !== undefined) return undefined;
    expect(rawTbf('v0')).toBeDefined();
    expect(rawTbf('v0'), JSON.stringify(spec)).toBe(rawTbf('v1'));
    const native = nativeQdiscs();
    expect(native).toEqual(tcQdiscs());
    const [a, b] = ['v0', 'v1'].map((l) => native.find((q) => q.link === l && q.kind === 'tbf'));
    expect({ ...a, link: 'v1' }).toEqual(b);
    return a;
  }

  it('tbf: same kernel state and readback as `tc qdisc replace … tbf`', (ctx) => {
    need(ctx);
    expect(tbfBoth({ rateBits: 1_000_000, burstBytes: 15_000, latencyMs: 25 })).toEqual({
      link: 'v0',
      kind: 'tbf',
      handle: '1:',
      root: true,
      rateBytes: 125_000,
      burstBytes: 15_000,
      latencyUs: 25_000,
    });
    // Replacing an existing tbf changes it in place.
    expect(tbfBoth({ rateBits: 80_000_000, burstBytes: 40_000, latencyMs: 50 })).toMatchObject({
      rateBytes: 10_000_000,
      burstBytes: 40_000,
      latencyUs: 50_000,
    });
  });

  it('tbf: a byte rate >= 2^32 (TCA_TBF_RATE64)', (ctx) => {
    need(ctx);
    // At this rate the 64 ns tick is coarse: tc reads back 995000 B and 25001 µs, and so do we.
    const q = tbfBoth({ rateBits: 40_000_000_000, burstBytes: 1_000_000, latencyMs: 25 });
    expect(q).toMatchObject({ rateBytes: 5_000_000_000, burstBytes: 995_000, latencyUs: 25_001 });
    expect(tbfBoth({ rateBits: 2 ** 35, burstBytes: 15_000, latencyMs: 1 })).toMatchObject({
      rateBytes: 2 ** 32,
    });
  });

  it('tbf: a limit past 2^32 bytes wraps exactly as in tc', (ctx) => {
    need(ctx);
    // 5e9 B/s × 1 s + burst does not fit the u32 limit; tc's conversion keeps the low 32 bits.
    const spec = { rateBits: 40_000_000_000, burstBytes: 15_000, latencyMs: 1000 };
    expect(tbfParams(spec).limit).toBe((5_000_000_000 + 15_000) % 2 ** 32);
    tbfBoth(spec);
    tbfBoth({ rateBits: Number.MAX_SAFE_INTEGER, burstBytes: 0xffffffff, latencyMs: 1_000_000 });
  });

  it('tbf: random specs in the SDK limits give tc’s state and readback', async (ctx) => {
    need(ctx);
    const fence = runFence(ctx);
    const spec: fc.Arbitrary<TbfSpec> = fc.record({
      rateBits: fc.oneof(
        fc.integer({ min: 8, max: 100_000_000 }),
        fc.integer({ min: 8, max: 2 ** 40 }),
        fc.integer({ min: 2 ** 35, max: Number.MAX_SAFE_INTEGER }),
      ),
      burstBytes: fc.oneof(fc.integer({ min: 1, max: 1 << 20 }), fc.integer({ min: 1, max: 0xffffffff })),
      latencyMs: fc.oneof(fc.integer({ min: 1, max: 200 }), fc.integer({ min: 1, max: 1_000_000 })),
    });
    const RUNS = 100;
    await fc.assert(
      fc.asyncProperty(spec, (s) =>
        fence.run(async () => {
          tbfBoth(s);
        }),
      ),
      { numRuns: RUNS, plugins: [fc.interruptAfterTimeLimit(15_000)] },
    );
    expect(fence.passed, `${fence.passed} of ${RUNS} runs`).toBeGreaterThanOrEqual(10);
  });

  it('ingress qdisc and u32/mirred redirect to an ifb, as tc makes and reads them', (ctx) => {
    need(ctx);
    const n = N();
    n.req(ingressAdd(idx('v0')));
    expect(n.errnoOf(ingressAdd(idx('v0')))).toBe(EEXIST);
    n.req(redirectAdd(idx('v0'), idx('ifb0')));
    // The same with tc on the other end.
    expect(n.tc('qdisc', 'add', 'dev', 'v1', 'handle', 'ffff:', 'ingress').ok).toBe(true);
    const f = 'parent ffff: protocol all prio 1 u32 match u32 0 0 action mirred egress redirect dev ifb1';
    expect(n.tc('filter', 'add', 'dev', 'v1', ...f.split(' ')).err).toBe('');

    const native = nativeQdiscs();
    expect(native).toEqual(tcQdiscs());
    for (const link of ['v0', 'v1'])
      expect(native).toContainEqual({ link, kind: 'ingress', handle: 'ffff:', root: false });
    for (const [link, to] of [
      ['v0', 'ifb0'],
      ['v1', 'ifb1'],
    ] as const) {
      const mine = parseRedirects(n.dump(filterDump(idx(link))), n.nameOf);
      expect(mine).toEqual([to]);
      expect(ipParseRedirects(n.tc('-j', 'filter', 'show', 'dev', link, 'parent', 'ffff:').out)).toEqual(
        mine,
      );
    }
    // tc describes both filters alike, apart from the target and the action's index.
    const shown = (link: string) =>
      JSON.stringify(JSON.parse(n.tc('-j', 'filter', 'show', 'dev', link, 'parent', 'ffff:').out), (k, v) =>
        k === 'index' ? undefined : v === 'ifb1' ? 'ifb0' : v,
      );
    expect(shown('v0')).toBe(shown('v1'));

    // And it redirects: what v1 sends (ARP for an unanswered ping) arrives on v0 and leaves ifb0.
    const txOf = (l: string): number => JSON.parse(n.ip('-s', '-j', 'link', 'show', l))[0].stats64.tx.packets;
    // v1 may still carry a tbf from the property runs, slow enough to hold the ARP back.
    n.tc('qdisc', 'del', 'dev', 'v1', 'root');
    const before = txOf('ifb0');
    n.ip('addr', 'add', '10.250.0.1/24', 'dev', 'v1');
    run('ip', ['netns', 'exec', n.name, 'ping', '-c', '1', '-W', '1', '-I', 'v1', '10.250.0.2']);
    expect(txOf('ifb0')).toBeGreaterThan(before);
  });

  it('deletes the ingress (with its filters) and root qdiscs', (ctx) => {
    need(ctx);
    const n = N();
    if (!nativeQdiscs().some((q) => q.link === 'v0' && q.kind === 'ingress')) n.req(ingressAdd(idx('v0')));
    if (!rawTbf('v0')) n.req(tbfReplace(idx('v0'), { rateBits: 1e6, burstBytes: 15_000, latencyMs: 25 }));
    n.req(qdiscDel(idx('v0'), 'ingress'));
    let qs = nativeQdiscs();
    expect(qs).toEqual(tcQdiscs());
    expect(qs.filter((q) => q.link === 'v0').map((q) => q.kind)).toEqual(['tbf']);
    expect(parseRedirects(n.dump(filterDump(idx('v0'))), n.nameOf)).toEqual([]);
    expect(ipParseRedirects(n.tc('-j', 'filter', 'show', 'dev', 'v0', 'parent', 'ffff:').out)).toEqual([]);
    n.req(qdiscDel(idx('v0'), 'root'));
    qs = nativeQdiscs();
    expect(qs).toEqual(tcQdiscs());
    expect(qs.filter((q) => q.link === 'v0')).toEqual([]);
  });

  it('a missing qdisc: ENOENT, or EINVAL "Invalid handle" after an earlier ingress delete', (ctx) => {
    need(ctx);
    const n = N();
    expect(MISSING_ERRNOS.has(ERRNO_NAMES[ENOENT] as Errno)).toBe(true);
    const cases: Array<[string, 'root' | 'ingress', number, string]> = [
      ['v0', 'root', ENOENT, 'default qdisc (noqueue, handle 0)'],
      ['ifb0', 'root', ENOENT, 'default pfifo_fast, link up'],
      ['ifb2', 'root', ENOENT, 'link down (noop qdisc)'],
      ['ifb0', 'ingress', ENOENT, 'never had an ingress qdisc'],
      // The kernel keeps a noop placeholder (handle 0) after the first delete; a request naming
      // handle ffff: (tc's, and ours) is refused as "Invalid handle".
      ['v0', 'ingress', EINVAL, 'ingress added and deleted before'],
    ];
    for (const [link, which, want, why] of cases) {
      const e = n.errOf(qdiscDel(idx(link), which));
      const what = `${link} ${which}: ${why}: ${e?.message}`;
      expect(e?.errno, what).toBe(want);
      expect(qdiscDelMissing(which, e!), what).toBe(true);
      if (want === EINVAL) expect(e?.extack).toMatch(/Invalid handle/);
      // tc gets the same answer (its text, through the iproute2 backend's mapping).
      const r = n.tc('qdisc', 'del', 'dev', link, which);
      expect(r.ok).toBe(false);
      expect(errnoFromText(r.err), `${what}; tc: ${r.err}`).toBe(ERRNO_NAMES[want]);
    }
    // EINVAL alone is no proof of absence: a clsact at the ingress parent gives EINVAL too.
    expect(n.tc('qdisc', 'add', 'dev', 'ifb1', 'clsact').ok).toBe(true);
    try {
      const e = n.errOf(qdiscDel(idx('ifb1'), 'ingress'));
      expect(e?.errno).toBe(EINVAL);
      expect(e?.extack).toMatch(/Invalid qdisc name/);
      expect(qdiscDelMissing('ingress', e!)).toBe(false);
      expect(n.tc('qdisc', 'del', 'dev', 'ifb1', 'ingress').ok).toBe(false);
      const qs = nativeQdiscs();
      expect(qs).toEqual(tcQdiscs());
      expect(qs).toContainEqual({ link: 'ifb1', kind: 'clsact', handle: 'ffff:', root: false });
    } finally {
      n.tc('qdisc', 'del', 'dev', 'ifb1', 'clsact');
    }
    expect(qdiscDelMissing('ingress', { errno: EINVAL })).toBe(false);
    expect(qdiscDelMissing('root', { errno: EINVAL, extack: 'Invalid handle' })).toBe(false);
  });

  it('a redirect without an ingress qdisc: EINVAL "Parent Qdisc doesn\'t exists", as for tc', (ctx) => {
    need(ctx);
    const n = N();
    const e = n.errOf(redirectAdd(idx('ifb1'), idx('ifb0')));
    expect(e?.errno).toBe(EINVAL);
    const f = 'parent ffff: protocol all prio 1 u32 match u32 0 0 action mirred egress redirect dev ifb0';
    const r = n.tc('filter', 'add', 'dev', 'ifb1', ...f.split(' '));
    expect(r.ok).toBe(false);
    expect(e?.extack).toBeTruthy();
    // Same kernel answer; note the iproute2 backend maps this text to ENOENT ("doesn't exist").
    expect(r.err).toContain(e!.extack!);
  });

  describe('requests match what tc sends (strace)', () => {
    const skipNo = (ctx: { skip(m: string): void }) => {
      need(ctx);
      if (!hasStrace) ctx.skip('strace is not installed');
    };
    const tcReq = (args: string, type: number) => {
      const { msgs } = capture('tc', ['-n', N().name, ...args.split(' ')]);
      const m = msgs.filter((x) => x.type === type);
      expect(m, args).toHaveLength(1);
      return m[0]!;
    };

    it('tbf replace: same tcmsg and attributes, minus the rate table', (ctx) => {
      skipNo(ctx);
      for (const s of [
        { rateBits: 1_000_000, burstBytes: 15_000, latencyMs: 25 },
        { rateBits: 40_000_000_000, burstBytes: 1_000_000, latencyMs: 25 },
        { rateBits: 8, burstBytes: 0xffffffff, latencyMs: 1_000_000 },
        { rateBits: 123_456_789, burstBytes: 1499, latencyMs: 7 },
      ]) {
        const tc = tcReq(
          `qdisc replace dev v1 root handle 1: tbf rate ${s.rateBits}bit burst ${s.burstBytes}b latency ${s.latencyMs}ms`,
          RTM.NEWQDISC,
        );
        const theirs = canon(tc, TCMSG, NEST_TBF);
        const opts = theirs.attrs.find((a) => a[0] === 2)![1] as Tree;
        expect(opts.map((a) => a[0])).toContain(2); // tc's TCA_TBF_RTAB …
        theirs.attrs = theirs.attrs.map((a) => (a[0] === 2 ? [2, opts.filter((o) => o[0] !== 2)] : a));
        expect(canon(decode(tbfReplace(idx('v1'), s)), TCMSG, NEST_TBF), JSON.stringify(s)).toEqual(theirs);
      }
      N().tc('qdisc', 'del', 'dev', 'v1', 'root');
    });

    it('ingress add, u32 redirect, qdisc delete', (ctx) => {
      skipNo(ctx);
      const [v1, ifb1] = [idx('v1'), idx('ifb1')];
      N().tc('qdisc', 'del', 'dev', 'v1', 'ingress');
      const ing = tcReq('qdisc add dev v1 handle ffff: ingress', RTM.NEWQDISC);
      expect(canon(decode(ingressAdd(v1)), TCMSG, {})).toEqual(canon(ing, TCMSG, {}));
      const f = tcReq(
        'filter add dev v1 parent ffff: protocol all prio 1 u32 match u32 0 0 action mirred egress redirect dev ifb1',
        RTM.NEWTFILTER,
      );
      expect(canon(decode(redirectAdd(v1, ifb1)), TCMSG, NEST_U32)).toEqual(canon(f, TCMSG, NEST_U32));
      const root = tcReq('qdisc del dev v1 root', RTM.DELQDISC);
      expect(canon(decode(qdiscDel(v1, 'root')), TCMSG, {})).toEqual(canon(root, TCMSG, {}));
      const del = tcReq('qdisc del dev v1 ingress', RTM.DELQDISC);
      expect(canon(decode(qdiscDel(v1, 'ingress')), TCMSG, {})).toEqual(canon(del, TCMSG, {}));
    });
  });
});

describe('native bridge vlan on the kernel', () => {
  let libc: Libc;
  let ns: TestNetns | undefined;
  /** Whether this kernel can make a VLAN-filtering bridge (probed in a throwaway netns). */
  let vlanFiltering = false;
  let probeError = '';

  beforeAll(async () => {
    if (!isRoot) return;
    libc = await loadLibc();
    const probe = new TestNetns('-p');
    try {
      const r = run('ip', ['-n', probe.name, 'link', 'add', 'brp', 'type', 'bridge', 'vlan_filtering', '1']);
      vlanFiltering = r.ok;
      probeError = r.err.trim();
    } finally {
      probe.remove();
    }
    ns = new TestNetns('-b');
    ns.ip('link', 'add', 'br0', 'type', 'bridge');
    ns.ip('link', 'add', 'p0', 'type', 'veth', 'peer', 'name', 'q0');
    ns.ip('link', 'set', 'p0', 'master', 'br0');
    if (vlanFiltering) {
      ns.ip('link', 'add', 'brv', 'type', 'bridge', 'vlan_filtering', '1');
      for (const p of ['p1', 'p2']) {
        ns.ip('link', 'add', p, 'type', 'veth', 'peer', 'name', `q${p.slice(1)}`);
        ns.ip('link', 'set', p, 'master', 'brv');
      }
    }
    ns.open(libc);
  });
  afterAll(() => ns?.remove());

  const N = () => ns!;
  const native = (link: string) => parseVlans(N().dump(vlanDump()), N().index(link));
  const viaBridge = (link: string) => ipParseVlans(N().bridge('-j', 'vlan', 'show', 'dev', link).out);

  it('requests match what bridge(8) sends (strace; the kernel need not accept them)', (ctx) => {
    need(ctx);
    if (!hasStrace) ctx.skip('strace is not installed');
    const p0 = N().index('p0');
    const cases: Array<[string, NlWriter]> = [
      [
        'vlan add dev p0 vid 10 pvid untagged self',
        vlanAdd(p0, 10, { pvid: true, untagged: true, self: true }),
      ],
      ['vlan add dev p0 vid 4094', vlanAdd(p0, 4094, {})],
      ['vlan add dev p0 vid 7 untagged', vlanAdd(p0, 7, { untagged: true })],
      ['vlan del dev p0 vid 10 self', vlanDel(p0, 10, { self: true })],
      ['vlan del dev p0 vid 20', vlanDel(p0, 20)],
    ];
    for (const [args, w] of cases) {
      const { msgs } = capture('bridge', ['-n', N().name, ...args.split(' ')]);
      const theirs = msgs.filter((m) => m.type === 19 || m.type === 17);
      expect(theirs, args).toHaveLength(1);
      expect(canon(decode(w), IFINFOMSG, NEST_VLAN), args).toEqual(canon(theirs[0]!, IFINFOMSG, NEST_VLAN));
    }
    // Undo whatever a VLAN-capable kernel accepted.
    for (const vid of ['4094', '7']) N().bridge('vlan', 'del', 'dev', 'p0', 'vid', vid);
  });

  it('a bridge without VLAN filtering: same list and same answer to an add as bridge(8)', (ctx) => {
    need(ctx);
    const n = N();
    expect(native('p0')).toEqual(viaBridge('p0'));
    expect(native('br0')).toEqual(viaBridge('br0'));
    const errno = n.errnoOf(vlanAdd(n.index('p0'), 30, {}));
    const r = n.bridge('vlan', 'add', 'dev', 'p0', 'vid', '30');
    expect(errno === undefined).toBe(r.ok);
    if (errno !== undefined) expect(ERRNO_NAMES[errno]).toBe(errnoFromText(r.err));
    expect(native('p0')).toEqual(viaBridge('p0'));
  });

  it('a VLAN-filtering bridge: add/del on ports and self, read back as bridge(8) does', (ctx) => {
    need(ctx);
    if (!vlanFiltering)
      ctx.skip(
        `this kernel has no bridge VLAN filtering: \`ip link add type bridge vlan_filtering 1\` fails (${probeError})`,
      );
    const n = N();
    const [p1, p2, brv] = ['p1', 'p2', 'brv'].map((l) => n.index(l)) as [number, number, number];
    n.req(vlanAdd(p1, 10, { pvid: true, untagged: true }));
    n.req(vlanAdd(p1, 20, {}));
    n.req(vlanAdd(p1, 21, { untagged: true }));
    n.req(vlanAdd(brv, 30, { self: true }));
    for (const l of ['p1', 'brv']) expect(native(l)).toEqual(viaBridge(l));
    // A port joins with the bridge's default VLAN 1 (pvid, untagged); a new pvid takes the flag from it.
    expect(native('p1')).toEqual([
      { vid: 1, pvid: false, untagged: true },
      { vid: 10, pvid: true, untagged: true },
      { vid: 20, pvid: false, untagged: false },
      { vid: 21, pvid: false, untagged: true },
    ]);
    expect(native('brv')).toContainEqual({ vid: 30, pvid: false, untagged: false });
    // The same made with bridge(8) on p2 reads back identically.
    for (const a of ['vid 10 pvid untagged', 'vid 20', 'vid 21 untagged'])
      expect(n.bridge('vlan', 'add', 'dev', 'p2', ...a.split(' ')).ok).toBe(true);
    expect(native('p2')).toEqual(native('p1'));
    n.req(vlanDel(p1, 20));
    n.req(vlanDel(brv, 30, { self: true }));
    expect(native('p1').map((v) => v.vid)).toEqual([1, 10, 21]);
    expect(native('brv').some((v) => v.vid === 30)).toBe(false);
    for (const l of ['p1', 'p2', 'brv']) expect(native(l)).toEqual(viaBridge(l));
    // Deleting a VLAN the port does not have: the same answer as bridge(8) gets (Debian's 6.1 kernel
    // accepts it and changes nothing).
    const before = native('p2');
    const errno = n.errnoOf(vlanDel(p2, 99));
    const r = n.bridge('vlan', 'del', 'dev', 'p2', 'vid', '99');
    expect(errno === undefined).toBe(r.ok);
    if (errno !== undefined) expect(ERRNO_NAMES[errno]).toBe(errnoFromText(r.err));
    expect(native('p2')).toEqual(before);
  });
});
