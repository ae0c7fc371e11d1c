// The delegation guard (F1) in-process: the chain every exec records, the loop and depth refusals
// at entry (DEL and GC pass), ctx.ipam refusing the plugin's own type (vlan, bridge), and the
// default exec timeout with a message that says how to raise it.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, type PluginSpec, runPlugin } from 'cni-kit';
import {
  DEFAULT_EXEC_TIMEOUT_MS,
  EXEC_TIMEOUT_ENV,
  execPlugin,
  execTimeout,
  PluginExecError,
} from 'cni-kit/delegate';
import { memoryNetlink } from 'cni-kit/netlink';
import {
  buildCniEnv,
  DEFAULT_MAX_DELEGATION_DEPTH,
  DELEGATION_CHAIN_ENV,
  delegationChain,
  delegationProblem,
} from 'cni-kit/spec';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBridgePlugin } from '../../examples/bridge/plugin.js';
import { createVlanPlugin } from '../../examples/vlan/plugin.js';

import { makePluginDir, type PluginDir } from '../fixtures/delegate/plugins.js';

let pd: PluginDir;
beforeAll(() => {
  pd = makePluginDir('ckdg');
});
afterAll(() => pd.cleanup());

const env = (cmd: string, extra: Record<string, string> = {}) => ({
  CNI_COMMAND: cmd,
  CNI_CONTAINERID: 'c1',
  CNI_NETNS: '/var/run/netns/c1',
  CNI_IFNAME: 'eth0',
  CNI_PATH: '/nonexistent',
  ...extra,
});
const conf = (extra: Record<string, unknown> = {}) =>
  JSON.stringify({ cniVersion: '1.0.0', name: 'n', type: 'probe', ...extra });

const probe = (): PluginSpec & { calls: string[] } => {
  const calls: string[] = [];
  return {
    calls,
    add: (ctx) => {
      calls.push(ctx.command);
      return { cniVersion: '1.1.0', ips: [{ address: '10.1.0.2/24' }] };
    },
    del: (ctx) => {
      calls.push(ctx.command);
    },
    gc: (ctx) => {
      calls.push(ctx.command);
    },
  };
};

describe('the delegation chain', () => {
  it('execPlugin appends "type VERB" to the chain it inherits', async () => {
    const out = join(pd.dir, 'chain.txt');
    const path = pd.script('rec', `printf '%s' "$${DELEGATION_CHAIN_ENV}" > ${out}`);
    const base = buildCniEnv(
      { PATH: process.env.PATH, [DELEGATION_CHAIN_ENV]: 'multus ADD' },
      { command: 'ADD' },
    );
    await execPlugin({ path, type: 'flannel', command: 'ADD', stdin: '{}', env: base });
    expect(readFileSync(out, 'utf8')).toBe('multus ADD > flannel ADD');
    await execPlugin({ path, command: 'DEL', stdin: '{}', env: buildCniEnv({}, { command: 'DEL' }) });
    expect(readFileSync(out, 'utf8')).toBe('rec DEL');
  });

  it('a type twice in the chain is a loop; more calls than the limit is too deep; both name the chain', () => {
    expect(
      delegationProblem({ [DELEGATION_CHAIN_ENV]: 'flannel ADD > bridge ADD > host-local ADD' }),
    ).toBeUndefined();
    const loop = delegationProblem({ [DELEGATION_CHAIN_ENV]: 'bridge ADD > flannel ADD > bridge DEL' });
    expect(loop).toContain(
      'delegation loop: plugin "bridge" runs inside itself (bridge ADD > flannel ADD > bridge DEL)',
    );
    const deep = Array.from({ length: DEFAULT_MAX_DELEGATION_DEPTH + 1 }, (_, i) => `p${i} ADD`).join(' > ');
    expect(delegationProblem({ [DELEGATION_CHAIN_ENV]: deep })).toContain(
      `delegation too deep: ${DEFAULT_MAX_DELEGATION_DEPTH + 1} nested plugin calls, the limit is ${DEFAULT_MAX_DELEGATION_DEPTH}`,
    );
    expect(
      delegationProblem({ [DELEGATION_CHAIN_ENV]: deep, CNI_KIT_MAX_DELEGATION_DEPTH: '20' }),
    ).toBeUndefined();
    expect(delegationChain({})).toEqual([]);
  });

  it('runPlugin refuses ADD in a loop with code 7 before the handler runs; DEL and GC succeed without it', async () => {
    const chain = { [DELEGATION_CHAIN_ENV]: 'probe ADD > other ADD > probe ADD' };
    const p = probe();
    const add = await runPlugin(p, { env: env('ADD', chain), stdin: conf() });
    expect(add.exitCode).toBe(1);
    expect(JSON.parse(add.stdout)).toMatchObject({ code: ErrorCode.InvalidNetworkConfig });
    expect(JSON.parse(add.stdout).msg).toContain('probe ADD > other ADD > probe ADD');
    const del = await runPlugin(p, { env: env('DEL', chain), stdin: conf() });
    expect(del).toMatchObject({ exitCode: 0, stdout: '' });
    expect(del.stderr).toContain('nothing can exist at this level');
    const gc = await runPlugin(p, { env: env('GC', chain), stdin: conf({ cniVersion: '1.1.0' }) });
    expect(gc).toMatchObject({ exitCode: 0, stdout: '' });
    expect(p.calls).toEqual([]);
    const fine = await runPlugin(p, {
      env: env('ADD', { [DELEGATION_CHAIN_ENV]: 'multus ADD > probe ADD' }),
      stdin: conf(),
    });
    expect(fine.exitCode, fine.stdout).toBe(0);
    expect(p.calls).toEqual(['ADD']);
  });
});

describe('an IPAM type that is the plugin itself', () => {
  it('vlan with "ipam": {"type": "vlan"}: ADD is code 7 naming ipam.type, nothing is created; DEL succeeds', async () => {
    const nl = memoryNetlink({ hostLinks: ['eth0'] });
    nl.addNetns('/var/run/netns/c1');
    const plugin = createVlanPlugin({ netlink: nl });
    const c = JSON.stringify({
      cniVersion: '1.0.0',
      name: 'v',
      type: 'vlan',
      master: 'eth0',
      vlanId: 5,
      ipam: { type: 'vlan' },
    });
    const add = await runPlugin(plugin, { env: env('ADD'), stdin: c });
    expect(add.exitCode).toBe(1);
    const err = JSON.parse(add.stdout);
    expect(err.code).toBe(7);
    expect(err.msg).toContain('ipam.type: "vlan" is this plugin itself');
    expect((await nl.open('/var/run/netns/c1').links()).map((l) => l.name)).toEqual(['lo']);
    const del = await runPlugin(plugin, { env: env('DEL'), stdin: c });
    expect(del.exitCode, del.stdout).toBe(0);
  });

  it('bridge with "ipam": {"type": "bridge"} in-process: code 7, no veth left', async () => {
    const nl = memoryNetlink();
    nl.addNetns('/var/run/netns/c1');
    const plugin = createBridgePlugin({
      netlink: nl,
      iptables: async () => ({ code: 0, stdout: '', stderr: '' }),
    });
    const c = JSON.stringify({
      cniVersion: '1.0.0',
      name: 'b',
      type: 'bridge',
      bridge: 'br9',
      ipam: { type: 'bridge' },
    });
    const add = await runPlugin(plugin, { env: env('ADD'), stdin: c });
    expect(JSON.parse(add.stdout)).toMatchObject({ code: 7 });
    expect((await nl.open('/var/run/netns/c1').links()).map((l) => l.name)).toEqual(['lo']);
    expect((await nl.open(nl.hostNetns).links()).filter((l) => l.kind === 'veth')).toEqual([]);
    expect((await runPlugin(plugin, { env: env('DEL'), stdin: c })).exitCode).toBe(0);
  });
});

describe('the default exec timeout', () => {
  it('is on by default, set by the option or the environment, 0 turning it off', () => {
    expect(execTimeout({ env: {} }, {})).toBe(DEFAULT_EXEC_TIMEOUT_MS);
    expect(execTimeout({ env: { [EXEC_TIMEOUT_ENV]: '1500' } }, {})).toBe(1500);
    expect(execTimeout({ env: { [EXEC_TIMEOUT_ENV]: '1500' } }, { timeoutMs: 0 })).toBe(0);
    expect(execTimeout({ env: { [EXEC_TIMEOUT_ENV]: 'soon' } }, {})).toBe(DEFAULT_EXEC_TIMEOUT_MS);
  });

  it('a hanging delegate is killed and the error names it and how to raise the limit', async () => {
    const path = pd.script('hang', 'sleep 30');
    const t0 = performance.now();
    let err: unknown;
    try {
      await execPlugin(
        {
          path,
          type: 'hang',
          command: 'ADD',
          stdin: '{}',
          env: { PATH: process.env.PATH ?? '', [EXEC_TIMEOUT_ENV]: '300' },
        },
        { killGraceMs: 100 },
      );
    } catch (e) {
      err = e;
    }
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(err).toBeInstanceOf(PluginExecError);
    const msg = (err as PluginExecError).message;
    expect(msg).toContain('plugin type="hang"');
    expect(msg).toContain('did not finish within 300 ms');
    expect(msg).toContain(EXEC_TIMEOUT_ENV);
    expect((err as PluginExecError).code).toBe(ErrorCode.TryAgainLater);
  });
});
