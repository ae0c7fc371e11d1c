// withFileLock, through both ways of taking the lock (flock(2) in-process through the FFI package,
// and util-linux flock(1) on our descriptor): a real flock(2) that flock(1) sees, mutual exclusion
// between concurrent holders, release on throw, a TryAgainLater error naming the file on timeout,
// and each way blocking the other. The native way spawns no process, and its errno handling is
// checked against a scripted libc.
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { CniError } from 'cni-kit';
import { lockFile, withFileLock } from 'cni-kit/ipam';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import type { Libc } from '../../src/sys/libc.js';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const root = mkdtempSync(join(tmpdir(), `cnikit-ipam-lock-${process.pid}-`));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const heldByOthers = (path: string) => spawnSync('flock', ['-n', path, 'true']).status !== 0;

/** Another process (util-linux flock(1) running sleep) holding the lock until `stop()`. */
async function holdElsewhere(path: string): Promise<{ stop(): Promise<void> }> {
  mkdirSync(dirname(path), { recursive: true });
  // Its own process group, so the stop takes flock(1) and the sleep that inherited the lock alike.
  const child: ChildProcess = spawn('flock', ['-x', path, 'sh', '-c', 'echo held; exec sleep 5'], {
    detached: true,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    process.kill(-child.pid!, 'SIGKILL');
    await exited;
  };
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout!.once('data', () => resolve());
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`the holder exited ${code} before it held the lock`)));
    });
  } catch (err) {
    await stop();
    throw err;
  }
  return { stop };
}

const rejection = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => e as CniError,
  );

describe.each(['native', 'iproute2'] as const)('withFileLock, kernelPath %s', (kernelPath) => {
  const opts = { kernelPath };
  const dir = join(root, kernelPath);

  it('holds a flock(2) others see, and drops it on release', async () => {
    const path = join(dir, 'a', 'lock');
    const l = await lockFile(path, opts);
    expect(heldByOthers(path)).toBe(true);
    l.release();
    l.release();
    expect(heldByOthers(path)).toBe(false);
  });

  it('serialises concurrent holders in one process and releases when fn throws', async () => {
    const path = join(dir, 'b.lock');
    let inside = 0;
    let maxInside = 0;
    const work = async () => {
      inside++;
      maxInside = Math.max(maxInside, inside);
      await new Promise((r) => setTimeout(r, 5));
      inside--;
    };
    await Promise.all(Array.from({ length: 8 }, () => withFileLock(path, work, opts)));
    expect(maxInside).toBe(1);
    await expect(withFileLock(path, () => Promise.reject(new Error('boom')), opts)).rejects.toThrow('boom');
    expect(heldByOthers(path)).toBe(false);
  });

  it('times out with code 11 and names the lock file', async () => {
    const path = join(dir, 'c.lock');
    const l = await lockFile(path, opts);
    try {
      const err = await rejection(lockFile(path, { ...opts, timeoutMs: 200 }));
      expect(err).toBeInstanceOf(CniError);
      expect(err?.code).toBe(11);
      expect(err?.message).toContain(path);
    } finally {
      l.release();
    }
  });

  it('times out with code 11 soon after a short timeout while another process holds the lock', async () => {
    const path = join(dir, 'e.lock');
    const holder = await holdElsewhere(path);
    try {
      const t0 = performance.now();
      const err = await rejection(lockFile(path, { ...opts, timeoutMs: 150 }));
      const ms = performance.now() - t0;
      expect(err).toBeInstanceOf(CniError);
      expect(err?.code).toBe(11);
      expect(err?.message).toContain(path);
      expect(ms).toBeGreaterThanOrEqual(140);
      expect(ms).toBeLessThan(1000);
    } finally {
      await holder.stop();
    }
    // Once the other process is gone, the lock is free again.
    (await lockFile(path, { ...opts, timeoutMs: 2000 })).release();
  });

  it('is blocked by a lock taken the other way, and gets it once that is released', async () => {
    const path = join(dir, 'f.lock');
    const other = await lockFile(path, { kernelPath: kernelPath === 'native' ? 'iproute2' : 'native' });
    let waiting: Promise<{ release(): void }> | undefined;
    try {
      expect((await rejection(lockFile(path, { ...opts, timeoutMs: 100 })))?.code).toBe(11);
      waiting = lockFile(path, { ...opts, timeoutMs: 5000 });
      let got = false;
      void waiting.then(() => {
        got = true;
      });
      await sleep(60);
      expect(got).toBe(false);
    } finally {
      other.release();
    }
    const mine = await waiting!;
    expect(heldByOthers(path)).toBe(true);
    mine.release();
    expect(heldByOthers(path)).toBe(false);
  });

  it('needs flock(1) only on the flock(1) path', async () => {
    const p = lockFile(join(dir, 'd.lock'), { ...opts, flockBinary: join(root, 'no-such-flock') });
    if (kernelPath === 'native') (await p).release();
    else expect((await rejection(p))?.message).toContain('install util-linux');
  });
});

describe('the lock path choice', () => {
  const saved = process.env.CNI_KIT_NETLINK;
  afterEach(() => {
    if (saved === undefined) delete process.env.CNI_KIT_NETLINK;
    else process.env.CNI_KIT_NETLINK = saved;
  });

  it('follows CNI_KIT_NETLINK, and the kernelPath option overrides it', async () => {
    const path = join(root, 'env', 'lock');
    const flockBinary = join(root, 'no-such-flock');
    process.env.CNI_KIT_NETLINK = 'iproute2';
    expect((await rejection(lockFile(path, { flockBinary })))?.message).toContain('install util-linux');
    (await lockFile(path, { flockBinary, kernelPath: 'native' })).release();
    process.env.CNI_KIT_NETLINK = 'native';
    (await lockFile(path, { flockBinary })).release();
    process.env.CNI_KIT_NETLINK = 'nonsense';
    expect((await rejection(lockFile(path)))?.code).toBe(4);
  });
});

describe('native flock(2)', () => {
  // A fresh Node process whose child_process is spied on before anything else loads: every async
  // spawn (spawn, exec, execFile, fork) goes through ChildProcess.prototype.spawn, and the sync
  // ones are wrapped on the module object lock.ts reads at call time. It takes the lock
  // uncontended, then contended (a second holder polls while the first still has it).
  const script = join(root, 'count-spawns.mjs');
  writeFileSync(
    script,
    `import cp from 'node:child_process';
import { syncBuiltinESMExports } from 'node:module';
import { pathToFileURL } from 'node:url';
let spawned = 0;
const spawnAsync = cp.ChildProcess.prototype.spawn;
cp.ChildProcess.prototype.spawn = function (...a) { spawned++; return spawnAsync.apply(this, a); };
for (const name of ['spawnSync', 'execSync', 'execFileSync']) {
  const f = cp[name];
  cp[name] = (...a) => { spawned++; return f(...a); };
}
syncBuiltinESMExports();
const [lockTs, path, kernelPath] = process.argv.slice(2);
const { lockFile } = await import(pathToFileURL(lockTs).href);
const first = await lockFile(path, { kernelPath });
const second = lockFile(path, { kernelPath, timeoutMs: 5000 });
await new Promise((r) => setTimeout(r, 50));
first.release();
(await second).release();
process.stdout.write(JSON.stringify({ spawned }));
`,
  );
  const spawnsOfLocking = (kernelPath: string) =>
    (
      JSON.parse(
        execFileSync(
          process.execPath,
          [
            '--import',
            'tsx',
            script,
            join(repo, 'src/ipam/lock.ts'),
            join(root, 'spawns', 'lock'),
            kernelPath,
          ],
          { cwd: repo, encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } },
        ),
      ) as { spawned: number }
    ).spawned;

  it('starts no process, where the flock(1) path starts one per lock (so the spy sees spawns)', () => {
    expect(spawnsOfLocking('native')).toBe(0);
    expect(spawnsOfLocking('iproute2')).toBeGreaterThanOrEqual(2);
  });

  describe('errno handling, against a scripted libc', () => {
    afterEach(() => {
      vi.doUnmock('../../src/sys/libc.ts');
      vi.resetModules();
    });

    /** lock.ts over a libc whose flock returns the given results in turn (the last one repeats). */
    async function withScript(results: Array<0 | number>) {
      const calls: number[] = [];
      let errno = 0;
      const fake = {
        flock(_fd: number, op: number) {
          calls.push(op);
          const r = results[Math.min(calls.length, results.length) - 1]!;
          errno = r;
          return r === 0 ? 0 : -1;
        },
        errno: () => errno,
      } as Partial<Libc> as Libc;
      vi.resetModules();
      vi.doMock('../../src/sys/libc.ts', async (importOriginal) => ({
        ...(await importOriginal<typeof import('../../src/sys/libc.js')>()),
        libcFor: async () => fake,
      }));
      const { lockFile: lock } = await import('../../src/ipam/lock.js');
      return { lock, calls };
    }

    it('retries EINTR at once, waits on EWOULDBLOCK, and asks LOCK_EX|LOCK_NB', async () => {
      const { lock, calls } = await withScript([4, 11, 11, 4, 0]);
      (await lock(join(root, 'errno', 'a.lock'))).release();
      expect(calls).toEqual([6, 6, 6, 6, 6]);
    });

    it('any other errno is an internal error naming the file and the errno', async () => {
      const path = join(root, 'errno', 'b.lock');
      const { lock, calls } = await withScript([37]);
      const err = await rejection(lock(path));
      expect(err?.code).toBe(999);
      expect(err?.message).toContain(path);
      expect(err?.message).toContain('errno 37');
      expect(calls).toHaveLength(1);
      const ebadf = await rejection((await withScript([9])).lock(path));
      expect(ebadf?.message).toContain('errno 9 (EBADF)');
    });

    it('backs off while it waits and leaves the event loop free', async () => {
      const { lock, calls } = await withScript([11]);
      let ticks = 0;
      const timer = setInterval(() => ticks++, 5);
      try {
        const err = await rejection(lock(join(root, 'errno', 'c.lock'), { timeoutMs: 200 }));
        expect(err?.code).toBe(11);
      } finally {
        clearInterval(timer);
      }
      // Doubling from 1 ms to 20 ms with ±50 % jitter: about 15 tries in 200 ms, never a busy loop.
      expect(calls.length).toBeGreaterThan(5);
      expect(calls.length).toBeLessThan(40);
      expect(ticks).toBeGreaterThan(10);
    });
  });
});
