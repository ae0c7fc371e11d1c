// The shape every fuzz test file shares: one world (node netns) per file, one test per plugin with
// its own time budget, a summary line per plugin (seed, cases, runs, the longest run), and every
// failing case reported at once.
import { afterAll, beforeAll, describe, it } from 'vitest';
import { type FuzzPlugin, FuzzWorld, fuzzUnavailable } from './fuzz.js';
import { caseArb, checkSelfIpamBound, type Flow } from './fuzz-arbs.js';
import { assertNoFailures, fuzzPlugin, selectedPlugins } from './fuzz-flows.js';

/** Settings of one fuzz test file. */
export interface SuiteSettings {
  flows: Flow[];
  /** Per-plugin budget when CNI_KIT_FUZZ_RUNS is unset (CNI_KIT_FUZZ_BUDGET_MS overrides). */
  budgetMs: number;
  minRuns?: number;
  /** How often configs are mutated (0..1). */
  mutated?: number;
  /** Weight of a runtime-like value in each env variable against 1 for an odd one. */
  envOk?: number;
  rawWeight?: number;
  /** Start an etcd in the world for whereabouts' etcd store. */
  etcd?: boolean;
}

/** Declares a describe block fuzzing `plugins` with `s`. */
export function fuzzSuite(title: string, plugins: readonly FuzzPlugin[], s: SuiteSettings): void {
  const why = fuzzUnavailable();
  const budgetMs = Number(process.env.CNI_KIT_FUZZ_BUDGET_MS ?? s.budgetMs);
  const runs = Number(process.env.CNI_KIT_FUZZ_RUNS ?? 0);
  // CNI_KIT_FUZZ_MUTATED=0.8 mutates more configs (to look past the version and env findings).
  const mutated = process.env.CNI_KIT_FUZZ_MUTATED ? Number(process.env.CNI_KIT_FUZZ_MUTATED) : s.mutated;
  // A long run has no time budget; each of its runs is bounded by the harness (20 s).
  const timeout = runs > 0 ? runs * 120_000 : budgetMs + 120_000;
  describe.skipIf(why !== undefined)(title, () => {
    let world: FuzzWorld;
    beforeAll(async () => {
      world = await FuzzWorld.create();
      checkSelfIpamBound(world.pidsBounded);
      // whereabouts runs half its cases on its etcd store where etcd is installed.
      if (s.etcd && selectedPlugins(plugins).includes('whereabouts')) await world.startEtcd();
    });
    afterAll(async () => {
      await world?.dispose();
    });
    for (const plugin of selectedPlugins(plugins)) {
      it(`${plugin}: every invariant holds`, { timeout }, async (ctx) => {
        const arb = caseArb(plugin, {
          flows: s.flows,
          ...(mutated !== undefined ? { mutated } : {}),
          ...(s.envOk !== undefined ? { envOk: s.envOk } : {}),
          ...(s.rawWeight !== undefined ? { rawWeight: s.rawWeight } : {}),
        });
        const { failures, stats, seed } = await fuzzPlugin(ctx, world, plugin, arb, {
          flows: s.flows,
          budgetMs,
          minRuns: s.minRuns ?? 3,
        });
        console.log(
          `${title} ${plugin}${plugin === 'whereabouts' && world.etcdUrl ? ' (file and etcd stores)' : ''}: seed ${seed}, ${stats.cases} cases, ${stats.runs} plugin runs, ${stats.addsOk}/${stats.adds} ADDs succeeded, longest run ${stats.maxRunMs} ms, ${stats.ms} ms${world.pidsBounded ? '' : ' (no pids cgroup: runs bounded in time only)'}`,
        );
        assertNoFailures(failures);
      });
    }
  });
}
