// Memory-backend specifics the shared suite cannot express: simulated DAD failure, configurable
// kernels, inspection helpers, and the kernel rules around deletion and bridges.
import { CniError } from 'cni-kit';
import { memoryNetlink, NetlinkError } from 'cni-kit/netlink';
import { describe, expect, it } from 'vitest';

async function errnoOf(p: Promise<unknown>): Promise<string> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(NetlinkError);
  return (e as NetlinkError).errno;
}

describe('memory netlink backend', () => {
  it('starts with a host netns holding lo and the configured physical links', async () => {
    const nl = memoryNetlink({ hostLinks: ['eth0', 'eth1'] });
    const links = await nl.open().links();
    expect(links.map((l) => [l.index, l.name, l.up])).toEqual([
      [1, 'lo', false],
      [2, 'eth0', true],
      [3, 'eth1', true],
    ]);
    expect(nl.netnsPaths()).toEqual([nl.hostNetns]);
  });

  it('reports DAD failure and times out while DAD cannot finish', async () => {
    const nl = memoryNetlink();
    const c = await nl.createNetns('dad');
    const ns = nl.open(c.path);
    ns.createLink({ kind: 'veth', name: 'e0', peerName: 'e1' });
    ns.setLink('e0', { up: true });
    ns.addAddress('e0', 'fd00::5/64');
    await ns.flush();
    // Peer down: no carrier, so DAD never completes.
    expect(await errnoOf(ns.waitDad('e0', { timeoutMs: 120, intervalMs: 20 }))).toBe('ETIMEDOUT');
    nl.failDad(c.path, 'fd00:0::5');
    const e = await ns.waitDad('e0').catch((x: unknown) => x as NetlinkError);
    expect(e).toBeInstanceOf(NetlinkError);
    expect((e as NetlinkError).errno).toBe('EADDRINUSE');
    expect((e as NetlinkError).message).toContain('fd00::5/64');
  });

  it('skips DAD when accept_dad is 0, like the kernel', async () => {
    const nl = memoryNetlink();
    const ns = nl.open((await nl.createNetns('nodad')).path);
    ns.createLink({ kind: 'veth', name: 'e0', peerName: 'e1' });
    ns.setSysctl('net/ipv6/conf/e0/accept_dad', 0);
    ns.addAddress('e0', 'fd00::6/64');
    expect((await ns.addresses({ family: 6 }))[0]?.tentative).toBe(false);
  });

  it('simulates a kernel without some link kinds', async () => {
    const nl = memoryNetlink({ kinds: ['veth', 'bridge'] });
    expect([...(await nl.supportedLinkKinds())].sort()).toEqual(['bridge', 'veth']);
    const ns = nl.open();
    ns.createLink({ kind: 'macvlan', name: 'mv0', parent: 'eth0' });
    expect(await errnoOf(ns.flush())).toBe('EOPNOTSUPP');
  });

  it('refuses bridge VLANs on a simulated kernel without VLAN filtering', async () => {
    const nl = memoryNetlink({ bridgeVlans: false });
    expect(await nl.supportsBridgeVlans()).toBe(false);
    const ns = nl.open();
    ns.createLink({ kind: 'bridge', name: 'br0' });
    ns.createLink({ kind: 'veth', name: 'p0', peerName: 'p1' });
    ns.setLink('p0', { master: 'br0' });
    expect(await ns.bridgeVlans('p0')).toEqual([]);
    ns.addBridgeVlan('p0', 10, { pvid: true });
    expect(await errnoOf(ns.flush())).toBe('EOPNOTSUPP');
    ns.createLink({ kind: 'bridge', name: 'br1', vlanFiltering: true });
    expect(await errnoOf(ns.flush())).toBe('EOPNOTSUPP');
  });

  it('deletes macvlans with their parent and recomputes bridge MAC/MTU from ports', async () => {
    const nl = memoryNetlink();
    const c = await nl.createNetns('mv');
    const h = nl.open();
    h.createLink({ kind: 'veth', name: 'p0', peerName: 'p1', mtu: 9000 });
    h.createLink({ kind: 'macvlan', name: 'mv0', parent: 'p0', netns: c.path });
    h.createLink({ kind: 'bridge', name: 'br0' });
    h.setLink('p1', { master: 'br0' });
    const [br, p1] = [await h.getLink('br0'), await h.getLink('p1')];
    expect(br.mac).toBe(p1.mac);
    expect(br.mtu).toBe(9000);
    expect(nl.inspect(c.path).links.map((l) => l.name)).toContain('mv0');
    h.deleteLink('p0');
    await h.flush();
    expect(nl.inspect(c.path).links.map((l) => l.name)).toEqual(['lo']);
    expect(await h.findLink('p1')).toBeUndefined();
  });

  it('keeps IPv6 addresses over a down/up cycle only with keep_addr_on_down', async () => {
    const nl = memoryNetlink();
    const ns = nl.open((await nl.createNetns('keep')).path);
    ns.createLink({ kind: 'veth', name: 'k0', peerName: 'k1' });
    ns.addAddress('k0', 'fd01::1/64', { noDad: true });
    ns.addAddress('k0', '10.3.0.1/24');
    ns.setLink('k0', { up: true });
    ns.setLink('k0', { up: false });
    expect((await ns.addresses({ link: 'k0' })).map((a) => a.cidr)).toEqual(['10.3.0.1/24']);
    ns.setSysctl('net/ipv6/conf/k0/keep_addr_on_down', 1);
    ns.addAddress('k0', 'fd01::1/64', { noDad: true });
    ns.setLink('k0', { up: true });
    ns.setLink('k0', { up: false });
    expect((await ns.addresses({ link: 'k0', family: 6 })).map((a) => a.cidr)).toEqual(['fd01::1/64']);
  });

  it('brings lo up with its loopback addresses', async () => {
    const nl = memoryNetlink();
    const ns = nl.open((await nl.createNetns('lo')).path);
    ns.setLink('lo', { up: true });
    const addrs = await ns.addresses({ link: 'lo' });
    expect(addrs.map((a) => `${a.cidr} ${a.scope}`)).toEqual(['127.0.0.1/8 host', '::1/128 host']);
    ns.deleteLink('lo');
    expect(await errnoOf(ns.flush())).toBe('EOPNOTSUPP');
  });

  it('validates input before queueing, with code 7 and the bad value in the message', () => {
    const ns = memoryNetlink().open();
    const cases: Array<[() => void, RegExp]> = [
      [() => ns.createLink({ kind: 'bridge', name: 'a-name-that-is-too-long' }), /longer than 15/],
      [() => ns.addAddress('eth0', '10.0.0.1'), /needs a prefix length/],
      [() => ns.addRoute({ dst: '10.0.0.300/24', dev: 'eth0' }), /not an IPv4 or IPv6 address/],
      [() => ns.setLink('eth0', { mac: '01:00:5e:00:00:01' }), /multicast/],
      [() => ns.setLink('eth0', { mtu: -1 }), /0\.\.2147483647/],
      [() => ns.setSysctl('kernel/panic', 1), /\/proc\/sys\/net/],
      [() => ns.setSysctl('net/../../etc', 1), /\/proc\/sys\/net/],
      [() => ns.createLink({ kind: 'veth', name: 'a b', peerName: 'c' }), /whitespace/],
      [() => ns.addRoute({ dst: 'default', gw: 'fd00::1', family: 4 }), /IPv4 gateway/],
    ];
    for (const [fn, re] of cases) {
      let err: unknown;
      try {
        fn();
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(CniError);
      expect((err as CniError).code).toBe(7);
      expect((err as CniError).message).toMatch(re);
    }
  });

  it('removes a netns together with the veth peers it held elsewhere', async () => {
    const nl = memoryNetlink();
    const c = await nl.createNetns('gone');
    await nl.inNetns(c.path, (ns) =>
      ns.createLink({ kind: 'veth', name: 'eth0', peerName: 'vh0', peerNetns: nl.hostNetns }),
    );
    expect(nl.inspect().links.map((l) => l.name)).toContain('vh0');
    await c.remove();
    expect(nl.inspect().links.map((l) => l.name)).not.toContain('vh0');
    expect(await nl.netnsExists(c.path)).toBe(false);
    await nl.removeNetns(c.path); // missing is fine
  });
});
