// tun/tap devices without a child process. The kernel refuses to create them over rtnetlink ("tun/tap
// creation via rtnetlink is not supported"), so this does what `ip tuntap add` does: open
// /dev/net/tun, TUNSETIFF with the name and flags (exclusive, so an existing name fails), optionally
// TUNSETOWNER/TUNSETGROUP, TUNSETPERSIST so the device outlives the descriptor, close. The device
// lands in the netns of the calling thread, so the core calls this while inside the target netns.
// MTU and MAC are set afterwards over rtnetlink by the caller.
import { closeSync, openSync } from 'node:fs';
import type { Libc } from '../../sys/libc.js';
import type { LinkSpec } from '../types.js';
import { KernelError } from './socket.js';

/** _IOW('T', nr, int) requests of linux/if_tun.h. */
const TUNSETIFF = 0x400454ca;
const TUNSETPERSIST = 0x400454cb;
const TUNSETOWNER = 0x400454cc;
const TUNSETGROUP = 0x400454ce;
/** ifreq flags for TUNSETIFF. */
export const IFF_TUN = 0x0001;
export const IFF_TAP = 0x0002;
export const IFF_MULTI_QUEUE = 0x0100;
export const IFF_NO_PI = 0x1000;
export const IFF_VNET_HDR = 0x4000;
export const IFF_TUN_EXCL = 0x8000;
/** sizeof(struct ifreq) on Linux: a 16-byte name and a 24-byte union. */
const IFREQ_SIZE = 40;

/** The TUNSETIFF flags `ip tuntap add` uses for `spec` (no packet-info header, exclusive). */
export function tuntapFlags(spec: Extract<LinkSpec, { kind: 'tap' | 'tun' }>): number {
  let flags = (spec.kind === 'tap' ? IFF_TAP : IFF_TUN) | IFF_NO_PI | IFF_TUN_EXCL;
  if (spec.multiQueue) flags |= IFF_MULTI_QUEUE;
  if (spec.vnetHdr) flags |= IFF_VNET_HDR;
  return flags;
}

/** struct ifreq with the name and the flags (the union's first member). */
export function ifreq(name: string, flags: number): Buffer {
  const b = Buffer.alloc(IFREQ_SIZE);
  b.write(name, 0, 15, 'utf8');
  b.writeUInt16LE(flags, 16);
  return b;
}

/**
 * Creates the persistent tun/tap device `spec` in the calling thread's netns. Throws a KernelError
 * with the kernel's errno (an existing name is EEXIST; a kernel without tun support EOPNOTSUPP).
 */
export function createTuntap(libc: Libc, spec: Extract<LinkSpec, { kind: 'tap' | 'tun' }>): void {
  let fd: number;
  try {
    fd = openSync('/dev/net/tun', 'r+');
  } catch (e) {
    const code = (e as { code?: string }).code;
    throw new KernelError(code === 'ENOENT' || code === 'ENXIO' ? 95 : 13, `open /dev/net/tun: ${code}`);
  }
  try {
    const call = (what: string, req: number, arg: Buffer | number): void => {
      if (libc.ioctl(fd, req, arg) === 0) return;
      const errno = libc.errno();
      // TUNSETIFF with IFF_TUN_EXCL answers EBUSY for a name in use: for a create that is EEXIST.
      if (req === TUNSETIFF && errno === 16) throw new KernelError(17, `${spec.name} exists (${what})`);
      throw new KernelError(errno, `ioctl(${what})`);
    };
    call('TUNSETIFF', TUNSETIFF, ifreq(spec.name, tuntapFlags(spec)));
    if (spec.owner !== undefined) call('TUNSETOWNER', TUNSETOWNER, spec.owner);
    if (spec.group !== undefined) call('TUNSETGROUP', TUNSETGROUP, spec.group);
    // Until this succeeds the device dies with the descriptor, so a failure above leaves nothing.
    call('TUNSETPERSIST', TUNSETPERSIST, 1);
  } finally {
    closeSync(fd);
  }
}
