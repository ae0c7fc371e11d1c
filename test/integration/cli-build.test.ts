// `cni-kit build` (the built CLI) on plugins in a temp folder, with cni-kit resolved to this
// checkout's source: the marker line and executable bit, CommonJS whatever the folder's
// package.json says (or a clear refusal), sidecars only for what a plugin can reach and reused by
// the next build, the FFI package koffi as a sidecar with its native binary (run where no
// node_modules exists, and installed by deploy/install.mjs), and errors that name the file and
// line. The packed-package path (a new npm project, npx) is in package-tarball.test.ts.
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { runInstallerUntilWaiting } from '../helpers/installer.js';

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

/**
 * Loads koffi as cni-kit's native backend does (a dynamic import; the module or its default) and
 * calls libc's getpid() through it.
 */
const KOFFI = `import('koffi').then(
  (mod: any) => {
    const k = typeof mod.load === 'function' ? mod : mod.default;
    const pid = k.load(null).func('int getpid()')();
    console.log(JSON.stringify({ pid, errno: typeof k.errno() }));
  },
  (e: Error) => {
    console.log(JSON.stringify({ error: e.message }));
    process.exitCode = 1;
  },
);
`;
const nativePkg = `@koromix/koffi-${process.platform}-${process.arch}`;

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
    const report = JSON.parse(r.stdout) as {
      type: string;
      sidecars: { package: string }[];
      packageJson: string;
    };
    expect(report).toMatchObject({ type: 'hello', packageJson: join(work, 'out/package.json') });
    // No heavy client; at most koffi (cni-kit's IPAM file locks call flock(2) through it).
    expect(report.sidecars.map((s) => s.package).filter((p) => p !== 'koffi')).toEqual([]);
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
    // cni-kit/k8s also holds the kubelet PodResources client: this plugin never calls it.
    expect(pkgs).not.toContain('@grpc/grpc-js');
    const sidecar = join(work, 'kube/lib/kubernetes-client-node/index.cjs');
    expect(report.sidecars.find((s) => s.package === '@kubernetes/client-node')).toMatchObject({
      file: sidecar,
      built: true,
    });
    const mtime = statSync(sidecar).mtimeMs;
    expect(build(['kube.ts', '-o', 'kube/kube2']).status).toBe(0);
    expect(statSync(sidecar).mtimeMs).toBe(mtime);
    // The hello plugin in the same kind of folder gets no heavy client (at most koffi).
    expect(build(['hello.ts', '-o', 'plain/hello']).status).toBe(0);
    const lib = join(work, 'plain/lib');
    expect(
      (existsSync(lib) ? readdirSync(lib) : []).filter((d) => !/^(koffi|node_modules)$/.test(d)),
    ).toEqual([]);
  });

  it('bundles koffi as a sidecar with its platform binary in lib/node_modules, loadable with no node_modules around', (ctx) => {
    need(ctx);
    if (!existsSync(join(root, 'node_modules', nativePkg))) ctx.skip(`${nativePkg} is not installed here`);
    file('ffi.ts', KOFFI);
    const r = build(['ffi.ts', '-o', 'ffi/ffi', '--json']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const nativeDir = join(work, 'ffi/lib/node_modules', nativePkg);
    const report = JSON.parse(r.stdout) as { sidecars: { bytes: number; native: { bytes: number } }[] };
    expect(report.sidecars).toEqual([
      {
        package: 'koffi',
        file: join(work, 'ffi/lib/koffi/index.cjs'),
        bytes: expect.any(Number),
        built: true,
        fallback: expect.stringContaining('iproute2'),
        native: { package: nativePkg, dir: nativeDir, bytes: expect.any(Number) },
      },
    ]);
    // Bundled JS (koffi's loader, no binary) and the platform package's loader, manifest and
    // binaries only.
    expect(report.sidecars[0]!.bytes).toBeLessThan(64 * 1024);
    const copied = (readdirSync(nativeDir, { recursive: true }) as string[]).filter((f) =>
      statSync(join(nativeDir, f)).isFile(),
    );
    expect(copied).toContain('package.json');
    expect(copied).toContain('index.js');
    expect(copied.filter((f) => f.endsWith('.node')).length).toBeGreaterThan(0);
    expect(copied.filter((f) => !/^(package\.json|index\.js)$|\.node$/.test(f))).toEqual([]);
    expect(report.sidecars[0]!.native.bytes).toBeGreaterThan(100_000);
    // The next build reuses both.
    const node = join(nativeDir, copied.find((f) => f.endsWith('.node'))!);
    const mtimes = [statSync(join(work, 'ffi/lib/koffi/index.cjs')).mtimeMs, statSync(node).mtimeMs];
    expect(build(['ffi.ts', '-o', 'ffi/ffi']).status).toBe(0);
    expect([statSync(join(work, 'ffi/lib/koffi/index.cjs')).mtimeMs, statSync(node).mtimeMs]).toEqual(mtimes);

    // Copied where no node_modules exists in any ancestor, it loads koffi and calls libc.
    const away = mkdtempSync(join(tmpdir(), 'ckffi-'));
    try {
      for (let d = away; d !== dirname(d); d = dirname(d))
        expect(existsSync(join(d, 'node_modules')), d).toBe(false);
      cpSync(join(work, 'ffi'), away, { recursive: true });
      const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
      const run = spawnSync(join(away, 'ffi'), [], { env, encoding: 'utf8' });
      expect(run.stderr).toBe('');
      expect(JSON.parse(run.stdout)).toEqual({ pid: run.pid, errno: 'number' });
      expect(run.status).toBe(0);
      // Without the binary the import rejects with an error that says where it should have been.
      rmSync(join(away, 'lib/node_modules/@koromix'), { recursive: true });
      const bare = spawnSync(join(away, 'ffi'), [], { env, encoding: 'utf8' });
      expect(bare.status).toBe(1);
      const { error } = JSON.parse(bare.stdout) as { error: string };
      expect(error).toContain('koffi cannot load its native binary');
      expect(error).toContain(`the build put ${nativePkg} in lib/node_modules/`);
    } finally {
      rmSync(away, { recursive: true, force: true });
    }
  });

  it('builds a plugin whose koffi has no binary for this platform, reporting the sidecar as not built', (ctx) => {
    need(ctx);
    // A koffi of its own next to the plugin, without any platform package: as on a platform koffi
    // ships no binary for.
    file('nobin/node_modules/koffi/package.json', '{"name":"koffi","version":"9.9.9","main":"index.cjs"}');
    file('nobin/node_modules/koffi/index.cjs', 'module.exports = {};\n');
    file('nobin/ffi.ts', KOFFI);
    const r = build(['nobin/ffi.ts', '-o', 'nobin/out/ffi', '--json']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect((JSON.parse(r.stdout) as { sidecars: unknown[] }).sidecars).toEqual([
      {
        package: 'koffi',
        file: join(work, 'nobin/out/lib/koffi/index.cjs'),
        bytes: 0,
        built: false,
        reason: `no prebuilt binary for ${process.platform}-${process.arch}: ${nativePkg} is not installed`,
        fallback: expect.stringContaining('iproute2'),
      },
    ]);
    expect(existsSync(join(work, 'nobin/out/lib'))).toBe(false);
    const text = build(['nobin/ffi.ts', '-o', 'nobin/out/ffi']);
    expect(text.status).toBe(0);
    expect(text.stdout).toContain('sidecar koffi: not built (no prebuilt binary');
    expect(text.stdout).toContain('the plugin falls back to iproute2');
    // The plugin runs; its import of koffi rejects (cni-kit's backend then uses iproute2).
    const run = spawnSync(join(work, 'nobin/out/ffi'), [], { encoding: 'utf8' });
    expect(run.status).toBe(1);
    expect((JSON.parse(run.stdout) as { error: string }).error).toContain('lib/koffi/index.cjs');
  });

  it('deploy/install.mjs installs the plugins with lib/ (koffi binary included), and they run from there', async (ctx) => {
    need(ctx);
    if (!existsSync(join(root, 'node_modules', nativePkg))) ctx.skip(`${nativePkg} is not installed here`);
    file('hello.ts', HELLO);
    file('ffi.ts', KOFFI);
    const src = join(work, 'image');
    expect(build(['hello.ts', '-o', 'image/hello']).status).toBe(0);
    expect(build(['ffi.ts', '-o', 'image/ffi']).status).toBe(0);
    // Any plugin named whereabouts makes the installer write whereabouts' flat file.
    copyFileSync(join(src, 'hello'), join(src, 'whereabouts'));
    const host = mkdtempSync(join(tmpdir(), 'ckinstall-'));
    try {
      const bin = join(host, 'bin');
      const sa = join(host, 'sa');
      mkdirSync(sa);
      writeFileSync(join(sa, 'ca.crt'), 'not a certificate');
      writeFileSync(join(sa, 'token'), 'token');
      // It installs, writes the kubeconfig, then waits for a cluster network's config: stop it there.
      const { code, out } = await runInstallerUntilWaiting([], {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        CNI_BIN_DIR: bin,
        HOST_CNI_BIN_DIR: bin,
        CNI_CONF_DIR: join(host, 'conf'),
        HOST_CNI_CONF_DIR: join(host, 'conf'),
        CNI_KIT_SOURCE_DIR: src,
        CNI_KIT_PLUGINS: 'hello ffi whereabouts',
        SERVICE_ACCOUNT_DIR: sa,
        KUBERNETES_SERVICE_HOST: '127.0.0.1',
      });
      expect(code, out).toBe(0);
      expect(out).toContain(`installed ${join(bin, 'lib')}`);
      // whereabouts' flat file selects the Kubernetes store with the installer's kubeconfig.
      const wd = join(host, 'conf', 'whereabouts.d');
      expect(JSON.parse(readFileSync(join(wd, 'whereabouts.conf'), 'utf8'))).toEqual({
        datastore: 'kubernetes',
        kubernetes: { kubeconfig: join(wd, 'whereabouts.kubeconfig') },
      });
      expect(JSON.parse(readFileSync(join(wd, 'whereabouts.kubeconfig'), 'utf8')).users[0].user.token).toBe(
        'token',
      );
      // The plugins, the runtime they point at, lib/ with the binary, and no build stamps.
      expect(readFileSync(join(bin, 'ffi'), 'utf8').split('\n')[0]).toBe(`#!${join(bin, 'cni-kit-node')}`);
      expect(existsSync(join(bin, 'lib/koffi/index.cjs'))).toBe(true);
      expect(existsSync(join(bin, 'lib/koffi/stamp'))).toBe(false);
      expect(readdirSync(join(bin, 'lib/node_modules', nativePkg))).toContain('package.json');
      const env = { PATH: '/usr/bin:/bin' };
      const v = spawnSync(join(bin, 'hello'), [], {
        env: { ...env, CNI_COMMAND: 'VERSION' },
        encoding: 'utf8',
      });
      expect(v.status).toBe(0);
      expect(JSON.parse(v.stdout)).toHaveProperty('supportedVersions');
      const run = spawnSync(join(bin, 'ffi'), [], { env, encoding: 'utf8' });
      expect(JSON.parse(run.stdout)).toEqual({ pid: run.pid, errno: 'number' });
      expect(run.status).toBe(0);
    } finally {
      rmSync(host, { recursive: true, force: true });
    }
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
