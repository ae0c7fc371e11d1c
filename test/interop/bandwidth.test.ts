// bandwidth chained with the Go reference plugins (/usr/lib/cni, 1.1.1) under CniRuntime, both ways:
// the Go bridge → our bandwidth (limits from the `bandwidth` capability, as kubelet passes them), our
// bridge → Go's bandwidth, and state handed over: Go's ADD + our DEL, our ADD + Go's DEL leave no
// ifb and no qdisc. Every plugin runs in a node netns of the test's own (the plugin dir holds
// wrappers that nsenter it), so nothing touches the machine's links.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import type { RuntimeConf } from 'cni-kit/runtime';
import { describe, expect, it, type TestContext } from 'vitest';
import { ifbName } from '../../examples/bandwidth/plugin.js';
import { needGo, useGoChain } from '../helpers/netns.js';

const tag = `xbw${process.pid % 100000}`;
const chain = useGoChain(tag);
let seq = 0;

const ip = (...args: string[]) =>
  execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

const need = (ctx: TestContext) => needGo(ctx, 'bridge', 'host-local', 'bandwidth');
const netns = chain.netns;
/** A plugin dir whose every type runs ours or Go's inside the node netns. */
const pluginDir = (node: string, name: string, links: Record<string, 'ours' | 'go'>) =>
  chain.pluginDir(`${node}-${name}`, links, node);
const runtime = chain.runtime;

const limits = { ingressRate: 1_000_000, ingressBurst: 80_000, egressRate: 2_000_000, egressBurst: 160_000 };

function list(n: number, bandwidth: object) {
  return {
    cniVersion: '1.0.0',
    name: `${tag}n${n}`,
    plugins: [
      {
        type: 'bridge',
        bridge: `${tag}b`,
        isGateway: true,
        ipam: { type: 'host-local', subnet: `10.63.${n}.0/24`, dataDir: join(chain.work(), 'ipam') },
      },
      { type: 'bandwidth', ...bandwidth },
    ],
  };
}

interface World {
  node: string;
  rt: RuntimeConf;
  ifb: string;
  text: string;
}
function world(bandwidth: object): World {
  const n = ++seq;
  const node = netns(`${tag}-${n}n`);
  const ctr = netns(`${tag}-${n}c`);
  const l = list(n, bandwidth);
  const containerId = `${tag}-ctr${n}`;
  return {
    node,
    rt: { containerId, netns: `/var/run/netns/${ctr}`, ifname: 'eth0' },
    ifb: ifbName(l.name, containerId),
    text: JSON.stringify(l),
  };
}

/** What bandwidth leaves on the node: ifb links and the qdiscs of every link but the bridge. */
function shaping(node: string): { ifbs: string[]; qdiscs: string[] } {
  const ifbs = (
    JSON.parse(ip('-j', '-n', node, 'link', 'show', 'type', 'ifb')) as Array<{ ifname: string }>
  ).map((l) => l.ifname);
  const qs = JSON.parse(
    execFileSync('tc', ['-n', node, '-j', 'qdisc', 'show'], { encoding: 'utf8' }),
  ) as Array<{
    kind: string;
    handle: string;
    dev: string;
    options?: { rate?: number };
  }>;
  const qdiscs = qs
    .filter((q) => q.kind === 'tbf' || q.kind === 'ingress')
    .map(
      (q) =>
        `${q.dev.startsWith('bwp') ? 'ifb' : 'veth'}:${q.kind}${q.options?.rate ? `:${q.options.rate}` : ''}`,
    );
  return { ifbs, qdiscs };
}
const SHAPED = ['veth:tbf:125000', 'veth:ingress', 'ifb:tbf:250000'];

describe('bandwidth chained with the Go plugins under CniRuntime', () => {
  it('Go bridge → our bandwidth, limits from the bandwidth capability (runtimeConfig)', async (ctx) => {
    need(ctx);
    const w = world({ capabilities: { bandwidth: true } });
    const r = runtime(pluginDir(w.node, 'a', { bridge: 'go', 'host-local': 'go', bandwidth: 'ours' }));
    const rt = { ...w.rt, capabilityArgs: { bandwidth: limits } };
    const res = (await r.addNetworkList(w.text, rt)) as { interfaces: Array<{ name: string }> };
    expect(res.interfaces.at(-1)?.name).toBe(w.ifb);
    expect(shaping(w.node)).toEqual({ ifbs: [w.ifb], qdiscs: SHAPED });
    await r.checkNetworkList(w.text, rt);
    await r.delNetworkList(w.text, rt);
    expect(shaping(w.node)).toEqual({ ifbs: [], qdiscs: [] });
    await r.delNetworkList(w.text, rt);
  });

  it("our bridge → Go's bandwidth", async (ctx) => {
    need(ctx);
    const w = world(limits);
    const r = runtime(pluginDir(w.node, 'b', { bridge: 'ours', 'host-local': 'ours', bandwidth: 'go' }));
    await r.addNetworkList(w.text, w.rt);
    expect(shaping(w.node)).toEqual({ ifbs: [w.ifb], qdiscs: SHAPED });
    await r.checkNetworkList(w.text, w.rt);
    await r.delNetworkList(w.text, w.rt);
    expect(shaping(w.node)).toEqual({ ifbs: [], qdiscs: [] });
  });

  for (const [adder, deleter] of [
    ['go', 'ours'],
    ['ours', 'go'],
  ] as const) {
    it(`${adder === 'go' ? "Go's" : 'our'} ADD + ${deleter === 'go' ? "Go's" : 'our'} DEL leave no ifb and no qdisc`, async (ctx) => {
      need(ctx);
      const w = world(limits);
      const add = runtime(pluginDir(w.node, 'add', { bridge: 'go', 'host-local': 'go', bandwidth: adder }));
      const del = runtime(pluginDir(w.node, 'del', { bridge: 'go', 'host-local': 'go', bandwidth: deleter }));
      await add.addNetworkList(w.text, w.rt);
      expect(shaping(w.node).ifbs).toEqual([w.ifb]);
      // The other implementation's CHECK accepts the layout (same qdiscs, same ifb name).
      if (adder === 'go') await del.checkNetworkList(w.text, w.rt);
      await del.delNetworkList(w.text, w.rt);
      expect(shaping(w.node)).toEqual({ ifbs: [], qdiscs: [] });
    });
  }
});
