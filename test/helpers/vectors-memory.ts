// A child process for the vectors whose link kind this kernel lacks (ipvlan, vlan, bridge VLAN
// filtering): runs one vector's ADD, CHECK (>= 0.4.0), DEL and DEL again in-process, through
// runPlugin with the plugin's factory on the memory netlink backend, and prints what it saw as one
// JSON document. The test bundles it with esbuild and starts it in the vector's sandbox (private
// /var/lib/cni, /run, /tmp), so in-process IPAM state never lands on the machine.

import { createBridgePlugin } from '../../examples/bridge/plugin.js';
import { createIpvlanPlugin } from '../../examples/ipvlan/plugin.js';
import { createVlanPlugin } from '../../examples/vlan/plugin.js';
import { runPlugin } from '../../src/index.js';
import { type MemoryNetlink, memoryNetlink } from '../../src/netlink/index.js';
import { versionAtLeast } from '../../src/spec/index.js';

/** What the parent sends on stdin. */
export interface MemoryJob {
  type: string;
  /** ADD's stdin, verbatim. */
  text: string;
  version: string;
  containerId: string;
  ifname: string;
  pod: string;
  cniPath: string;
}

interface LinkView {
  name: string;
  kind: string;
  up: boolean;
  mac: string;
  master?: string | undefined;
  addresses: string[];
}

/** What the child prints. */
export interface MemoryReport {
  calls: Array<{ command: string; exitCode: number; stdout: string; stderr: string }>;
  hostBefore: LinkView[];
  podAfterAdd: LinkView[];
  hostAfterDel: LinkView[];
  podAfterDel: LinkView[];
}

async function view(nl: MemoryNetlink, netns: string | undefined): Promise<LinkView[]> {
  return nl.inNetns(netns, async (ns) => {
    const addrs = await ns.addresses();
    return (await ns.links()).map((l) => ({
      name: l.name,
      kind: l.kind ?? '',
      up: l.up,
      mac: l.mac,
      master: l.master,
      addresses: addrs.filter((a) => a.link === l.name).map((a) => a.cidr),
    }));
  });
}

async function main(): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  const job = JSON.parse(Buffer.concat(chunks).toString('utf8')) as MemoryJob;
  const nl = memoryNetlink({ hostLinks: ['eth0'] });
  nl.addNetns(job.pod);
  const noFirewall = async () => ({ code: 0, stdout: '', stderr: '' });
  const factories: Record<string, () => unknown> = {
    ipvlan: () => createIpvlanPlugin({ netlink: nl }),
    vlan: () => createVlanPlugin({ netlink: nl }),
    bridge: () => createBridgePlugin({ netlink: nl, iptables: noFirewall }),
  };
  const plugin = factories[job.type]?.();
  if (!plugin) throw new Error(`no in-process factory for ${job.type}`);
  const report: MemoryReport = {
    calls: [],
    hostBefore: await view(nl, undefined),
    podAfterAdd: [],
    hostAfterDel: [],
    podAfterDel: [],
  };
  const call = async (command: string, stdin: string) => {
    const out = await runPlugin(plugin as Parameters<typeof runPlugin>[0], {
      env: {
        CNI_COMMAND: command,
        CNI_CONTAINERID: job.containerId,
        CNI_NETNS: job.pod,
        CNI_IFNAME: job.ifname,
        CNI_PATH: job.cniPath,
        PATH: process.env.PATH ?? '/usr/bin:/bin',
      },
      stdin,
    });
    report.calls.push({ command, ...out });
    return out;
  };
  const add = await call('ADD', job.text);
  const withPrev = (prev: string) =>
    JSON.stringify({ ...JSON.parse(job.text), prevResult: JSON.parse(prev) });
  const modern = versionAtLeast(job.version, '0.4.0') && add.exitCode === 0;
  report.podAfterAdd = await view(nl, job.pod);
  if (modern) await call('CHECK', withPrev(add.stdout));
  for (let i = 0; i < 2; i++) await call('DEL', modern ? withPrev(add.stdout) : job.text);
  report.hostAfterDel = await view(nl, undefined);
  report.podAfterDel = await view(nl, job.pod);
  process.stdout.write(JSON.stringify(report));
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(2);
});
