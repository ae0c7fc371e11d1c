// runPlugin in-process: the same code path as a plugin binary, as a pure function.

import { CniError, conf, type GcContext, type PluginSpec, runPlugin } from 'cni-kit';
import { describe, expect, it } from 'vitest';

const env = (cmd: string) => ({
  CNI_COMMAND: cmd,
  CNI_CONTAINERID: 'c1',
  CNI_NETNS: '/var/run/netns/x',
  CNI_IFNAME: 'eth0',
  CNI_PATH: '/opt/cni/bin:/usr/lib/cni',
});

describe('runPlugin', () => {
  it('types plugin fields with a config schema into ctx.conf, leaving ctx.config as sent; bad fields are code 7', async () => {
    let wire: unknown;
    const spec: PluginSpec<{ mtu: number; bridge: string }> = {
      config: conf.object({ mtu: conf.number(), bridge: conf.string().default('cni0') }),
      add: (ctx) => {
        wire = ctx.config;
        return { cniVersion: '1.1.0', interfaces: [{ name: ctx.conf.bridge, mtu: ctx.conf.mtu }] };
      },
    };
    const ok = await runPlugin(spec, {
      env: env('ADD'),
      stdin: '{"cniVersion":"1.1.0","name":"n","type":"t","mtu":1400}',
    });
    expect(ok.exitCode).toBe(0);
    expect(JSON.parse(ok.stdout).interfaces[0]).toEqual({ name: 'cni0', mtu: 1400 });
    // The default lives in ctx.conf only: the wire config is what the runtime sent.
    expect(wire).toEqual({ cniVersion: '1.1.0', name: 'n', type: 't', mtu: 1400 });
    const bad = await runPlugin(spec, {
      env: env('ADD'),
      stdin: '{"cniVersion":"1.1.0","name":"n","type":"t","mtu":"x"}',
    });
    expect(bad.exitCode).toBe(1);
    expect(JSON.parse(bad.stdout)).toEqual({
      cniVersion: '1.1.0',
      code: 7,
      msg: 'mtu: "x" must be a number',
    });
  });

  it('refuses versions outside supportedVersions, naming both sides', async () => {
    const out = await runPlugin(
      { supportedVersions: ['1.0.0'], add: () => ({ cniVersion: '1.1.0' }) },
      { env: env('ADD'), stdin: '{"cniVersion":"0.4.0","name":"n","type":"t"}' },
    );
    expect(JSON.parse(out.stdout)).toEqual({
      cniVersion: '0.4.0',
      code: 1,
      msg: 'incompatible CNI versions',
      details: 'config is "0.4.0", plugin supports ["1.0.0"]',
    });
  });

  it('hands GC the valid attachments from either key and passes CNI_PATH as a list', async () => {
    const seen: GcContext[] = [];
    const spec: PluginSpec = { add: () => ({ cniVersion: '1.1.0' }), gc: (ctx) => void seen.push(ctx) };
    const atts = [{ containerID: 'a', ifname: 'eth0' }];
    for (const key of ['cni.dev/valid-attachments', 'cni.dev/attachments']) {
      const out = await runPlugin(spec, {
        env: { CNI_COMMAND: 'GC', CNI_PATH: '/opt/cni/bin:/usr/lib/cni' },
        stdin: JSON.stringify({ cniVersion: '1.1.0', name: 'n', type: 't', [key]: atts }),
      });
      expect(out).toEqual({ stdout: '', stderr: '', exitCode: 0 });
    }
    const ours = [{ containerId: 'a', ifname: 'eth0' }];
    expect(seen.map((c) => c.validAttachments)).toEqual([ours, ours]);
    expect(seen[0]?.path).toEqual(['/opt/cni/bin', '/usr/lib/cni']);
    expect(seen[0]?.containerId).toBe('');
  });

  it('a plugin without gc succeeds and says so on stderr', async () => {
    const out = await runPlugin(
      { add: () => ({ cniVersion: '1.1.0' }) },
      { env: { CNI_COMMAND: 'GC', CNI_PATH: '/x' }, stdin: '{"cniVersion":"1.1.0","name":"n","type":"t"}' },
    );
    expect(out.exitCode).toBe(0);
    expect(out.stderr).toMatch(/no GC handler/);
  });

  it('an invalid result from add is a code 999 error, not a half-printed result', async () => {
    const out = await runPlugin(
      { add: () => ({ cniVersion: '1.1.0', ips: [{ address: 'not-an-ip' }] }) },
      { env: env('ADD'), stdin: '{"cniVersion":"1.1.0","name":"n","type":"t"}' },
    );
    expect(out.exitCode).toBe(1);
    const e = JSON.parse(out.stdout);
    expect(e.code).toBe(999);
    expect(e.msg).toMatch(
      /plugin returned an invalid result: .*ips\[0\]\.address: "not-an-ip" has an invalid format/,
    );
  });

  it('passes the abort signal through to handlers', async () => {
    const ac = new AbortController();
    const out = runPlugin(
      {
        add: (ctx) =>
          new Promise((_, reject) => {
            const stop = () => reject(new CniError(11, 'aborted; rolled back'));
            if (ctx.signal.aborted) stop();
            ctx.signal.addEventListener('abort', stop);
          }),
      },
      { env: env('ADD'), stdin: '{"cniVersion":"1.1.0","name":"n","type":"t"}', signal: ac.signal },
    );
    setTimeout(() => ac.abort(), 5);
    expect(JSON.parse((await out).stdout).code).toBe(11);
  });

  it('reads stdin lazily and never for VERSION', async () => {
    let reads = 0;
    const stdin = async () => {
      reads++;
      return '{}';
    };
    await runPlugin({ add: () => ({ cniVersion: '1.1.0' }) }, { env: { CNI_COMMAND: 'VERSION' }, stdin });
    expect(reads).toBe(0);
  });
});
