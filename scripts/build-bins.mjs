#!/usr/bin/env node
// Builds every examples/<type>/main.ts into dist/bin/<type> with `cni-kit build`'s own code
// (src/cli/build.ts), resolving cni-kit to this checkout's source. The heavy clients become shared
// sidecars under dist/bin/lib/, and so does the FFI package koffi, with its binary for this
// machine's platform in dist/bin/lib/node_modules/; installing a plugin means copying
// dist/bin/<type> with dist/bin/lib/. `node scripts/build-bins.mjs bridge ptp` builds some.
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
// A sidecar the plugins can do without (koffi on a platform it has no binary for: they fall back
// to iproute2) is a warning; a heavy client that is not installed is an error.
const unbuilt = reports.flatMap((r) => r.sidecars.filter((s) => !s.built).map((s) => ({ type: r.type, s })));
for (const s of new Map(unbuilt.filter((u) => u.s.fallback).map((u) => [u.s.package, u.s])).values()) {
  console.warn(`sidecar ${s.package} not built (${s.reason}); the plugins fall back to ${s.fallback}`);
}
const missing = unbuilt.filter((u) => !u.s.fallback).map((u) => `${u.type}: ${u.s.package}`);
if (missing.length > 0) throw new Error(`sidecar packages not installed: ${missing.join(', ')}`);
console.log(`built ${types.length} plugin(s) into dist/bin: ${types.join(', ')}`);
