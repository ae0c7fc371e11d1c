import { defineConfig } from 'tsup';

// The library: ESM + CJS + .d.ts. Plugin binaries are bundled separately by scripts/build-bins.mjs.
export default defineConfig({
  entry: { index: 'src/index.ts' },
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: false,
  target: 'node20',
  platform: 'node',
  splitting: false,
  // Heavy clients stay external so that importing 'cni-kit' never loads them until a store needs them.
  external: ['etcd3', '@kubernetes/client-node'],
  onSuccess: 'node scripts/build-bins.mjs',
});
