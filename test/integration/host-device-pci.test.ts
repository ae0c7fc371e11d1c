// host-device binaries moving "the netdev of a PCI function" in real network namespaces: a veth in
// a node netns stands in for an SR-IOV VF, and a fake /sys/bus/pci/devices (bind-mounted in a
// mount namespace of the test's own, where the plugin runs) names it as the netdev of a PCI
// address, as the kernel does for a VF. Ours runs pciBusID and runtimeConfig.deviceID (what multus
// hands over); the Go reference 1.1.1 runs pciBusID on the same tree.
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readlinkSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { pluginDir } from '../helpers/mode.js';

const tag = `hdp${process.pid % 100000}`;
const GO = '/usr/lib/cni/host-device';
const VF = '0000:00:05.1';
let work = '';
let keeper: ChildProcess | undefined;
let mnt = '';
let ready = false;
const netnses: string[] = [];
let seq = 0;

const ip = (...args: string[]) => execFileSync('ip', args, { encoding: 'utf8' });
const need = (ctx: TestContext) => {
  if (process.getuid?.() !== 0) ctx.skip('needs root for network and mount namespaces');
  if (!ready) ctx.skip('no mount namespace with a fake /sys/bus/pci/devices could be made here');
};

function netns(suffix: string): string {
  const name = `${tag}-${++seq}${suffix}`;
  spawnSync('ip', ['netns', 'del', name]);
  ip('netns', 'add', name);
  netnses.push(name);
  return name;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), `${tag}-`));
  // The fake tree: the VF's PCI directory with its netdev, as /sys/bus/pci/devices/<addr>/net/<name>.
  mkdirSync(join(work, 'pci', VF, 'net', `${tag}vf`), { recursive: true });
  // Bound to a kernel driver (iavf, the VF driver of Intel NICs): a netdev, not a DPDK device.
  mkdirSync(join(work, 'drivers', 'iavf'), { recursive: true });
  symlinkSync(join(work, 'drivers', 'iavf'), join(work, 'pci', VF, 'driver'));
  if (process.getuid?.() !== 0) return;
  // The netns files the cases add later must show in the mount namespace made below: `ip netns
  // add` makes /run/netns a shared mount point, and only one that is shared before the namespace
  // is made passes its later mounts on. Whether some earlier run on the machine did so is not for
  // this file to depend on (a fresh /run/netns of a test harness is private): one netns made and
  // removed here does it.
  const prime = `${tag}-prime`;
  spawnSync('ip', ['netns', 'add', prime]);
  spawnSync('ip', ['netns', 'del', prime]);
  // A mount namespace held by a process of ours, a slave of the machine's: the fake tree mounted
  // in it never shows outside. (Keeping it by a bind mount of its file, `unshare --mount=<file>`,
  // failed with EINVAL in about one run in four here, and every case was then skipped.)
  keeper = spawn('unshare', ['--mount', '--propagation', 'slave', 'sleep', 'infinity'], { stdio: 'ignore' });
  const own = readlinkSync('/proc/self/ns/mnt');
  const path = `/proc/${keeper.pid}/ns/mnt`;
  const end = Date.now() + 15_000;
  let seen = '';
  while (Date.now() < end) {
    try {
      seen = readlinkSync(path);
    } catch {
      seen = '';
    }
    if (seen !== '' && seen !== own) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  if (seen === '' || seen === own) {
    console.error(`host-device-pci setup: no mount namespace of its own (saw ${seen || 'nothing'})`);
    return;
  }
  mnt = path;
  const r = spawnSync(
    'nsenter',
    [`--mount=${mnt}`, 'mount', '--bind', join(work, 'pci'), '/sys/bus/pci/devices'],
    {
      encoding: 'utf8',
    },
  );
  if (r.status !== 0) console.error(`host-device-pci setup: mounting the fake tree: ${r.stderr}`);
  ready = r.status === 0;
});

afterAll(() => {
  for (const n of netnses) spawnSync('ip', ['netns', 'del', n]);
  // The namespace (and the fake tree's mount in it) goes with its last process.
  keeper?.kill('SIGKILL');
  if (work) rmSync(work, { recursive: true, force: true });
});

/** A node netns holding the stand-in VF (a veth, up, with an address) and a container netns. */
function setup(): { node: string; ctr: string } {
  const node = netns('n');
  const ctr = netns('c');
  ip('-n', node, 'link', 'add', `${tag}vf`, 'type', 'veth', 'peer', 'name', `${tag}pf`);
  ip('-n', node, 'link', 'set', `${tag}vf`, 'up');
  ip('-n', node, 'addr', 'add', '192.0.2.9/24', 'dev', `${tag}vf`);
  return { node, ctr };
}

/** Runs a host-device binary as the node's runtime would, in the node netns and the test's mount ns. */
function run(bin: string, node: string, cmd: string, ctr: string, conf: object) {
  const exe = bin === 'ours' ? join(pluginDir(node, { mountNs: mnt }), 'host-device') : bin;
  const r = spawnSync('nsenter', [`--mount=${mnt}`, `--net=/var/run/netns/${node}`, exe], {
    env: {
      PATH: process.env.PATH ?? '',
      CNI_COMMAND: cmd,
      CNI_CONTAINERID: `${tag}-${ctr}`,
      CNI_NETNS: `/var/run/netns/${ctr}`,
      CNI_IFNAME: 'net1',
      CNI_PATH: '/usr/lib/cni',
    },
    input: JSON.stringify(conf),
    encoding: 'utf8',
    timeout: 20000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function links(ns: string) {
  const addrs = JSON.parse(ip('-j', '-n', ns, 'addr', 'show')) as Array<{
    ifname: string;
    addr_info: Array<{ local: string }>;
  }>;
  const info = JSON.parse(ip('-j', '-n', ns, 'link', 'show')) as Array<{ ifname: string; ifalias?: string }>;
  return info.map((l) => ({
    name: l.ifname,
    alias: l.ifalias,
    addrs: addrs.find((a) => a.ifname === l.ifname)?.addr_info.map((a) => a.local) ?? [],
  }));
}

const impls: Array<[string, string, object]> = [
  ['ours', 'ours', { pciBusID: VF }],
  ['ours', 'ours', { runtimeConfig: { deviceID: VF } }],
  // What multus hands a host-device NAD whose pod got this VF from the device plugin.
  ['ours', 'ours', { deviceID: VF, pciBusID: VF, runtimeConfig: { deviceID: VF } }],
  ...(existsSync(GO) ? ([['go 1.1.1', GO, { pciBusID: VF }]] as Array<[string, string, object]>) : []),
];

describe('host-device moves the netdev of a PCI function', () => {
  for (const [impl, bin, sel] of impls) {
    it(`${impl} with ${JSON.stringify(sel)}: the stand-in VF goes into the pod as net1 and back`, (ctx) => {
      need(ctx);
      const { node, ctr } = setup();
      const conf = {
        cniVersion: '1.0.0',
        name: 'sriov',
        type: 'host-device',
        dataDir: join(work, `state-${ctr}`),
        ...sel,
      };
      const add = run(bin, node, 'ADD', ctr, conf);
      expect(add.status, `${add.stdout}\n${add.stderr}`).toBe(0);
      expect(JSON.parse(add.stdout).interfaces).toMatchObject([
        { name: 'net1', sandbox: `/var/run/netns/${ctr}` },
      ]);
      expect(links(ctr).find((l) => l.name === 'net1')).toMatchObject({ alias: `${tag}vf` });
      expect(links(node).map((l) => l.name)).not.toContain(`${tag}vf`);
      const del = run(bin, node, 'DEL', ctr, conf);
      expect(del.status, `${del.stdout}\n${del.stderr}`).toBe(0);
      expect(links(ctr).map((l) => l.name)).not.toContain('net1');
      const back = links(node).find((l) => l.name === `${tag}vf`);
      expect(back).toBeDefined();
      // Ours puts back what it took (the address too); the reference leaves the device bare.
      if (impl === 'ours') expect(back?.addrs).toContain('192.0.2.9');
    });
  }

  it('ours: a deviceID the node does not have is code 7 naming it, and nothing moves', (ctx) => {
    need(ctx);
    const { node, ctr } = setup();
    const conf = {
      cniVersion: '1.0.0',
      name: 'sriov',
      type: 'host-device',
      dataDir: join(work, 'state-x'),
      runtimeConfig: { deviceID: '0000:00:06.1' },
    };
    const add = run('ours', node, 'ADD', ctr, conf);
    expect(add.status).toBe(1);
    const e = JSON.parse(add.stdout);
    expect(e.code).toBe(7);
    expect(e.msg).toContain(
      'runtimeConfig.deviceID: "0000:00:06.1" is neither a PCI device (/sys/bus/pci/devices/0000:00:06.1)',
    );
    expect(add.stderr).not.toMatch(/\n\s+at /);
    expect(links(node).map((l) => l.name)).toContain(`${tag}vf`);
    expect(run('ours', node, 'DEL', ctr, conf).status).toBe(0);
  });
});
