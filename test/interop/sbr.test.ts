// sbr chained with the Go reference plugins (/usr/lib/cni, 1.1.1) under CniRuntime, both ways: Go's
// macvlan or bridge → our sbr and our macvlan → Go's sbr give the container the same rules and
// tables; Go's ADD + our DEL removes Go's rules. Every plugin runs in a node netns of the test's own
// (the plugin dir holds wrappers that nsenter it), so nothing touches the machine's links.
import { execFileSync } from 'node:child_process';
import type { RuntimeConf } from 'cni-kit/runtime';
import { describe, expect, it, type TestContext } from 'vitest';
import { needGo, useGoChain } from '../helpers/netns.js';

const tag = `xsb${process.pid % 100000}`;
const chain = useGoChain(tag);
let seq = 0;

const ip = (...args: string[]) =>
  execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

const need = (ctx: TestContext) => needGo(ctx, 'bridge', 'macvlan', 'static', 'sbr');
const netns = chain.netns;
/** A plugin dir whose every type runs ours or Go's inside the node netns. */
const pluginDir = (node: string, name: string, links: Record<string, 'ours' | 'go'>) =>
  chain.pluginDir(`${node}-${name}`, links, node);
const runtime = chain.runtime;

const ipam = {
  type: 'static',
  addresses: [{ address: '10.64.0.5/24', gateway: '10.64.0.1' }],
  routes: [{ dst: '0.0.0.0/0' }, { dst: '192.168.64.0/24', gw: '10.64.0.7' }],
};

interface World {
  node: string;
  ctr: string;
  rt: RuntimeConf;
  text: string;
}
function world(main: 'macvlan' | 'bridge'): World {
  const n = ++seq;
  const node = netns(`${tag}-${n}n`);
  const ctr = netns(`${tag}-${n}c`);
  if (main === 'macvlan') {
    ip('-n', node, 'link', 'add', 'eth0', 'type', 'bridge');
    ip('-n', node, 'link', 'set', 'eth0', 'up');
  }
  const first =
    main === 'macvlan' ? { type: 'macvlan', master: 'eth0', ipam } : { type: 'bridge', bridge: 'sb0', ipam };
  const list = { cniVersion: '1.0.0', name: `${tag}n`, plugins: [first, { type: 'sbr' }] };
  return {
    node,
    ctr,
    rt: { containerId: `${tag}-ctr${n}`, netns: `/var/run/netns/${ctr}`, ifname: 'net1' },
    text: JSON.stringify(list),
  };
}

/** IPv4 rules and every table but local (IPv6 is off the table: the static IPAM here is IPv4). */
const routing = (ctr: string) =>
  [ip('-n', ctr, '-4', 'rule', 'show'), ip('-n', ctr, '-4', 'route', 'show', 'table', 'all')]
    .join('')
    .split('\n')
    .filter((l) => l && !l.includes('table local'))
    .join('\n');

describe('sbr chained with the Go plugins under CniRuntime', () => {
  it("Go's macvlan → our sbr and our macvlan → Go's sbr: the same rules and tables", async (ctx) => {
    need(ctx);
    const seen: string[] = [];
    for (const [main, sbr] of [
      ['go', 'ours'],
      ['ours', 'go'],
    ] as const) {
      const w = world('macvlan');
      const r = runtime(pluginDir(w.node, 'm', { macvlan: main, static: main, sbr }));
      await r.addNetworkList(w.text, w.rt);
      seen.push(routing(w.ctr));
      await r.delNetworkList(w.text, w.rt);
      expect(routing(w.ctr)).not.toMatch(/lookup 100/);
      // A second DEL finds no link: ours succeeds; Go's 1.1.1 fails there (fixed in its 1.3.0).
      if (sbr === 'ours') await r.delNetworkList(w.text, w.rt);
    }
    expect(seen[0]).toEqual(seen[1]);
    expect(seen[0]).toMatch(/from 10\.64\.0\.5 lookup 100/);
    expect(seen[0]).toMatch(/default via 10\.64\.0\.1 dev net1 table 100/);
  });

  it("Go's bridge → our sbr", async (ctx) => {
    need(ctx);
    const w = world('bridge');
    const r = runtime(pluginDir(w.node, 'b', { bridge: 'go', static: 'go', sbr: 'ours' }));
    await r.addNetworkList(w.text, w.rt);
    const got = routing(w.ctr);
    expect(got).toMatch(/from 10\.64\.0\.5 lookup 100/);
    expect(got).toMatch(/192\.168\.64\.0\/24 via 10\.64\.0\.7 dev net1 table 100/);
    expect(got).not.toMatch(/^\S.* dev net1 (?!table)/m);
    await r.delNetworkList(w.text, w.rt);
  });

  it("Go's ADD + our DEL remove Go's rules", async (ctx) => {
    need(ctx);
    const w = world('macvlan');
    const add = runtime(pluginDir(w.node, 'add', { macvlan: 'go', static: 'go', sbr: 'go' }));
    const del = runtime(pluginDir(w.node, 'del', { macvlan: 'go', static: 'go', sbr: 'ours' }));
    await add.addNetworkList(w.text, w.rt);
    expect(routing(w.ctr)).toMatch(/lookup 100/);
    // No list CHECK: the main plugin's CHECK looks for its routes in main, where sbr (Go's as
    // well as ours) no longer leaves them ("Failed to find Gateway" from Go's macvlan).
    // Our sbr's DEL alone (the macvlan stays): Go's rule is gone and main has its routes back.
    const only = JSON.stringify({ ...JSON.parse(w.text), plugins: [JSON.parse(w.text).plugins[1]] });
    const cached = (await add.getNetworkListCachedResult(w.text, w.rt)) as object;
    await del.delNetwork(
      JSON.stringify({
        ...JSON.parse(only).plugins[0],
        cniVersion: '1.0.0',
        name: `${tag}n`,
        prevResult: cached,
      }),
      w.rt,
    );
    const after = routing(w.ctr);
    expect(after).not.toMatch(/lookup 100|table 100/);
    expect(after).toMatch(/^default via 10\.64\.0\.1 dev net1/m);
    await del.delNetworkList(w.text, w.rt);
  });
});
