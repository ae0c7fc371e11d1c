// The native engine as the Netlink layer sees it: the queue's rules (runQueue in ops.ts) over the
// rtnetlink work in core.ts, which this module receives already loaded (see
// linux/index.ts), so that start-up never parses it.
import type { Libc } from '../../sys/libc.js';
import { type Engine, type Op, type Read, type ReadResult, runQueue } from '../ops.js';
import type * as Core from './core.js';
import { withNetnsSync } from './netns.js';

export class NativeEngine implements Engine {
  /** Always 0: kept so benches can read the same counter from either engine. */
  readonly spawns = 0;
  private readonly core: Core.NativeCore;
  private readonly isFailure: typeof Core.isCoreFailure;

  constructor(libc: Libc, ownNetns: string, core: typeof Core) {
    this.core = new core.NativeCore(libc, ownNetns, (path, fn) => withNetnsSync(path, fn, libc));
    this.isFailure = core.isCoreFailure;
  }

  run(netns: string, ops: readonly Op[], reads: readonly Read[]): Promise<ReadResult[]> {
    return runQueue(
      netns,
      ops,
      reads,
      (slice) => this.core.flush(netns, slice, reads),
      (e) => (this.isFailure(e) ? e : undefined),
    );
  }
}
