// vrf plugin logic on the in-memory netlink backend (this machine's kernel has no VRF; the model
// has one: enslaving cycles the port, dropping its routes and, without keep_addr_on_down, its IPv6
// addresses, and its connected routes come back in the VRF's table).
import type { PluginSpec } from 'cni-kit';
import { LINK_KINDS, type MemoryNetlink, memoryNetlink } from 'cni-kit/netlink';
import fc from 'fast-check';
import { beforeEach, describe, expect, it } from 'vitest';
import { createVrfPlugin, freeTable, type VrfConf } from '../../examples/vrf/plugin.js';
import { failingAtWrite } from '../helpers/fault-netlink.js';
import { callInProcess } from '../helpers/plugin.js';

let nl: MemoryNetlink;
const NS = '/var/run/netns/c1';
let seq = 0;

/** An addressed, routed veth end `ifname` in the container, as a bridge or ptp ADD leaves it. */
async function attach(ifname: string, n: number, opts: { v6?: boolean } = {}) {
  await nl.inNetns(NS, (ns) => {
    ns.createLink({ kind: 'veth', name: ifname, peerName: `vh${++seq}`, peerNetns: nl.hostNetns });
    ns.addAddress(ifname, `10.6${n}.0.2/24`);
    if (opts.v6) ns.addAddress(ifname, `fd6${n}::2/64`, { noDad: true });
    ns.setLink(ifname, { up: true });
  });
  await nl.inNetns(undefined, (ns) => ns.setLink(`vh${seq}`, { up: true }));
  await nl.inNetns(NS, (ns) => {
    ns.addRoute({ dst: `10.5${n}.0.0/16`, gw: `10.6${n}.0.1`, dev: ifname });
    if (opts.v6) ns.addRoute({ dst: '::/0', gw: `fd6${n}::1`, dev: ifname });
  });
}

const prevResult = (ifname: string, n: number) => ({
  cniVersion: '1.1.0',
  interfaces: [{ name: ifname, sandbox: NS }],
  ips: [{ interface: 0, address: `10.6${n}.0.2/24`, gateway: `10.6${n}.0.1` }],
});

async function call(plugin: PluginSpec<VrfConf>, cmd: string, conf: object, ifname = 'eth0', extra = {}) {
  return callInProcess(plugin, cmd, conf, { CNI_NETNS: NS, CNI_IFNAME: ifname, ...extra });
}

const base = { cniVersion: '1.0.0', name: 'v', type: 'vrf', vrfname: 'blue' };
const link = (name: string) => nl.inspect(NS).links.find((l) => l.name === name);
const routesIn = async (table: number) =>
  (await nl.inNetns(NS, (ns) => ns.routes({ table })))
    .map((r) => `${r.dst}${r.gw ? ` via ${r.gw}` : ''} dev ${r.dev}`)
    .sort();
const plugin = () => createVrfPlugin({ netlink: nl, sleep: async () => {} });

beforeEach(() => {
  nl = memoryNetlink();
  nl.addNetns(NS);
});

describe('vrf', () => {
  it('creates the VRF with the first free table, enslaves the interface and moves its routes and IPv6 addresses', async () => {
    await attach('eth0', 1, { v6: true });
    const p = plugin();
    const conf = { ...base, prevResult: prevResult('eth0', 1) };
    const add = await call(p, 'ADD', conf);
    expect(add.exitCode, add.stdout).toBe(0);
    // The result is prevResult, passed on (as the reference).
    expect(add.json).toMatchObject({ interfaces: [{ name: 'eth0', sandbox: NS }], ips: conf.prevResult.ips });
    expect(link('blue')).toMatchObject({ kind: 'vrf', vrfTable: 1, up: true });
    expect(link('eth0')?.master).toBe('blue');
    // The IPv6 address the cycle dropped (keep_addr_on_down is 0 here) is back.
    const addrs = await nl.inNetns(NS, (ns) => ns.addresses({ link: 'eth0' }));
    expect(addrs.map((a) => a.cidr).sort()).toEqual(['10.61.0.2/24', 'fd61::2/64']);
    expect(await routesIn(1)).toEqual([
      '10.51.0.0/16 via 10.61.0.1 dev eth0',
      '10.61.0.0/24 dev eth0',
      '::/0 via fd61::1 dev eth0',
      'fd61::/64 dev eth0',
    ]);
    expect((await routesIn(254)).filter((r) => r.includes('eth0'))).toEqual([]);
    expect((await call(p, 'CHECK', conf)).exitCode).toBe(0);
    expect((await call(p, 'DEL', base)).exitCode).toBe(0);
    expect(link('blue')).toBeUndefined();
    expect(link('eth0')?.master).toBeUndefined();
    expect((await call(p, 'DEL', base)).exitCode).toBe(0);
  });

  it('shares a VRF between interfaces and removes it with the last one', async () => {
    await attach('eth0', 1);
    await attach('net1', 2);
    const p = plugin();
    expect((await call(p, 'ADD', { ...base, table: 100, prevResult: prevResult('eth0', 1) })).exitCode).toBe(
      0,
    );
    const second = await call(p, 'ADD', { ...base, prevResult: prevResult('net1', 2) }, 'net1');
    expect(second.exitCode, second.stdout).toBe(0);
    expect(link('blue')?.vrfTable).toBe(100);
    expect(await routesIn(100)).toEqual([
      '10.51.0.0/16 via 10.61.0.1 dev eth0',
      '10.52.0.0/16 via 10.62.0.1 dev net1',
      '10.61.0.0/24 dev eth0',
      '10.62.0.0/24 dev net1',
    ]);
    // A different table for the existing VRF is refused, naming both.
    await attach('net2', 3);
    const clash = await call(p, 'ADD', { ...base, table: 7, prevResult: prevResult('net2', 3) }, 'net2');
    expect(clash.json).toMatchObject({
      code: 7,
      msg: 'table: 7 differs from table 100 of the existing VRF blue',
    });
    expect(link('net2')?.master).toBeUndefined();
    expect((await call(p, 'DEL', base)).exitCode).toBe(0);
    expect(link('blue')).toBeDefined();
    expect(link('eth0')?.master).toBeUndefined();
    // Released, the port's connected route is back in main (the kernel's cycle); gateway routes are not moved back, as in the reference.
    expect(await routesIn(254)).toContain('10.61.0.0/24 dev eth0');
    expect((await call(p, 'DEL', base, 'net1')).exitCode).toBe(0);
    expect(link('blue')).toBeUndefined();
  });

  it('picks a table no other VRF in the netns uses', async () => {
    await nl.inNetns(NS, (ns) => {
      ns.createLink({ kind: 'vrf', name: 'red', table: 1 });
      ns.createLink({ kind: 'vrf', name: 'green', table: 2 });
    });
    await attach('eth0', 1);
    expect((await call(plugin(), 'ADD', { ...base, prevResult: prevResult('eth0', 1) })).exitCode).toBe(0);
    expect(link('blue')?.vrfTable).toBe(3);
    expect(freeTable([])).toBe(1);
  });

  it('requires prevResult for ADD and CHECK (code 7) but not for DEL; vrfname is required', async () => {
    await attach('eth0', 1);
    const p = plugin();
    for (const cmd of ['ADD', 'CHECK']) {
      const out = await call(p, cmd, base);
      expect(out.json).toMatchObject({ code: 7, msg: expect.stringContaining('prevResult: missing') });
    }
    expect((await call(p, 'DEL', base)).exitCode).toBe(0);
    const noName = await call(p, 'ADD', {
      cniVersion: '1.0.0',
      name: 'v',
      type: 'vrf',
      prevResult: prevResult('eth0', 1),
    });
    expect(noName.json).toMatchObject({ code: 7, msg: expect.stringContaining('vrfname') });
    const badName = await call(p, 'ADD', {
      ...base,
      vrfname: 'a-name-far-too-long',
      prevResult: prevResult('eth0', 1),
    });
    expect(badName.json).toMatchObject({ code: 7, msg: expect.stringContaining('vrfname') });
    expect(link('eth0')?.master).toBeUndefined();
    // Spec versions from 0.3.1, as the reference.
    const old = await call(p, 'ADD', { ...base, cniVersion: '0.3.0', prevResult: prevResult('eth0', 1) });
    expect(old.json.code).toBe(1);
  });

  it('refuses a vrfname that is another kind of link, and an interface that already has a master', async () => {
    await attach('eth0', 1);
    await nl.inNetns(NS, (ns) => {
      ns.createLink({ kind: 'bridge', name: 'br0' });
      ns.setLink('eth0', { master: 'br0' });
    });
    const p = plugin();
    const notVrf = await call(p, 'ADD', { ...base, vrfname: 'br0', prevResult: prevResult('eth0', 1) });
    expect(notVrf.json).toMatchObject({
      code: 7,
      msg: 'vrfname: "br0" is a bridge link in the container, not a VRF',
    });
    const mastered = await call(p, 'ADD', { ...base, prevResult: prevResult('eth0', 1) });
    expect(mastered.json.msg).toBe('interface eth0 already has a master: br0');
    expect(link('blue')).toBeUndefined();
    // DEL leaves a link that is not a VRF alone.
    expect((await call(p, 'DEL', { ...base, vrfname: 'br0' })).exitCode).toBe(0);
    expect(link('br0')).toBeDefined();
  });

  it('rolls back the VRF, the enslavement and the moved routes and addresses when moving routes fails', async () => {
    let fail = true;
    nl = memoryNetlink({
      beforeOp: (w) => {
        if (fail && w.startsWith('replace route') && w.includes('table 1')) {
          fail = false;
          throw new Error('injected failure');
        }
      },
    });
    nl.addNetns(NS);
    await attach('eth0', 1, { v6: true });
    const out = await call(plugin(), 'ADD', { ...base, prevResult: prevResult('eth0', 1) });
    expect(out.exitCode).toBe(1);
    expect(link('blue')).toBeUndefined();
    expect(link('eth0')?.master).toBeUndefined();
    expect((await routesIn(254)).filter((r) => r.includes('eth0'))).toEqual([
      '10.51.0.0/16 via 10.61.0.1 dev eth0',
      '10.61.0.0/24 dev eth0',
      '::/0 via fd61::1 dev eth0',
      'fd61::/64 dev eth0',
    ]);
    const addrs = await nl.inNetns(NS, (ns) => ns.addresses({ link: 'eth0' }));
    expect(addrs.map((a) => a.cidr).sort()).toEqual(['10.61.0.2/24', 'fd61::2/64']);
    expect(out.stderr).not.toContain('rollback after failed ADD');
  });

  it('CHECK fails when the VRF is gone, the interface left it, or its table differs', async () => {
    await attach('eth0', 1);
    const p = plugin();
    const conf = { ...base, table: 20, prevResult: prevResult('eth0', 1) };
    expect((await call(p, 'ADD', conf)).exitCode).toBe(0);
    expect((await call(p, 'CHECK', { ...conf, table: 21 })).json.msg).toContain(
      'uses table 20, config says 21',
    );
    await nl.inNetns(NS, (ns) => ns.setLink('eth0', { master: null }));
    expect((await call(p, 'CHECK', conf)).json.msg).toContain('eth0 is not enslaved to VRF blue');
    await nl.inNetns(NS, (ns) => ns.deleteLink('blue'));
    expect((await call(p, 'CHECK', conf)).json.msg).toContain('VRF blue is missing');
  });

  it('DEL succeeds with the netns, the VRF or the interface gone', async () => {
    const p = plugin();
    expect((await call(p, 'DEL', base, 'eth0', { CNI_NETNS: '/var/run/netns/gone' })).exitCode).toBe(0);
    await nl.inNetns(NS, (ns) => ns.createLink({ kind: 'vrf', name: 'blue', table: 5 }));
    expect((await call(p, 'DEL', base, 'eth9')).exitCode).toBe(0);
    expect(link('blue')).toBeUndefined();
  });

  it('on a kernel without VRF support says which module is missing and leaves the interface as it was', async () => {
    nl = memoryNetlink({ kinds: LINK_KINDS.filter((k) => k !== 'vrf') });
    nl.addNetns(NS);
    await attach('eth0', 1);
    const out = await call(plugin(), 'ADD', { ...base, prevResult: prevResult('eth0', 1) });
    expect(out.json.msg).toContain('cannot create VRF devices');
    expect(out.json.details).toContain('CONFIG_NET_VRF');
    expect(await routesIn(254)).toContain('10.51.0.0/16 via 10.61.0.1 dev eth0');
  });
});

describe('vrf ADD stopped at any write', () => {
  /** Everything ADD may change in the container: masters, addresses, routes of main and table 1. */
  const snapshot = async () => {
    const links = nl.inspect(NS).links.map((l) => `${l.name}:${l.kind ?? '-'}:${l.master ?? '-'}`);
    const addrs = (await nl.inNetns(NS, (ns) => ns.addresses()))
      .filter((a) => !a.ip.startsWith('fe80'))
      .map((a) => `${a.link} ${a.cidr}`)
      .sort();
    const routes = [...(await routesIn(254)), ...(await routesIn(1)).map((r) => `t1 ${r}`)].sort();
    return { links, addrs, routes };
  };

  it('leaves the container exactly as it was, for random routes and addresses', async () => {
    const extra = fc.subarray(['10.70.0.0/16 via', '10.71.0.0/16 dev', '192.0.2.0/24 via', 'fd70::/48 via'], {
      minLength: 0,
    });
    await fc.assert(
      fc.asyncProperty(extra, fc.boolean(), fc.nat(40), async (routes, v6, failAt) => {
        const failing = failingAtWrite(failAt);
        nl = failing.nl;
        nl.addNetns(NS);
        await attach('eth0', 1, { v6: v6 || routes.some((r) => r.startsWith('fd')) });
        await nl.inNetns(NS, (ns) => {
          for (const r of routes) {
            const [dst, how] = r.split(' ') as [string, string];
            if (dst.startsWith('fd')) ns.addRoute({ dst, gw: 'fd61::1', dev: 'eth0' });
            else if (how === 'via') ns.addRoute({ dst, gw: '10.61.0.1', dev: 'eth0' });
            else ns.addRoute({ dst, dev: 'eth0' });
          }
        });
        const before = await snapshot();
        const out = await failing.armed(() =>
          call(plugin(), 'ADD', { ...base, prevResult: prevResult('eth0', 1) }),
        );
        if (out.exitCode === 0) {
          // ADD finished before the failure point: everything moved into table 1.
          expect((await routesIn(254)).filter((r) => r.includes('eth0'))).toEqual([]);
          expect((await routesIn(1)).length).toBe(before.routes.filter((r) => r.includes('eth0')).length);
          return;
        }
        expect(out.stderr).not.toContain('rollback after failed ADD');
        expect(await snapshot()).toEqual(before);
      }),
      { numRuns: 120 },
    );
  });
});
