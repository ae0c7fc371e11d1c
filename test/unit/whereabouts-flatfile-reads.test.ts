// The flat-file search runs on every whereabouts call (a daemon serves many): paths that hold no
// file are looked up with a stat, never read, since a failed read throws an error per path per
// call; a present file is still read and a directory in its place still reported.
import * as fs from 'node:fs';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';

vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  return { ...real, readFileSync: vi.fn(real.readFileSync) };
});

const { readFlatFile } = await import('../../src/ipam/whereabouts/config.js');
const dir = mkdtempSync(join(tmpdir(), 'wb-flatreads-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('whereabouts flat-file search', () => {
  it('reads no path that holds no file (missing, or under a file)', () => {
    const reads = vi.mocked(fs.readFileSync);
    reads.mockClear();
    const missing = [join(dir, 'none', 'whereabouts.conf'), join(dir, 'also-none.conf')];
    writeFileSync(join(dir, 'plain'), 'x');
    const r = readFlatFile(join(dir, 'plain', 'whereabouts.conf'), missing);
    expect(r.values).toBeUndefined();
    expect(r.info.missingConfigurationPath).toBe(join(dir, 'plain', 'whereabouts.conf'));
    expect(reads).not.toHaveBeenCalled();
  });

  it('reads the first present file, and only it', () => {
    const reads = vi.mocked(fs.readFileSync);
    const present = join(dir, 'whereabouts.conf');
    writeFileSync(present, JSON.stringify({ datastore: 'kubernetes' }));
    reads.mockClear();
    const r = readFlatFile(undefined, [join(dir, 'none.conf'), present, join(dir, 'later.conf')]);
    expect(r.values).toEqual({ datastore: 'kubernetes' });
    expect(r.info.path).toBe(present);
    expect(reads.mock.calls.map((c) => c[0])).toEqual([present]);
  });

  it('a directory where the file should be is still an error naming it', () => {
    const d = join(dir, 'is-a-dir.conf');
    fs.mkdirSync(d);
    expect(() => readFlatFile(undefined, [d])).toThrow(/is-a-dir\.conf: cannot be read \(EISDIR\)/);
  });
});
