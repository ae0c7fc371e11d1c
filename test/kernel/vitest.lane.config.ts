// vitest's config inside the kernel lane's VM: the project's, with the lane's files run in the order
// CNI_KIT_LANE_ORDER lists them (scripts/kernel-lane.ts passes KERNEL_LANE's order, longest first).
// vitest's own order without a results cache puts large files first, and the lane's longest files
// (ipvlan.test.ts, a few lines over ipvlan-suite.ts) are among its smallest: run last, they left
// one worker idle while the other finished them.

import { defineConfig, mergeConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';
import base from '../../vitest.config.js';

class LaneOrder extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const order = (process.env.CNI_KIT_LANE_ORDER ?? '').split(',').filter(Boolean);
    const rank = (f: TestSpecification): number => {
      const i = order.findIndex((o) => f.moduleId.endsWith(o));
      return i < 0 ? order.length : i;
    };
    return [...files].sort((a, b) => rank(a) - rank(b));
  }
}

// CNI_KIT_VITEST_CACHE names a module cache in the guest's memory (scripts/kernel-lane.ts sets it):
// transforming the test files and the sources they import costs some 25 s of worker time under
// emulation, which the daemon-mode pass would otherwise pay a second time.
const cache = process.env.CNI_KIT_VITEST_CACHE;

export default mergeConfig(
  base,
  defineConfig({
    test: {
      sequence: { sequencer: LaneOrder },
      ...(cache ? { experimental: { fsModuleCache: true, fsModuleCachePath: cache } } : {}),
    },
  }),
);
