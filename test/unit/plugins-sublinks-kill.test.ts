// F8: a plugin killed at any point of ADD must leave nothing a DEL cannot remove. On the in-memory
// kernel the "kill" is exact: the ADD stops for good before its k-th kernel write, for every k,
// then DEL runs (twice) and both namespaces must be as before (the bridge device excepted, by
// design) with no IPAM allocation left. The real-process version (SIGKILL at random times) is
// test/integration/plugins-sublinks-kill.test.ts.
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type PluginSpec, runPlugin } from 'cni-kit';
import { type MemoryNetlink, memoryNetlink } from 'cni-kit/netlink';
import { afterAll, describe, expect, it } from 'vitest';
import { createBridgePlugin } from '../../examples/bridge/plugin.js';
import { createIpvlanPlugin } from '../../examples/ipvlan/plugin.js';
import { createMacvlanPlugin } from '../../examples/macvlan/plugin.js';
import { createPtpPlugin } from '../../examples/ptp/plugin.js';
import { createVlanPlugin } from '../../examples/vlan/plugin.js';

const work = mkdtempSync(join(tmpdir(), `plugins-kill-${process.pid}-`));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const NS = '/var/run/netns/k1';
const noFirewall = async () => ({ code: 0, stdout: '', stderr: '' });

interface Case {
  type: string;
  make(nl: MemoryNetlink): PluginSpec<never>;
  conf: Record<string, unknown>;
  /** Host links a DEL leaves by design. */
  byDesign?: string[];
}

const CASES: Case[] = [
  {
    type: 'macvlan',
    make: (netlink) => createMacvlanPlugin({ netlink }) as PluginSpec<never>,
    conf: { master: 'eth0' },
  },
  {
    type: 'ipvlan',
    make: (netlink) => createIpvlanPlugin({ netlink }) as PluginSpec<never>,
    conf: { master: 'eth0' },
  },
  {
    type: 'vlan',
    make: (netlink) => createVlanPlugin({ netlink }) as PluginSpec<never>,
    conf: { master: 'eth0', vlanId: 12 },
  },
  {
    type: 'bridge',
    make: (netlink) => createBridgePlugin({ netlink, iptables: noFirewall }) as PluginSpec<never>,
    conf: { bridge: 'kbr0', isGateway: true, ipMasq: true },
    byDesign: ['kbr0'],
  },
  {
    type: 'ptp',
    make: (netlink) => createPtpPlugin({ netlink, iptables: noFirewall }) as PluginSpec<never>,
    conf: { ipMasq: true },
  },
];

const names = (nl: MemoryNetlink, ns?: string) =>
  nl
    .inspect(ns)
    .links.map((l) => l.name)
    .sort();

/** ADD stopped for good before its `killAt`-th kernel write (never, when undefined); returns how many writes ran. */
async function killedAdd(c: Case, dataDir: string, killAt: number | undefined) {
  let writes = 0;
  let dead = false;
  let stopped!: () => void;
  const stop = new Promise<void>((r) => {
    stopped = r;
  });
  const nl = memoryNetlink({
    hostLinks: ['eth0'],
    beforeOp: () => {
      if (dead) return;
      if (killAt !== undefined && writes === killAt) {
        dead = true;
        stopped();
        return new Promise<void>(() => {});
      }
      writes++;
    },
  });
  nl.addNetns(NS);
  const before = names(nl);
  const conf = {
    cniVersion: '1.0.0',
    name: `k-${c.type}`,
    type: c.type,
    ...c.conf,
    ipam: { type: 'host-local', subnet: '10.93.0.0/24', dataDir },
  };
  const env = (cmd: string) => ({
    CNI_COMMAND: cmd,
    CNI_CONTAINERID: `kill-${c.type}`,
    CNI_NETNS: NS,
    CNI_IFNAME: 'eth0',
    CNI_PATH: '/nonexistent',
  });
  const add = runPlugin(c.make(nl), { env: env('ADD'), stdin: JSON.stringify(conf) });
  const outcome = await Promise.race([
    add.then((o) => ({ done: o })),
    stop.then(() => ({ done: undefined })),
  ]);
  dead = true;
  const del = () => runPlugin(c.make(nl), { env: env('DEL'), stdin: JSON.stringify(conf) });
  return { nl, before, writes, finished: outcome.done, del };
}

describe.each(CASES)('$type: killed before any kernel write of ADD, DEL removes everything (F8)', (c) => {
  it('every kill point', async () => {
    const full = await killedAdd(c, join(work, `${c.type}-full`), undefined);
    expect(full.finished?.exitCode, full.finished?.stdout).toBe(0);
    expect(full.writes).toBeGreaterThan(1);
    for (let k = 0; k <= full.writes; k++) {
      const dataDir = join(work, `${c.type}-${k}`);
      const run = await killedAdd(c, dataDir, k);
      for (const round of [1, 2]) {
        const del = await run.del();
        expect(del.exitCode, `kill at write ${k}, DEL ${round}: ${del.stdout}`).toBe(0);
      }
      const at = `killed before write ${k} of ${full.writes}`;
      expect(names(run.nl, NS), `${at}: container`).toEqual(['lo']);
      const host = names(run.nl).filter((n) => !(c.byDesign ?? []).includes(n));
      expect(host, `${at}: host`).toEqual(run.before);
      const pool = join(dataDir, `k-${c.type}`);
      const left = (existsSync(pool) ? readdirSync(pool, { withFileTypes: true }) : [])
        .map((e) => e.name)
        .filter((n) => /^\d/.test(n));
      expect(left, `${at}: IPAM`).toEqual([]);
    }
  });
});
