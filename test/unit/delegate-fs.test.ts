import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from 'cni-kit/fs';
import { afterAll, describe, expect, it } from 'vitest';

const dir = mkdtempSync(join(tmpdir(), `ckdf-${process.pid}-`));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('writeFileAtomic', () => {
  it('creates parents with the given modes and leaves no temp files', async () => {
    const file = join(dir, 'a', 'results', 'net-c-eth0');
    await writeFileAtomic(file, 'one', { mode: 0o600, dirMode: 0o700 });
    await writeFileAtomic(file, 'two');
    expect(readFileSync(file, 'utf8')).toBe('two');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'a', 'results')).mode & 0o777).toBe(0o700);
    expect(readdirSync(join(dir, 'a', 'results'))).toEqual(['net-c-eth0']);
  });

  it('readers never see a partial file while concurrent writers replace it', async () => {
    const file = join(dir, 'busy');
    const contents = Array.from({ length: 12 }, (_, i) => String.fromCharCode(97 + i).repeat(256 * 1024));
    await writeFileAtomic(file, contents[0]!);
    let reads = 0;
    let writing = true;
    const reader = (async () => {
      while (writing) {
        const text = readFileSync(file, 'utf8');
        expect(contents).toContain(text);
        reads++;
        await new Promise((r) => setImmediate(r));
      }
    })();
    await Promise.all(contents.map((c) => writeFileAtomic(file, c)));
    writing = false;
    await reader;
    expect(reads).toBeGreaterThan(0);
    expect(contents).toContain(readFileSync(file, 'utf8'));
    expect(readdirSync(dir).filter((n) => n.startsWith('.'))).toEqual([]);
  });
});
