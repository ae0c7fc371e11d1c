import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const src = (p: string) => fileURLToPath(new URL(`./src/${p}`, import.meta.url));

export default defineConfig({
  resolve: {
    // Tests import the public API by name, as users do; inside the checkout that is the source.
    alias: [
      { find: /^cni-kit$/, replacement: src('index.ts') },
      { find: /^cni-kit\/([a-z0-9]+)$/, replacement: src('$1/index.ts') },
    ],
  },
  test: {
    include: ['test/**/*.test.ts'],
    // Builds the binaries, gives the run a private TMPDIR, and fails the run when it leaves
    // anything behind (namespaces, links, rules, mounts, temp files): see the file.
    globalSetup: ['test/helpers/global-setup.ts'],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Integration suites create network namespaces, bridges and etcd servers with unique names,
    // so files may run side by side; two workers match the two cores CI has.
    maxWorkers: 2,
  },
});
