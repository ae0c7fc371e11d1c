// End to end: CniRuntime -> a TypeScript meta plugin (pluginMain + delegate helpers, bundled like
// the example binaries) -> the Go host-local IPAM plugin.
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CniRuntime, type RuntimeConf } from 'cni-kit/runtime';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { cniKitSourcePlugin } from '../../src/cli/build.js';

const GO = '/usr/lib/cni';
const root = fileURLToPath(new URL('../..', import.meta.url));
const octet = 100 + (process.pid % 100);
let work: string;
let binDir: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), `ckdm-${process.pid}-`));
  binDir = join(work, 'bin');
  const out = join(binDir, 'ckdm-meta');
  await build({
    entryPoints: [join(root, 'test/fixtures/delegate/meta-plugin.ts')],
    outfile: `${out}.cjs`,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    banner: { js: `#!${process.execPath}` },
    plugins: [cniKitSourcePlugin(join(root, 'src'))],
    logLevel: 'error',
  });
  chmodSync(`${out}.cjs`, 0o755);
  symlinkSync(`${out}.cjs`, out);
}, 60_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

function need(ctx: TestContext) {
  if (!existsSync(join(GO, 'host-local'))) ctx.skip(`Go host-local not installed in ${GO}`);
}

describe('TypeScript meta plugin delegating to Go host-local', () => {
  for (const [i, version] of (['0.4.0', '1.0.0'] as const).entries()) {
    it(`ADD/CHECK/DEL through the runtime at ${version}`, async (ctx) => {
      need(ctx);
      const dataDir = join(work, `data${i}`);
      const name = `ckdm${process.pid}n${i}`;
      const list = JSON.stringify({
        cniVersion: version,
        name,
        plugins: [
          { type: 'ckdm-meta', ipam: { type: 'host-local', subnet: `10.${octet}.${240 + i}.0/24`, dataDir } },
        ],
      });
      const cni = new CniRuntime({
        pluginDirs: [binDir, GO],
        cacheDir: join(work, 'cache'),
        timeoutMs: 20_000,
        stderr: null,
      });
      const rt: RuntimeConf = {
        containerId: `ckdm-c${i}`,
        netns: '/var/run/netns/ckdm-none',
        ifname: 'net1',
      };
      const result = (await cni.addNetworkList(list, rt)) as {
        cniVersion: string;
        interfaces: Array<{ name: string }>;
        ips: Array<{ address: string; interface?: number; version?: string }>;
      };
      expect(result.cniVersion).toBe(version);
      expect(result.interfaces).toEqual([{ name: 'net1', sandbox: '/var/run/netns/ckdm-none' }]);
      expect(result.ips[0]?.address).toBe(`10.${octet}.${240 + i}.2/24`);
      expect(result.ips[0]?.interface).toBe(0);
      expect(result.ips[0]?.version).toBe(version === '0.4.0' ? '4' : undefined);
      expect(readdirSync(join(dataDir, name))).toContain(`10.${octet}.${240 + i}.2`);
      await cni.checkNetworkList(list, rt);
      await cni.delNetworkList(list, rt);
      expect(readdirSync(join(dataDir, name)).filter((f) => f.startsWith('10.'))).toEqual([]);
    });
  }
});
