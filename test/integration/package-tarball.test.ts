// The SDK outside this repository, as a new user meets it: `npm pack`, a new npm project (of
// "type": "module", where a naive CommonJS bundle breaks) that installs the tarball, the README's
// plugin built with `npx cni-kit build`, run with `npx cni-kit exec` in network namespaces of the
// test's own, and held to the spec with `npx cni-kit conform`. Also: what the tarball ships, that
// its docs' links resolve inside it, that a plugin without multus or the whereabouts stores
// installs no Kubernetes client, etcd3, gRPC or protobufjs, and that the FFI package koffi comes
// as a dependency with its prebuilt binary and becomes a plugin's sidecar.
import { execFileSync, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildPlugin } from '../../src/cli/build.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const built = existsSync(join(root, 'dist/index.js')) && existsSync(join(root, 'dist/cli.cjs'));
const work = mkdtempSync(join(tmpdir(), `cktgz-${process.pid}-`));
const proj = join(work, 'hello-plugin');
const tag = `cktgz${process.pid % 10000}`;
const namespaces: string[] = [];
let packed: { filename: string; files: { path: string }[] } | undefined;
let installError: string | undefined;

const nativePkg = `@koromix/koffi-${process.platform}-${process.arch}`;

const esbuildVersion = (
  JSON.parse(readFileSync(join(root, 'node_modules/esbuild/package.json'), 'utf8')) as { version: string }
).version;

/** The README's first TypeScript block: the plugin a reader copies first. */
function readmePlugin(): string {
  const m = /```ts\n([\s\S]*?)```/.exec(readFileSync(join(root, 'README.md'), 'utf8'));
  if (!m?.[1]) throw new Error('README.md has no ```ts block');
  return m[1];
}

function npx(args: string[], opts: { netns?: string } = {}) {
  const cmd = opts.netns ? 'nsenter' : 'npx';
  const argv = opts.netns ? [`--net=/run/netns/${opts.netns}`, 'npx', ...args] : args;
  return spawnSync(cmd, argv, {
    cwd: proj,
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, npm_config_yes: 'true' },
  });
}

beforeAll(() => {
  if (!built) return;
  const out = execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], {
    cwd: root,
    encoding: 'utf8',
  });
  packed = (JSON.parse(out) as (typeof packed)[])[0];
  mkdirSync(proj);
  writeFileSync(
    join(proj, 'package.json'),
    `${JSON.stringify({ name: 'hello-plugin', private: true, type: 'module' }, null, 2)}\n`,
  );
  // npm test runs the suites in a network namespace with loopback only; the registry (for what the
  // npm cache lacks) is reached from the machine's namespace. npm creates no links, so that is safe.
  const viaHost = process.getuid?.() === 0 && existsSync('/proc/1/ns/net');
  const r = spawnSync(
    viaHost ? 'nsenter' : 'npm',
    [
      ...(viaHost ? ['--net=/proc/1/ns/net', 'npm'] : []),
      'install',
      '--no-audit',
      '--no-fund',
      '--prefer-offline',
      join(work, packed!.filename),
      `esbuild@${esbuildVersion}`,
    ],
    { cwd: proj, encoding: 'utf8', timeout: 180_000 },
  );
  if (r.status !== 0) installError = `npm install of the tarball failed: ${r.stderr || r.error?.message}`;
}, 240_000);

afterAll(() => {
  for (const ns of namespaces) spawnSync('ip', ['netns', 'del', ns]);
  rmSync(work, { recursive: true, force: true });
});

/** Skips (with the reason) when dist/ is not built; fails when the install failed. */
function ready(ctx: { skip: (m: string) => void }): void {
  if (!built) ctx.skip('dist/ is not built: run npm run build (npm test does)');
  if (installError) throw new Error(installError);
}

/** Names of the installed packages (scoped ones as @scope/name). */
function installedPackages(): string[] {
  const nm = join(proj, 'node_modules');
  const out: string[] = [];
  for (const e of readdirSync(nm)) {
    if (e.startsWith('.')) continue;
    if (e.startsWith('@')) for (const s of readdirSync(join(nm, e))) out.push(`${e}/${s}`);
    else out.push(e);
  }
  return out.sort();
}

describe('the packed package', () => {
  it('ships the library, the CLI, the licence, examples and docs, and no test or source tree', (ctx) => {
    ready(ctx);
    const files = packed!.files.map((f) => f.path);
    for (const f of [
      'dist/index.js',
      'dist/index.cjs',
      'dist/index.d.ts',
      'dist/cli.cjs',
      'native/cni-kit-shim.c',
      'LICENSE',
      'README.md',
    ]) {
      expect(files, f).toContain(f);
    }
    expect(files.some((f) => f.startsWith('examples/bridge/'))).toBe(true);
    expect(
      files.filter((f) => /^(test|src|bench|scripts|\.ci)\//.test(f) || /^dist\/(bin|shim)\//.test(f)),
    ).toEqual([]);
    expect(readFileSync(join(root, 'LICENSE'), 'utf8')).toContain('Apache License');
  });

  it('every relative link in the shipped README and docs resolves to a shipped file', (ctx) => {
    ready(ctx);
    const files = new Set(packed!.files.map((f) => f.path));
    const broken: string[] = [];
    for (const md of [...files].filter((f) => f.endsWith('.md'))) {
      const text = readFileSync(join(root, md), 'utf8');
      for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1]!.split('#')[0]!;
        if (target === '' || /^[a-z]+:/.test(target)) continue;
        const path = normalize(join(dirname(md), target)).replace(/\/$/, '');
        const shipped = files.has(path) || [...files].some((f) => f.startsWith(`${path}/`));
        if (!shipped) broken.push(`${md}: ${m[1]}`);
      }
    }
    expect(broken).toEqual([]);
  });

  it('a hello plugin installs no Kubernetes client, etcd3, gRPC or protobufjs, and runs no install script of those', (ctx) => {
    ready(ctx);
    const pkgs = installedPackages();
    expect(pkgs).toContain('cni-kit');
    expect(pkgs.filter((p) => /^(@kubernetes\/|etcd3$|@grpc\/|protobufjs$|netmask$)/.test(p))).toEqual([]);
    // cni-kit, js-yaml (and its one dependency), koffi with its platform binary, and esbuild with its.
    expect(pkgs.length).toBeLessThanOrEqual(8);
    // koffi's prebuilt binary comes as its optional platform package; its install script (a
    // compile when no prebuilt binary fits) did not run, so it built nothing.
    expect(pkgs).toContain('koffi');
    expect(pkgs).toContain(nativePkg);
    expect(existsSync(join(proj, 'node_modules/koffi/build'))).toBe(false);
  });

  it('npx cni-kit build bundles the README plugin into one CommonJS executable inside a "type": "module" project', async (ctx) => {
    ready(ctx);
    writeFileSync(join(proj, 'hello.ts'), readmePlugin());
    const r = npx(['cni-kit', 'build', 'hello.ts', '-o', 'bin/hello', '--json']);
    expect(r.stderr + r.stdout).not.toMatch(/error/i);
    expect(r.status).toBe(0);
    const report = JSON.parse(r.stdout) as {
      bytes: number;
      sidecars: { package: string; built: boolean }[];
      type: string;
    };
    expect(report.type).toBe('hello');
    // No heavy client; koffi at most (cni-kit's IPAM file locks call flock(2) through it).
    expect(report.sidecars.filter((s) => s.package !== 'koffi' || !s.built)).toEqual([]);
    const bin = readFileSync(join(proj, 'bin/hello'), 'utf8');
    expect(bin.startsWith('#!/usr/bin/env node\n// cni-kit plugin hello\n')).toBe(true);
    expect(JSON.parse(readFileSync(join(proj, 'bin/package.json'), 'utf8'))).toEqual({ type: 'commonjs' });
    // It answers VERSION as a CNI plugin does.
    const v = spawnSync(join(proj, 'bin/hello'), [], {
      env: { CNI_COMMAND: 'VERSION' },
      input: '{}',
      encoding: 'utf8',
    });
    expect(v.status).toBe(0);
    expect(JSON.parse(v.stdout)).toHaveProperty('supportedVersions');
    // Self-contained: copied away from node_modules, it still parses an IPv6 address (ip-address
    // is loaded lazily, from inside the bundle).
    const alone = join(work, 'alone');
    execFileSync('cp', ['-r', join(proj, 'bin'), alone]);
    const add = spawnSync(join(alone, 'hello'), [], {
      env: {
        CNI_COMMAND: 'ADD',
        CNI_CONTAINERID: 'c1',
        CNI_NETNS: '/proc/self/ns/net',
        CNI_IFNAME: 'eth0',
        CNI_PATH: alone,
      },
      input: JSON.stringify({ cniVersion: '1.0.0', name: 'n', type: 'hello', address: 'fd00::5/64' }),
      encoding: 'utf8',
    });
    expect(add.stdout).toContain('fd00::5/64');
    expect(add.status).toBe(0);
    // Within 10% of the same plugin built inside this checkout (cni-kit resolved to src/).
    const inRepo = await buildPlugin({
      entry: join(proj, 'hello.ts'),
      outfile: join(work, 'repo-bin', 'hello'),
      cniKitSource: join(root, 'src'),
      resolveDir: root,
    });
    expect(Math.abs(report.bytes - inRepo.bytes) / inRepo.bytes).toBeLessThan(0.1);
  });

  it('npx cni-kit build gives a netlink plugin its koffi sidecar, binary and native engine from the installed packages', (ctx) => {
    ready(ctx);
    // The public netlink API: the native engine (koffi + the engine's core) reads this netns.
    writeFileSync(
      join(proj, 'ffi.ts'),
      `import { linuxNetlink, withNetns } from 'cni-kit/netlink';
async function main() {
  const nl = linuxNetlink();
  const links = (await nl.open().links()).map((l) => l.name);
  const inside = await withNetns(\`/proc/\${process.pid}/ns/net\`, () => 'entered');
  console.log(JSON.stringify({ links, engine: await nl.engine(), inside }));
}
main();
`,
    );
    const r = npx(['cni-kit', 'build', 'ffi.ts', '-o', 'bin/ffi', '--json']);
    expect(r.status, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { sidecars: unknown[] };
    expect(report.sidecars).toMatchObject([
      {
        package: 'koffi',
        file: join(proj, 'bin/lib/koffi/index.cjs'),
        built: true,
        native: { package: nativePkg, dir: join(proj, 'bin/lib/node_modules', nativePkg) },
      },
      {
        package: 'cni-kit (native netlink engine)',
        file: join(proj, 'bin/lib/cni-kit/netlink-native.cjs'),
        built: true,
      },
    ]);
    // The engine's core is not in the binary: start-up never parses it.
    expect(readFileSync(join(proj, 'bin/ffi'), 'utf8')).not.toContain('short send to the netlink socket');
    // Copied away from any node_modules, it loads koffi and the core and reads the kernel.
    const away = join(work, 'alone-ffi');
    execFileSync('cp', ['-r', join(proj, 'bin'), away]);
    const run = spawnSync(join(away, 'ffi'), [], { env: { PATH: process.env.PATH }, encoding: 'utf8' });
    expect(run.stderr).toBe('');
    expect(JSON.parse(run.stdout)).toEqual({
      links: expect.arrayContaining(['lo']),
      engine: 'native',
      inside: 'entered',
    });
  });

  it('npx cni-kit build --shim compiles the daemon-mode shim from the installed package; it falls back to the bundle', (ctx) => {
    ready(ctx);
    writeFileSync(join(proj, 'shimmed.ts'), readmePlugin());
    const r = npx(['cni-kit', 'build', 'shimmed.ts', '-o', 'bin/shimmed', '--shim', 'shims/shimmed']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const env = { CNI_COMMAND: 'VERSION' };
    const viaShim = spawnSync(join(proj, 'shims/shimmed'), [], { env, encoding: 'utf8' });
    const viaNode = spawnSync(join(proj, 'bin/shimmed'), [], { env, encoding: 'utf8' });
    expect(viaShim.stdout).toBe(viaNode.stdout);
    const add = spawnSync(join(proj, 'shims/shimmed'), [], {
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        CNI_COMMAND: 'ADD',
        CNI_CONTAINERID: 'c1',
        CNI_NETNS: '/proc/self/ns/net',
        CNI_IFNAME: 'eth0',
        CNI_KIT_DAEMON_SOCKET: join(proj, 'no-daemon.sock'),
      },
      input: JSON.stringify({ cniVersion: '1.0.0', name: 'n', type: 'shimmed', address: 'fd00::6/64' }),
      encoding: 'utf8',
    });
    expect(add.status, add.stdout + add.stderr).toBe(0);
    expect(add.stdout).toContain('fd00::6/64');
  });

  it('npx cni-kit build in a project without esbuild names the package to install', (ctx) => {
    ready(ctx);
    const bare = join(work, 'no-esbuild');
    mkdirSync(join(bare, 'node_modules'), { recursive: true });
    execFileSync('cp', ['-r', join(proj, 'node_modules/cni-kit'), join(bare, 'node_modules/cni-kit')]);
    writeFileSync(join(bare, 'hello.ts'), readmePlugin());
    const cli = join(bare, 'node_modules/cni-kit/dist/cli.cjs');
    const r = spawnSync(process.execPath, [cli, 'build', 'hello.ts', '-o', 'bin/hello'], {
      cwd: bare,
      encoding: 'utf8',
    });
    expect(r.stderr).toContain('needs esbuild');
    expect(r.stderr).toContain('npm i -D esbuild');
    expect(r.status).toBe(1);
    expect(existsSync(join(bare, 'bin'))).toBe(false);
  });

  it('the Kubernetes API client, not installed, fails with a CNI error naming the package', (ctx) => {
    ready(ctx);
    writeFileSync(
      join(proj, 'kube.mjs'),
      "import { openKubeApi } from 'cni-kit/k8s';\n" +
        "openKubeApi('/nonexistent').then(() => console.log('opened'), (e) => console.log(JSON.stringify({ code: e.code, msg: e.message, details: e.details })));\n",
    );
    const r = spawnSync(process.execPath, ['kube.mjs'], { cwd: proj, encoding: 'utf8' });
    const e = JSON.parse(r.stdout) as { code: number; msg: string; details: string };
    expect(e.msg).toContain('@kubernetes/client-node');
    expect(e.details).toContain('npm i @kubernetes/client-node');
  });

  it('npx cni-kit exec runs the built plugin in a network namespace, as cnitool would, and conform passes it', (ctx) => {
    ready(ctx);
    if (!existsSync(join(proj, 'bin/hello'))) throw new Error('the build test did not produce bin/hello');
    const node = `${tag}-node`;
    const pod = `${tag}-pod`;
    for (const ns of [node, pod]) {
      execFileSync('ip', ['netns', 'add', ns]);
      namespaces.push(ns);
    }
    writeFileSync(
      join(proj, 'hello.conflist'),
      JSON.stringify({
        cniVersion: '1.0.0',
        name: 'hello-net',
        plugins: [{ type: 'hello', address: '10.9.8.7/24' }],
      }),
    );
    const common = ['--netns', pod, '--path', join(proj, 'bin'), '--cache', join(work, 'cache')];
    const add = npx(['cni-kit', 'exec', 'add', 'hello.conflist', ...common], { netns: node });
    expect(add.stderr).toBe('');
    expect(add.status).toBe(0);
    const result = JSON.parse(add.stdout) as { cniVersion: string; ips: { address: string }[] };
    expect(result.cniVersion).toBe('1.0.0');
    expect(result.ips[0]?.address).toBe('10.9.8.7/24');
    // The runtime cached it like libcni: CHECK finds the prevResult, DEL removes the record.
    expect(npx(['cni-kit', 'exec', 'check', 'hello.conflist', ...common], { netns: node }).status).toBe(0);
    expect(npx(['cni-kit', 'exec', 'del', 'hello.conflist', ...common], { netns: node }).status).toBe(0);
    const cached = existsSync(join(work, 'cache/results')) ? readdirSync(join(work, 'cache/results')) : [];
    expect(cached).toEqual([]);
    // And it passes the conformance kit, run the same way a user would.
    writeFileSync(
      join(proj, 'hello.conf'),
      JSON.stringify({ cniVersion: '1.0.0', name: 'hello-net', type: 'hello' }),
    );
    const conform = npx(['cni-kit', 'conform', 'bin/hello', '--config', 'hello.conf', '--json']);
    const report = JSON.parse(conform.stdout) as { ok: boolean; checks: { check: string; status: string }[] };
    expect(report.checks.filter((c) => c.status === 'fail')).toEqual([]);
    expect(report.checks.filter((c) => c.status === 'pass').length).toBeGreaterThan(50);
    expect(report.ok).toBe(true);
    expect(conform.status).toBe(0);
    // A usage mistake exits 2 with the verb's help.
    const bad = npx(['cni-kit', 'exec', 'add', 'hello.conflist']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('add needs --netns');
    // Eight npx runs and the whole conformance kit: well past the default on a loaded machine.
  }, 180_000);
});
