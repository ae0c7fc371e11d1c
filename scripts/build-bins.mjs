#!/usr/bin/env node
// Bundles every examples/<type>/main.ts into one executable CommonJS file at dist/bin/<type>.
//
// Heavy third-party clients (etcd3, @kubernetes/client-node, js-yaml) are NOT inlined: each is
// bundled once into dist/bin/lib/<name>/index.cjs and required from there on first use. A plugin
// is a new process per call, and inlining megabytes that most calls never run would make every
// call parse them. Installing a plugin means copying dist/bin/<type> together with dist/bin/lib/.
//
// Outputs are written to a temp file and renamed, so a test exec'ing a binary never sees a torn one.
import { chmodSync, existsSync, mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { cniKitSource } from './esbuild-cni-kit.mjs';
import { etcd3ProtoPlugin } from './esbuild-etcd3-proto.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const outDir = join(root, 'dist', 'bin');
const libDir = join(outDir, 'lib');

/**
 * Package name → sidecar folder under dist/bin/lib, and what the sidecar exports. Exporting only
 * what src/ uses lets esbuild drop the rest: client-node shrinks from ~15 MB to ~5 MB, which is
 * ~190 ms less to load on every Kubernetes-mode multus call. Keep the list in step with
 * src/k8s/connect.ts (the bundled multus/whereabouts tests fail when a name is missing).
 */
const VENDOR = {
  etcd3: { dir: 'etcd3', exports: ['Etcd3'] },
  '@kubernetes/client-node': {
    dir: 'kubernetes-client-node',
    exports: [
      'KubeConfig',
      'CoreV1Api',
      'CustomObjectsApi',
      'createConfiguration',
      'ServerConfiguration',
      'setHeaderOptions',
      'PatchStrategy',
      'ApiException',
      'FetchError',
      'AbortError',
    ],
  },
  'js-yaml': { dir: 'js-yaml', exports: ['load'] },
};

const only = process.argv.slice(2);
const types = readdirSync(join(root, 'examples'), { withFileTypes: true })
  .filter((d) => d.isDirectory() && existsSync(join(root, 'examples', d.name, 'main.ts')))
  .map((d) => d.name)
  .filter((t) => only.length === 0 || only.includes(t));

/** Resolves imports of vendored packages to their sidecar, relative to the requiring binary. */
const vendorExternal = {
  name: 'vendor-sidecars',
  setup(b) {
    const names = Object.keys(VENDOR).map((p) => p.replace(/[/.]/g, '\\$&'));
    b.onResolve({ filter: new RegExp(`^(${names.join('|')})$`) }, (args) => ({
      path: `./lib/${VENDOR[args.path].dir}/index.cjs`,
      external: true,
    }));
  },
};

/** Bundles with esbuild in memory, then writes the file atomically (temp + rename). */
async function bundle(outfile, options, mode = 0o644) {
  const { outputFiles } = await build({
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    legalComments: 'none',
    logLevel: 'warning',
    // CommonJS has require(), so src/spec/addr.ts never reaches its import.meta fallback.
    logOverride: { 'empty-import-meta': 'silent' },
    write: false,
    outfile,
    ...options,
  });
  const file = outputFiles.find((f) => f.path === outfile) ?? outputFiles[0];
  mkdirSync(dirname(outfile), { recursive: true });
  const tmp = `${outfile}.${process.pid}.tmp`;
  writeFileSync(tmp, file.contents, { mode });
  chmodSync(tmp, mode);
  renameSync(tmp, outfile);
}

mkdirSync(outDir, { recursive: true });
// dist/bin files have no extension; this marks them CommonJS whatever the package type is.
writeFileSync(join(outDir, 'package.json'), '{ "type": "commonjs" }\n');

await Promise.all([
  ...(only.length === 0 || !existsSync(libDir)
    ? Object.entries(VENDOR).map(([pkg, { dir, exports }]) =>
        bundle(join(libDir, dir, 'index.cjs'), {
          stdin: {
            contents: `export { ${exports.join(', ')} } from ${JSON.stringify(pkg)};`,
            resolveDir: root,
            loader: 'js',
          },
          minify: true,
          // etcd3 reads its .proto files next to its own code at run time; inline them instead.
          plugins: [etcd3ProtoPlugin],
          logLevel: 'error',
        }),
      )
    : []),
  ...types.map((type) =>
    bundle(
      join(outDir, type),
      {
        entryPoints: [join(root, 'examples', type, 'main.ts')],
        // The second line marks the file as cni-kit's own plugin of this type: ctx.ipam reads it
        // (never execs it) to run a built-in allocator in-process instead (src/delegate/find.ts).
        banner: { js: `#!/usr/bin/env node\n// cni-kit plugin ${type}` },
        minify: true,
        keepNames: true,
        plugins: [cniKitSource, vendorExternal],
        // import() of a sidecar becomes require(): CommonJS sidecars then expose their named exports.
        supported: { 'dynamic-import': false },
      },
      0o755,
    ),
  ),
]);
console.log(`built ${types.length} plugin(s) into dist/bin: ${types.join(', ')}`);
