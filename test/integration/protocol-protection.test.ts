// A real plugin process whose handler prints with console.* and process.stdout.write: stdout
// still holds exactly one JSON document, and what the handler printed is on stderr.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'ck-protect-'));
const binary = join(work, 'noisy.cjs');

const source = `
import { conf, pluginMain } from 'cni-kit';

pluginMain({
  about: 'noisy: prints everywhere',
  config: conf.object({ ifaceIndex: conf.int().default(0) }),
  add: async (ctx) => {
    console.log('console.log from ADD');
    console.info({ info: true });
    console.warn('console.warn from ADD');
    console.table([{ a: 1 }]);
    process.stdout.write('process.stdout.write from ADD\\n');
    await new Promise((r) => setTimeout(r, 5));
    console.log('after an await');
    return {
      interfaces: [{ name: ctx.ifname, sandbox: ctx.netns }],
      ips: [{ interface: ctx.conf.ifaceIndex, address: '10.0.0.2/24' }],
    };
  },
  del: () => {
    console.log('console.log from DEL');
  },
});
`;

beforeAll(async () => {
  writeFileSync(join(work, 'noisy.ts'), source);
  // Bundled the way plugin binaries are: one CommonJS file, cni-kit resolved to this checkout.
  await build({
    entryPoints: [join(work, 'noisy.ts')],
    outfile: binary,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    logLevel: 'silent',
    external: ['etcd3', '@kubernetes/client-node'],
    plugins: [
      {
        name: 'cni-kit-source',
        setup(b) {
          b.onResolve({ filter: /^cni-kit(\/[a-z0-9]+)?$/ }, (args) => ({
            path: join(root, 'src', args.path === 'cni-kit' ? 'index.ts' : `${args.path.slice(8)}/index.ts`),
          }));
        },
      },
    ],
  });
}, 60_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

function run(command: string, conf: Record<string, unknown> = {}) {
  const r = spawnSync(process.execPath, [binary], {
    env: {
      PATH: process.env.PATH ?? '',
      CNI_COMMAND: command,
      CNI_CONTAINERID: 'c1',
      CNI_NETNS: '/var/run/netns/x',
      CNI_IFNAME: 'eth0',
      CNI_PATH: work,
    },
    input: JSON.stringify({ cniVersion: '1.0.0', name: 'n', type: 'noisy', ...conf }),
    encoding: 'utf8',
  });
  return { stdout: r.stdout, stderr: r.stderr, status: r.status };
}

describe('a plugin process that prints from its handlers', () => {
  it('ADD: one JSON result on stdout, the handler output on stderr', () => {
    const r = run('ADD');
    expect(r.status, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(`${JSON.stringify(doc, null, 4)}\n`.trim()).toBe(r.stdout.trim());
    expect(doc).toEqual({
      cniVersion: '1.0.0',
      interfaces: [{ name: 'eth0', sandbox: '/var/run/netns/x' }],
      ips: [{ interface: 0, address: '10.0.0.2/24' }],
    });
    for (const text of [
      'console.log from ADD',
      '{ info: true }',
      'console.warn from ADD',
      '│ (index) │ a │',
      'process.stdout.write from ADD',
      'after an await',
    ]) {
      expect(r.stderr).toContain(text);
    }
  });

  it('DEL: nothing on stdout', () => {
    const r = run('DEL');
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe('console.log from DEL\n');
  });

  it('an ips[].interface past the interfaces list is one error document with code 999', () => {
    const r = run('ADD', { ifaceIndex: 5 });
    expect(r.status).toBe(1);
    const err = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(err.code).toBe(999);
    expect(err.msg).toMatch(
      /^plugin returned an invalid result: plugin result\.ips\[0\]\.interface: 5 is not an index into interfaces/,
    );
    expect(r.stderr).toContain('console.log from ADD');
  });
});
