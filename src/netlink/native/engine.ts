// The native engine as the Netlink layer sees it: the queue's stop-at-first-failure and
// existsOk/missingOk rules, and NetlinkErrors that name the op, the object and the netns. The
// rtnetlink work itself is in core.ts, which this module receives already loaded (see
// linux/index.ts), so that start-up never parses it.
import type { Libc } from '../../sys/libc.js';
import { MISSING_ERRNOS, NetlinkError } from '../errors.js';
import { describeOp, type Engine, type Op, type Read, type ReadResult } from '../ops.js';
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

  async run(netns: string, ops: readonly Op[], reads: readonly Read[]): Promise<ReadResult[]> {
    let start = 0;
    for (;;) {
      const slice = ops.slice(start);
      try {
        return this.core.flush(netns, slice, reads);
      } catch (e) {
        if (!this.isFailure(e)) throw e;
        if (e.index < 0) {
          const r = reads[-e.index - 1]!;
          const what = r.t === 'sysctl' ? `read /proc/sys/${r.key}` : `list ${r.t}`;
          throw new NetlinkError(e.errno, what, netns, e.detail);
        }
        const op = slice[e.index]!;
        const tolerated =
          (op.ok === 'exists' && e.errno === 'EEXIST') ||
          (op.ok === 'missing' && MISSING_ERRNOS.has(e.errno));
        if (!tolerated) throw new NetlinkError(e.errno, describeOp(op), netns, e.detail);
        start += e.index + 1;
      }
    }
  }
}
