// Group commit for one Kubernetes object written with resourceVersion-guarded PUTs (an IPPool).
// Concurrent changes from one process queue up; while one PUT is in flight the next ones gather,
// and the next PUT carries them all. Every change is a function re-applied to the newest copy of
// the object whenever a PUT loses a race (409) with another process, so it decides its outcome
// (claimed, taken, ...) on what the server really holds: no change of this process ever conflicts
// with another of this process, and none is lost or applied twice.
import { CniError, ErrorCode } from '../../../spec/errors.js';

/** What the writer needs of the object: its resourceVersion. */
export interface Versioned {
  metadata: { resourceVersion?: string };
}

/** One change: mutates the draft (a private copy) and says what it did; `changed: false` writes nothing. */
export type Change<T, R> = (draft: T) => { result: R; changed: boolean };

/** The object's I/O: read it, write it (409 when stale), copy it cheaply for a draft. */
export interface BatchIo<T> {
  get(): Promise<T>;
  replace(draft: T): Promise<T>;
  copy(obj: T): T;
  isConflict(err: unknown): boolean;
  /** Names the object in the error after too many lost races. */
  what: string;
}

interface Pending<T> {
  change: Change<T, unknown>;
  resolve(v: { result: unknown; object: T }): void;
  reject(err: unknown): void;
}

/** Lost races with other writers tolerated per batch before "try again" (code 11). */
const RETRIES = 30;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Orders two resourceVersions when both are decimal (as the API server's are); else undefined. */
function newer(a: string | undefined, b: string | undefined): boolean | undefined {
  if (!a || !b || !/^\d+$/.test(a) || !/^\d+$/.test(b)) return undefined;
  return BigInt(a) > BigInt(b);
}

/** Batches the changes to one object made concurrently by one process into as few PUTs as possible. */
export class BatchWriter<T extends Versioned> {
  private latest: T | undefined;
  private readonly queue: Array<Pending<T>> = [];
  private running = false;
  /** PUTs sent and changes they carried (benches and tests). */
  readonly stats = { puts: 0, changes: 0, conflicts: 0 };

  constructor(
    private readonly io: BatchIo<T>,
    private readonly random: () => number = Math.random,
  ) {}

  /** The newest copy known (read-only: never mutate it). */
  current(): T | undefined {
    return this.latest;
  }

  private reading: Promise<T> | undefined;
  private nextRead: Promise<T> | undefined;

  /**
   * A read that starts after this call (so it sees every write that ended before it), shared by
   * all callers that arrive while another read is in flight: N concurrent sessions cost two GETs,
   * not N. Resolves with the newest copy known, which may be this process's own later write.
   */
  read(): Promise<T> {
    if (!this.reading) {
      const r = this.io.get().then((obj) => {
        this.saw(obj);
        return this.latest ?? obj;
      });
      this.reading = r;
      const clear = () => {
        if (this.reading === r) this.reading = undefined;
      };
      r.then(clear, clear);
      return r;
    }
    // The read in flight may have been answered before this caller's view must start: wait for it
    // to end, then share the next one with everyone else who arrived meanwhile.
    this.nextRead ??= this.reading
      .catch(() => undefined)
      .then(() => {
        this.nextRead = undefined;
        return this.read();
      });
    return this.nextRead;
  }

  /** Offers a copy read elsewhere; kept when it is newer than the one held. */
  saw(obj: T): void {
    // Versions that do not compare (not decimal) count as newer: a fresh read beats a cached copy.
    if (!this.latest || newer(obj.metadata.resourceVersion, this.latest.metadata.resourceVersion) !== false)
      this.latest = obj;
  }

  /** Queues a change; resolves with its result and the object as written (or as read, when unchanged). */
  submit<R>(change: Change<T, R>): Promise<{ result: R; object: T }> {
    return new Promise((resolve, reject) => {
      this.queue.push({
        change: change as Change<T, unknown>,
        resolve: resolve as Pending<T>['resolve'],
        reject,
      });
      if (!this.running) void this.run();
    });
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length > 0) await this.flush(this.queue.splice(0));
    } finally {
      this.running = false;
    }
  }

  private async flush(batch: Array<Pending<T>>): Promise<void> {
    try {
      for (let attempt = 0; ; attempt++) {
        this.latest ??= await this.io.get();
        const draft = this.io.copy(this.latest);
        const outcomes = batch.map((p) => p.change(draft));
        if (!outcomes.some((o) => o.changed)) {
          const object = this.latest;
          for (const [i, p] of batch.entries()) p.resolve({ result: outcomes[i]!.result, object });
          return;
        }
        try {
          this.stats.puts++;
          const object = await this.io.replace(draft);
          this.stats.changes += outcomes.filter((o) => o.changed).length;
          this.latest = object;
          for (const [i, p] of batch.entries()) p.resolve({ result: outcomes[i]!.result, object });
          return;
        } catch (err) {
          if (!this.io.isConflict(err)) throw err;
          this.stats.conflicts++;
          if (attempt + 1 >= RETRIES) {
            throw new CniError(
              ErrorCode.TryAgainLater,
              `${this.io.what}: lost ${RETRIES} writes in a row to other writers; retry`,
            );
          }
          // Another process wrote first: back off a little (jittered, so two processes do not
          // keep meeting), re-read, and let changes queued meanwhile ride along.
          if (attempt > 0) await sleep(this.random() * Math.min(5 * 2 ** attempt, 200));
          this.latest = await this.io.get();
          batch.push(...this.queue.splice(0));
        }
      }
    } catch (err) {
      for (const p of batch) p.reject(err);
    }
  }
}
