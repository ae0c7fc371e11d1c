#!/usr/bin/env node
// Bundles every examples/<type>/main.ts into one executable CommonJS file at dist/bin/<type>,
// so a plugin can be copied alone into /opt/cni/bin and starts without resolving node_modules.
import { chmodSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
const outDir = join(root, 'dist', 'bin');
mkdirSync(outDir, { recursive: true });
// dist/bin files have no extension; this marks them CommonJS whatever the package type is.
writeFileSync(join(outDir, 'package.json'), '{ "type": "commonjs" }\n');

const only = process.argv.slice(2);
const types = readdirSync(join(root, 'examples'), { withFileTypes: true })
  .filter((d) => d.isDirectory() && existsSync(join(root, 'examples', d.name, 'main.ts')))
  .map((d) => d.name)
  .filter((t) => only.length === 0 || only.includes(t));

await Promise.all(
  types.map(async (type) => {
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
      logLevel: 'warning',
    });
    chmodSync(outfile, 0o755);
  }),
);
console.log(`built ${types.length} plugin(s) into dist/bin: ${types.join(', ')}`);
