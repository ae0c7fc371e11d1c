// A request config without a top-level "type": the Go skel only requires "name", so every plugin
// (IPAM plugins run by hand above all: cni.dev's host-local page pipes {"cniVersion", "name",
// "ipam"} straight into ./host-local) accepts it. Where the type is really needed (a runtime
// finding the plugin, delegation by type) it stays a code-7 error naming "type".
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ALL_VERSIONS, runPlugin } from 'cni-kit';
import { delegateAdd } from 'cni-kit/delegate';
import { HostLocalAllocator, ipamPlugin, StaticAllocator } from 'cni-kit/ipam';
import { CniRuntime } from 'cni-kit/runtime';
import { confListFromConf, parseNetConf } from 'cni-kit/spec';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { bridgeHarness } from '../helpers/bridge-harness.js';
import { cniErrorOf } from '../helpers/errors.js';

const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), `config-no-type-${process.pid}-`));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const env = (cmd: string) => ({
  CNI_COMMAND: cmd,
  CNI_CONTAINERID: 'example',
  CNI_NETNS: '/dev/null',
  CNI_IFNAME: 'eth0',
  CNI_PATH: '/nonexistent',
});

/** cni.dev's host-local usage example, as piped into the binary (dataDir moved to a temp dir). */
const byHand = (dataDir: string) =>
  `{ "cniVersion": "0.3.1", "name": "examplenet", "ipam": { "type": "host-local", "ranges": [ [{"subnet": "203.0.113.0/24"}], [{"subnet": "2001:db8:1::/64"}]], "dataDir": ${JSON.stringify(dataDir)}  } }`;

const h = bridgeHarness('config-no-type');

describe('a request config without "type"', () => {
  it('parseNetConf accepts it (absent or empty) and leaves it absent, as the Go skel does', () => {
    const c = parseNetConf(byHand('/x'));
    expect(c.type).toBeUndefined();
    expect('type' in c).toBe(false);
    expect(c.name).toBe('examplenet');
    expect(parseNetConf('{"name":"n","type":""}').type).toBe('');
    // What the type may not be is unchanged, and name is still required.
    expect(cniErrorOf(() => parseNetConf('{"name":"n","type":"../evil"}')).message).toMatch(
      /type: "..\/evil" has an invalid format/,
    );
    expect(cniErrorOf(() => parseNetConf('{"name":"n","type":7}')).message).toMatch(
      /type: 7 must be a string/,
    );
    expect(cniErrorOf(() => parseNetConf('{"cniVersion":"1.0.0"}'))).toMatchObject({
      code: 7,
      message: expect.stringMatching(/name: missing/),
    });
  });

  it('property: a config without type parses exactly as the same config with one', () => {
    const key = fc
      .string({ minLength: 1, maxLength: 8 })
      .filter((k) => !['type', 'name', 'cniVersion'].includes(k));
    fc.assert(
      fc.property(
        fc.dictionary(key, fc.oneof(fc.string(), fc.integer(), fc.boolean()), { maxKeys: 4 }),
        fc.constantFrom('0.1.0', '0.3.1', '1.0.0', undefined),
        (extra, cniVersion) => {
          const base = { ...extra, name: 'n', ...(cniVersion ? { cniVersion } : {}) };
          const typed = (() => {
            try {
              return parseNetConf(JSON.stringify({ ...base, type: 't' }));
            } catch (e) {
              return e as Error;
            }
          })();
          const untyped = (() => {
            try {
              return parseNetConf(JSON.stringify(base));
            } catch (e) {
              return e as Error;
            }
          })();
          if (typed instanceof Error) expect((untyped as Error).message).toBe(typed.message);
          else expect({ ...untyped, type: 't' }).toEqual(typed);
        },
      ),
    );
  });

  it('host-local: the docs by-hand example allocates on ADD and frees on DEL', async () => {
    const dataDir = tempDir();
    const plugin = ipamPlugin((config) => new HostLocalAllocator(config), {
      supportedVersions: ALL_VERSIONS,
    });
    const add = await runPlugin(plugin, { env: env('ADD'), stdin: byHand(dataDir) });
    expect(add.exitCode, add.stdout).toBe(0);
    expect(JSON.parse(add.stdout)).toMatchObject({
      cniVersion: '0.3.1',
      ips: [
        { version: '4', address: '203.0.113.2/24', gateway: '203.0.113.1' },
        { version: '6', address: '2001:db8:1::2/64', gateway: '2001:db8:1::1' },
      ],
    });
    const held = () => readdirSync(join(dataDir, 'examplenet')).filter((f) => /^[0-9a-f.:]+$/.test(f));
    expect(held()).toHaveLength(2);
    const del = await runPlugin(plugin, { env: env('DEL'), stdin: byHand(dataDir) });
    expect(del.exitCode, del.stdout).toBe(0);
    expect(held()).toEqual([]);
  });

  it('static: the same shape without "type" returns its addresses', async () => {
    const plugin = ipamPlugin((config) => new StaticAllocator(config), { supportedVersions: ALL_VERSIONS });
    const stdin = JSON.stringify({
      cniVersion: '1.0.0',
      name: 'examplenet',
      ipam: { type: 'static', addresses: [{ address: '10.10.0.1/24', gateway: '10.10.0.254' }] },
    });
    const add = await runPlugin(plugin, { env: env('ADD'), stdin });
    expect(add.exitCode, add.stdout).toBe(0);
    expect(JSON.parse(add.stdout).ips).toEqual([{ address: '10.10.0.1/24', gateway: '10.10.0.254' }]);
    expect((await runPlugin(plugin, { env: env('DEL'), stdin })).exitCode).toBe(0);
  });

  it('a main plugin (bridge) runs ADD/DEL without it too, as the Go plugins do', async () => {
    const { type: _t, ...c } = h.conf();
    const add = await h.call('ADD', c);
    expect(add.exitCode, add.stdout).toBe(0);
    expect(JSON.parse(add.stdout).ips[0].address).toBe('10.55.0.2/24');
    expect((await h.call('DEL', c)).exitCode).toBe(0);
    expect(h.nl.inspect('/var/run/netns/c1').links.map((l) => l.name)).toEqual(['lo']);
  });

  it('a runtime refuses it with code 7 naming "type", before anything is exec\'d', async () => {
    const e = cniErrorOf(() => confListFromConf(parseNetConf(byHand('/x'))));
    expect(e.code).toBe(7);
    expect(e.message).toBe(
      'invalid network config: type: missing; a runtime runs the plugin that "type" names: set it to the plugin binary\'s name, e.g. "bridge"',
    );
    expect(cniErrorOf(() => confListFromConf(parseNetConf('{"name":"n","type":""}'))).message).toMatch(
      /^invalid network config: type: "" is not a plugin name/,
    );
    const runtime = new CniRuntime({ pluginDirs: [tempDir()], cacheDir: tempDir() });
    const err = await runtime
      .addNetwork(byHand('/x'), { containerId: 'c', netns: '/dev/null', ifname: 'eth0' })
      .then(
        () => undefined,
        (x: unknown) => x as { code: number; message: string },
      );
    expect(err).toMatchObject({ code: 7, message: expect.stringContaining('type: missing') });
  });

  it('delegation by type still needs one: code 7 naming the field', async () => {
    const err = await delegateAdd(undefined as unknown as string, '{"name":"n"}', {
      env: env('ADD'),
    }).then(
      () => undefined,
      (x: unknown) => x as { code: number; message: string },
    );
    expect(err).toMatchObject({ code: 7, message: expect.stringContaining('type: missing plugin type') });
  });
});
