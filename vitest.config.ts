import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: {
    // Tests import the package by name, as users do; inside the checkout that is the source.
    alias: { 'cni-kit': fileURLToPath(new URL('./src/index.ts', import.meta.url)) },
  },
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Integration suites create network namespaces, bridges and etcd servers with unique names,
    // so files may run side by side; two workers match the two cores CI has.
    maxWorkers: 2,
  },
});
