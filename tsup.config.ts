import { readFileSync } from 'node:fs';
import { defineConfig } from 'tsup';

const { version } = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };

// The library: one entry per public subpath (ESM + CJS + .d.ts). Shared code is split into chunks
// so every entry uses the same classes (an error thrown by cni-kit/delegate is a CniError of
// cni-kit). Plugin binaries are bundled separately by scripts/build-bins.mjs.
const library = {
    index: 'src/index.ts',
    spec: 'src/spec/index.ts',
    netlink: 'src/netlink/index.ts',
    ipam: 'src/ipam/index.ts',
    netsetup: 'src/netsetup/index.ts',
    delegate: 'src/delegate/index.ts',
    runtime: 'src/runtime/index.ts',
    k8s: 'src/k8s/index.ts',
  fs: 'src/fs/index.ts',
  conform: 'src/conform/index.ts',
  daemon: 'src/daemon/index.ts',
};

export default defineConfig({
  // The `cni-kit` command (package.json "bin": dist/cli.cjs) has no types to publish.
  // netlink-native: the native engine's core, which cni-kit/netlink imports on its first flush. An
  // entry of its own so that `cni-kit build` finds it under a stable name and keeps it in a file
  // beside the plugin (parsing it at every start-up costs about 1 ms).
  entry: { ...library, cli: 'src/cli/bin.ts', 'netlink-native': 'src/netlink/native/core.ts' },
  format: ['esm', 'cjs'],
  dts: { entry: library },
  sourcemap: true,
  // Stale chunks of earlier builds must not ship; dist/bin is rebuilt by onSuccess.
  clean: true,
  target: 'node20',
  platform: 'node',
  splitting: true,
  // import.meta.url in the CommonJS build (src/spec/addr.ts's createRequire fallback).
  shims: true,
  // Heavy clients stay external so that importing a subpath never loads them until a store needs them.
  // esbuild is an optional peer the `cni-kit build` command loads.
  external: ['etcd3', '@kubernetes/client-node', '@grpc/grpc-js', 'esbuild'],
  // ip-address is bundled (behind esbuild's lazy CommonJS wrapper, so it still initialises on the
  // first IPv6 parse only): a plugin bundled from dist/ then needs no node_modules at run time.
  noExternal: ['ip-address'],
  define: { CNI_KIT_VERSION: JSON.stringify(version) },
  onSuccess: 'node scripts/build-bins.mjs',
});
