// Our plugins chained with the Go reference plugins (/usr/lib/cni, spec up to 1.0.0) both ways,
// driven by CniRuntime in real network namespaces: our bridge → Go tuning → Go portmap, the Go bridge
// with our host-local as IPAM, and our tuning after the Go bridge; plus an all-ours list at 1.1.0.
// Every plugin runs in a node netns of the file's own (the plugin dirs hold wrappers that nsenter
// it), so the bridges and the Go portmap's NAT rules land there, never in the machine's netns.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { RuntimeConf } from 'cni-kit/runtime';
import { beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { needGo, useGoChain } from '../helpers/netns.js';

const tag = `pch${process.pid % 100000}`;
const net = `172.${16 + (process.pid % 16)}`;
const chain = useGoChain(tag);
let node = '';
beforeAll(() => {
  if (process.getuid?.() === 0) node = chain.netns(`${tag}-node`);
});

const ip = (...args: string[]) => execFileSync('ip', args, { encoding: 'utf8' });

const need = (ctx: TestContext) => needGo(ctx, 'bridge', 'host-local', 'tuning', 'portmap');

const newNetns = (suffix: string) => `/var/run/netns/${chain.netns(`${tag}-${suffix}`)}`;

/** A plugin dir where each type runs ours or the Go one inside the node netns, as the test needs. */
const pluginDir = (name: string, links: Record<string, 'ours' | 'go'>) => chain.pluginDir(name, links, node);
/** The node netns's nat table, as iptables-save prints it. */
const natOfNode = () =>
  execFileSync('ip', ['netns', 'exec', node, 'iptables-save', '-t', 'nat'], { encoding: 'utf8' });
const runtime = chain.runtime;

function bridgeList(version: string, idx: number, extra: object[] = []) {
  const br = `${tag}b${idx}`;
  return {
    cniVersion: version,
    name: `${tag}n${idx}`,
    plugins: [
      {
        type: 'bridge',
        bridge: br,
        isGateway: true,
        ipam: { type: 'host-local', subnet: `${net}.${60 + idx}.0/24`, dataDir: join(chain.work(), 'ipam') },
      },
      ...extra,
    ],
  };
}

const reserved = (list: { name: string }) => {
  const d = join(chain.work(), 'ipam', list.name);
  return existsSync(d) ? readdirSync(d).filter((f) => /^\d/.test(f)) : [];
};
const linkOf = (ns: string) =>
  (
    JSON.parse(ip('-j', '-n', ns.split('/').pop() ?? '', 'addr', 'show', 'eth0')) as Array<{
      address: string;
      mtu: number;
      addr_info: Array<{ local: string }>;
    }>
  )[0];

describe('chaining with the Go reference plugins', () => {
  (['0.3.1', '0.4.0', '1.0.0'] as const).forEach((version, idx) => {
    it(`our bridge → Go tuning → Go portmap at ${version}`, async (ctx) => {
      need(ctx);
      if (spawnSync('ip', ['netns', 'exec', node, 'iptables', '-t', 'nat', '-S']).status !== 0)
        ctx.skip('iptables nat table unavailable');
      const dir = pluginDir(`ours-first-${idx}`, { bridge: 'ours', tuning: 'go', portmap: 'go' });
      const mac = `0a:58:0a:c8:00:4${idx}`;
      const hostPort = 21000 + ((process.pid * 3 + idx) % 20000);
      const list = bridgeList(version, idx, [
        { type: 'tuning', capabilities: { mac: true }, mtu: 1400 },
        { type: 'portmap', capabilities: { portMappings: true } },
      ]);
      const text = JSON.stringify(list);
      const ns = newNetns(`a${idx}`);
      const rt: RuntimeConf = {
        containerId: `${tag}-a${idx}`,
        netns: ns,
        ifname: 'eth0',
        capabilityArgs: { mac, portMappings: [{ hostPort, containerPort: 80, protocol: 'tcp' }] },
      };
      const r = runtime(dir);
      const result = (await r.addNetworkList(text, rt)) as {
        cniVersion: string;
        interfaces: Array<{ name: string; mac: string; sandbox?: string }>;
      };
      expect(result.cniVersion).toBe(version);
      expect(result.interfaces.map((i) => i.name)[0]).toBe(`${tag}b${idx}`);
      expect(result.interfaces.find((i) => i.sandbox)?.mac).toBe(mac);
      const link = linkOf(ns);
      expect(link).toMatchObject({ address: mac, mtu: 1400 });
      expect(natOfNode()).toContain(`--dport ${hostPort}`);
      // Go portmap 1.1.1's CHECK fails on any IPv4-only attachment ("could not check ipv6 dnat"), so
      // CHECK runs over the same list without it.
      if (version !== '0.3.1')
        await r.checkNetworkList(JSON.stringify({ ...list, plugins: list.plugins.slice(0, 2) }), rt);
      await r.delNetworkList(text, rt);
      expect(natOfNode()).not.toContain(`--dport ${hostPort}`);
      expect(reserved(list)).toEqual([]);
      await r.delNetworkList(text, rt);
    });
  });

  it('our bridge answers in the same shape as the Go bridge for the same config', async (ctx) => {
    need(ctx);
    const list = bridgeList('1.0.0', 7);
    const plugin = { cniVersion: '1.0.0', name: list.name, ...list.plugins[0], isDefaultGateway: true };
    const shape = (r: {
      interfaces: Array<Record<string, unknown>>;
      ips: Array<Record<string, unknown>>;
      routes?: unknown;
    }) => ({
      interfaces: r.interfaces.map((i) => Object.keys(i).sort()),
      names: r.interfaces.map((i) => String(i.name).replace(/^veth[0-9a-f]{8}$/, 'veth*')),
      ips: r.ips.map((ip) => ({ ...ip, address: String(ip.address).replace(/\.\d+\//, '.X/') })),
      routes: r.routes,
    });
    const results = [];
    for (const who of ['go', 'ours'] as const) {
      const ns = newNetns(`s${who}`);
      const r = runtime(pluginDir(`shape-${who}`, { bridge: who, 'host-local': who }));
      const rt: RuntimeConf = { containerId: `${tag}-s${who}`, netns: ns, ifname: 'eth0' };
      const res = (await r.addNetwork(JSON.stringify(plugin), rt)) as unknown as Parameters<typeof shape>[0];
      results.push(shape(res));
      await r.delNetwork(JSON.stringify(plugin), rt);
    }
    expect(results[1]).toEqual(results[0]);
  });

  it('the Go bridge uses our host-local as its IPAM', async (ctx) => {
    need(ctx);
    const dir = pluginDir('go-bridge', { bridge: 'go', 'host-local': 'ours' });
    const list = bridgeList('1.0.0', 4);
    const text = JSON.stringify(list);
    const ns = newNetns('b');
    const rt: RuntimeConf = { containerId: `${tag}-b`, netns: ns, ifname: 'eth0' };
    const r = runtime(dir);
    const result = (await r.addNetworkList(text, rt)) as { ips: Array<{ address: string; gateway: string }> };
    expect(result.ips[0]).toMatchObject({ address: `${net}.64.2/24`, gateway: `${net}.64.1` });
    expect(linkOf(ns)?.addr_info.some((a) => a.local === `${net}.64.2`)).toBe(true);
    expect(reserved(list)).toEqual([`${net}.64.2`]);
    await r.checkNetworkList(text, rt);
    await r.delNetworkList(text, rt);
    expect(reserved(list)).toEqual([]);
  });

  it('our tuning after the Go bridge, restoring the MTU on DEL', async (ctx) => {
    need(ctx);
    const dir = pluginDir('go-then-ours', { bridge: 'go', 'host-local': 'go', tuning: 'ours' });
    const list = bridgeList('1.0.0', 5, [
      {
        type: 'tuning',
        mtu: 1300,
        sysctl: { 'net.ipv4.conf.IFNAME.arp_notify': '1' },
        dataDir: join(chain.work(), 'tuning'),
      },
    ]);
    const text = JSON.stringify(list);
    const ns = newNetns('c');
    const rt: RuntimeConf = { containerId: `${tag}-c`, netns: ns, ifname: 'eth0' };
    const r = runtime(dir);
    await r.addNetworkList(text, rt);
    expect(linkOf(ns)?.mtu).toBe(1300);
    await r.checkNetworkList(text, rt);
    await r.delNetworkList(text, rt);
    expect(spawnSync('ip', ['-n', ns.split('/').pop() ?? '', 'link', 'show', 'eth0']).status).not.toBe(0);
    expect(readdirSync(join(chain.work(), 'tuning'))).toEqual([]);
  });

  it('an all-ours list at 1.1.0: ADD, CHECK, STATUS, GC frees stale addresses, DEL', async (ctx) => {
    need(ctx);
    const dir = pluginDir('ours-110', { bridge: 'ours', tuning: 'ours', 'host-local': 'ours' });
    const list = bridgeList('1.1.0', 6, [
      { type: 'tuning', promisc: true, dataDir: join(chain.work(), 'tuning110') },
    ]);
    const text = JSON.stringify(list);
    const ns = newNetns('d');
    const rt: RuntimeConf = { containerId: `${tag}-d`, netns: ns, ifname: 'eth0' };
    const r = runtime(dir);
    const result = (await r.addNetworkList(text, rt)) as { cniVersion: string };
    expect(result.cniVersion).toBe('1.1.0');
    await r.checkNetworkList(text, rt);
    await r.getStatusNetworkList(text);
    expect(reserved(list)).toHaveLength(1);
    await r.gcNetworkList(text, { validAttachments: [{ containerId: rt.containerId, ifname: 'eth0' }] });
    expect(reserved(list)).toHaveLength(1);
    await r.gcNetworkList(text, { validAttachments: [] });
    expect(reserved(list)).toHaveLength(0);
    await r.delNetworkList(text, rt);
  });
});
