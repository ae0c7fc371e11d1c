// vrf chained with the Go reference plugins under libcni (our CniRuntime), in a node netns of the
// test's own: our vrf after Go's bridge and after ours, and Go's vrf (1.1.1) after our bridge. The
// chains need a kernel with VRF (probed with supportedLinkKinds()); this one has none, so they skip
// saying so (the kernel-lane run has it). What needs no VRF in the kernel runs everywhere: both
// vrf plugins refuse ADD without prevResult before touching anything, and both DEL successfully when
// the VRF does not exist.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { linuxNetlink } from 'cni-kit/netlink';
import type { RuntimeConf } from 'cni-kit/runtime';
import { beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { pluginDir as oursDir } from '../helpers/mode.js';
import { GO_PLUGINS as GO, needGo, useGoChain } from '../helpers/netns.js';
import { execPlugin } from '../helpers/plugin.js';

const tag = `vch${process.pid % 100000}`;
const NODE = `${tag}-node`;
const chain = useGoChain(tag);
let hasVrf = false;
let seq = 0;

const ip = (...args: string[]) => execFileSync('ip', args, { encoding: 'utf8' });

const need = needGo;
const needVrf = (ctx: TestContext) => {
  if (!hasVrf) ctx.skip('this kernel has no vrf link type (probed with supportedLinkKinds())');
};

const newNetns = (suffix: string) => `/var/run/netns/${chain.netns(`${tag}-${suffix}`)}`;

/**
 * A plugin dir whose every type runs inside the node netns: a script that enters it and execs ours
 * or Go's, so the bridge and the host ends of veths never land in the test process's netns.
 */
const pluginDir = (name: string, links: Record<string, 'ours' | 'go'>) => chain.pluginDir(name, links, NODE);
const runtime = chain.runtime;

function list(version: string, vrf: object = {}) {
  const n = ++seq;
  return {
    cniVersion: version,
    name: `${tag}n${n}`,
    plugins: [
      {
        type: 'bridge',
        bridge: `${tag}b${n}`,
        isGateway: true,
        // No IPAM routes: a bridge CHECK looks for result routes in the main table, where a VRF
        // no longer has them (the Go plugins share that limit); moving routes is covered by
        // test/integration/vrf-plugin.test.ts.
        ipam: { type: 'host-local', subnet: `10.68.${n}.0/24`, dataDir: join(chain.work(), 'ipam') },
      },
      { type: 'vrf', vrfname: 'blue', ...vrf },
    ],
  };
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) return;
  hasVrf = (await linuxNetlink().supportedLinkKinds()).has('vrf');
  newNetns('node');
});

/** The VRF in the container and eth0's place in it, as `ip` reports them. */
function vrfState(ns: string) {
  const name = ns.split('/').pop() ?? '';
  const links = JSON.parse(ip('-d', '-j', '-n', name, 'link', 'show')) as Array<{
    ifname: string;
    master?: string;
    linkinfo?: { info_kind?: string; info_data?: { table?: number } };
  }>;
  const vrf = links.find((l) => l.ifname === 'blue');
  return {
    kind: vrf?.linkinfo?.info_kind,
    table: vrf?.linkinfo?.info_data?.table,
    eth0Master: links.find((l) => l.ifname === 'eth0')?.master,
  };
}

describe('vrf chained under libcni', () => {
  const cases: Array<[string, 'ours' | 'go', 'ours' | 'go', string]> = [
    ['our vrf after the Go bridge', 'go', 'ours', '1.0.0'],
    ['our vrf after our bridge', 'ours', 'ours', '1.1.0'],
    ['the Go vrf after our bridge', 'ours', 'go', '1.0.0'],
  ];
  for (const [title, bridge, vrf, version] of cases) {
    it(`${title} (${version}): ADD enslaves eth0 to the VRF, CHECK, DEL removes it`, async (ctx) => {
      need(ctx, 'bridge', 'host-local', 'vrf');
      needVrf(ctx);
      const dir = pluginDir(`${bridge}-${vrf}-${version}`, { bridge, 'host-local': bridge, vrf });
      const table = 101 + seq;
      const l = list(version, { table });
      const text = JSON.stringify(l);
      const ns = newNetns(`c${seq}`);
      const rt: RuntimeConf = { containerId: `${tag}-c${seq}`, netns: ns, ifname: 'eth0' };
      const r = runtime(dir);
      const result = (await r.addNetworkList(text, rt)) as { cniVersion: string; ips: unknown[] };
      expect(result.cniVersion).toBe(version);
      expect(result.ips).toHaveLength(1);
      expect(vrfState(ns)).toEqual({ kind: 'vrf', table, eth0Master: 'blue' });
      // The kernel moved the connected route into the VRF's table.
      const name = ns.split('/').pop() ?? '';
      expect(ip('-n', name, 'route', 'show', 'table', String(table))).toContain(`10.68.${seq}.0/24 dev eth0`);
      if (bridge === 'go') {
        // The Go bridge's CHECK looks for the gateway route in the main table, which the VRF has
        // emptied (seen on Debian's 6.1): it fails first in the list, before the vrf plugin is asked.
        await expect(r.checkNetworkList(text, rt)).rejects.toThrow(
          /plugin type="bridge".*Failed to find Gateway 10\.68\.\d+\.1 for interface eth0/,
        );
      } else await r.checkNetworkList(text, rt);
      await r.delNetworkList(text, rt);
      expect(vrfState(ns).kind).toBeUndefined();
      await r.delNetworkList(text, rt);
    });
  }
});

describe('vrf plugins agree without a VRF in the kernel', () => {
  const run = (bin: string, cmd: string, netns: string, conf: object) =>
    execPlugin(
      bin,
      { CNI_COMMAND: cmd, CNI_CONTAINERID: 'ctr', CNI_NETNS: netns, CNI_IFNAME: 'eth0', CNI_PATH: GO },
      JSON.stringify({ cniVersion: '1.0.0', name: 'v', type: 'vrf', vrfname: 'blue', ...conf }),
    );

  it('ADD without prevResult fails for both before touching the container', (ctx) => {
    need(ctx, 'vrf');
    const ns = newNetns('np');
    for (const bin of [join(oursDir(), 'vrf'), join(GO, 'vrf')]) {
      const out = run(bin, 'ADD', ns, {});
      expect(out.status, bin).toBe(1);
      expect(JSON.stringify(out.json), bin).toContain('prevResult');
    }
    // Ours says what is wrong in the CNI way: code 7, naming the field.
    expect(run(join(oursDir(), 'vrf'), 'ADD', ns, {}).json).toMatchObject({ code: 7 });
    expect(ip('-n', ns.split('/').pop() ?? '', 'link', 'show')).not.toContain('blue');
  });

  it('DEL succeeds for both when the VRF is not there (and with the netns gone)', (ctx) => {
    need(ctx, 'vrf');
    const ns = newNetns('nd');
    for (const bin of [join(oursDir(), 'vrf'), join(GO, 'vrf')]) {
      expect(run(bin, 'DEL', ns, {}).status, bin).toBe(0);
      expect(run(bin, 'DEL', '/var/run/netns/does-not-exist', {}).status, bin).toBe(0);
    }
  });
});
