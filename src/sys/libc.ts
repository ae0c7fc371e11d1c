// The few libc calls Node lacks (netlink sockets, setns, unshare, mount, flock, ioctl), through the FFI
// package koffi. Loaded on first use only: a plugin call that touches no netlink never pays the
// ~5 ms it costs to load. When koffi cannot load (another libc, a platform without a prebuilt
// binary), `loadLibc()` rejects and callers fall back to iproute2 / flock(1).
import { CniError, ErrorCode } from '../spec/errors.js';

export { ERRNO_NAMES } from './errno.js';

/** A Buffer or typed array the C side reads or writes in place. */
type Ptr = Buffer | Uint8Array;

/** The libc functions cni-kit calls, each returning -1 with `errno()` set on failure. */
export interface Libc {
  socket(domain: number, type: number, protocol: number): number;
  setsockopt(fd: number, level: number, name: number, value: Ptr, len: number): number;
  send(fd: number, buf: Ptr, len: number, flags: number): number;
  recv(fd: number, buf: Ptr, len: number, flags: number): number;
  /** bind(2), sendto(2), recvfrom(2): the dhcp daemon's AF_PACKET socket (addresses as raw sockaddr bytes). */
  bind(fd: number, addr: Ptr, len: number): number;
  sendto(fd: number, buf: Ptr, len: number, flags: number, addr: Ptr, addrLen: number): number;
  recvfrom(fd: number, buf: Ptr, len: number, flags: number, addr: Ptr, addrLen: Ptr): number;
  close(fd: number): number;
  setns(fd: number, nstype: number): number;
  unshare(flags: number): number;
  mount(source: string | null, target: string, fstype: string | null, flags: number, data: null): number;
  umount2(target: string, flags: number): number;
  flock(fd: number, op: number): number;
  /** ioctl(2) with a pointer argument (the struct is read/written in place) or an integer one. */
  ioctl(fd: number, request: number, arg: Ptr | number): number;
  /** errno of the last failed call on this thread. */
  errno(): number;
}

/** Why the FFI package could not load, once it was tried. */
let failure: Error | undefined;
let loaded: Libc | undefined;
let loading: Promise<Libc> | undefined;

interface KoffiLib {
  func(definition: string): (...args: unknown[]) => unknown;
}
interface Koffi {
  load(path: string | null): KoffiLib;
  errno(): number;
}

function bind(k: Koffi): Libc {
  const lib = k.load(null);
  const f = (d: string) => lib.func(d) as never;
  // ioctl is variadic in C: each call names the type of its third argument.
  const ioctl = lib.func('int ioctl(int, unsigned long, ...)') as (...args: unknown[]) => number;
  return {
    socket: f('int socket(int, int, int)'),
    setsockopt: f('int setsockopt(int, int, int, const void *, unsigned int)'),
    send: f('long send(int, const void *, unsigned long, int)'),
    recv: f('long recv(int, void *, unsigned long, int)'),
    bind: f('int bind(int, const void *, unsigned int)'),
    sendto: f('long sendto(int, const void *, unsigned long, int, const void *, unsigned int)'),
    recvfrom: f('long recvfrom(int, void *, unsigned long, int, void *, void *)'),
    close: f('int close(int)'),
    setns: f('int setns(int, int)'),
    unshare: f('int unshare(int)'),
    mount: f('int mount(const char *, const char *, const char *, unsigned long, const void *)'),
    umount2: f('int umount2(const char *, int)'),
    flock: f('int flock(int, int)'),
    ioctl: (fd, request, arg) =>
      typeof arg === 'number' ? ioctl(fd, request, 'unsigned long', arg) : ioctl(fd, request, 'void *', arg),
    errno: () => k.errno(),
  };
}

/**
 * Loads koffi and binds libc (cached). Rejects with a CniError that says why when the package is
 * missing or has no binary for this platform.
 */
export function loadLibc(): Promise<Libc> {
  if (loaded) return Promise.resolve(loaded);
  if (failure) return Promise.reject(failure);
  loading ??= (async () => {
    try {
      if (process.platform !== 'linux') throw new Error(`platform ${process.platform} has no netlink`);
      const mod = (await import('koffi')) as unknown as Koffi & { default?: Koffi };
      const k = typeof mod.load === 'function' ? mod : (mod.default as Koffi);
      loaded = bind(k);
      return loaded;
    } catch (err) {
      failure = new CniError(
        ErrorCode.Internal,
        `the native netlink backend cannot load the FFI package koffi: ${(err as Error).message}`,
        'install koffi next to cni-kit (it is a dependency; a plugin built with cni-kit build needs the lib/ folder beside its binary), or use the iproute2 backend (CNI_KIT_NETLINK=iproute2)',
        { cause: err },
      );
      throw failure;
    }
  })();
  return loading;
}

/** Which way kernel work goes: the FFI package in-process, or child processes (iproute2, flock(1)). */
export type KernelPath = 'auto' | 'native' | 'iproute2';

/**
 * The choice `CNI_KIT_NETLINK` forces (`native`, `iproute2`; unset or `auto`: native when the FFI
 * package loads, else iproute2). It governs the netlink backend and IPAM's file locks alike.
 */
export function kernelPathFromEnv(env: NodeJS.ProcessEnv = process.env): KernelPath {
  const v = env.CNI_KIT_NETLINK?.trim().toLowerCase();
  if (v === 'native' || v === 'iproute2') return v;
  if (v === undefined || v === '' || v === 'auto') return 'auto';
  throw new CniError(
    ErrorCode.InvalidEnvironmentVariables,
    `CNI_KIT_NETLINK: ${JSON.stringify(env.CNI_KIT_NETLINK)} is not a kernel path; use native, iproute2 or auto`,
  );
}

/**
 * The libc binding for `path`, or undefined when kernel work should go through child processes:
 * `iproute2` never loads the FFI package, `auto` falls back when it cannot load, `native` rejects.
 */
export async function libcFor(path: KernelPath): Promise<Libc | undefined> {
  if (path === 'iproute2') return undefined;
  if (path === 'native') return loadLibc();
  return loadLibc().catch(() => undefined);
}
