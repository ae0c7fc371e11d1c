// The daemon's admission and ordering primitives (cni-kit/daemon): KeyedMutex serialises calls of
// one container and interface in arrival order while other keys run alongside, and Limiter bounds
// running and waiting calls. Random schedules (fast-check) drive both against a simple model.
import { KeyedMutex, Limiter } from 'cni-kit/daemon';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
  reject(e: Error): void;
}
const deferred = (): Deferred => {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
};
/** Lets every pending promise reaction run. */
const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};

describe('KeyedMutex', () => {
  it('runs holders of one key strictly one at a time, in arrival order, whatever order they finish in; other keys run alongside; the map empties', async () => {
    await fc.assert(
      fc.asyncProperty(
        // Each job: its key (few keys, so they collide), whether it throws.
        fc.array(fc.record({ key: fc.integer({ min: 0, max: 2 }), fails: fc.boolean() }), {
          minLength: 1,
          maxLength: 12,
        }),
        // The order the test tries to finish running jobs in (indexes into the running set).
        fc.array(fc.nat(), { minLength: 40, maxLength: 40 }),
        async (jobs, picks) => {
          const m = new KeyedMutex();
          const gates = jobs.map(() => deferred());
          const started: number[] = [];
          const running = new Set<number>();
          const ended = new Set<number>();
          const results = jobs.map((job, i) =>
            m
              .run(`k${job.key}`, async () => {
                // No other holder of this key is running.
                for (const j of running) expect(jobs[j]?.key).not.toBe(job.key);
                running.add(i);
                started.push(i);
                try {
                  await gates[i]?.promise;
                } finally {
                  running.delete(i);
                  ended.add(i);
                }
                return i;
              })
              .then(
                (v) => ({ ok: true as const, v }),
                (e: Error) => ({ ok: false as const, e }),
              ),
          );
          await settle();
          let p = 0;
          while (ended.size < jobs.length) {
            // Every key that has waiting jobs has exactly one running: the earliest not yet ended.
            const keys = new Set(jobs.filter((_, i) => !ended.has(i)).map((j) => j.key));
            expect(new Set([...running].map((i) => jobs[i]?.key))).toEqual(keys);
            for (const i of running) {
              const earliest = jobs.findIndex((j, k) => j.key === jobs[i]?.key && !ended.has(k));
              expect(i).toBe(earliest);
            }
            const list = [...running];
            const i = list[(picks[p++ % picks.length] ?? 0) % list.length] as number;
            if (jobs[i]?.fails) gates[i]?.reject(new Error(`job ${i} failed`));
            else gates[i]?.resolve();
            await settle();
          }
          // Per key, the start order is the arrival order.
          for (const key of [0, 1, 2]) {
            const arrival = jobs.map((j, i) => (j.key === key ? i : -1)).filter((i) => i >= 0);
            expect(started.filter((i) => jobs[i]?.key === key)).toEqual(arrival);
          }
          const outs = await Promise.all(results);
          outs.forEach((o, i) => {
            if (jobs[i]?.fails) expect(o).toEqual({ ok: false, e: new Error(`job ${i} failed`) });
            else expect(o).toEqual({ ok: true, v: i });
          });
          expect(m.size).toBe(0);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('a holder that throws synchronously still releases the key', async () => {
    const m = new KeyedMutex();
    const first = m.run('a', () => {
      throw new Error('boom');
    });
    const second = m.run('a', async () => 'next');
    await expect(first).rejects.toThrow('boom');
    await expect(second).resolves.toBe('next');
    expect(m.size).toBe(0);
  });

  it('different keys do not wait for each other', async () => {
    const m = new KeyedMutex();
    const gate = deferred();
    const held = m.run('a', () => gate.promise);
    let ranB = false;
    await m.run('b', async () => {
      ranB = true;
    });
    expect(ranB).toBe(true);
    expect(m.size).toBe(1);
    gate.resolve();
    await held;
    expect(m.size).toBe(0);
  });
});

describe('Limiter', () => {
  type Op = { kind: 'acquire' } | { kind: 'release'; pick: number; twice: boolean };
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.constant({ kind: 'acquire' as const }),
    fc.record({ kind: fc.constant('release' as const), pick: fc.nat(), twice: fc.boolean() }),
  );

  it('admits at most max, queues at most maxQueued in FIFO order, refuses past that, and counts each release once', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 0, max: 4 }),
        fc.array(op, { maxLength: 60 }),
        async (max, maxQueued, ops) => {
          const l = new Limiter(max, maxQueued);
          // Model: holders (with their release functions once granted) and the FIFO of waiters.
          let n = 0;
          const granted = new Map<number, () => void>();
          const waiting: number[] = [];
          const grantOrder: number[] = [];
          for (const o of ops) {
            if (o.kind === 'acquire') {
              const id = n++;
              const before = { running: l.inFlight, queued: l.queued };
              const slot = l.acquire();
              if (before.running < max) {
                expect(slot).toBeDefined();
              } else if (before.queued < maxQueued) {
                expect(slot).toBeDefined();
                waiting.push(id);
              } else {
                expect(slot).toBeUndefined();
                continue;
              }
              void slot?.then((release) => {
                granted.set(id, release);
                grantOrder.push(id);
              });
            } else {
              const held = [...granted.keys()];
              if (held.length === 0) continue;
              const id = held[o.pick % held.length] as number;
              const release = granted.get(id) as () => void;
              granted.delete(id);
              release();
              if (o.twice) release(); // a second call must not free another slot
            }
            await settle();
            // A release hands the slot to the oldest waiter.
            while (waiting.length > 0 && granted.has(waiting[0] as number)) waiting.shift();
            expect(l.inFlight).toBe(granted.size);
            expect(l.inFlight).toBeLessThanOrEqual(max);
            expect(l.queued).toBe(waiting.length);
            expect(l.queued).toBeLessThanOrEqual(maxQueued);
            // Nobody waits while a slot is free.
            if (l.queued > 0) expect(l.inFlight).toBe(max);
          }
          // Grants happen in request order (FIFO), since the first `max` are immediate.
          expect(grantOrder).toEqual([...grantOrder].sort((a, b) => a - b));
          // Releasing every holder hands the slots to the waiters, who release in turn.
          while (granted.size > 0) {
            const all = [...granted.values()];
            granted.clear();
            for (const r of all) r();
            await settle();
          }
          expect(l.inFlight).toBe(0);
          expect(l.queued).toBe(0);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('refuses at once when running and queue are full, and admits again after a release', async () => {
    const l = new Limiter(1, 1);
    const a = await l.acquire();
    const b = l.acquire();
    expect(b).toBeDefined();
    expect(l.acquire()).toBeUndefined();
    a?.();
    a?.();
    const rb = await b;
    expect(l.inFlight).toBe(1);
    expect(l.queued).toBe(0);
    const c = l.acquire();
    expect(c).toBeDefined();
    rb?.();
    (await c)?.();
    expect(l.inFlight).toBe(0);
  });
});
