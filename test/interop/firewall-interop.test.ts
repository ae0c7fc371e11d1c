// The firewall plugin chained with the Go reference plugins (Debian's 1.1.1) under libcni (our
// CniRuntime), both ways, in a node netns of the test's own: ours after the Go bridge, the Go
// firewall after our bridge, and the state handed over between them (Go ADD + our DEL, our ADD +
// Go DEL): none of the container's rules stay; the shared chains and jumps do, as the reference
// leaves them. The runtime execs every plugin through a one-line wrapper that enters the node netns.
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { RuntimeConf } from 'cni-kit/runtime';
import { beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { needGo, useGoChain } from '../helpers/netns.js';

const tag = `fwx${process.pid % 100000}`;
const net = 40 + (process.pid % 40);
const chain = useGoChain(tag);
let node: string;

function need(ctx: TestContext): void {
  needGo(ctx, 'bridge', 'host-local', 'firewall');
  if (spawnSync('iptables-save', ['--version']).status !== 0) ctx.skip('iptables is not installed');
}

const netns = (suffix: string) => chain.netns(`${tag}-${suffix}`);

/** A plugin dir whose each type runs ours or Go's inside the node netns. */
const pluginDir = (name: string, links: Record<string, 'ours' | 'go'>) => chain.pluginDir(name, links, node);
const runtime = chain.runtime;

/** bridge + host-local, then firewall (same-bridge where asked). */
function list(version: string, idx: number, firewall: Record<string, unknown> = {}) {
  return JSON.stringify({
    cniVersion: version,
    name: `${tag}n${idx}`,
    plugins: [
      {
        type: 'bridge',
        bridge: `${tag}b${idx}`,
        isGateway: true,
        ipam: {
          type: 'host-local',
          ranges: [[{ subnet: `10.${net}.${idx}.0/24` }], [{ subnet: `fd00:${net}:${idx}::/64` }]],
          dataDir: join(chain.work(), 'ipam'),
        },
      },
      { type: 'firewall', backend: 'iptables', dataDir: join(chain.work(), 'fw'), ...firewall },
    ],
  });
}

/** The container's rules (naming one of its addresses) in both families of the node. */
function containerRules(addrs: string[]): string[] {
  const out: string[] = [];
  for (const tool of ['iptables-save', 'ip6tables-save']) {
    const saved = execFileSync('ip', ['netns', 'exec', node, tool, '-t', 'filter'], { encoding: 'utf8' });
    for (const l of saved.split('\n')) if (addrs.some((a) => l.includes(` ${a}/`))) out.push(l);
  }
  return out;
}

const addrsOf = (r: unknown) =>
  ((r as { ips: Array<{ address: string }> }).ips ?? []).map((i) => i.address.split('/')[0] ?? '');

/** The shared lines the reference leaves in each family once no container is left. */
const SHARED = [
  '-A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD',
  '-A CNI-FORWARD -m comment --comment "CNI firewall plugin admin overrides" -j CNI-ADMIN',
];
const shared = () =>
  ['iptables-save', 'ip6tables-save'].map((tool) =>
    execFileSync('ip', ['netns', 'exec', node, tool, '-t', 'filter'], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.startsWith('-A ') && /CNI-(FORWARD|ADMIN)/.test(l)),
  );

let seq = 0;
async function scenario(
  version: string,
  add: Record<string, 'ours' | 'go'>,
  del: Record<string, 'ours' | 'go'>,
  firewall: Record<string, unknown> = {},
) {
  const idx = ++seq;
  const text = list(version, idx, firewall);
  const ctr = netns(`c${idx}`);
  const rt: RuntimeConf = { containerId: `${tag}-c${idx}`, netns: `/run/netns/${ctr}`, ifname: 'eth0' };
  const a = runtime(pluginDir(`add${idx}`, add));
  const result = await a.addNetworkList(text, rt);
  const addrs = addrsOf(result);
  expect(addrs).toHaveLength(2);
  const rules = containerRules(addrs);
  expect(rules.sort()).toEqual(
    [
      `-A CNI-FORWARD -d ${addrs[0]}/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
      `-A CNI-FORWARD -s ${addrs[0]}/32 -j ACCEPT`,
      `-A CNI-FORWARD -d ${addrs[1]}/128 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
      `-A CNI-FORWARD -s ${addrs[1]}/128 -j ACCEPT`,
    ].sort(),
  );
  await a.checkNetworkList(text, rt);
  const d = runtime(pluginDir(`del${idx}`, del));
  // The DEL side's CHECK reads the other's rules as its own.
  await d.checkNetworkList(text, rt);
  await d.delNetworkList(text, rt);
  expect(containerRules(addrs)).toEqual([]);
  expect(shared()).toEqual([SHARED, SHARED]);
  await d.delNetworkList(text, rt);
  return result;
}

describe('firewall with the Go reference plugins under libcni', () => {
  beforeAll(() => {
    if (process.getuid?.() === 0) node = netns('node');
  });

  for (const version of ['0.4.0', '1.0.0']) {
    it(`ours after the Go bridge at ${version}`, async (ctx) => {
      need(ctx);
      const all = { bridge: 'go', 'host-local': 'go', firewall: 'ours' } as const;
      const r = (await scenario(version, all, all)) as { cniVersion: string };
      expect(r.cniVersion).toBe(version);
    });

    it(`the Go firewall after our bridge at ${version}`, async (ctx) => {
      need(ctx);
      const all = { bridge: 'ours', 'host-local': 'ours', firewall: 'go' } as const;
      await scenario(version, all, all);
    });
  }

  it('Go ADD + our DEL leaves none of the container rules', async (ctx) => {
    need(ctx);
    await scenario(
      '1.0.0',
      { bridge: 'go', 'host-local': 'go', firewall: 'go' },
      { bridge: 'go', 'host-local': 'go', firewall: 'ours' },
    );
  });

  it('our ADD + Go DEL leaves none of the container rules', async (ctx) => {
    need(ctx);
    await scenario(
      '1.0.0',
      { bridge: 'ours', 'host-local': 'ours', firewall: 'ours' },
      { bridge: 'ours', 'host-local': 'ours', firewall: 'go' },
    );
    // Go's DEL does not know our record; it stays until our DEL or GC of that attachment.
    expect(readdirSync(join(chain.work(), 'fw'))).toEqual([`${tag}-c${seq}_eth0.json`]);
  });

  it('same-bridge both ways: each CHECK accepts the isolation chains the other wrote', async (ctx) => {
    need(ctx);
    await scenario(
      '1.0.0',
      { bridge: 'go', 'host-local': 'go', firewall: 'go' },
      { bridge: 'go', 'host-local': 'go', firewall: 'ours' },
      { ingressPolicy: 'same-bridge' },
    );
    await scenario(
      '1.0.0',
      { bridge: 'ours', 'host-local': 'ours', firewall: 'ours' },
      { bridge: 'ours', 'host-local': 'ours', firewall: 'go' },
      { ingressPolicy: 'same-bridge' },
    );
  });
});
