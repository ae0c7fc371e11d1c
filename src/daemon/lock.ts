// Admission and ordering of calls inside the daemon.

/**
 * Runs functions one at a time per key, in arrival order: two calls for the same container and
 * interface must not interleave (a DEL overtaking its ADD would leave the ADD's work behind).
 */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<void>>();

  /** Runs `fn` once every earlier holder of `key` has finished. */
  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const before = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => {
      release = r;
    });
    const tail = before.then(() => mine);
    this.tails.set(key, tail);
    await before;
    try {
      return await fn();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }

  /** Keys with a holder or waiters (for tests and metrics). */
  get size(): number {
    return this.tails.size;
  }
}

/**
 * At most `max` calls at a time and `maxQueued` waiting: past that a call is refused at once, so a
 * burst of pod starts costs a bounded amount of memory instead of growing without limit.
 */
export class Limiter {
  private running = 0;
  private readonly queue: Array<() => void> = [];

  constructor(
    readonly max: number,
    readonly maxQueued: number,
  ) {}

  /** Resolves with a release function once a slot is free; undefined when the queue is full too. */
  acquire(): Promise<() => void> | undefined {
    if (this.running < this.max) {
      this.running++;
      return Promise.resolve(this.releaser());
    }
    if (this.queue.length >= this.maxQueued) return undefined;
    return new Promise((resolve) => this.queue.push(() => resolve(this.releaser())));
  }

  get inFlight(): number {
    return this.running;
  }

  get queued(): number {
    return this.queue.length;
  }

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.queue.shift();
      if (next) next();
      else this.running--;
    };
  }
}
