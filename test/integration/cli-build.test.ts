// `cni-kit build` (the built CLI) on plugins in a temp folder, with cni-kit resolved to this
// checkout's source: the marker line and executable bit, CommonJS whatever the folder's
// package.json says (or a clear refusal), sidecars only for what a plugin can reach and reused by
// the next build, and errors that name the file and line. The packed-package path (a new npm
// project, npx) is in package-tarball.test.ts.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const cli = join(root, 'dist/cli.cjs');
const work = mkdtempSync(join(tmpdir(), `ckbuild-${process.pid}-`));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const HELLO = `import { conf, pluginMain } from 'cni-kit';
pluginMain({
  config: conf.object({ address: conf.cidr().default('10.0.0.2/24') }),
  add: (ctx) => ({ interfaces: [{ name: ctx.ifname }], ips: [{ interface: 0, address: ctx.conf.address }] }),
  del: () => {},
});
`;

function build(args: string[], cwd = work) {
  const r = spawnSync(process.execPath, [cli, 'build', '--cni-kit-source', join(root, 'src'), ...args], {
    cwd,
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function file(name: string, text: string): string {
  const p = join(work, name);
  mkdirSync(join(p, '..'), { recursive: true });
  writeFileSync(p, text);
  return p;
}

const need = (ctx: { skip: (m: string) => void }) => {
  if (!existsSync(cli)) ctx.skip('dist/cli.cjs is not built: run npm run build (npm test does)');
};

describe('cni-kit build', () => {
  it('writes an executable with the shebang, the marker of its type, and a CommonJS scope', (ctx) => {
    need(ctx);
    file('hello.ts', HELLO);
    const r = build(['hello.ts', '-o', 'out/hello', '--json']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const report = JSON.parse(r.stdout) as { type: string; sidecars: unknown[]; packageJson: string };
    expect(report).toMatchObject({
      type: 'hello',
      sidecars: [],
      packageJson: join(work, 'out/package.json'),
    });
    const out = join(work, 'out/hello');
    expect(readFileSync(out, 'utf8').split('\n').slice(0, 2)).toEqual([
      '#!/usr/bin/env node',
      '// cni-kit plugin hello',
    ]);
    expect(statSync(out).mode & 0o111).toBe(0o111);
    const add = spawnSync(out, [], {
      env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c', CNI_NETNS: '/proc/self/ns/net', CNI_IFNAME: 'eth0' },
      input: JSON.stringify({ cniVersion: '0.4.0', name: 'n', type: 'hello' }),
      encoding: 'utf8',
    });
    expect(add.status).toBe(0);
    expect(JSON.parse(add.stdout)).toMatchObject({
      cniVersion: '0.4.0',
      ips: [{ address: '10.0.0.2/24', version: '4' }],
    });
    // --type overrides the marker; --no-minify keeps it readable (and larger).
    const typed = build(['hello.ts', '-o', 'out/other', '--type', 'greeter', '--no-minify', '--json']);
    expect(typed.status).toBe(0);
    expect(readFileSync(join(work, 'out/other'), 'utf8').split('\n')[1]).toBe('// cni-kit plugin greeter');
    expect((JSON.parse(typed.stdout) as { bytes: number }).bytes).toBeGreaterThan(
      (JSON.parse(r.stdout) as { bytes: number }).bytes,
    );
  });

  it('refuses a folder whose package.json says "type": "module", and accepts <type>.cjs there', (ctx) => {
    need(ctx);
    file('esm/package.json', '{"type":"module"}');
    const r = build(['hello.ts', '-o', 'esm/hello']);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(join(work, 'esm/package.json'));
    expect(r.stderr).toContain('"type": "module"');
    expect(existsSync(join(work, 'esm/hello'))).toBe(false);
    const cjs = build(['hello.ts', '-o', 'esm/hello.cjs', '--json']);
    expect(cjs.status).toBe(0);
    expect((JSON.parse(cjs.stdout) as { type: string; packageJson?: string }).packageJson).toBeUndefined();
    expect(JSON.parse(readFileSync(join(work, 'esm/package.json'), 'utf8'))).toEqual({ type: 'module' });
    const v = spawnSync(join(work, 'esm/hello.cjs'), [], {
      env: { CNI_COMMAND: 'VERSION' },
      encoding: 'utf8',
    });
    expect(v.status).toBe(0);
  });

  it('writes a sidecar only for a heavy client the plugin can reach, and reuses it on the next build', (ctx) => {
    need(ctx);
    file(
      'kube.ts',
      `import { pluginMain } from 'cni-kit';
import { openKubeApi } from 'cni-kit/k8s';
pluginMain({ add: async () => { await openKubeApi('/nonexistent'); return { interfaces: [] }; }, del: () => {} });
`,
    );
    const r = build(['kube.ts', '-o', 'kube/kube', '--json']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const report = JSON.parse(r.stdout) as { sidecars: { package: string; file: string; built: boolean }[] };
    const pkgs = report.sidecars.map((s) => s.package);
    expect(pkgs).toContain('@kubernetes/client-node');
    expect(pkgs).not.toContain('etcd3');
    const sidecar = join(work, 'kube/lib/kubernetes-client-node/index.cjs');
    expect(report.sidecars.find((s) => s.package === '@kubernetes/client-node')).toMatchObject({
      file: sidecar,
      built: true,
    });
    const mtime = statSync(sidecar).mtimeMs;
    expect(build(['kube.ts', '-o', 'kube/kube2']).status).toBe(0);
    expect(statSync(sidecar).mtimeMs).toBe(mtime);
    // The hello plugin in the same kind of folder gets no lib/ at all.
    expect(build(['hello.ts', '-o', 'plain/hello']).status).toBe(0);
    expect(existsSync(join(work, 'plain/lib'))).toBe(false);
  });

  it('reports a syntax error with file and line, and usage mistakes with exit 2', (ctx) => {
    need(ctx);
    file('broken.ts', "import { pluginMain } from 'cni-kit';\npluginMain({ add: ( => 1 });\n");
    const r = build(['broken.ts', '-o', 'out/broken']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/broken\.ts:2: /);
    expect(existsSync(join(work, 'out/broken'))).toBe(false);
    for (const args of [
      ['missing.ts', '-o', 'x'],
      ['hello.ts'],
      ['hello.ts', '-o', 'out/x', '--type', 'a/b'],
      [],
    ]) {
      const u = build(args);
      expect(u.status, args.join(' ')).toBe(2);
      expect(u.stderr, args.join(' ')).toContain('usage: cni-kit build');
    }
  });
});
