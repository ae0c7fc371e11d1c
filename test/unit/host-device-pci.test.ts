// host-device picking its device by PCI function or auxiliary device, as multus hands it one from a
// device plugin: runtimeConfig.deviceID over pciBusID, a user's own selector over both (what multus
// injects into every plugin), sub-functions on the auxiliary bus, and DPDK-bound functions left in
// place. A fake sysfs tree names the netdevs; the in-memory kernel holds them.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PluginSpec } from 'cni-kit';
import { type MemoryNetlink, memoryNetlink } from 'cni-kit/netlink';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { createHostDevicePlugin } from '../../examples/host-device/plugin.js';
import { callInProcess } from '../helpers/plugin.js';

const work = mkdtempSync(join(tmpdir(), `hd-pci-${process.pid}-`));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const NS = '/var/run/netns/c1';
const sysfs = join(work, 'sys');
let nl: MemoryNetlink;

/** A PCI function with netdev `net` bound to `driver` (default a kernel driver). */
function pci(addr: string, net: string | undefined, driver = 'iavf'): void {
  const dev = join(sysfs, 'bus/pci/devices', addr);
  mkdirSync(dev, { recursive: true });
  if (net) mkdirSync(join(dev, 'net', net), { recursive: true });
  mkdirSync(join(sysfs, 'bus/pci/drivers', driver), { recursive: true });
  symlinkSync(join(sysfs, 'bus/pci/drivers', driver), join(dev, 'driver'));
}
pci('0000:03:02.1', 'vf1');
pci('0000:03:02.2', 'vf2');
pci('0000:03:02.3', undefined, 'vfio-pci');
mkdirSync(join(sysfs, 'bus/auxiliary/devices/mlx5_core.sf.4/net/sf4'), { recursive: true });

beforeEach(() => {
  nl = memoryNetlink({ hostLinks: ['vf1', 'vf2', 'sf4', 'eth1'] });
  nl.addNetns(NS);
});

async function call<C>(plugin: PluginSpec<C>, cmd: string, conf: object, ifname = 'net1') {
  return callInProcess(plugin, cmd, conf, { CNI_NETNS: NS, CNI_IFNAME: ifname });
}
const base = () => ({ cniVersion: '1.0.0', name: 'hd', type: 'host-device', dataDir: join(work, 'state') });
const moved = () => nl.inspect(NS).links.find((l) => l.name === 'net1')?.alias;

describe('host-device by PCI function and device ID', () => {
  const cases: Array<[string, object, string]> = [
    ['pciBusID', { pciBusID: '0000:03:02.1' }, 'vf1'],
    ['runtimeConfig.deviceID', { runtimeConfig: { deviceID: '0000:03:02.2' } }, 'vf2'],
    // multus sets pciBusID and deviceID in the config and runtimeConfig.deviceID: the runtime's wins.
    [
      'runtimeConfig.deviceID over pciBusID',
      { pciBusID: '0000:03:02.1', runtimeConfig: { deviceID: '0000:03:02.2' } },
      'vf2',
    ],
    // A NAD naming its device keeps it, whatever multus injected.
    [
      'device over injected pciBusID',
      { device: 'eth1', pciBusID: '0000:03:02.1', deviceID: '0000:03:02.1' },
      'eth1',
    ],
    ['auxiliary device', { runtimeConfig: { deviceID: 'mlx5_core.sf.4' } }, 'sf4'],
  ];
  for (const [what, sel, dev] of cases) {
    it(`${what}: moves ${dev} in and back out`, async () => {
      const p = createHostDevicePlugin({ netlink: nl, sysfs });
      const conf = { ...base(), ...sel };
      const add = await call(p, 'ADD', conf);
      expect(add.exitCode, add.stdout).toBe(0);
      expect(moved()).toBe(dev);
      expect(nl.inspect().links.some((l) => l.name === dev)).toBe(false);
      expect((await call(p, 'DEL', conf)).exitCode).toBe(0);
      expect(nl.inspect().links.some((l) => l.name === dev)).toBe(true);
      expect(nl.inspect(NS).links.some((l) => l.name === 'net1')).toBe(false);
    });
  }

  it('a device ID on neither bus is code 7 naming both paths and the fix', async () => {
    const p = createHostDevicePlugin({ netlink: nl, sysfs });
    const out = await call(p, 'ADD', { ...base(), runtimeConfig: { deviceID: '0000:09:00.1' } });
    expect(out.exitCode).toBe(1);
    expect(out.json.code).toBe(7);
    expect(out.json.msg).toBe(
      `runtimeConfig.deviceID: "0000:09:00.1" is neither a PCI device (${sysfs}/bus/pci/devices/0000:09:00.1) nor an auxiliary device (${sysfs}/bus/auxiliary/devices/0000:09:00.1)`,
    );
    expect(out.json.details).toMatch(/device plugin/);
    // DEL of a device that is gone succeeds.
    expect((await call(p, 'DEL', { ...base(), runtimeConfig: { deviceID: '0000:09:00.1' } })).exitCode).toBe(
      0,
    );
  });

  it('a PCI function without a netdev is code 7 naming the field', async () => {
    pci('0000:03:02.7', undefined);
    const p = createHostDevicePlugin({ netlink: nl, sysfs });
    const out = await call(p, 'ADD', { ...base(), pciBusID: '0000:03:02.7' });
    expect(out.json).toMatchObject({
      code: 7,
      msg: expect.stringContaining('pciBusID: no network interface found for "0000:03:02.7"'),
    });
  });

  it('a function bound to a DPDK driver is left in place: ADD answers without interfaces, DEL and CHECK touch nothing', async () => {
    const p = createHostDevicePlugin({ netlink: nl, sysfs });
    const conf = { ...base(), runtimeConfig: { deviceID: '0000:03:02.3' } };
    const before = nl.inspect().links.map((l) => l.name);
    const add = await call(p, 'ADD', conf);
    expect(add.exitCode, add.stdout).toBe(0);
    expect(add.json).toEqual({ cniVersion: '1.0.0', interfaces: [] });
    expect(add.stderr).toContain('bound to vfio-pci');
    expect((await call(p, 'CHECK', { ...conf, prevResult: add.json })).exitCode).toBe(0);
    expect((await call(p, 'DEL', conf)).exitCode).toBe(0);
    expect(nl.inspect().links.map((l) => l.name)).toEqual(before);
    expect(nl.inspect(NS).links.map((l) => l.name)).not.toContain('net1');
  });
});
