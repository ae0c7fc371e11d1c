// The IPPool group-commit writer on a scripted object store: concurrent changes share one PUT; a
// PUT lost to another writer re-reads and re-decides every change on the newest copy (a claim
// that became taken says so, nothing is written twice); only a run of losses is code 11; reads
// started while one is in flight share the next one.
import { describe, expect, it } from 'vitest';
import { BatchWriter } from '../../src/ipam/whereabouts/stores/batch-writer.js';

interface Obj {
  metadata: { resourceVersion?: string };
  held: Record<string, string>;
}

/** A versioned object "on the server"; `other` writes as another process before the next PUT lands. */
function server() {
  const s = {
    obj: { metadata: { resourceVersion: '1' }, held: {} } as Obj,
    gets: 0,
    puts: 0,
    other: [] as Array<(o: Obj) => void>,
    /** Every PUT loses (a writer that never lets go). */
    alwaysLose: false,
  };
  const bump = () => String(Number(s.obj.metadata.resourceVersion) + 1);
  const io = {
    async get() {
      s.gets++;
      await new Promise((r) => setImmediate(r));
      return structuredClone(s.obj);
    },
    async replace(draft: Obj) {
      s.puts++;
      await new Promise((r) => setImmediate(r));
      const rival = s.other.shift();
      if (rival || s.alwaysLose) {
        rival?.(s.obj);
        s.obj = { ...s.obj, metadata: { resourceVersion: bump() } };
      }
      if (draft.metadata.resourceVersion !== s.obj.metadata.resourceVersion) throw { status: 409 };
      s.obj = structuredClone({ ...draft, metadata: { resourceVersion: bump() } });
      return structuredClone(s.obj);
    },
    copy: (o: Obj): Obj => ({ ...o, metadata: { ...o.metadata }, held: { ...o.held } }),
    isConflict: (err: unknown) => (err as { status?: number }).status === 409,
    what: 'IPPool test/p',
  };
  return { s, io };
}

const claim = (addr: string, id: string) => (d: Obj) => {
  if (d.held[addr]) return { result: d.held[addr] === id ? 'mine' : 'taken', changed: false };
  d.held[addr] = id;
  return { result: 'claimed', changed: true };
};

describe('BatchWriter', () => {
  it('changes queued while a PUT is in flight ride together in the next one', async () => {
    const { s, io } = server();
    const w = new BatchWriter<Obj>(io);
    const out = await Promise.all(Array.from({ length: 20 }, (_, i) => w.submit(claim(`a${i}`, `c${i}`))));
    expect(out.map((o) => o.result)).toEqual(Array(20).fill('claimed'));
    expect(Object.keys(s.obj.held)).toHaveLength(20);
    expect(s.puts).toBeLessThanOrEqual(2);
    expect(w.stats.conflicts).toBe(0);
  });

  it('a PUT lost to another writer re-decides every change on the fresh copy', async () => {
    const { s, io } = server();
    s.other.push((o) => {
      o.held.a1 = 'rival';
    });
    const w = new BatchWriter<Obj>(io, () => 0);
    const [x, y] = await Promise.all([w.submit(claim('a1', 'me')), w.submit(claim('a2', 'me2'))]);
    expect(x.result).toBe('taken');
    expect(y.result).toBe('claimed');
    expect(s.obj.held).toEqual({ a1: 'rival', a2: 'me2' });
    expect(w.stats.conflicts).toBe(1);
  });

  it('gives up with code 11 only after a long run of lost races', async () => {
    const { s, io } = server();
    s.alwaysLose = true;
    const w = new BatchWriter<Obj>(io, () => 0);
    const err = await w.submit(claim('a1', 'me')).catch((e) => e);
    expect(err.code).toBe(11);
    expect(err.message).toContain('IPPool test/p: lost 30 writes in a row');
  });

  it('reads started while one is in flight share the next read', async () => {
    const { s, io } = server();
    const w = new BatchWriter<Obj>(io);
    const got = await Promise.all(Array.from({ length: 10 }, () => w.read()));
    expect(got.every((g) => g.metadata.resourceVersion === '1')).toBe(true);
    expect(s.gets).toBe(2);
  });
});
