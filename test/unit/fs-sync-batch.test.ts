// SyncBatch: files written with writeFileAtomic({ syncBatch }) are in place (whole) at once and
// made durable, with their directories, only when the batch is flushed, all fsyncs at once.
import { promises as fsp, mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { SyncBatch, writeFileAtomic } from 'cni-kit/fs';
import fc from 'fast-check';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';

const dir = mkdtempSync(join(tmpdir(), `cksb-${process.pid}-`));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());

/** Records every fsync (by path, in order) and lets a test fail the ones it names. */
function watchSyncs(fail: (path: string) => boolean = () => false): string[] {
  const synced: string[] = [];
  const open = fsp.open.bind(fsp);
  vi.spyOn(fsp, 'open').mockImplementation(async (...args: Parameters<typeof fsp.open>) => {
    const fh = await open(...args);
    const path = String(args[0]);
    const sync = fh.sync.bind(fh);
    fh.sync = async () => {
      synced.push(path);
      if (fail(path)) throw Object.assign(new Error(`EIO: i/o error, fsync '${path}'`), { code: 'EIO' });
      return sync();
    };
    return fh;
  });
  return synced;
}

describe('SyncBatch', () => {
  it('writes are in place at once and fsynced only at the flush: each file and each directory once', async () => {
    const synced = watchSyncs();
    const batch = new SyncBatch();
    const files = [
      join(dir, 'a', 'cid'),
      join(dir, 'a', 'results', 'n1-cid-eth0'),
      join(dir, 'a', 'results', 'n2-cid-net1'),
    ];
    for (const [i, f] of files.entries()) await writeFileAtomic(f, `content ${i}`, { syncBatch: batch });
    // Readers see every file whole before anything is durable; no temp file is left.
    expect(files.map((f) => readFileSync(f, 'utf8'))).toEqual(['content 0', 'content 1', 'content 2']);
    expect(readdirSync(join(dir, 'a', 'results')).sort()).toEqual(['n1-cid-eth0', 'n2-cid-net1']);
    expect(synced).toEqual([]);
    expect([...batch.pending].sort()).toEqual([...files].sort());
    await batch.flush();
    expect([...synced].sort()).toEqual([...files, join(dir, 'a'), join(dir, 'a', 'results')].sort());
    // A second flush has nothing left to do.
    await batch.flush();
    expect(synced).toHaveLength(5);
  });

  it('without a batch every write is durable before it returns (file, then its directory)', async () => {
    const synced = watchSyncs();
    const f = join(dir, 'b', 'one');
    await writeFileAtomic(f, 'x');
    expect(synced).toHaveLength(2);
    expect(basename(synced[0] ?? '')).toMatch(/^\.tmp\.one\./);
    expect(synced[1]).toBe(join(dir, 'b'));
  });

  it('a file removed before the flush is skipped; a failed fsync rejects the flush after the others ran', async () => {
    const gone = join(dir, 'c', 'gone');
    const bad = join(dir, 'c', 'bad');
    const good = join(dir, 'd', 'good');
    const synced = watchSyncs((p) => p === bad);
    const batch = new SyncBatch();
    for (const f of [gone, bad, good]) await writeFileAtomic(f, 'y', { syncBatch: batch });
    unlinkSync(gone);
    await expect(batch.flush()).rejects.toMatchObject({ code: 'EIO' });
    expect([...synced].sort()).toEqual([bad, good, join(dir, 'c'), join(dir, 'd')].sort());
  });

  it('property: whatever the files and their order, the flush syncs exactly those files and their directories', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(fc.tuple(fc.integer({ min: 0, max: 3 }), fc.stringMatching(/^[a-z]{1,8}$/)), {
          minLength: 1,
          maxLength: 8,
          selector: ([d, n]) => `${d}/${n}`,
        }),
        async (entries) => {
          vi.restoreAllMocks();
          const root = mkdtempSync(join(dir, 'p-'));
          const synced = watchSyncs();
          const batch = new SyncBatch();
          const files = entries.map(([d, n]) => join(root, `d${d}`, n));
          for (const f of files) await writeFileAtomic(f, f, { syncBatch: batch });
          expect(synced).toEqual([]);
          await batch.flush();
          const dirs = [...new Set(entries.map(([d]) => join(root, `d${d}`)))];
          expect([...synced].sort()).toEqual([...files, ...dirs].sort());
          for (const f of files) expect(readFileSync(f, 'utf8')).toBe(f);
        },
      ),
      { numRuns: 25 },
    );
  });
});
