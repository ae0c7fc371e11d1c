// flock(2) for Node, compatible with Go's go-filemutex (host-local's `<dataDir>/<net>/lock`).
// Two ways, one lock: flock locks belong to the open file description, so whoever calls flock on
// our descriptor, the lock is ours until we close it (or die, even by SIGKILL).
//  - native (the default when the FFI package koffi loads): flock(fd, LOCK_EX|LOCK_NB) in-process,
//    polled with a short jittered backoff so the event loop never blocks. ~25 µs with open and close.
//  - flock(1) (CNI_KIT_NETLINK=iproute2, or koffi unavailable under `auto`): util-linux
//    `flock -x -w T 3` on the descriptor we pass it; it locks what it inherited and exits. One
//    short-lived child per lock, about 2 ms.
import { closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { CniError, ErrorCode } from '../spec/errors.js';
import { ERRNO_NAMES, type KernelPath, kernelPathFromEnv, type Libc, libcFor } from '../sys/libc.js';

/** A held lock; `release()` is idempotent. */
export interface FileLock {
  readonly path: string;
  release(): void;
}

/** Options for lockFile / withFileLock. */
export interface FileLockOptions {
  /** Give up after this long with CniError 11 (TryAgainLater); default 60 s. */
  timeoutMs?: number | undefined;
  /**
   * How to take the lock, overriding `CNI_KIT_NETLINK`: `native` calls flock(2) through the FFI
   * package (fails when it cannot load), `iproute2` runs flock(1), `auto` (the default) native
   * when the FFI package loads, else flock(1).
   */
  kernelPath?: KernelPath | undefined;
  /** flock(1) binary; default the first of /usr/bin/flock, /bin/flock, else `flock` on PATH. */
  flockBinary?: string | undefined;
  /**
   * Create the file (and its directory) when missing; default true. false opens it read-only and
   * fails when it is missing: what locking a file one may not write needs (a netns bind mount).
   */
  create?: boolean | undefined;
}

const LOCK_EX = 2;
const LOCK_NB = 4;
const EINTR = 4;
/** EWOULDBLOCK, the same number as EAGAIN on Linux. */
const EWOULDBLOCK = 11;
/** Backoff between tries while another holder has the lock: doubles from the first to the cap. */
const FIRST_WAIT_MS = 1;
const MAX_WAIT_MS = 20;

function flockBinary(opt?: string): string {
  if (opt) return opt;
  for (const p of ['/usr/bin/flock', '/bin/flock', '/usr/local/bin/flock']) if (existsSync(p)) return p;
  return 'flock';
}

function timedOut(path: string, timeoutS: number): CniError {
  return new CniError(
    ErrorCode.TryAgainLater,
    `timed out after ${timeoutS}s waiting for the lock ${path}; another IPAM call holds it, retry`,
  );
}

/** Takes an exclusive flock(2) on `path` (created if missing), waiting up to the timeout. */
export async function lockFile(path: string, opts: FileLockOptions = {}): Promise<FileLock> {
  // Settled before the descriptor is opened, so a rejection (native forced, koffi missing) leaks none.
  const libc = await libcFor(opts.kernelPath ?? kernelPathFromEnv());
  const create = opts.create ?? true;
  if (create) mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  // Go opens the lock file O_RDONLY|O_CREATE; any mode works for flock, 'a' creates without truncating.
  const fd = create ? openSync(path, 'a', 0o644) : openSync(path, 'r');
  const timeoutMs = Math.max(0, opts.timeoutMs ?? 60_000);
  try {
    if (libc) await lockNative(libc, fd, path, timeoutMs);
    else await lockWithChild(fd, path, timeoutMs, opts.flockBinary);
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

/** Non-blocking flock(2) tries with a jittered exponential backoff until the deadline. */
async function lockNative(libc: Libc, fd: number, path: string, timeoutMs: number): Promise<void> {
  // Fairness: none; waiters blocked in the kernel (Go, flock(1)) may win every time; starved, we give 11.
  const deadline = performance.now() + timeoutMs;
  let wait = FIRST_WAIT_MS;
  for (;;) {
    if (libc.flock(fd, LOCK_EX | LOCK_NB) === 0) return;
    const errno = libc.errno();
    if (errno === EINTR) continue;
    if (errno !== EWOULDBLOCK) {
      const name = ERRNO_NAMES[errno];
      throw new CniError(
        ErrorCode.Internal,
        `cannot lock ${path}: flock(2) failed with errno ${errno}${name ? ` (${name})` : ''}`,
      );
    }
    const left = deadline - performance.now();
    if (left <= 0) throw timedOut(path, timeoutMs / 1000);
    await new Promise((r) => setTimeout(r, Math.min(left, wait * (0.5 + Math.random()))));
    wait = Math.min(MAX_WAIT_MS, wait * 2);
  }
}

/** util-linux flock(1) on our descriptor, passed as its fd 3. */
function lockWithChild(fd: number, path: string, timeoutMs: number, binary?: string): Promise<void> {
  const timeoutS = timeoutMs / 1000;
  return new Promise<void>((resolve, reject) => {
    // Loaded on first lock, not at start-up (node:child_process costs a plugin ~2 ms to load).
    const { spawn } = process.getBuiltinModule('node:child_process');
    const child = spawn(flockBinary(binary), ['-x', '-w', String(timeoutS), '3'], {
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
      else if (code === 1) reject(timedOut(path, timeoutS));
      else
        reject(
          new CniError(ErrorCode.Internal, `cannot lock ${path}: flock exited ${code}: ${stderr.trim()}`),
        );
    });
  });
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
