// The hand-over of a plugin to a host process (the daemon): pluginMain with a host set registers
// the plugin instead of running, the registered run is runPlugin with the options and the default
// IPAM, hostedPlugin does the same for a spec in hand, and resultVersion prints an ADD result in
// another version than the config's (multus-shim's envelope).
import { hostedPlugin, type PluginSpec, pluginMain, runPlugin } from 'cni-kit';
import { afterEach, describe, expect, it } from 'vitest';
import { type HostedPlugin, PLUGIN_HOST_KEY } from '../../src/plugin/host.js';

const env = (cmd: string) => ({
  CNI_COMMAND: cmd,
  CNI_CONTAINERID: 'c1',
  CNI_NETNS: '/var/run/netns/x',
  CNI_IFNAME: 'eth0',
  CNI_PATH: '/nonexistent',
});

const spec: PluginSpec = {
  add: () => ({ interfaces: [{ name: 'eth0' }], ips: [{ address: '10.1.0.5/24', interface: 0 }] }),
};
const stdin = (v: string) => JSON.stringify({ cniVersion: v, name: 'n', type: 't' });

const slot = globalThis as Record<symbol, unknown>;
afterEach(() => {
  delete slot[PLUGIN_HOST_KEY];
});

describe('plugin host hand-over', () => {
  it('pluginMain registers with a host, touching neither stdin nor the exit status', async () => {
    const got: HostedPlugin[] = [];
    slot[PLUGIN_HOST_KEY] = { register: (p: HostedPlugin) => got.push(p) };
    const exit = process.exitCode;
    pluginMain(spec, { supportedVersions: ['0.4.0', '1.0.0'] });
    expect(got).toHaveLength(1);
    const p = got[0] as HostedPlugin;
    expect(p.protocol).toBe(1);
    expect(p.supportedVersions).toEqual(['0.4.0', '1.0.0']);
    expect(process.exitCode).toBe(exit);
    // The registered run is the plugin's runPlugin with its options: 1.1.0 is refused here.
    const ok = await p.run({ env: env('ADD'), stdin: stdin('1.0.0') });
    expect(ok.exitCode).toBe(0);
    expect(JSON.parse(ok.stdout).cniVersion).toBe('1.0.0');
    const refused = await p.run({ env: env('ADD'), stdin: stdin('1.1.0') });
    expect(JSON.parse(refused.stdout).code).toBe(1);
  });

  it('hostedPlugin runs a spec as runPlugin does, outcome for outcome', async () => {
    const p = hostedPlugin(spec);
    for (const cmd of ['ADD', 'DEL', 'CHECK', 'VERSION', 'BOGUS']) {
      const input = { env: env(cmd), stdin: stdin('1.0.0') };
      expect(await p.run(input)).toEqual(await runPlugin(spec, input));
    }
  });

  it('resultVersion prints the ADD result at that version instead of the config’s', async () => {
    for (const v of ['0.3.1', '0.4.0', '1.1.0']) {
      const out = await runPlugin(spec, { env: env('ADD'), stdin: stdin(v), resultVersion: '1.0.0' });
      expect(out.exitCode).toBe(0);
      const r = JSON.parse(out.stdout);
      expect(r.cniVersion).toBe('1.0.0');
      expect(r.ips).toEqual([{ address: '10.1.0.5/24', interface: 0 }]);
    }
    // Errors keep the config's version: the runtime reads them.
    const bad = await runPlugin(spec, {
      env: env('ADD'),
      stdin: '{"cniVersion":"0.4.0"',
      resultVersion: '1.0.0',
    });
    expect(JSON.parse(bad.stdout).code).toBe(6);
  });
});
