// macvlan, ipvlan and vlan plugin logic on the in-memory netlink backend (always runs, whatever the
// kernel supports), with in-process host-local IPAM.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PluginSpec } from 'cni-kit';
import { type MemoryNetlink, memoryNetlink } from 'cni-kit/netlink';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { createIpvlanPlugin } from '../../examples/ipvlan/plugin.js';
import { createMacvlanPlugin } from '../../examples/macvlan/plugin.js';
import { createVlanPlugin } from '../../examples/vlan/plugin.js';
import { callInProcess } from '../helpers/plugin.js';

const dataDir = mkdtempSync(join(tmpdir(), `plugins-sublinks-${process.pid}-`));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

let nl: MemoryNetlink;
const NS = '/var/run/netns/c1';
beforeEach(() => {
  nl = memoryNetlink({ hostLinks: ['eth0', 'eth1'] });
  nl.addNetns(NS);
});

async function call<C>(plugin: PluginSpec<C>, cmd: string, conf: object, ifname = 'eth0') {
  return callInProcess(plugin, cmd, conf, { CNI_NETNS: NS, CNI_IFNAME: ifname });
}

const ipam = (subnet: string) => ({ type: 'host-local', subnet, dataDir });

describe('macvlan', () => {
  it('defaults master to the default-route interface and mode to bridge; CHECK; DEL twice', async () => {
    await nl.inNetns(undefined, (ns) => {
      ns.addAddress('eth1', '192.0.2.10/24');
      ns.addRoute({ dst: 'default', gw: '192.0.2.1', dev: 'eth1' });
    });
    const p = createMacvlanPlugin({ netlink: nl });
    const conf = { cniVersion: '1.1.0', name: 'mv', type: 'macvlan', ipam: ipam('10.81.0.0/24') };
    const add = await call(p, 'ADD', conf);
    expect(add.exitCode, add.stdout).toBe(0);
    const link = nl.inspect(NS).links.find((l) => l.name === 'eth0');
    expect(link).toMatchObject({ kind: 'macvlan', macvlanMode: 'bridge', up: true });
    expect(add.json.interfaces).toEqual([{ name: 'eth0', mac: link?.mac, sandbox: NS }]);
    expect(add.json.ips).toEqual([{ interface: 0, address: '10.81.0.2/24', gateway: '10.81.0.1' }]);
    // The temporary name never shows in the host.
    expect(
      nl
        .inspect()
        .links.map((l) => l.name)
        .sort(),
    ).toEqual(['eth0', 'eth1', 'lo']);
    expect((await call(p, 'CHECK', { ...conf, prevResult: add.json })).exitCode).toBe(0);
    expect((await call(p, 'DEL', conf)).exitCode).toBe(0);
    expect(nl.inspect(NS).links.map((l) => l.name)).toEqual(['lo']);
    expect((await call(p, 'DEL', conf)).exitCode).toBe(0);
  });

  it('rejects an MTU above the master and a bad mode with code 7', async () => {
    const p = createMacvlanPlugin({ netlink: nl });
    const base = { cniVersion: '1.0.0', name: 'mv', type: 'macvlan', master: 'eth0' };
    const big = await call(p, 'ADD', { ...base, mtu: 9000 });
    expect(big.json).toMatchObject({ code: 7, msg: expect.stringContaining('mtu: 9000') });
    const mode = await call(p, 'ADD', { ...base, mode: 'l2' });
    expect(mode.json).toMatchObject({ code: 7, msg: expect.stringContaining('mode: "l2"') });
    const noRoute = await call(p, 'ADD', { cniVersion: '1.0.0', name: 'mv', type: 'macvlan' });
    expect(noRoute.json).toMatchObject({ code: 7, msg: expect.stringContaining('master: not set') });
  });

  it('undoes the link when IPAM fails', async () => {
    const p = createMacvlanPlugin({ netlink: nl });
    const out = await call(p, 'ADD', {
      cniVersion: '1.0.0',
      name: 'mv',
      type: 'macvlan',
      master: 'eth0',
      ipam: { type: 'host-local' },
    });
    expect(out.exitCode).toBe(1);
    expect(nl.inspect(NS).links.map((l) => l.name)).toEqual(['lo']);
  });

  it('without ipam returns an L2 result and brings the link up', async () => {
    const p = createMacvlanPlugin({ netlink: nl });
    const out = await call(p, 'ADD', {
      cniVersion: '0.3.1',
      name: 'mv',
      type: 'macvlan',
      master: 'eth0',
      mode: 'vepa',
    });
    expect(out.exitCode, out.stdout).toBe(0);
    expect(out.json.ips ?? []).toEqual([]);
    expect(nl.inspect(NS).links.find((l) => l.name === 'eth0')).toMatchObject({
      up: true,
      macvlanMode: 'vepa',
    });
  });

  it('reads "ipam": {} (no type) as no IPAM, as the reference does: an L2 ADD, CHECK and DEL', async () => {
    const p = createMacvlanPlugin({ netlink: nl });
    const conf = { cniVersion: '1.0.0', name: 'mv', type: 'macvlan', master: 'eth0', ipam: {} };
    const add = await call(p, 'ADD', conf);
    expect(add.exitCode, add.stdout).toBe(0);
    expect(add.json.ips ?? []).toEqual([]);
    expect((await call(p, 'CHECK', { ...conf, prevResult: add.json })).exitCode).toBe(0);
    expect((await call(p, 'DEL', conf)).exitCode).toBe(0);
    expect(nl.inspect(NS).links.map((l) => l.name)).toEqual(['lo']);
  });
});

describe('ipvlan', () => {
  it('chained without ipam takes master and IPs from prevResult', async () => {
    const p = createIpvlanPlugin({ netlink: nl });
    const prevResult = {
      cniVersion: '1.0.0',
      interfaces: [{ name: 'eth1' }],
      ips: [{ address: '10.82.0.7/24', gateway: '10.82.0.1' }],
    };
    const conf = { cniVersion: '1.0.0', name: 'iv', type: 'ipvlan', mode: 'l3', prevResult };
    const out = await call(p, 'ADD', conf, 'net1');
    expect(out.exitCode, out.stdout).toBe(0);
    expect(out.json.ips).toEqual([{ interface: 0, address: '10.82.0.7/24', gateway: '10.82.0.1' }]);
    const link = nl.inspect(NS).links.find((l) => l.name === 'net1');
    expect(link).toMatchObject({ kind: 'ipvlan', ipvlanMode: 'l3' });
    const addrs = await nl.inNetns(NS, (ns) => ns.addresses({ link: 'net1' }));
    expect(addrs.map((a) => a.cidr)).toEqual(['10.82.0.7/24']);
    expect((await call(p, 'DEL', conf, 'net1')).exitCode).toBe(0);
  });

  it('refuses a prevResult with several interfaces and no master', async () => {
    const p = createIpvlanPlugin({ netlink: nl });
    const prevResult = {
      cniVersion: '1.0.0',
      interfaces: [{ name: 'a' }, { name: 'b' }],
      ips: [{ address: '10.82.0.7/24' }],
    };
    const out = await call(p, 'ADD', { cniVersion: '1.0.0', name: 'iv', type: 'ipvlan', prevResult });
    expect(out.json).toMatchObject({ code: 7, msg: expect.stringContaining('2 named interfaces') });
  });

  it('reports a kernel without ipvlan clearly', async () => {
    nl = memoryNetlink({ kinds: ['veth', 'bridge'] });
    nl.addNetns(NS);
    const out = await call(createIpvlanPlugin({ netlink: nl }), 'ADD', {
      cniVersion: '1.0.0',
      name: 'iv',
      type: 'ipvlan',
      master: 'eth0',
      ipam: ipam('10.83.0.0/24'),
    });
    expect(out.exitCode).toBe(1);
    expect(out.json.msg).toMatch(/ipvlan/);
  });
});

describe('vlan', () => {
  it('creates the VLAN link with its id; CHECK; DEL', async () => {
    const p = createVlanPlugin({ netlink: nl });
    const conf = {
      cniVersion: '0.4.0',
      name: 'vl',
      type: 'vlan',
      master: 'eth0',
      vlanId: 42,
      mtu: 1400,
      ipam: ipam('10.84.0.0/24'),
    };
    const out = await call(p, 'ADD', conf);
    expect(out.exitCode, out.stdout).toBe(0);
    expect(nl.inspect(NS).links.find((l) => l.name === 'eth0')).toMatchObject({
      kind: 'vlan',
      vlanId: 42,
      mtu: 1400,
    });
    expect((await call(p, 'CHECK', { ...conf, prevResult: out.json })).exitCode).toBe(0);
    expect((await call(p, 'DEL', conf)).exitCode).toBe(0);
    expect(nl.inspect(NS).links.map((l) => l.name)).toEqual(['lo']);
  });

  it('requires master, vlanId and ipam (code 7 naming each)', async () => {
    const p = createVlanPlugin({ netlink: nl });
    for (const [conf, field] of [
      [{ vlanId: 1, ipam: ipam('10.84.0.0/24') }, 'master'],
      [{ master: 'eth0', ipam: ipam('10.84.0.0/24') }, 'vlanId'],
      [{ master: 'eth0', vlanId: 5000, ipam: ipam('10.84.0.0/24') }, 'vlanId'],
      [{ master: 'eth0', vlanId: 1 }, 'ipam'],
    ] as const) {
      const out = await call(p, 'ADD', { cniVersion: '1.0.0', name: 'vl', type: 'vlan', ...conf });
      expect(out.json).toMatchObject({ code: 7, msg: expect.stringContaining(field) });
    }
  });
});
