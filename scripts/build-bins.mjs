#!/usr/bin/env node
// Bundles every examples/<type>/main.ts into one executable CommonJS file at dist/bin/<type>.
//
// Heavy third-party clients (etcd3, @kubernetes/client-node, js-yaml) are NOT inlined: each is
// bundled once into dist/bin/lib/<name>/index.cjs and required from there on first use. A plugin
// is a new process per call, and inlining megabytes that most calls never run would make every
// call parse them. Installing a plugin means copying dist/bin/<type> together with dist/bin/lib/.
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
const outDir = join(root, 'dist', 'bin');
const libDir = join(outDir, 'lib');
const require = createRequire(join(root, 'package.json'));

/** Package name → sidecar folder under dist/bin/lib, plus data files the package reads at run time. */
const VENDOR = {
  etcd3: { dir: 'etcd3', data: [['etcd3/proto', 'proto']] },
  '@kubernetes/client-node': { dir: 'kubernetes-client-node', data: [] },
  'js-yaml': { dir: 'js-yaml', data: [] },
};

mkdirSync(outDir, { recursive: true });
// dist/bin files have no extension; this marks them CommonJS whatever the package type is.
writeFileSync(join(outDir, 'package.json'), '{ "type": "commonjs" }\n');

const only = process.argv.slice(2);
const types = readdirSync(join(root, 'examples'), { withFileTypes: true })
  .filter((d) => d.isDirectory() && existsSync(join(root, 'examples', d.name, 'main.ts')))
  .map((d) => d.name)
  .filter((t) => only.length === 0 || only.includes(t));

/** Resolves imports of vendored packages to their sidecar, relative to the requiring binary. */
const vendorExternal = {
  name: 'vendor-sidecars',
  setup(b) {
    const filter = new RegExp(
      `^(${Object.keys(VENDOR)
        .map((p) => p.replace(/[/.]/g, '\\$&'))
        .join('|')})$`,
    );
    b.onResolve({ filter }, (args) => ({ path: `./lib/${VENDOR[args.path].dir}/index.cjs`, external: true }));
  },
};

async function buildVendor() {
  await Promise.all(
    Object.entries(VENDOR).map(async ([pkg, { dir, data }]) => {
      const target = join(libDir, dir);
      rmSync(target, { recursive: true, force: true });
      await build({
        stdin: {
          contents: `module.exports = require(${JSON.stringify(pkg)});`,
          resolveDir: root,
          loader: 'js',
        },
        outfile: join(target, 'index.cjs'),
        bundle: true,
        platform: 'node',
        target: 'node20',
        format: 'cjs',
        legalComments: 'none',
        logLevel: 'error',
      });
      // Packages that read files next to their own code at run time (etcd3 loads its .proto files
      // from `${__dirname}/../proto`) get them copied to the same relative place.
      for (const [from, to] of data) {
        const src = join(
          dirname(require.resolve(`${from.split('/')[0]}/package.json`)),
          from.split('/').slice(1).join('/'),
        );
        cpSync(src, join(libDir, to), { recursive: true });
      }
    }),
  );
}

await Promise.all([
  only.length === 0 || !existsSync(libDir) ? buildVendor() : Promise.resolve(),
  ...types.map(async (type) => {
    const outfile = join(outDir, type);
    await build({
      entryPoints: [join(root, 'examples', type, 'main.ts')],
      outfile,
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'cjs',
      minify: false,
      legalComments: 'none',
      banner: { js: '#!/usr/bin/env node' },
      alias: { 'cni-kit': join(root, 'src', 'index.ts') },
      plugins: [vendorExternal],
      // import() of a sidecar becomes require(): CommonJS sidecars then expose their named exports.
      supported: { 'dynamic-import': false },
      logLevel: 'warning',
    });
    chmodSync(outfile, 0o755);
  }),
]);
console.log(`built ${types.length} plugin(s) into dist/bin: ${types.join(', ')}`);
