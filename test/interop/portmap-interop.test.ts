// portmap against the Go reference (Debian's 1.1.1 in /usr/lib/cni), in a node netns of the
// test's own. State: rules written by Go's portmap are checked and removed by ours and the other
// way round, leaving no rule of the container. Chaining under libcni (our CniRuntime): the Go
// bridge → our portmap, and our bridge → the Go portmap, with real TCP through the mapped port.
// Go 1.1.1 has no nftables portmap, so only the iptables backend is compared. And the stock flannel
// conflist (flannel → bridge, then portmap) with only cni-kit's plugins, which failed before portmap.
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CniRuntime, type RuntimeConf } from 'cni-kit/runtime';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { pluginDir as oursDir } from '../helpers/mode.js';
import {
  CLIENT_IP,
  execInNode,
  inNs,
  NODE_IP,
  PortmapWorld,
  worldMissing,
} from '../helpers/portmap-world.js';

const GO = '/usr/lib/cni';
const tag = `pmo${process.pid % 100000}`;
let w: PortmapWorld;
const NET = `${tag}net`;

function need(ctx: TestContext): void {
  const why = worldMissing();
  if (why) ctx.skip(why);
  for (const p of ['bridge', 'host-local', 'portmap'])
    if (!existsSync(join(GO, p))) ctx.skip(`Go reference plugin ${p} not installed in ${GO}`);
}

beforeAll(() => {
  if (!worldMissing()) w = new PortmapWorld(tag);
});
afterAll(() => w?.close());

const env = (cmd: string, cid: string, ns: string) => ({
  CNI_COMMAND: cmd,
  CNI_CONTAINERID: cid,
  CNI_NETNS: `/var/run/netns/${ns}`,
  CNI_IFNAME: 'eth0',
  CNI_PATH: GO,
});
let subnets = 0;
const bridgeConf = () => {
  const n = ++subnets;
  return {
    cniVersion: '1.0.0',
    name: NET,
    type: 'bridge',
    bridge: `${tag}b${n}`,
    isDefaultGateway: true,
    ipam: {
      type: 'host-local',
      ranges: [[{ subnet: `10.67.${n}.0/24` }], [{ subnet: `fd67:${n}::/64` }]],
      dataDir: `${w.work}/ipam`,
    },
  };
};

/** A container on the Go bridge (dual stack) with the echo server in it; returns netns and prevResult. */
async function goContainer(name: string, port: number) {
  const ns = w.netns(name);
  const r = execInNode(w.node, `${GO}/bridge`, env('ADD', `${tag}-${name}`, ns), bridgeConf());
  if (r.status !== 0) throw new Error(`Go bridge ADD: ${r.stdout}${r.stderr}`);
  await w.server(ns, port, port + 1);
  return { ns, cid: `${tag}-${name}`, prev: r.json ?? {} };
}

const portmapConf = (prev: object, hostPort: number, port: number) => ({
  cniVersion: '1.0.0',
  name: NET,
  type: 'portmap',
  runtimeConfig: {
    portMappings: [
      { hostPort, containerPort: port, protocol: 'tcp' },
      { hostPort: hostPort + 1, containerPort: port + 1, protocol: 'udp' },
    ],
  },
  prevResult: prev,
});

/** Every line of the node's nat tables that belongs to container `cid`. */
const traces = (cid: string, chain: string) =>
  w
    .firewall()
    .split('\n')
    .filter((l) => l.includes(chain) || l.includes(`id: \\"${cid}\\"`) || l.includes(`"${cid}"`));
const chainOf = (cid: string) => {
  const save = inNs(w.node, 'iptables-save', '-t', 'nat');
  const line = save.split('\n').find((l) => l.includes(`id: \\"${cid}\\"`));
  return / -j (CNI-DN-[0-9a-f]+)/.exec(line ?? '')?.[1] ?? 'CNI-DN-none';
};

describe('iptables state shared with the Go portmap', () => {
  it('Go ADD, our CHECK and DEL: no rule of the container is left', async (ctx) => {
    need(ctx);
    const c = await goContainer('a', 7000);
    const conf = portmapConf(c.prev, 17000, 7000);
    const go = execInNode(w.node, `${GO}/portmap`, env('ADD', c.cid, c.ns), conf);
    expect(go.status, go.stdout).toBe(0);
    const chain = chainOf(c.cid);
    expect(traces(c.cid, chain).length).toBeGreaterThan(4);
    expect(w.askUntil(w.client, 'tcp', NODE_IP[4], 17000)).toBe(`ok ${CLIENT_IP[4]}`);
    const ours = `${oursDir(w.node)}portmap`;
    const check = execInNode(w.node, ours, env('CHECK', c.cid, c.ns), conf);
    expect(check.status, check.stdout).toBe(0);
    const del = execInNode(w.node, ours, env('DEL', c.cid, c.ns), { ...conf, prevResult: undefined });
    expect(del.status, del.stdout).toBe(0);
    expect(traces(c.cid, chain)).toEqual([]);
    expect(w.ask(w.client, 'tcp', NODE_IP[4], 17000)).not.toMatch(/^ok/);
  }, 60_000);

  it('our ADD and CHECK, Go DEL: no rule of the container is left', async (ctx) => {
    need(ctx);
    const c = await goContainer('b', 7100);
    const conf = portmapConf(c.prev, 17100, 7100);
    const ours = execInNode(w.node, `${oursDir(w.node)}portmap`, env('ADD', c.cid, c.ns), conf);
    expect(ours.status, ours.stdout).toBe(0);
    const chain = chainOf(c.cid);
    expect(traces(c.cid, chain).length).toBeGreaterThan(4);
    expect(w.askUntil(w.client, 'tcp', NODE_IP[6], 17100)).toBe(`ok ${CLIENT_IP[6]}`);
    // Go 1.1.1's CHECK checks the IPv4 rules in ip6tables too, so it fails wherever ip6tables works:
    // our CHECK stands in for it.
    const check = execInNode(w.node, `${oursDir(w.node)}portmap`, env('CHECK', c.cid, c.ns), conf);
    expect(check.status, check.stdout).toBe(0);
    const del = execInNode(w.node, `${GO}/portmap`, env('DEL', c.cid, c.ns), conf);
    expect(del.status, del.stdout).toBe(0);
    expect(traces(c.cid, chain)).toEqual([]);
  }, 60_000);
});

describe('chained under libcni in the node', () => {
  /** A plugin dir whose entries run ours or Go's plugin inside the node netns. */
  function wrappers(name: string, who: Record<string, 'ours' | 'go'>): string {
    const dir = join(w.work, name);
    mkdirSync(dir, { recursive: true });
    for (const [type, from] of Object.entries(who)) {
      const real = from === 'go' ? join(GO, type) : `${oursDir(w.node)}${type}`;
      writeFileSync(join(dir, type), `#!/bin/sh\nexec ip netns exec ${w.node} ${real} "$@"\n`);
      chmodSync(join(dir, type), 0o755);
    }
    return dir;
  }

  for (const [first, second] of [
    ['go', 'ours'],
    ['ours', 'go'],
  ] as const) {
    it(`${first} bridge → ${second} portmap: ADD, traffic, CHECK, DEL, nothing left`, async (ctx) => {
      need(ctx);
      const dir = wrappers(`${first}-${second}`, { bridge: first, 'host-local': first, portmap: second });
      const rt = new CniRuntime({ pluginDirs: [dir], cacheDir: join(w.work, 'cache'), timeoutMs: 20_000 });
      const ns = w.netns(`l${first}`);
      const port = first === 'go' ? 7200 : 7300;
      const list = JSON.stringify({
        cniVersion: '1.0.0',
        name: NET,
        plugins: [bridgeConf(), { type: 'portmap', capabilities: { portMappings: true } }],
      });
      const conf: RuntimeConf = {
        containerId: `${tag}-l${first}`,
        netns: `/var/run/netns/${ns}`,
        ifname: 'eth0',
        capabilityArgs: { portMappings: [{ hostPort: port + 10000, containerPort: port, protocol: 'tcp' }] },
      };
      await rt.addNetworkList(list, conf);
      await w.server(ns, port, port + 1);
      expect(w.askUntil(w.client, 'tcp', NODE_IP[4], port + 10000)).toBe(`ok ${CLIENT_IP[4]}`);
      expect(w.askUntil(w.client, 'tcp', NODE_IP[6], port + 10000)).toBe(`ok ${CLIENT_IP[6]}`);
      // Go 1.1.1's portmap CHECK fails wherever ip6tables works (it checks the IPv4 rules there too).
      if (second === 'ours') await rt.checkNetworkList(list, conf);
      const chain = chainOf(conf.containerId);
      await rt.delNetworkList(list, conf);
      expect(traces(conf.containerId, chain)).toEqual([]);
      await rt.delNetworkList(list, conf);
    }, 60_000);
  }

  it('the stock flannel conflist with only cni-kit installed: ADD works, the port reaches the container, DEL leaves nothing', async (ctx) => {
    const why = worldMissing();
    if (why) ctx.skip(why);
    const dir = wrappers('flannel-ours', {
      flannel: 'ours',
      bridge: 'ours',
      'host-local': 'ours',
      portmap: 'ours',
    });
    writeFileSync(
      join(w.work, 'subnet.env'),
      'FLANNEL_NETWORK=10.68.0.0/16\nFLANNEL_SUBNET=10.68.9.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n',
    );
    // kube-flannel.yml's cni-conf.json, with only the host paths moved into the test's directory.
    const list = JSON.stringify({
      name: 'cbr0',
      cniVersion: '0.3.1',
      plugins: [
        {
          type: 'flannel',
          delegate: { hairpinMode: true, isDefaultGateway: true },
          subnetFile: join(w.work, 'subnet.env'),
          dataDir: join(w.work, 'flannel'),
          ipam: { dataDir: join(w.work, 'flannel-ipam') },
        },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    });
    const rt = new CniRuntime({ pluginDirs: [dir], cacheDir: join(w.work, 'cache'), timeoutMs: 20_000 });
    const ns = w.netns('fl');
    const conf: RuntimeConf = {
      containerId: `${tag}-fl`,
      netns: `/var/run/netns/${ns}`,
      ifname: 'eth0',
      capabilityArgs: { portMappings: [{ hostPort: 17400, containerPort: 7400, protocol: 'tcp' }] },
    };
    await rt.addNetworkList(list, conf);
    await w.server(ns, 7400, 7401);
    expect(w.askUntil(w.client, 'tcp', NODE_IP[4], 17400)).toBe(`ok ${CLIENT_IP[4]}`);
    // The stock list is 0.3.1, which has no CHECK.
    const chain = chainOf(conf.containerId);
    await rt.delNetworkList(list, conf);
    expect(traces(conf.containerId, chain)).toEqual([]);
    expect(inNs(ns, 'ip', '-o', 'link', 'show')).not.toMatch(/eth0/);
  }, 60_000);
});
