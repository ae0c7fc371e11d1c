// F15: CNI_IFNAME naming an interface the container already has (lo, or a link of a kind the
// plugin never makes): ADD refuses, and the DEL the runtime sends afterwards must leave that
// interface alone. Each main plugin that creates a container link, on the in-memory kernel.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type PluginSpec, runPlugin } from 'cni-kit';
import { type MemoryNetlink, memoryNetlink } from 'cni-kit/netlink';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { createBridgePlugin } from '../../examples/bridge/plugin.js';
import { createIpvlanPlugin } from '../../examples/ipvlan/plugin.js';
import { createMacvlanPlugin } from '../../examples/macvlan/plugin.js';
import { createPtpPlugin } from '../../examples/ptp/plugin.js';
import { createVlanPlugin } from '../../examples/vlan/plugin.js';

const dataDir = mkdtempSync(join(tmpdir(), `plugins-foreign-${process.pid}-`));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

const NS = '/var/run/netns/c1';
let nl: MemoryNetlink;
beforeEach(() => {
  nl = memoryNetlink({ hostLinks: ['eth0'] });
  nl.addNetns(NS);
});

const noFirewall = async () => ({ code: 0, stdout: '', stderr: '' });

interface Case {
  type: string;
  /** The kind the plugin creates; the foreign link in the container is of another kind. */
  kind: string;
  make(nl: MemoryNetlink): PluginSpec<never>;
  conf: Record<string, unknown>;
}

const CASES: Case[] = [
  {
    type: 'bridge',
    kind: 'veth',
    make: (netlink) => createBridgePlugin({ netlink, iptables: noFirewall }) as PluginSpec<never>,
    conf: { bridge: 'fbr0', isGateway: true },
  },
  {
    type: 'ptp',
    kind: 'veth',
    make: (netlink) => createPtpPlugin({ netlink, iptables: noFirewall }) as PluginSpec<never>,
    conf: {},
  },
  {
    type: 'macvlan',
    kind: 'macvlan',
    make: (netlink) => createMacvlanPlugin({ netlink }) as PluginSpec<never>,
    conf: { master: 'eth0' },
  },
  {
    type: 'ipvlan',
    kind: 'ipvlan',
    make: (netlink) => createIpvlanPlugin({ netlink }) as PluginSpec<never>,
    conf: { master: 'eth0' },
  },
  {
    type: 'vlan',
    kind: 'vlan',
    make: (netlink) => createVlanPlugin({ netlink }) as PluginSpec<never>,
    conf: { master: 'eth0', vlanId: 7 },
  },
];

function call(c: Case, cmd: string, ifname: string) {
  const conf = {
    cniVersion: '1.0.0',
    name: `f-${c.type}`,
    type: c.type,
    ...c.conf,
    ipam: { type: 'host-local', subnet: '10.91.0.0/24', dataDir },
  };
  const env = {
    CNI_COMMAND: cmd,
    CNI_CONTAINERID: `ctr-${c.type}`,
    CNI_NETNS: NS,
    CNI_IFNAME: ifname,
    CNI_PATH: '/nonexistent',
  };
  return runPlugin(c.make(nl), { env, stdin: JSON.stringify(conf) });
}

describe.each(CASES)('$type: DEL leaves a CNI_IFNAME it did not create alone (F15)', (c) => {
  it('lo: ADD refuses, DEL exits 0 and lo stays', async () => {
    const add = await call(c, 'ADD', 'lo');
    expect(add.exitCode).not.toBe(0);
    const del = await call(c, 'DEL', 'lo');
    expect(del.exitCode, del.stdout).toBe(0);
    expect(nl.inspect(NS).links.map((l) => l.name)).toEqual(['lo']);
  });

  it('an existing link of another kind: ADD refuses, DEL exits 0 and keeps it', async () => {
    // A veth for the sub-link plugins, a bridge for the veth plugins: never what the plugin makes.
    await nl.inNetns(NS, (ns) =>
      c.kind === 'veth'
        ? ns.createLink({ kind: 'bridge', name: 'net9' })
        : ns.createLink({ kind: 'veth', name: 'net9', peerName: 'peer9' }),
    );
    const before = nl.inspect(NS).links.map((l) => `${l.name}:${l.kind}`);
    const add = await call(c, 'ADD', 'net9');
    expect(add.exitCode).not.toBe(0);
    const del = await call(c, 'DEL', 'net9');
    expect(del.exitCode, del.stdout).toBe(0);
    expect(nl.inspect(NS).links.map((l) => `${l.name}:${l.kind}`)).toEqual(before);
  });

  it('its own link of that name is still deleted', async () => {
    const add = await call(c, 'ADD', 'net1');
    expect(add.exitCode, add.stdout).toBe(0);
    expect(nl.inspect(NS).links.find((l) => l.name === 'net1')?.kind).toBe(c.kind);
    expect((await call(c, 'DEL', 'net1')).exitCode).toBe(0);
    expect(nl.inspect(NS).links.map((l) => l.name)).toEqual(['lo']);
  });
});
