#!/usr/bin/env node
// Builds every examples/<type>/main.ts into dist/bin/<type> with `cni-kit build`'s own code
// (src/cli/build.ts), resolving cni-kit to this checkout's source. The heavy clients become shared
// sidecars under dist/bin/lib/, and so does the FFI package koffi, with its binary for this
// machine's platform in dist/bin/lib/node_modules/; installing a plugin means copying
// dist/bin/<type> with dist/bin/lib/. `node scripts/build-bins.mjs bridge ptp` builds some.
// Then the daemon-mode shim (native/cni-kit-shim.c) is compiled once with the system C compiler
// into dist/shim/.cni-kit-shim, and dist/shim/<type> is written for every plugin built: a copy
// with a trailer naming its type, its VERSION answer and its exec-mode fallback ../bin/<type>.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { register } from 'tsx/esm/api';

register();
const { buildPlugin } = await import('../src/cli/build.ts');
const { compileShim, installShim, pluginVersionLine } = await import('../src/cli/shim.ts');

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

// No C compiler is a warning (exec mode needs none); a compiler that fails is an error.
let shim;
try {
  shim = compileShim();
} catch (e) {
  if (!/cannot compile the cni-kit shim: /.test(e.message)) throw e;
  console.warn(`${e.message}; dist/shim not written`);
}
if (shim) {
  if (shim.warning) console.warn(shim.warning);
  const { writeAtomic } = await import('../src/cli/sidecars.ts');
  writeAtomic(join(root, 'dist', 'shim', '.cni-kit-shim'), shim.bytes, 0o755);
  for (const type of types) {
    installShim({
      base: shim.bytes,
      outfile: join(root, 'dist', 'shim', type),
      type,
      fallback: `../bin/${type}`,
      versionLine: pluginVersionLine(join(root, 'dist', 'bin', type)),
    });
  }
  console.log(`wrote ${types.length} shim(s) into dist/shim (${shim.static ? 'static' : 'dynamic'})`);
}
