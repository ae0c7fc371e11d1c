// Entering a network namespace from Node's main thread: setns(2) switches only the calling thread,
// so everything `fn` does synchronously (open a netlink socket, open a /proc/sys/net file) happens
// in the target netns, and the thread is switched back before control returns to the event loop.
// A socket opened while switched stays bound to that netns for its whole life, as in Go's
// netlink.NewHandleAt. libuv's worker threads never move.
import { closeSync, mkdirSync, openSync, rmSync } from 'node:fs';
import { type Libc, loadLibc } from '../../sys/libc.js';
import { NetlinkError } from '../errors.js';
import { isNetnsPath } from '../netns.js';

/** CLONE_NEWNET: the namespace type argument of setns(2) and unshare(2). */
export const CLONE_NEWNET = 0x40000000;

/** Path of the calling thread's own netns handle. */
const THREAD_NETNS = '/proc/thread-self/ns/net';

function enter(libc: Libc, fd: number, path: string, what: string): void {
  if (libc.setns(fd, CLONE_NEWNET) === 0) return;
  const e = libc.errno();
  throw new NetlinkError(
    e === 22 ? 'ENOENT' : e === 1 ? 'EPERM' : 'EIO',
    `${what} netns ${path}`,
    path,
    e === 22 ? `${path} is not a network namespace handle` : `setns: errno ${e}`,
  );
}

/**
 * Puts the thread back into its own netns (`own`: a descriptor opened before it left). Failing to
 * would leave the main thread in a foreign netns where nothing after could be trusted, so the
 * process stops rather than carry on.
 */
function returnHome(libc: Libc, own: number): void {
  if (libc.setns(own, CLONE_NEWNET) === 0) return;
  process.stderr.write(`cni-kit: cannot return to the own netns (errno ${libc.errno()}); aborting\n`);
  process.abort();
}

/**
 * Runs `fn` synchronously inside the netns at `path` with the FFI already loaded (see
 * `withNetns`). `fn` must not await: the thread goes back to its own netns as soon as `fn` returns.
 */
export function withNetnsSync<T>(path: string, fn: () => T, libc: Libc): T {
  let target: number;
  try {
    target = openSync(path, 'r');
  } catch {
    throw new NetlinkError('ENOENT', `open netns ${path}`, path);
  }
  let own: number | undefined;
  try {
    if (!isNetnsPath(path))
      throw new NetlinkError('ENOENT', `open netns ${path}`, path, 'not a netns handle');
    own = openSync(THREAD_NETNS, 'r');
    enter(libc, target, path, 'enter');
    let out: T;
    try {
      out = fn();
    } finally {
      returnHome(libc, own);
    }
    if (out && typeof (out as { then?: unknown }).then === 'function')
      throw new TypeError('withNetns: fn returned a promise; the callback must be synchronous');
    return out;
  } finally {
    if (own !== undefined) closeSync(own);
    closeSync(target);
  }
}

/**
 * Runs `fn` inside the network namespace at `path` (a handle such as `/var/run/netns/x` or
 * `/proc/<pid>/ns/net`) and returns its result. The FFI package is loaded first if needed.
 *
 * `fn` runs synchronously on Node's main thread while that thread is in the target netns; it must
 * not await or return a promise (the namespace is left when it returns). Sockets and /proc/sys/net
 * files opened inside stay bound to that netns after it returns.
 */
export async function withNetns<T>(path: string, fn: () => T): Promise<T> {
  const libc = await loadLibc();
  return withNetnsSync(path, fn, libc);
}

const MS_BIND = 0x1000;
const MS_REC = 0x4000;
const MS_SHARED = 0x100000;
const MNT_DETACH = 2;

/** Makes `dir` a shared mount point (bind-mounting it onto itself first if it is not one), as `ip netns add` does. */
function sharedMountPoint(libc: Libc, dir: string): void {
  if (libc.mount('', dir, 'none', MS_SHARED | MS_REC, null) === 0) return;
  if (
    libc.errno() !== 22 ||
    libc.mount(dir, dir, 'none', MS_BIND | MS_REC, null) !== 0 ||
    libc.mount('', dir, 'none', MS_SHARED | MS_REC, null) !== 0
  )
    throw new NetlinkError('EPERM', `make ${dir} a shared mount point`, dir, `mount: errno ${libc.errno()}`);
}

/**
 * Creates a named network namespace the way `ip netns add` does, without a child process: the
 * main thread unshares a fresh netns, bind-mounts its handle onto `<dir>/<name>` and returns to its
 * own. Interoperates with iproute2 (`ip netns list/exec/del` see it).
 */
export function createNetnsSync(libc: Libc, dir: string, name: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  sharedMountPoint(libc, dir);
  const path = `${dir}/${name}`;
  try {
    closeSync(openSync(path, 'wx', 0o444));
  } catch (e) {
    const exists = (e as { code?: string }).code === 'EEXIST';
    throw new NetlinkError(exists ? 'EEXIST' : 'EIO', `create netns ${name}`, path, (e as Error).message);
  }
  const own = openSync(THREAD_NETNS, 'r');
  try {
    if (libc.unshare(CLONE_NEWNET) !== 0)
      throw new NetlinkError('EPERM', `create netns ${name}`, path, `unshare: errno ${libc.errno()}`);
    try {
      if (libc.mount(THREAD_NETNS, path, 'none', MS_BIND, null) !== 0)
        throw new NetlinkError('EIO', `create netns ${name}`, path, `bind mount: errno ${libc.errno()}`);
    } finally {
      returnHome(libc, own);
    }
  } catch (e) {
    rmSync(path, { force: true });
    throw e;
  } finally {
    closeSync(own);
  }
  return path;
}

/** Deletes a named netns like `ip netns del`: detach its bind mount, remove the file; missing is fine. */
export function removeNetnsSync(libc: Libc, path: string): void {
  if (libc.umount2(path, MNT_DETACH) !== 0) {
    const e = libc.errno();
    // EINVAL: not a mount point (a stale file); ENOENT: already gone.
    if (e !== 22 && e !== 2)
      throw new NetlinkError('EBUSY', `remove netns ${path}`, path, `umount: errno ${e}`);
  }
  try {
    rmSync(path);
  } catch (err) {
    if ((err as { code?: string }).code !== 'ENOENT')
      throw new NetlinkError('EIO', `remove netns ${path}`, path, (err as Error).message);
  }
}
