#!/usr/bin/env node
// Builds every examples/<type>/main.ts into dist/bin/<type> with `cni-kit build`'s own code
// (src/cli/build.ts), resolving cni-kit to this checkout's source. The heavy clients become shared
// sidecars under dist/bin/lib/; installing a plugin means copying dist/bin/<type>, with
// dist/bin/lib/ for multus and whereabouts. `node scripts/build-bins.mjs bridge ptp` builds some.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { register } from 'tsx/esm/api';

register();
const { buildPlugin } = await import('../src/cli/build.ts');

const root = fileURLToPath(new URL('..', import.meta.url));
const only = process.argv.slice(2);
const types = readdirSync(join(root, 'examples'), { withFileTypes: true })
  .filter((d) => d.isDirectory() && existsSync(join(root, 'examples', d.name, 'main.ts')))
  .map((d) => d.name)
  .filter((t) => only.length === 0 || only.includes(t));

// Sequential per plugin would be slow; esbuild runs builds in parallel. Sidecars shared by several
// plugins are built by the first that reaches them (a stamp file makes the others reuse it), so
// the plugins that need sidecars go one after another.
const reports = await Promise.all(
  types.map((type) =>
    buildPlugin({
      entry: join(root, 'examples', type, 'main.ts'),
      outfile: join(root, 'dist', 'bin', type),
      cniKitSource: join(root, 'src'),
      resolveDir: root,
    }),
  ),
);
const missing = reports.flatMap((r) =>
  r.sidecars.filter((s) => !s.built).map((s) => `${r.type}: ${s.package}`),
);
if (missing.length > 0) throw new Error(`sidecar packages not installed: ${missing.join(', ')}`);
console.log(`built ${types.length} plugin(s) into dist/bin: ${types.join(', ')}`);
