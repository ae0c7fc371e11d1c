// One suite, two backends: every assertion runs against the in-memory model and against the real
// kernel (as root, inside throwaway namespaces, with a private netns standing in for the host).
// Over the 400-line guideline on purpose: it is the one shared suite the issue asks for, and
// splitting it would split the list of behaviours both backends must agree on.
import { execFileSync } from 'node:child_process';
import { release } from 'node:os';
import {
  type Link,
  type LinkKind,
  linuxNetlink,
  memoryNetlink,
  type Netlink,
  NetlinkError,
  type NetnsOps,
} from 'cni-kit/netlink';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const PID = process.pid;

interface Backend {
  name: string;
  setup(): Promise<{ nl: Netlink; cleanup(): Promise<void> } | string>;
}

function rootReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root';
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
    execFileSync('nsenter', ['--version'], { stdio: 'ignore' });
  } catch {
    return 'iproute2 or nsenter missing';
  }
  return undefined;
}

const backends: Backend[] = [
  {
    name: 'memory',
    async setup() {
      return { nl: memoryNetlink({ hostLinks: [] }), cleanup: async () => {} };
    },
  },
  ...(['native', 'iproute2'] as const).map(
    (kernelPath): Backend => ({
      name: `linux ${kernelPath}`,
      async setup() {
        const why = rootReason();
        if (why) return why;
        const host = `nlsh${PID}${kernelPath[0]}`;
        execFileSync('ip', ['netns', 'add', host]);
        const nl = linuxNetlink({ hostNetns: `/var/run/netns/${host}`, kernelPath });
        return {
          nl,
          cleanup: async () => {
            execFileSync('ip', ['netns', 'del', host]);
          },
        };
      },
    }),
  ),
];

/** Whether the running kernel is at least `major.minor` (uname's release, e.g. 6.1.0-56-amd64). */
function kernelAtLeast(major: number, minor: number): boolean {
  const [ma = 0, mi = 0] = release().split(/[.-]/).map(Number);
  return ma > major || (ma === major && mi >= minor);
}

/** Errno of a rejected promise (fails the test when it resolves). */
async function errnoOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(NetlinkError);
    return (e as NetlinkError).errno;
  }
  throw new Error('expected a NetlinkError, got success');
}

async function eventually<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms = 3000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.each(backends)('netlink shared suite ($name)', (backend) => {
  let nl: Netlink;
  let cleanup: (() => Promise<void>) | undefined;
  let unavailable: string | undefined;
  let kinds: ReadonlySet<LinkKind> = new Set();
  const created: string[] = [];
  let seq = 0;

  beforeAll(async () => {
    const r = await backend.setup();
    if (typeof r === 'string') unavailable = r;
    else {
      nl = r.nl;
      cleanup = r.cleanup;
      kinds = await nl.supportedLinkKinds();
    }
  });
  afterAll(async () => {
    for (const p of created) await nl.removeNetns(p).catch(() => {});
    await cleanup?.();
  });

  async function newNs(): Promise<string> {
    const ns = await nl.createNetns(`nlsc${PID}-${++seq}`);
    created.push(ns.path);
    return ns.path;
  }
  /** Unique link name in the shared host netns. */
  const hname = (base: string): string => `${base}${++seq}`;
  const host = (): NetnsOps => nl.open();
  const need = (ctx: { skip(msg: string): void }, kind?: LinkKind): void => {
    if (unavailable) ctx.skip(`linux backend unavailable: ${unavailable}`);
    if (kind && !kinds.has(kind)) ctx.skip(`this kernel has no ${kind} link type`);
  };

  it('creates a veth pair with the peer in another netns and cross-references the ends', async (ctx) => {
    need(ctx);
    const c = await newNs();
    const peer = hname('vsh');
    const eth0 = await nl.inNetns(c, async (ns) => {
      ns.createLink({ kind: 'veth', name: 'eth0', peerName: peer, peerNetns: nl.hostNetns, mtu: 1400 });
      return ns.getLink('eth0');
    });
    const hostEnd = await host().getLink(peer);
    expect(eth0).toMatchObject({ kind: 'veth', mtu: 1400, up: false, parentIndex: hostEnd.index });
    expect(hostEnd).toMatchObject({ kind: 'veth', parentIndex: eth0.index });
    expect(eth0.parentNetnsId).toBeTypeOf('number');
    expect(hostEnd.parentNetnsId).toBeTypeOf('number');
    expect(eth0.mac).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
  });

  it('builds a bridge attachment: bridge, port, hairpin, address, routes, sysctls', async (ctx) => {
    need(ctx);
    const c = await newNs();
    const br = hname('brs');
    const peer = hname('vsh');
    const h = host();
    h.createLink({ kind: 'bridge', name: br });
    h.setLink(br, { up: true });
    await nl.inNetns(c, (ns) => {
      ns.createLink({ kind: 'veth', name: 'eth0', peerName: peer, peerNetns: nl.hostNetns });
    });
    h.setLink(peer, { up: true, master: br, hairpin: true });
    h.addAddress(br, '10.77.0.1/24');
    const [brLink, port] = [await h.getLink(br), await h.getLink(peer)];
    expect(port).toMatchObject({ master: br, hairpin: true, up: true });
    expect(brLink.mac).toBe(port.mac);
    await nl.inNetns(c, async (ns) => {
      ns.setSysctl('net/ipv4/conf/eth0/arp_notify', 1);
      ns.addAddress('eth0', '10.77.0.2/24');
      ns.setLink('eth0', { up: true });
      ns.addRoute({ dst: 'default', gw: '10.77.0.1' });
      ns.addRoute({ dst: '10.99.0.0/16', gw: '10.77.0.1', metric: 50, mtu: 1300 });
      expect(await ns.getSysctl('net.ipv4.conf.eth0.arp_notify')).toBe('1');
      const addrs = await ns.addresses({ link: 'eth0', family: 4 });
      expect(addrs.map((a) => a.cidr)).toEqual(['10.77.0.2/24']);
      const routes = await ns.routes({ family: 4 });
      expect(routes).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ dst: '0.0.0.0/0', gw: '10.77.0.1', dev: 'eth0', table: 254 }),
          expect.objectContaining({
            dst: '10.77.0.0/24',
            dev: 'eth0',
            scope: 'link',
            src: '10.77.0.2',
            protocol: 'kernel',
          }),
          expect.objectContaining({ dst: '10.99.0.0/16', gw: '10.77.0.1', metric: 50, mtu: 1300 }),
        ]),
      );
    });
    // The kernel sets the carrier at once but publishes operstate from its
    // link-watch worker, which runs about a second later and later still on
    // a loaded machine: wait for both rather than for the carrier alone.
    const eth0 = await eventually(
      () => nl.open(c).getLink('eth0'),
      (l) => l.up && l.lowerUp && l.operstate === 'UP',
      20_000,
    );
    expect(eth0, JSON.stringify(eth0)).toMatchObject({ up: true, lowerUp: true, operstate: 'UP' });
  });

  it('fails with EEXIST on a duplicate name and tolerates it with existsOk, continuing the batch', async (ctx) => {
    need(ctx);
    const c = await newNs();
    const ns = nl.open(c);
    ns.createLink({ kind: 'bridge', name: 'br0' });
    ns.createLink({ kind: 'bridge', name: 'br0' });
    const err = await ns.flush().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NetlinkError);
    expect((err as NetlinkError).errno).toBe('EEXIST');
    expect((err as NetlinkError).message).toContain('br0');
    expect((err as NetlinkError).message).toContain(c);
    ns.addAddress('br0', '10.5.0.1/24');
    ns.addAddress('br0', '10.5.0.1/24', { existsOk: true });
    ns.setLink('br0', { mtu: 1450 });
    await ns.flush();
    expect((await ns.getLink('br0')).mtu).toBe(1450);
  });

  it('reports ENODEV for missing links and treats missingOk deletes as success', async (ctx) => {
    need(ctx);
    const ns = nl.open(await newNs());
    ns.setLink('nope0', { up: true });
    const e = (await ns.flush().catch((x: unknown) => x)) as NetlinkError;
    expect(e).toBeInstanceOf(NetlinkError);
    expect(e.errno).toBe('ENODEV');
    expect(e.message).toMatch(/nope0/);
    ns.deleteLink('nope0', { missingOk: true });
    ns.deleteAddress('lo', '10.9.9.9/32', { missingOk: true });
    ns.deleteRoute({ dst: '10.9.0.0/16', dev: 'lo' }, { missingOk: true });
    await ns.flush();
    expect(await ns.findLink('nope0')).toBeUndefined();
    expect(await errnoOf(ns.getLink(999))).toBe('ENODEV');
  });

  it('deletes both veth ends when one is deleted', async (ctx) => {
    need(ctx);
    const c = await newNs();
    const peer = hname('vsh');
    await nl.inNetns(c, (ns) =>
      ns.createLink({ kind: 'veth', name: 'eth0', peerName: peer, peerNetns: nl.hostNetns }),
    );
    expect(await host().findLink(peer)).toBeDefined();
    await nl.inNetns(c, (ns) => ns.deleteLink('eth0'));
    expect(await host().findLink(peer)).toBeUndefined();
  });

  it('removing a netns removes its links and their veth peers', async (ctx) => {
    need(ctx);
    const c = await newNs();
    const peer = hname('vsh');
    await nl.inNetns(c, (ns) =>
      ns.createLink({ kind: 'veth', name: 'eth0', peerName: peer, peerNetns: nl.hostNetns }),
    );
    await nl.removeNetns(c);
    expect(await nl.netnsExists(c)).toBe(false);
    const gone = await eventually(
      () => host().findLink(peer),
      (l) => l === undefined,
    );
    expect(gone).toBeUndefined();
    expect(await errnoOf(nl.inNetns(c, () => {}))).toBe('ENOENT');
  });

  it('moving a link downs it, drops its addresses and keeps its index when free', async (ctx) => {
    need(ctx);
    const [a, b] = [await newNs(), await newNs()];
    const na = nl.open(a);
    na.createLink({ kind: 'veth', name: 'va', peerName: 'vb' });
    na.addAddress('va', '10.6.0.1/24');
    na.setLink('va', { up: true });
    const before = await na.getLink('va');
    na.moveLink('va', b);
    await na.flush();
    expect(await na.findLink('va')).toBeUndefined();
    const nb = nl.open(b);
    const moved = await nb.getLink('va');
    expect(moved).toMatchObject({ index: before.index, up: false, mac: before.mac });
    expect(await nb.addresses({ link: 'va' })).toEqual([]);
    expect((await na.getLink('vb')).parentNetnsId).toBeTypeOf('number');
  });

  it('renames links and refuses a name already taken', async (ctx) => {
    need(ctx);
    const ns = nl.open(await newNs());
    ns.createLink({ kind: 'veth', name: 'tmp1', peerName: 'tmp2' });
    ns.renameLink('tmp1', 'eth0');
    await ns.flush();
    const names = (await ns.links()).map((l: Link) => l.name);
    expect(names).toContain('eth0');
    expect(names).not.toContain('tmp1');
    ns.renameLink('eth0', 'tmp2');
    expect(await errnoOf(ns.flush())).toBe('EEXIST');
  });

  it('un-enslaves ports when their bridge is deleted; masters must be bridges', async (ctx) => {
    need(ctx);
    const ns = nl.open(await newNs());
    ns.createLink({ kind: 'bridge', name: 'br1' });
    ns.createLink({ kind: 'veth', name: 'p1', peerName: 'p2' });
    ns.setLink('p1', { master: 'br1' });
    await ns.flush();
    expect((await ns.getLink('p1')).master).toBe('br1');
    ns.setLink('p2', { master: 'p1' });
    expect(await errnoOf(ns.flush())).toBe('EOPNOTSUPP');
    ns.setLink('p2', { hairpin: true });
    expect(await errnoOf(ns.flush())).toBe('EOPNOTSUPP');
    ns.deleteLink('br1');
    const p1 = await ns.getLink('p1');
    expect(p1.master).toBeUndefined();
    expect(p1.hairpin).toBeUndefined();
  });

  it('isolates bridge ports (IFLA_BRPORT_ISOLATED) and reads it back; only on a port', async (ctx) => {
    need(ctx);
    const ns = nl.open(await newNs());
    ns.createLink({ kind: 'bridge', name: 'bri' });
    ns.createLink({ kind: 'veth', name: 'i1', peerName: 'i2' });
    ns.setLink('i1', { master: 'bri' });
    ns.setLink('i1', { isolated: true });
    expect((await ns.getLink('i1')).isolated).toBe(true);
    ns.setLink('i1', { isolated: false });
    expect((await ns.getLink('i1')).isolated).toBe(false);
    ns.setLink('i2', { isolated: true });
    expect(await errnoOf(ns.flush())).toBe('EOPNOTSUPP');
  });

  it('manages addresses and their connected routes', async (ctx) => {
    need(ctx);
    const ns = nl.open(await newNs());
    ns.createLink({ kind: 'veth', name: 'a0', peerName: 'a1' });
    ns.addAddress('a0', '10.8.0.5/24');
    await ns.flush();
    expect(await ns.routes({ family: 4 })).toEqual([]);
    ns.setLink('a0', { up: true });
    ns.setLink('a1', { up: true });
    expect((await ns.routes({ family: 4 })).map((r) => r.dst)).toEqual(['10.8.0.0/24']);
    ns.addRoute({ dst: '10.20.0.0/16', gw: '10.8.0.1' });
    ns.setLink('a0', { up: false });
    expect(await ns.routes({ family: 4 })).toEqual([]);
    expect((await ns.addresses({ link: 'a0' })).map((a) => a.cidr)).toEqual(['10.8.0.5/24']);
    ns.setLink('a0', { up: true });
    ns.deleteAddress('a0', '10.8.0.5/24');
    expect(await ns.routes({ family: 4 })).toEqual([]);
    ns.deleteAddress('a0', '10.8.0.5/24');
    expect(await errnoOf(ns.flush())).toBe('EADDRNOTAVAIL');
  });

  it('adds, replaces and deletes routes in tables, with reachability checks', async (ctx) => {
    need(ctx);
    const ns = nl.open(await newNs());
    ns.createLink({ kind: 'veth', name: 'r0', peerName: 'r1' });
    ns.setLink('r0', { up: true });
    ns.addAddress('r0', '10.30.0.2/24');
    ns.addAddress('r0', 'fd30::2/64', { noDad: true });
    ns.addRoute({ dst: '10.40.0.0/16', gw: '10.30.0.1', table: 100, metric: 10, src: '10.30.0.2' });
    ns.addRoute({ dst: 'default', gw: 'fd30::1' });
    await ns.flush();
    const t100 = await ns.routes({ table: 100, family: 4 });
    expect(t100).toEqual([
      expect.objectContaining({
        dst: '10.40.0.0/16',
        gw: '10.30.0.1',
        table: 100,
        metric: 10,
        src: '10.30.0.2',
      }),
    ]);
    const v6 = (await ns.routes({ family: 6 })).filter((r) => !r.dst.startsWith('fe80'));
    expect(v6).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ dst: '::/0', gw: 'fd30::1', dev: 'r0', family: 6 }),
        expect.objectContaining({ dst: 'fd30::/64', dev: 'r0', protocol: 'kernel' }),
      ]),
    );
    ns.addRoute({ dst: '10.40.0.0/16', gw: '10.30.0.1', table: 100, metric: 10 });
    expect(await errnoOf(ns.flush())).toBe('EEXIST');
    ns.replaceRoute({ dst: '10.40.0.0/16', gw: '10.30.0.3', table: 100, metric: 10 });
    expect((await ns.routes({ table: 100, family: 4 })).map((r) => r.gw)).toEqual(['10.30.0.3']);
    ns.deleteRoute({ dst: '10.40.0.0/16', table: 100, metric: 10 });
    expect(await ns.routes({ table: 100 })).toEqual([]);
    ns.deleteRoute({ dst: '10.40.0.0/16', table: 100 });
    expect(await errnoOf(ns.flush())).toBe('ESRCH');
    ns.addRoute({ dst: '10.50.0.0/16', gw: '10.60.0.1' });
    expect(await errnoOf(ns.flush())).toBe('ENETUNREACH');
    // The ptp plugin's trick: a /32 link-scope route makes an off-subnet gateway reachable.
    ns.addRoute({ dst: '10.60.0.1/32', dev: 'r0', scope: 'link', src: '10.30.0.2' });
    ns.addRoute({ dst: '10.50.0.0/16', gw: '10.60.0.1', src: '10.30.0.2' });
    expect((await ns.routes({ family: 4 })).map((r) => r.dst)).toContain('10.50.0.0/16');
  });

  it('keeps the protocol a route is added or replaced with (boot by default)', async (ctx) => {
    need(ctx);
    const ns = nl.open(await newNs());
    ns.createLink({ kind: 'veth', name: 'p0', peerName: 'p1' });
    ns.setLink('p0', { up: true });
    ns.addAddress('p0', '10.31.0.2/24');
    ns.addAddress('p0', 'fd31::2/64', { noDad: true });
    // What sbr does: a kernel prefix route copied into another table as it was.
    ns.replaceRoute({
      dst: '10.31.0.0/24',
      dev: 'p0',
      scope: 'link',
      src: '10.31.0.2',
      table: 100,
      protocol: 'kernel',
    });
    ns.addRoute({ dst: 'fd31::/64', dev: 'p0', metric: 256, table: 100, protocol: 'kernel' });
    ns.addRoute({ dst: '10.32.0.0/16', gw: '10.31.0.1', table: 100, protocol: 'static' });
    ns.addRoute({ dst: '10.33.0.0/16', gw: '10.31.0.1', table: 100 });
    await ns.flush();
    const t100 = await ns.routes({ table: 100 });
    const proto = Object.fromEntries(t100.map((r) => [r.dst, r.protocol]));
    expect(proto).toEqual({
      '10.31.0.0/24': 'kernel',
      '10.32.0.0/16': 'static',
      '10.33.0.0/16': 'boot',
      'fd31::/64': 'kernel',
    });
    expect(() => ns.addRoute({ dst: '10.34.0.0/16', gw: '10.31.0.1', protocol: 'bgp' as 'boot' })).toThrow(
      /route protocol/,
    );
  });

  it('appends routes: IPv6 gateways become one multipath route, IPv4 a second entry', async (ctx) => {
    need(ctx);
    const ns = nl.open(await newNs());
    ns.createLink({ kind: 'veth', name: 'm0', peerName: 'm1' });
    ns.createLink({ kind: 'veth', name: 'n0', peerName: 'n1' });
    for (const l of ['m0', 'm1', 'n0', 'n1']) ns.setLink(l, { up: true });
    ns.addAddress('m0', '10.31.0.2/24');
    ns.addAddress('n0', '10.32.0.2/24');
    ns.addAddress('m0', 'fd31::2/64', { noDad: true });
    ns.addAddress('n0', 'fd32::2/64', { noDad: true });
    ns.addRoute({ dst: '10.70.0.0/16', gw: '10.31.0.1' });
    ns.appendRoute({ dst: '10.70.0.0/16', gw: '10.32.0.1' });
    ns.addRoute({ dst: 'fd70::/64', gw: 'fd31::1' });
    ns.appendRoute({ dst: 'fd70::/64', gw: 'fd32::1' });
    await ns.flush();
    const v4 = (await ns.routes({ family: 4 })).filter((r) => r.dst === '10.70.0.0/16');
    expect(v4.map((r) => `${r.gw} ${r.dev}`)).toEqual(['10.31.0.1 m0', '10.32.0.1 n0']);
    const v6 = (await ns.routes({ family: 6 })).filter((r) => r.dst === 'fd70::/64');
    expect(v6).toHaveLength(1);
    expect(v6[0]!.gw).toBeUndefined();
    expect(v6[0]!.nexthops).toEqual([
      { gw: 'fd31::1', dev: 'm0', weight: 1 },
      { gw: 'fd32::1', dev: 'n0', weight: 1 },
    ]);
    // The same nexthop twice is refused; deleting one gateway leaves a plain route.
    ns.appendRoute({ dst: '10.70.0.0/16', gw: '10.32.0.1' });
    expect(await errnoOf(ns.flush())).toBe('EEXIST');
    ns.deleteRoute({ dst: 'fd70::/64', gw: 'fd31::1' });
    const left = (await ns.routes({ family: 6 })).filter((r) => r.dst === 'fd70::/64');
    expect(left.map((r) => `${r.gw} ${r.dev} ${r.nexthops === undefined}`)).toEqual(['fd32::1 n0 true']);
  });

  it('adds routes without NLM_F_EXCL (RouteAddEcmp): IPv4 a second entry first, IPv6 a nexthop, identical EEXIST', async (ctx) => {
    need(ctx);
    const ns = nl.open(await newNs());
    ns.createLink({ kind: 'veth', name: 'e0', peerName: 'e1' });
    ns.createLink({ kind: 'veth', name: 'f0', peerName: 'f1' });
    for (const l of ['e0', 'e1', 'f0', 'f1']) ns.setLink(l, { up: true });
    ns.addAddress('e0', '10.33.0.2/24');
    ns.addAddress('f0', '10.34.0.2/24');
    ns.addAddress('e0', 'fd33::2/64', { noDad: true });
    ns.addAddress('f0', 'fd34::2/64', { noDad: true });
    // What two bridge ADDs with a default route each do in one container.
    ns.addRouteEcmp({ dst: '0.0.0.0/0', gw: '10.33.0.1', dev: 'e0' });
    ns.addRouteEcmp({ dst: '0.0.0.0/0', gw: '10.34.0.1', dev: 'f0' });
    ns.addRouteEcmp({ dst: '::/0', gw: 'fd33::1', dev: 'e0' });
    ns.addRouteEcmp({ dst: '::/0', gw: 'fd34::1', dev: 'f0' });
    await ns.flush();
    const v4 = (await ns.routes({ family: 4 })).filter((r) => r.dst === '0.0.0.0/0');
    expect(v4.map((r) => `${r.gw} ${r.dev}`)).toEqual(['10.34.0.1 f0', '10.33.0.1 e0']);
    const v6 = (await ns.routes({ family: 6 })).filter((r) => r.dst === '::/0');
    expect(v6).toHaveLength(1);
    expect(v6[0]!.nexthops).toEqual([
      { gw: 'fd33::1', dev: 'e0', weight: 1 },
      { gw: 'fd34::1', dev: 'f0', weight: 1 },
    ]);
    // The identical route again is EEXIST, in both families and whichever entry it repeats.
    for (const r of [
      { dst: '0.0.0.0/0', gw: '10.33.0.1', dev: 'e0' },
      { dst: '0.0.0.0/0', gw: '10.34.0.1', dev: 'f0' },
      { dst: '::/0', gw: 'fd34::1', dev: 'f0' },
      { dst: '::/0', gw: 'fd33::1', dev: 'e0' },
    ]) {
      ns.addRouteEcmp(r);
      expect(await errnoOf(ns.flush()), JSON.stringify(r)).toBe('EEXIST');
    }
    // Another metric is another key: a plain route of its own.
    ns.addRouteEcmp({ dst: '0.0.0.0/0', gw: '10.33.0.1', dev: 'e0', metric: 100 });
    await ns.flush();
    const all4 = (await ns.routes({ family: 4 })).filter((r) => r.dst === '0.0.0.0/0');
    expect(all4.map((r) => `${r.gw} ${r.metric ?? 0}`)).toEqual([
      '10.34.0.1 0',
      '10.33.0.1 0',
      '10.33.0.1 100',
    ]);
    // A same-key IPv4 route that differs only in its source address is a different fib_info.
    ns.addRouteEcmp({ dst: '10.80.0.0/16', dev: 'e0' });
    ns.addRouteEcmp({ dst: '10.80.0.0/16', dev: 'e0', src: '10.33.0.2' });
    await ns.flush();
    const src = (await ns.routes({ family: 4 })).filter((r) => r.dst === '10.80.0.0/16');
    expect(src.map((r) => r.src ?? '-')).toEqual(['10.33.0.2', '-']);
    // A plain add still refuses what an ECMP add made.
    ns.addRoute({ dst: '0.0.0.0/0', gw: '10.34.0.1', dev: 'f0' });
    expect(await errnoOf(ns.flush())).toBe('EEXIST');
  });

  it('adds and deletes policy rules for both families', async (ctx) => {
    need(ctx);
    const ns = nl.open(await newNs());
    ns.addRule({ family: 4, src: '10.70.0.5/32', table: 100, priority: 100 });
    ns.addRule({ family: 6, src: 'fd70::5/128', table: 101 });
    await ns.flush();
    expect(await ns.rules(4)).toEqual(
      expect.arrayContaining([{ family: 4, priority: 100, src: '10.70.0.5/32', table: 100 }]),
    );
    const r6 = await ns.rules(6);
    expect(r6).toEqual(
      expect.arrayContaining([{ family: 6, priority: 32765, src: 'fd70::5/128', table: 101 }]),
    );
    ns.deleteRule({ family: 4, src: '10.70.0.5/32', table: 100, priority: 100 });
    expect((await ns.rules(4)).some((r) => r.table === 100)).toBe(false);
    ns.deleteRule({ family: 4, src: '10.70.0.5/32', table: 100 });
    expect(await errnoOf(ns.flush())).toBe('ENOENT');
  });

  it('reads and writes sysctls per netns', async (ctx) => {
    need(ctx);
    const [a, b] = [nl.open(await newNs()), nl.open(await newNs())];
    // New namespaces inherit IPv4 settings from the initial one, so flip whatever is there.
    const before = await b.getSysctl('net/ipv4/ip_forward');
    const flipped = before === '1' ? '0' : '1';
    a.setSysctl('net.ipv4.ip_forward', flipped);
    expect(await a.getSysctl('net/ipv4/ip_forward')).toBe(flipped);
    expect(await b.getSysctl('net/ipv4/ip_forward')).toBe(before);
    a.setSysctl('net/ipv4/conf/nosuch0/arp_notify', 1);
    expect(await errnoOf(a.flush())).toBe('ENOENT');
    a.createLink({ kind: 'veth', name: 's0', peerName: 's1' });
    a.setSysctl('net/ipv6/conf/s0/accept_dad', 0);
    a.setSysctl('net/ipv6/conf/s0/keep_addr_on_down', 1);
    expect(await a.getSysctl('net/ipv6/conf/s0/accept_dad')).toBe('0');
    expect(await a.getSysctl('net/ipv6/conf/s1/accept_dad')).toBe('1');
  });

  it('waits for IPv6 duplicate address detection', async (ctx) => {
    need(ctx);
    const ns = nl.open(await newNs());
    ns.createLink({ kind: 'veth', name: 'd0', peerName: 'd1' });
    ns.setLink('d1', { up: true });
    ns.setLink('d0', { up: true });
    ns.addAddress('d0', 'fd40::2/64');
    ns.addAddress('d1', 'fd40::3/64', { noDad: true });
    await ns.flush();
    expect((await ns.addresses({ link: 'd1', family: 6 })).find((a) => a.ip === 'fd40::3')?.tentative).toBe(
      false,
    );
    await ns.waitDad('d0', { timeoutMs: 8000 });
    const a = (await ns.addresses({ link: 'd0', family: 6 })).find((x) => x.ip === 'fd40::2');
    expect(a).toMatchObject({ tentative: false, dadFailed: false, prefixLength: 64, scope: 'global' });
  });

  it('sets mtu, mac, promisc, alias and txqlen', async (ctx) => {
    need(ctx);
    const ns = nl.open(await newNs());
    ns.createLink({ kind: 'veth', name: 'm0', peerName: 'm1', mac: '0a:58:0a:00:00:05' });
    ns.setLink('m0', { mtu: 9000, promisc: true, allmulti: true, alias: 'orig-eth3', txqlen: 500 });
    let l = await ns.getLink('m0');
    expect(l).toMatchObject({
      mtu: 9000,
      promisc: true,
      allmulti: true,
      alias: 'orig-eth3',
      txqlen: 500,
      mac: '0a:58:0a:00:00:05',
    });
    ns.setLink('m0', { mac: '0A:58:0A:00:00:06', alias: null, promisc: false });
    l = await ns.getLink('m0');
    expect(l.mac).toBe('0a:58:0a:00:00:06');
    expect(l.alias).toBeUndefined();
    expect(l.promisc).toBe(false);
  });

  it('shapes traffic like the bandwidth plugin: tbf, ingress qdisc, redirect into an ifb', async (ctx) => {
    need(ctx, 'ifb');
    const ns = nl.open(await newNs());
    ns.createLink({ kind: 'veth', name: 'hv0', peerName: 'hv1' });
    ns.createLink({ kind: 'ifb', name: 'bwp0', mtu: 1500 });
    ns.setLink('bwp0', { up: true });
    ns.setTbf('hv0', { rateBits: 1_000_000, burstBytes: 4096, latencyMs: 25 });
    ns.addIngressQdisc('hv0');
    ns.redirectIngress('hv0', 'bwp0');
    ns.setTbf('bwp0', { rateBits: 8_000_000, burstBytes: 16384, latencyMs: 25 });
    const ours = (await ns.qdiscs()).filter((q) => q.kind === 'tbf' || q.kind === 'ingress');
    // Dumped in ifindex order (hv1 < hv0 < bwp0), root before ingress.
    expect(ours).toEqual([
      {
        link: 'hv0',
        kind: 'tbf',
        handle: '1:',
        root: true,
        rateBytes: 125_000,
        burstBytes: 4096,
        latencyUs: 25000,
      },
      { link: 'hv0', kind: 'ingress', handle: 'ffff:', root: false },
      {
        link: 'bwp0',
        kind: 'tbf',
        handle: '1:',
        root: true,
        rateBytes: 1_000_000,
        burstBytes: 16384,
        latencyUs: 25000,
      },
    ]);
    expect(await ns.ingressRedirects('hv0')).toEqual(['bwp0']);
    ns.addIngressQdisc('hv0');
    expect(await errnoOf(ns.flush())).toBe('EEXIST');
    ns.addIngressQdisc('hv0', { existsOk: true });
    ns.redirectIngress('hv1', 'bwp0');
    expect(await errnoOf(ns.flush())).toBe('ENOENT');
    ns.deleteQdisc('hv0', 'ingress');
    expect(await ns.ingressRedirects('hv0')).toEqual([]);
    ns.deleteQdisc('hv0', 'root');
    ns.deleteQdisc('hv0', 'root', { missingOk: true });
    expect((await ns.qdiscs('hv0')).filter((q) => q.kind === 'tbf')).toEqual([]);
    ns.deleteQdisc('hv0', 'root');
    expect(await errnoOf(ns.flush())).toBe('ENOENT');
  });

  it('configures bridge VLANs the way the bridge plugin does', async (ctx) => {
    need(ctx);
    if (!(await nl.supportsBridgeVlans())) ctx.skip('this kernel has no bridge VLAN filtering');
    const ns = nl.open(await newNs());
    ns.createLink({ kind: 'bridge', name: 'brv', vlanFiltering: true });
    ns.createLink({ kind: 'veth', name: 'pv0', peerName: 'pv1' });
    ns.setLink('pv0', { master: 'brv' });
    expect(await ns.bridgeVlans('pv0')).toEqual([{ vid: 1, pvid: true, untagged: true }]);
    ns.deleteBridgeVlan('pv0', 1);
    ns.addBridgeVlan('pv0', 100, { pvid: true, untagged: true });
    ns.addBridgeVlan('pv0', 200);
    ns.addBridgeVlan('brv', 100, { self: true });
    expect(await ns.bridgeVlans('pv0')).toEqual([
      { vid: 100, pvid: true, untagged: true },
      { vid: 200, pvid: false, untagged: false },
    ]);
    // Deleting a VLAN the port does not have is no error on the kernel (seen on Debian's 6.1).
    ns.deleteBridgeVlan('pv0', 300);
    await ns.flush();
    expect(await ns.bridgeVlans('pv0')).toHaveLength(2);
    ns.addBridgeVlan('pv1', 5);
    expect(await errnoOf(ns.flush())).toBe('EOPNOTSUPP');
  });

  it('creates macvlan links on a host parent directly inside a container netns', async (ctx) => {
    need(ctx, 'macvlan');
    const c = await newNs();
    const parent = hname('par');
    const h = host();
    h.createLink({ kind: 'veth', name: parent, peerName: hname('pap'), mtu: 1500 });
    h.createLink({ kind: 'macvlan', name: hname('tmv'), parent, mode: 'private', netns: c, mtu: 1400 });
    await h.flush();
    const inC = (await nl.open(c).links()).find((l) => l.kind === 'macvlan');
    expect(inC).toMatchObject({ macvlanMode: 'private', mtu: 1400 });
    expect(inC?.parentNetnsId).toBeTypeOf('number');
    // A name the host already uses: kernels from 6.13 (and the memory model) check the name only in
    // the netns the link is created in, so it is fine there; older ones (Debian 12's 6.1) check it in
    // the caller's netns too and refuse with EEXIST, creating nothing.
    h.createLink({ kind: 'macvlan', name: parent, parent, netns: c });
    if (backend.name === 'memory' || kernelAtLeast(6, 13)) {
      await h.flush();
      expect((await nl.open(c).links()).filter((l) => l.name === parent).map((l) => l.kind)).toEqual([
        'macvlan',
      ]);
      h.createLink({ kind: 'macvlan', name: parent, parent, netns: c });
      expect(await errnoOf(h.flush())).toBe('EEXIST');
      const cns = nl.open(c);
      cns.deleteLink(parent);
      await cns.flush();
    } else {
      expect(await errnoOf(h.flush())).toBe('EEXIST');
    }
    expect((await nl.open(c).links()).some((l) => l.name === parent)).toBe(false);
    h.createLink({ kind: 'macvlan', name: hname('tmv'), parent, mtu: 1600 });
    expect(await errnoOf(h.flush())).toBe('EINVAL');
    // A macvlan on that macvlan is attached to the real device underneath (in the host).
    const inside = nl.open(c);
    inside.createLink({ kind: 'macvlan', name: 'stk0', parent: inC!.name });
    await inside.flush();
    const stacked = (await inside.links()).find((l) => l.name === 'stk0');
    expect(stacked).toMatchObject({ parentIndex: inC?.parentIndex, parentNetnsId: inC?.parentNetnsId });
    // Lowering the parent's MTU lowers the macvlan above it, in the other netns too.
    h.setLink(parent, { mtu: 1280 });
    await h.flush();
    expect((await nl.open(c).links()).find((l) => l.kind === 'macvlan')?.mtu).toBe(1280);
  });

  it('creates macvlan links with a broadcast queue length and reads it back', async (ctx) => {
    need(ctx, 'macvlan');
    const ns = nl.open(await newNs());
    ns.createLink({ kind: 'veth', name: 'bq0', peerName: 'bq1' });
    ns.createLink({ kind: 'macvlan', name: 'mq0', parent: 'bq0', bcQueueLen: 250 });
    ns.createLink({ kind: 'macvlan', name: 'mq1', parent: 'bq0' });
    const links = await ns.links();
    expect(links.find((l) => l.name === 'mq0')?.bcQueueLen).toBe(250);
    // The kernel's default when none is asked for.
    expect(links.find((l) => l.name === 'mq1')?.bcQueueLen).toBe(1000);
    expect(() => ns.createLink({ kind: 'macvlan', name: 'mq2', parent: 'bq0', bcQueueLen: -1 })).toThrow(
      /bcQueueLen/,
    );
  });

  it('creates ipvlan links on a macvlan device, and no macvlan on an ipvlan one', async (ctx) => {
    need(ctx, 'ipvlan');
    need(ctx, 'macvlan');
    const ns = nl.open(await newNs());
    ns.createLink({ kind: 'veth', name: 'mi0', peerName: 'mi1' });
    ns.createLink({ kind: 'macvlan', name: 'mim', parent: 'mi0', mode: 'bridge' });
    // Found by the kernel lane's differential property: the macvlan device itself is the master.
    ns.createLink({ kind: 'ipvlan', name: 'mii', parent: 'mim', mode: 'l2' });
    const links = await ns.links();
    const byName = (n: string) => links.find((l) => l.name === n);
    expect(byName('mii')).toMatchObject({ kind: 'ipvlan', parentIndex: byName('mim')?.index });
    ns.createLink({ kind: 'ipvlan', name: 'mij', parent: 'mi1', mode: 'l2' });
    ns.createLink({ kind: 'macvlan', name: 'min', parent: 'mij', mode: 'bridge' });
    expect(await errnoOf(ns.flush())).toBe('EINVAL');
  });

  it('vlan links come up and go down with their lower device', async (ctx) => {
    need(ctx, 'vlan');
    const ns = nl.open(await newNs());
    ns.createLink({ kind: 'veth', name: 'lw0', peerName: 'lw1' });
    ns.createLink({ kind: 'vlan', name: 'lv0', parent: 'lw0', vlanId: 5 });
    ns.createLink({ kind: 'vlan', name: 'lv1', parent: 'lv0', vlanId: 6 });
    const up = async () =>
      Object.fromEntries(
        (await ns.links()).filter((l) => l.name !== 'lo' && l.name !== 'lw1').map((l) => [l.name, l.up]),
      );
    expect(await up()).toEqual({ lw0: false, lv0: false, lv1: false });
    // Found by the kernel lane's differential property: a VLAN set down comes up with its lower
    // device, and a VLAN on it with it.
    ns.setLink('lw0', { up: true });
    expect(await up()).toEqual({ lw0: true, lv0: true, lv1: true });
    ns.setLink('lw0', { up: false });
    expect(await up()).toEqual({ lw0: false, lv0: false, lv1: false });
  });

  for (const kind of ['ipvlan', 'vlan'] as const) {
    it(`creates ${kind} links with their mode/id`, async (ctx) => {
      need(ctx, kind);
      const ns = nl.open(await newNs());
      ns.createLink({ kind: 'veth', name: 'up0', peerName: 'up1' });
      if (kind === 'ipvlan') ns.createLink({ kind, name: 'iv0', parent: 'up0', mode: 'l3' });
      else ns.createLink({ kind, name: 'iv0', parent: 'up0', vlanId: 42 });
      const l = await ns.getLink('iv0');
      expect(l.kind).toBe(kind);
      expect(kind === 'ipvlan' ? l.ipvlanMode : l.vlanId).toBe(kind === 'ipvlan' ? 'l3' : 42);
      expect(l.parentIndex).toBe((await ns.getLink('up0')).index);
    });
  }

  for (const kind of ['vxlan', 'ifb', 'dummy'] as const) {
    it(`creates and deletes a ${kind} link`, async (ctx) => {
      need(ctx, kind);
      const ns = nl.open(await newNs());
      if (kind === 'vxlan') ns.createLink({ kind, name: 'k0', vni: 4242 });
      else ns.createLink({ kind, name: 'k0' });
      const l = await ns.getLink('k0');
      expect(l.kind).toBe(kind);
      if (kind === 'vxlan') expect(l.vni).toBe(4242);
      ns.deleteLink('k0');
      expect(await ns.findLink('k0')).toBeUndefined();
    });
  }

  it('creates tap and tun devices with their flags, owner and group; an existing name is EEXIST', async (ctx) => {
    need(ctx, 'tap');
    need(ctx, 'tun');
    const ns = nl.open(await newNs());
    ns.createLink({ kind: 'tap', name: 'tp0', multiQueue: true, owner: 1000, group: 100, mtu: 1400 });
    ns.createLink({ kind: 'tap', name: 'tp1', mac: '02:00:00:00:aa:01', vnetHdr: true });
    ns.createLink({ kind: 'tun', name: 'tn0' });
    ns.createLink({ kind: 'bridge', name: 'tbr' });
    ns.setLink('tp0', { master: 'tbr', up: true });
    const links = await ns.links();
    const tp0 = links.find((l) => l.name === 'tp0');
    // The kernel calls both 'tun'; the SDK reports the device type as the kind.
    expect(tp0).toMatchObject({ kind: 'tap', multiQueue: true, vnetHdr: false, persist: true, owner: 1000 });
    expect(tp0).toMatchObject({ group: 100, mtu: 1400, master: 'tbr', up: true, txqlen: 1000 });
    // No process has it open: no carrier.
    expect(tp0).toMatchObject({ lowerUp: false, operstate: 'DOWN' });
    const tp1 = links.find((l) => l.name === 'tp1');
    expect(tp1).toMatchObject({ kind: 'tap', mac: '02:00:00:00:aa:01', multiQueue: false, vnetHdr: true });
    expect(tp1?.owner).toBeUndefined();
    expect(tp1?.group).toBeUndefined();
    expect(links.find((l) => l.name === 'tn0')).toMatchObject({ kind: 'tun', mac: '', txqlen: 500 });
    ns.createLink({ kind: 'tap', name: 'tp0' });
    expect(await errnoOf(ns.flush())).toBe('EEXIST');
    ns.createLink({ kind: 'tap', name: 'tbr' });
    expect(await errnoOf(ns.flush())).toBe('EEXIST');
    ns.createLink({ kind: 'tap', name: 'tp0' }, { existsOk: true });
    ns.setLink('tp1', { mtu: 65521 });
    await ns.flush();
    ns.setLink('tp1', { mtu: 65522 });
    expect(await errnoOf(ns.flush())).toBe('EINVAL');
    ns.deleteLink('tp0');
    ns.deleteLink('tn0');
    expect((await ns.links()).map((l) => l.name).sort()).toEqual(['lo', 'tbr', 'tp1']);
  });

  it('refuses tap/tun specs the device cannot take, before anything runs (code 7)', async (ctx) => {
    need(ctx);
    const ns = host();
    const code7 = (fn: () => void, text: string) => {
      expect(fn).toThrow(expect.objectContaining({ code: 7, message: expect.stringContaining(text) }));
    };
    code7(() => ns.createLink({ kind: 'tap', name: 'x0', netns: '/var/run/netns/x' }), 'x0.netns');
    code7(
      () => ns.createLink({ kind: 'tun', name: 'x0', mac: '02:00:00:00:00:01' }),
      'tun device has no MAC',
    );
    code7(() => ns.createLink({ kind: 'tap', name: 'x0', mtu: 65530 }), 'x0.mtu: 65530');
    code7(() => ns.createLink({ kind: 'tap', name: 'x0', owner: -1 }), 'x0.owner');
    code7(() => ns.createLink({ kind: 'vrf', name: 'x0', table: 0 }), 'x0.table: 0');
    await ns.flush();
  });

  it("creates a VRF; a port's connected routes move into its table and back to main on release", async (ctx) => {
    need(ctx, 'vrf');
    const ns = nl.open(await newNs());
    ns.createLink({ kind: 'vrf', name: 'vblue', table: 42 });
    ns.setLink('vblue', { up: true });
    ns.createLink({ kind: 'veth', name: 'vp0', peerName: 'vp1' });
    ns.addAddress('vp0', '10.42.0.2/24');
    ns.setLink('vp1', { up: true });
    ns.setLink('vp0', { up: true });
    ns.addRoute({ dst: '10.43.0.0/16', gw: '10.42.0.1', dev: 'vp0' });
    expect((await ns.getLink('vblue')).vrfTable).toBe(42);
    ns.setLink('vp0', { master: 'vblue' });
    const conn = (r: { dst: string; dev?: string; protocol?: string }) =>
      r.dst === '10.42.0.0/24' && r.dev === 'vp0' && r.protocol === 'kernel';
    expect((await ns.routes({ family: 4, table: 42 })).some(conn)).toBe(true);
    // The cycle took the gateway route; the main table has nothing through vp0 left.
    expect((await ns.routes({ family: 4 })).filter((r) => r.dev === 'vp0')).toEqual([]);
    expect((await ns.getLink('vp0')).master).toBe('vblue');
    ns.addRoute({ dst: '10.43.0.0/16', gw: '10.42.0.1', dev: 'vp0', table: 42 });
    expect((await ns.routes({ family: 4, table: 42 })).some((r) => r.dst === '10.43.0.0/16')).toBe(true);
    // A VRF cannot be enslaved to a VRF.
    ns.createLink({ kind: 'vrf', name: 'vred', table: 43 });
    ns.setLink('vred', { master: 'vblue' });
    expect(await errnoOf(ns.flush())).toBe('EINVAL');
    ns.setLink('vp0', { master: null });
    expect((await ns.routes({ family: 4 })).some(conn)).toBe(true);
    expect((await ns.routes({ family: 4, table: 42 })).some(conn)).toBe(false);
    // Deleting a VRF releases its ports the same way.
    ns.setLink('vp0', { master: 'vblue' });
    ns.deleteLink('vblue');
    expect((await ns.getLink('vp0')).master).toBeUndefined();
    expect((await ns.routes({ family: 4 })).some(conn)).toBe(true);
  });

  it('passes names with shell characters to the kernel as they are, tolerated ops and reads included', async (ctx) => {
    need(ctx);
    const ns = nl.open(await newNs());
    // Valid kernel names (only '/', ':' and whitespace are not); the iproute2 engine runs
    // tolerated ops and some reads through sh, where these must stay literal.
    const odd = ['k$(echo>&2)', 'k`id`;x', 'k|y&z>w'];
    for (const name of odd) ns.createLink({ kind: 'bridge', name }, { existsOk: true });
    ns.createLink({ kind: 'ifb', name: 'k;i' });
    const names = (await ns.links()).map((l) => l.name);
    expect(names).toEqual(expect.arrayContaining([...odd, 'k;i']));
    expect(names.filter((n) => !['lo', ...odd, 'k;i'].includes(n))).toEqual([]);
    ns.addIngressQdisc(odd[0]!);
    ns.redirectIngress(odd[0]!, 'k;i');
    expect(await ns.ingressRedirects(odd[0]!)).toEqual(['k;i']);
    for (const name of odd) ns.deleteLink(name, { missingOk: true });
    ns.deleteLink('k;i', { missingOk: true });
    ns.deleteLink('k;i', { missingOk: true });
    expect((await ns.links()).map((l) => l.name)).toEqual(['lo']);
  });

  it('rejects unsupported kinds with EOPNOTSUPP', async (ctx) => {
    need(ctx);
    // The model supports every kind, so it is asked to simulate a kernel without dummy.
    const sim = backend.name === 'memory' ? memoryNetlink({ kinds: ['veth'], hostLinks: [] }) : nl;
    const have = await sim.supportedLinkKinds();
    const missing = (['dummy', 'vlan', 'ipvlan'] as LinkKind[]).find((k) => !have.has(k));
    if (!missing) ctx.skip('this kernel supports every probed kind');
    const ns = sim === nl ? nl.open(await newNs()) : sim.open((await sim.createNetns('x')).path);
    ns.createLink({ kind: 'veth', name: 'u0', peerName: 'u1' });
    if (missing === 'dummy') ns.createLink({ kind: 'dummy', name: 'x0' });
    else if (missing === 'vlan') ns.createLink({ kind: 'vlan', name: 'x0', parent: 'u0', vlanId: 3 });
    else ns.createLink({ kind: 'ipvlan', name: 'x0', parent: 'u0' });
    expect(await errnoOf(ns.flush())).toBe('EOPNOTSUPP');
  });
});
