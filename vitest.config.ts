import { fileURLToPath } from 'node:url';
import { configDefaults, defineConfig } from 'vitest/config';
import { IN_VM, LANE_ONLY_FILES } from './test/kernel/lane-files.js';

const src = (p: string) => fileURLToPath(new URL(`./src/${p}`, import.meta.url));

// The kernel lane's own files need link kinds only its VM's kernel has: outside the VM no run
// includes them (test/kernel/lane-files.ts). A run whose file filters name one says where it runs.
if (!IN_VM) {
  const commands = new Set(['run', 'watch', 'dev', 'related', 'list', 'bench']);
  const filters = process.argv.slice(2).filter((a) => !a.startsWith('-') && !commands.has(a));
  const named = LANE_ONLY_FILES.filter((f) => filters.some((a) => f.includes(a.replace(/^\.\//, ''))));
  for (const f of named)
    console.error(
      `${f} runs only in the kernel lane (its cases need link kinds this kernel may lack): ` +
        `npx tsx scripts/kernel-lane.ts ${f}`,
    );
}

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
    exclude: [...configDefaults.exclude, ...(IN_VM ? [] : LANE_ONLY_FILES)],
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
