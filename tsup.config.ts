import { defineConfig } from 'tsup';

// The library: one entry per public subpath (ESM + CJS + .d.ts). Shared code is split into chunks
// so every entry uses the same classes (an error thrown by cni-kit/delegate is a CniError of
// cni-kit). Plugin binaries are bundled separately by scripts/build-bins.mjs.
export default defineConfig({
  entry: {
    index: 'src/index.ts',
    spec: 'src/spec/index.ts',
    netlink: 'src/netlink/index.ts',
    ipam: 'src/ipam/index.ts',
    netsetup: 'src/netsetup/index.ts',
    delegate: 'src/delegate/index.ts',
    runtime: 'src/runtime/index.ts',
    k8s: 'src/k8s/index.ts',
    fs: 'src/fs/index.ts',
  },
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: false,
  target: 'node20',
  platform: 'node',
  splitting: true,
  // import.meta.url in the CommonJS build (src/spec/addr.ts's createRequire fallback).
  shims: true,
  // Heavy clients stay external so that importing a subpath never loads them until a store needs them.
  external: ['etcd3', '@kubernetes/client-node'],
  onSuccess: 'node scripts/build-bins.mjs',
});
