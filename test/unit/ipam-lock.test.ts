// withFileLock: a real flock(2) (held against util-linux flock(1)), mutual exclusion between
// concurrent holders, release on throw, and a TryAgainLater error naming the file on timeout.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CniError } from 'cni-kit';
import { lockFile, withFileLock } from 'cni-kit/ipam';
import { afterAll, describe, expect, it } from 'vitest';

const root = mkdtempSync(join(tmpdir(), `cnikit-ipam-lock-${process.pid}-`));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const heldByOthers = (path: string) => spawnSync('flock', ['-n', path, 'true']).status !== 0;

describe('withFileLock', () => {
  it('holds a flock(2) others see, and drops it on release', async () => {
    const path = join(root, 'a', 'lock');
    const l = await lockFile(path);
    expect(heldByOthers(path)).toBe(true);
    l.release();
    l.release();
    expect(heldByOthers(path)).toBe(false);
  });

  it('serialises concurrent holders in one process and releases when fn throws', async () => {
    const path = join(root, 'b.lock');
    let inside = 0;
    let maxInside = 0;
    const work = async () => {
      inside++;
      maxInside = Math.max(maxInside, inside);
      await new Promise((r) => setTimeout(r, 5));
      inside--;
    };
    await Promise.all(Array.from({ length: 8 }, () => withFileLock(path, work)));
    expect(maxInside).toBe(1);
    await expect(withFileLock(path, () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(heldByOthers(path)).toBe(false);
  });

  it('times out with code 11 and names the lock file', async () => {
    const path = join(root, 'c.lock');
    const l = await lockFile(path);
    try {
      const err = await lockFile(path, { timeoutMs: 200 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(CniError);
      expect((err as CniError).code).toBe(11);
      expect((err as CniError).message).toContain(path);
    } finally {
      l.release();
    }
  });

  it('says what to install when flock(1) is missing', async () => {
    const err = await lockFile(join(root, 'd.lock'), { flockBinary: join(root, 'no-such-flock') }).catch(
      (e: unknown) => e,
    );
    expect((err as CniError).message).toContain('install util-linux');
  });
});
