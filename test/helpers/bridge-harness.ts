// In-process harness for the bridge plugin's unit suites: a fresh memory netlink with two pod netns
// per test, a recording fake iptables/nft runner, temp host-local data dirs, and `call()` running
// the plugin through runPlugin exactly as the binary would.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type PluginOutcome, runPlugin } from 'cni-kit';
import { type MemoryNetlink, type MemoryNetlinkOptions, memoryNetlink } from 'cni-kit/netlink';
import type { IptablesRunner } from 'cni-kit/netsetup';
import { afterAll, beforeEach } from 'vitest';
import { createBridgePlugin } from '../../examples/bridge/plugin.js';

/** One recorded firewall tool call. */
export interface ToolCall {
  cmd: string;
  stdin?: string;
}

/** A bridge test config; `ipam.dataDir` is the temp dir host-local writes to. */
export interface BridgeTestConf {
  ipam: { type: string; subnet: string; dataDir: string };
  [key: string]: unknown;
}

/** The harness state; `nl` and `calls` are replaced before each test. */
export interface BridgeHarness {
  nl: MemoryNetlink;
  calls: ToolCall[];
  /** Replaces the memory kernel (e.g. one without bridge VLAN filtering) with c1 and c2 in it. */
  reset(opts?: MemoryNetlinkOptions): void;
  /** A bridge config with in-process host-local IPAM in a fresh temp dir. */
  conf(extra?: Record<string, unknown>, version?: string): BridgeTestConf;
  /** Runs one CNI command against the plugin. */
  call(cmd: string, conf: object, netns?: string, containerId?: string): Promise<PluginOutcome>;
}

/** Registers the hooks of a bridge unit suite and returns its harness; call at file top level. */
export function bridgeHarness(tag: string): BridgeHarness {
  const dirs: string[] = [];
  const h: BridgeHarness = {
    nl: memoryNetlink(),
    calls: [],
    reset(opts) {
      h.nl = memoryNetlink(opts);
      h.nl.addNetns('/var/run/netns/c1');
      h.nl.addNetns('/var/run/netns/c2');
    },
    conf(extra = {}, version = '1.0.0') {
      const dataDir = mkdtempSync(join(tmpdir(), `${tag}-${process.pid}-`));
      dirs.push(dataDir);
      return {
        cniVersion: version,
        name: 'ubr',
        type: 'bridge',
        bridge: 'ubr0',
        isGateway: true,
        ipam: { type: 'host-local', subnet: '10.55.0.0/24', dataDir },
        ...extra,
      };
    },
    call(cmd, conf, netns = '/var/run/netns/c1', containerId = 'ctr1') {
      const env = {
        CNI_COMMAND: cmd,
        CNI_CONTAINERID: containerId,
        CNI_NETNS: netns,
        CNI_IFNAME: 'eth0',
        CNI_PATH: '/nonexistent',
      };
      return runPlugin(createBridgePlugin({ netlink: h.nl, iptables }), { env, stdin: JSON.stringify(conf) });
    },
  };
  const iptables: IptablesRunner = async (cmd, _args, stdin) => {
    h.calls.push({ cmd, ...(stdin ? { stdin } : {}) });
    return { code: 0, stdout: '', stderr: '' };
  };
  beforeEach(() => {
    h.reset();
    h.calls = [];
  });
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  return h;
}
