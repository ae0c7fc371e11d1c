// flock(2) for Node, compatible with Go's go-filemutex (host-local's `<dataDir>/<net>/lock`).
// Node has no flock binding and we refuse native addons (npm 11 will not run their install scripts),
// so the lock is taken by util-linux flock(1) on a file descriptor we pass it: flock(1) locks the open
// file description it inherited and exits, and the lock stays with our descriptor, because flock
// locks belong to the open file description, not to the process. Closing the descriptor (or dying,
// even by SIGKILL) releases it. Cost: one short-lived child per lock, about 2 ms.
import { closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { CniError, ErrorCode } from '../spec/errors.js';

/** A held lock; `release()` is idempotent. */
export interface FileLock {
  readonly path: string;
  release(): void;
}

/** Options for lockFile / withFileLock. */
export interface FileLockOptions {
  /** Give up after this long with CniError 11 (TryAgainLater); default 60 s. */
  timeoutMs?: number | undefined;
  /** flock(1) binary; default the first of /usr/bin/flock, /bin/flock, else `flock` on PATH. */
  flockBinary?: string | undefined;
}

function flockBinary(opt?: string): string {
  if (opt) return opt;
  for (const p of ['/usr/bin/flock', '/bin/flock', '/usr/local/bin/flock']) if (existsSync(p)) return p;
  return 'flock';
}

/** Takes an exclusive flock(2) on `path` (created if missing), waiting up to the timeout. */
export async function lockFile(path: string, opts: FileLockOptions = {}): Promise<FileLock> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  // Go opens the lock file O_RDONLY|O_CREATE; any mode works for flock, 'a' creates without truncating.
  const fd = openSync(path, 'a', 0o644);
  const timeoutS = Math.max(0, (opts.timeoutMs ?? 60_000) / 1000);
  try {
    await new Promise<void>((resolve, reject) => {
      // Loaded on first lock, not at start-up (node:child_process costs a plugin ~2 ms to load).
      const { spawn } = process.getBuiltinModule('node:child_process');
      const child = spawn(flockBinary(opts.flockBinary), ['-x', '-w', String(timeoutS), '3'], {
        stdio: ['ignore', 'ignore', 'pipe', fd],
      });
      let stderr = '';
      child.stderr?.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      child.on('error', (err: NodeJS.ErrnoException) => {
        reject(
          new CniError(
            ErrorCode.Internal,
            err.code === 'ENOENT'
              ? `cannot lock ${path}: flock(1) not found; install util-linux (it provides /usr/bin/flock)`
              : `cannot lock ${path}: ${err.message}`,
          ),
        );
      });
      child.on('exit', (code) => {
        if (code === 0) resolve();
        else if (code === 1)
          reject(
            new CniError(
              ErrorCode.TryAgainLater,
              `timed out after ${timeoutS}s waiting for the lock ${path}; another IPAM call holds it, retry`,
            ),
          );
        else
          reject(
            new CniError(ErrorCode.Internal, `cannot lock ${path}: flock exited ${code}: ${stderr.trim()}`),
          );
      });
    });
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  let open = true;
  return {
    path,
    release() {
      if (!open) return;
      open = false;
      closeSync(fd);
    },
  };
}

/** Runs `fn` while holding an exclusive flock(2) on `path`; the lock is released however `fn` ends. */
export async function withFileLock<T>(
  path: string,
  fn: () => T | Promise<T>,
  opts?: FileLockOptions,
): Promise<T> {
  const lock = await lockFile(path, opts);
  try {
    return await fn();
  } finally {
    lock.release();
  }
}
