// ptp, loopback, tuning and host-device plugin logic on the in-memory netlink backend.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PluginSpec } from 'cni-kit';
import { type MemoryNetlink, memoryNetlink } from 'cni-kit/netlink';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { createHostDevicePlugin } from '../../examples/host-device/plugin.js';
import { createLoopbackPlugin } from '../../examples/loopback/plugin.js';
import { createPtpPlugin } from '../../examples/ptp/plugin.js';
import { createTuningPlugin } from '../../examples/tuning/plugin.js';
import { callInProcess } from '../helpers/plugin.js';

const work = mkdtempSync(join(tmpdir(), `plugins-others-${process.pid}-`));
afterAll(() => rmSync(work, { recursive: true, force: true }));

let nl: MemoryNetlink;
const NS = '/var/run/netns/c1';
beforeEach(() => {
  nl = memoryNetlink({ hostLinks: ['eth0', 'ens5'] });
  nl.addNetns(NS);
});

async function call<C>(plugin: PluginSpec<C>, cmd: string, conf: object, ifname = 'eth0', netns = NS) {
  return callInProcess(plugin, cmd, conf, { CNI_NETNS: netns, CNI_IFNAME: ifname });
}

describe('ptp', () => {
  it('sets the /32 gateway route, the host side address and route; DEL cleans up', async () => {
    const p = createPtpPlugin({ netlink: nl });
    const conf = {
      cniVersion: '1.0.0',
      name: 'pp',
      type: 'ptp',
      ipam: { type: 'host-local', subnet: '10.91.0.0/24', dataDir: work },
    };
    const out = await call(p, 'ADD', conf);
    expect(out.exitCode, out.stdout).toBe(0);
    const hostVeth = out.json.interfaces[0].name;
    expect(out.json.ips).toEqual([{ interface: 1, address: '10.91.0.2/24', gateway: '10.91.0.1' }]);
    const ct = nl
      .inspect(NS)
      .routes.filter((r) => r.family === 4)
      .map((r) => `${r.dst} ${r.gw ?? ''} ${r.scope}`);
    expect(ct).toContain('10.91.0.1/32  link');
    expect(ct).toContain('10.91.0.0/24 10.91.0.1 global');
    expect(ct.filter((r) => r.startsWith('10.91.0.0/24'))).toHaveLength(1);
    const hostAddrs = await nl.inNetns(undefined, (ns) => ns.addresses({ link: hostVeth }));
    expect(hostAddrs.map((a) => a.cidr)).toEqual(['10.91.0.1/32']);
    expect(nl.inspect().routes.some((r) => r.dst === '10.91.0.2/32' && r.dev === hostVeth)).toBe(true);
    expect(await nl.inNetns(undefined, (ns) => ns.getSysctl('net/ipv4/ip_forward'))).toBe('1');
    expect((await call(p, 'CHECK', { ...conf, prevResult: out.json })).exitCode).toBe(0);
    expect((await call(p, 'DEL', conf)).exitCode).toBe(0);
    expect(nl.inspect().links.some((l) => l.name === hostVeth)).toBe(false);
    expect((await call(p, 'DEL', conf, 'eth0', '')).exitCode).toBe(0);
  });

  it('requires ipam', async () => {
    const out = await call(createPtpPlugin({ netlink: nl }), 'ADD', {
      cniVersion: '1.0.0',
      name: 'pp',
      type: 'ptp',
    });
    expect(out.json).toMatchObject({ code: 7, msg: expect.stringContaining('ipam') });
  });
});

describe('loopback', () => {
  it('passes a prevResult through and answers every version', async () => {
    const p = createLoopbackPlugin({ netlink: nl });
    for (const v of ['0.2.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']) {
      const out = await call(p, 'ADD', { cniVersion: v, name: 'lo', type: 'loopback' }, 'lo');
      expect(out.exitCode, out.stdout).toBe(0);
      expect(out.json.cniVersion).toBe(v);
    }
    expect(nl.inspect(NS).links.find((l) => l.name === 'lo')?.up).toBe(true);
    const prevResult = { cniVersion: '1.0.0', ips: [{ address: '10.0.0.5/24' }] };
    const chained = await call(
      p,
      'ADD',
      { cniVersion: '1.0.0', name: 'lo', type: 'loopback', prevResult },
      'lo',
    );
    expect(chained.json.ips).toEqual(prevResult.ips);
    expect((await call(p, 'DEL', { cniVersion: '1.0.0', name: 'lo', type: 'loopback' }, 'lo')).exitCode).toBe(
      0,
    );
    expect(nl.inspect(NS).links.find((l) => l.name === 'lo')?.up).toBe(false);
    expect(
      (
        await call(
          p,
          'DEL',
          { cniVersion: '1.0.0', name: 'lo', type: 'loopback' },
          'lo',
          '/var/run/netns/gone',
        )
      ).exitCode,
    ).toBe(0);
  });
});

describe('tuning', () => {
  const prevResult = { cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: NS }] };
  beforeEach(async () => {
    await nl.inNetns(undefined, (ns) =>
      ns.createLink({ kind: 'veth', name: 'vh0', peerName: 'eth0', peerNetns: NS }),
    );
  });

  it('backs up, applies, CHECKs, restores on DEL; a retried ADD keeps the first backup', async () => {
    const dataDir = join(work, 'tuning1');
    const p = createTuningPlugin({ netlink: nl, allowlistFile: join(work, 'none') });
    const before = nl.inspect(NS).links.find((l) => l.name === 'eth0');
    const conf = {
      cniVersion: '1.0.0',
      name: 't',
      type: 'tuning',
      mtu: 1280,
      txQLen: 100,
      promisc: true,
      sysctl: { 'net/ipv4/conf/IFNAME/arp_notify': '1' },
      dataDir,
      prevResult,
    };
    const out = await call(p, 'ADD', { ...conf, runtimeConfig: { mac: 'c2:aa:bb:cc:dd:ee' } });
    expect(out.exitCode, out.stdout).toBe(0);
    expect(out.json.interfaces[0].mac).toBe('c2:aa:bb:cc:dd:ee');
    expect(nl.inspect(NS).links.find((l) => l.name === 'eth0')).toMatchObject({
      mtu: 1280,
      txqlen: 100,
      promisc: true,
      mac: 'c2:aa:bb:cc:dd:ee',
    });
    expect(await nl.inNetns(NS, (ns) => ns.getSysctl('net/ipv4/conf/eth0/arp_notify'))).toBe('1');
    const backup = JSON.parse(readFileSync(join(dataDir, 'ctr1_eth0.json'), 'utf8'));
    expect(backup).toEqual({ mac: before?.mac, mtu: before?.mtu, promisc: false, txQLen: before?.txqlen });
    expect((await call(p, 'ADD', { ...conf, runtimeConfig: { mac: 'c2:aa:bb:cc:dd:ee' } })).exitCode).toBe(0);
    expect(JSON.parse(readFileSync(join(dataDir, 'ctr1_eth0.json'), 'utf8'))).toEqual(backup);
    expect((await call(p, 'CHECK', { ...conf, prevResult: out.json })).exitCode).toBe(0);
    const bad = await call(p, 'CHECK', { ...conf, mtu: 1300, prevResult: out.json });
    expect(bad.json.msg).toContain('mtu 1280 != 1300');
    expect((await call(p, 'DEL', conf)).exitCode).toBe(0);
    expect(nl.inspect(NS).links.find((l) => l.name === 'eth0')).toMatchObject({
      mtu: before?.mtu,
      mac: before?.mac,
      promisc: false,
    });
    expect(existsSync(join(dataDir, 'ctr1_eth0.json'))).toBe(false);
    expect((await call(p, 'DEL', conf)).exitCode).toBe(0);
  });

  it('backs up the live allmulti flag (either way), CHECKs it and restores it on DEL', async () => {
    const p = createTuningPlugin({ netlink: nl, allowlistFile: join(work, 'none') });
    for (const initial of [true, false]) {
      await nl.inNetns(NS, (ns) => ns.setLink('eth0', { allmulti: initial }));
      const dataDir = join(work, `tuning-allmulti-${initial}`);
      const conf = {
        cniVersion: '1.0.0',
        name: 't',
        type: 'tuning',
        allmulti: !initial,
        dataDir,
        prevResult,
      };
      const out = await call(p, 'ADD', conf);
      expect(out.exitCode, out.stdout).toBe(0);
      expect(nl.inspect(NS).links.find((l) => l.name === 'eth0')?.allmulti).toBe(!initial);
      expect(JSON.parse(readFileSync(join(dataDir, 'ctr1_eth0.json'), 'utf8'))).toEqual({
        allmulti: initial,
      });
      expect((await call(p, 'CHECK', { ...conf, prevResult: out.json })).exitCode).toBe(0);
      // Someone flips the flag behind our back: CHECK names it.
      await nl.inNetns(NS, (ns) => ns.setLink('eth0', { allmulti: initial }));
      const bad = await call(p, 'CHECK', { ...conf, prevResult: out.json });
      expect(bad.json).toMatchObject({
        code: 999,
        msg: expect.stringContaining(`allmulti ${initial} != ${!initial}`),
      });
      await nl.inNetns(NS, (ns) => ns.setLink('eth0', { allmulti: !initial }));
      expect((await call(p, 'DEL', conf)).exitCode).toBe(0);
      expect(nl.inspect(NS).links.find((l) => l.name === 'eth0')?.allmulti).toBe(initial);
    }
  });

  it('needs prevResult, keeps sysctls under net., honours the allowlist', async () => {
    const allow = join(work, 'allow.conf');
    writeFileSync(allow, '# only arp\n^net\\.ipv4\\.conf\\.IFNAME\\.arp_.*\n');
    const p = createTuningPlugin({ netlink: nl, allowlistFile: allow });
    const base = { cniVersion: '1.0.0', name: 't', type: 'tuning', dataDir: join(work, 't2') };
    expect((await call(p, 'ADD', base)).json).toMatchObject({
      code: 7,
      msg: expect.stringContaining('prevResult'),
    });
    const denied = await call(p, 'ADD', { ...base, prevResult, sysctl: { 'net.ipv4.ip_forward': '1' } });
    expect(denied.json).toMatchObject({ code: 7, msg: expect.stringContaining('not allowed by') });
    const ok = await call(p, 'ADD', {
      ...base,
      prevResult,
      sysctl: { 'net.ipv4.conf.IFNAME.arp_ignore': '1' },
    });
    expect(ok.exitCode, ok.stdout).toBe(0);
  });
});

describe('host-device', () => {
  it('selects by name, pciBusID (fake sysfs) or kernelpath, moves in with an alias and back out', async () => {
    const sysfs = join(work, 'sys');
    mkdirSync(join(sysfs, 'bus/pci/devices/0000:00:05.0/net/ens5'), { recursive: true });
    mkdirSync(join(sysfs, 'devices/pci0000:00/0000:00:05.0/net/ens5'), { recursive: true });
    const p = createHostDevicePlugin({ netlink: nl, sysfs });
    for (const sel of [
      { device: 'ens5' },
      { pciBusID: '0000:00:05.0' },
      { runtimeConfig: { deviceID: '0000:00:05.0' } },
      { kernelpath: '/sys/devices/pci0000:00/0000:00:05.0' },
    ]) {
      const conf = {
        cniVersion: '1.0.0',
        name: 'hd',
        type: 'host-device',
        dataDir: join(work, 'hd'),
        ...sel,
      };
      const out = await call(p, 'ADD', conf, 'net1');
      expect(out.exitCode, out.stdout).toBe(0);
      expect(nl.inspect().links.some((l) => l.name === 'ens5')).toBe(false);
      expect(nl.inspect(NS).links.find((l) => l.name === 'net1')).toMatchObject({ alias: 'ens5', up: true });
      expect((await call(p, 'CHECK', { ...conf, prevResult: out.json }, 'net1')).exitCode).toBe(0);
      expect((await call(p, 'DEL', conf, 'net1')).exitCode).toBe(0);
      // Back as it was before ADD (the memory kernel's host links start up).
      expect(nl.inspect().links.find((l) => l.name === 'ens5')).toMatchObject({ up: true });
      expect((await call(p, 'DEL', conf, 'net1')).exitCode).toBe(0);
    }
    // No temporary netns is left behind.
    expect(nl.netnsPaths().sort()).toEqual(['/proc/1/ns/net', NS]);
  });

  it('rejects zero or several selectors and a missing device with code 7', async () => {
    const p = createHostDevicePlugin({ netlink: nl, sysfs: join(work, 'nosys') });
    const base = { cniVersion: '1.0.0', name: 'hd', type: 'host-device', dataDir: join(work, 'hd') };
    expect((await call(p, 'ADD', base)).json).toMatchObject({
      code: 7,
      msg: expect.stringContaining('no device given'),
    });
    expect((await call(p, 'ADD', { ...base, device: 'a', hwaddr: '02:00:00:00:00:01' })).json.code).toBe(7);
    expect((await call(p, 'ADD', { ...base, device: 'nope0' })).json).toMatchObject({
      code: 7,
      msg: expect.stringContaining('nope0'),
    });
    expect((await call(p, 'ADD', { ...base, kernelpath: '/tmp/x' })).json).toMatchObject({
      code: 7,
      msg: expect.stringContaining('/sys/devices/'),
    });
    expect((await call(p, 'ADD', { ...base, pciBusID: '0000:00:09.0' })).json).toMatchObject({
      code: 7,
      msg: expect.stringContaining('pciBusID'),
    });
  });

  it('puts the device back when IPAM fails', async () => {
    const p = createHostDevicePlugin({ netlink: nl });
    const out = await call(
      p,
      'ADD',
      {
        cniVersion: '1.0.0',
        name: 'hd',
        type: 'host-device',
        device: 'ens5',
        dataDir: join(work, 'hd'),
        ipam: { type: 'host-local' },
      },
      'net1',
    );
    expect(out.exitCode).toBe(1);
    expect(nl.inspect().links.some((l) => l.name === 'ens5')).toBe(true);
    expect(nl.inspect(NS).links.map((l) => l.name)).toEqual(['lo']);
  });
});
