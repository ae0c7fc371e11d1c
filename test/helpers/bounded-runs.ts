// Keeping an async fast-check property inside its test when its runs make things that outlive a
// run (namespaces, links, files in a directory the file's afterAll removes).
//
// fast-check cannot stop a predicate that is running: its `interruptAfterTimeLimit` plugin only
// stops waiting for it, and when vitest times a test out the property keeps going in the
// background, starting new runs after the file's afterAll has cleaned up. A fence closes that
// gap. Every run goes through `fence.run`, which starts no new run once the test's AbortSignal
// has fired (vitest aborts it on timeout and when the run is cancelled) or the test has finished;
// and the test does not finish (no afterEach, no afterAll) until the run in flight has finished
// its own `finally` cleanup.
//
//   it('...', async (ctx) => {
//     const fence = runFence(ctx);
//     await fc.assert(fc.asyncProperty(arb, (v) => fence.run(async () => { ... })), {
//       plugins: [fc.interruptAfterTimeLimit(budgetMs)], // optional: a time budget for the runs
//     });
//     expect(fence.passed).toBeGreaterThanOrEqual(minRuns);
//   });
import type { TestContext } from 'vitest';

/** See the file comment. */
export interface RunFence {
  /** Runs `body` as one property run, or skips it (resolving undefined) once the fence is closed. */
  run<T>(body: () => Promise<T>): Promise<T | undefined>;
  /** Closes the fence and waits for every run in flight to settle; never rejects. */
  settle(): Promise<void>;
  readonly closed: boolean;
  /** Runs started, and runs that finished without throwing. */
  readonly started: number;
  readonly passed: number;
}

/** A fence for the property runs of the test `ctx` belongs to (see the file comment). */
export function runFence(ctx: Pick<TestContext, 'signal' | 'onTestFinished'>): RunFence {
  let closed = ctx.signal.aborted;
  let started = 0;
  let passed = 0;
  const inFlight = new Set<Promise<unknown>>();
  ctx.signal.addEventListener('abort', () => (closed = true), { once: true });
  const fence: RunFence = {
    async run<T>(body: () => Promise<T>): Promise<T | undefined> {
      if (closed) return undefined;
      started++;
      const p = body();
      inFlight.add(p);
      try {
        const v = await p;
        passed++;
        return v;
      } finally {
        inFlight.delete(p);
      }
    },
    async settle() {
      closed = true;
      await Promise.allSettled([...inFlight]);
    },
    get closed() {
      return closed;
    },
    get started() {
      return started;
    },
    get passed() {
      return passed;
    },
  };
  // Runs on success, failure and timeout alike, before afterEach and afterAll.
  ctx.onTestFinished(() => fence.settle());
  return fence;
}
