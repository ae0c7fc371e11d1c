// The daemon's way into a container: for each exchange it enters the container's netns on the main
// thread (setns(2) moves only the calling thread, and only for the synchronous span below), looks
// the interface up with ioctl(2), opens an AF_PACKET socket bound to it and returns home. A socket
// keeps the netns it was created in, so the exchange then runs from the event loop without
// switching again: frames go out with sendto(2), and replies are read with non-blocking
// recvfrom(2) polled every few milliseconds while (and only while) an exchange waits for one.
//
// Why AF_PACKET and not UDP: the interface has no address while a lease is acquired, servers may
// unicast the OFFER to the address being offered, and port 68 may be in use by another client in
// the same netns; a packet socket bound to the interface sees the replies in every case.
import { closeSync, openSync } from 'node:fs';
import type { Libc } from '../../sys/libc.js';
import { decodeIpUdp, encodeIpUdp } from './packet.js';

const CLONE_NEWNET = 0x40000000;
const AF_INET = 2;
const AF_PACKET = 17;
const SOCK_DGRAM = 2;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const ETH_P_IP = 0x0800;
const MSG_DONTWAIT = 0x40;
const PACKET_OUTGOING = 4;
const SIOCGIFFLAGS = 0x8913;
const SIOCSIFFLAGS = 0x8914;
const SIOCGIFHWADDR = 0x8927;
const SIOCGIFINDEX = 0x8933;
const IFF_UP = 1;
const EAGAIN = 11;
const EINTR = 4;
const ENODEV = 19;

/** The DHCP server port. */
export const SERVER_PORT = 67;
/** The DHCP client port. */
export const CLIENT_PORT = 68;
const BROADCAST_MAC = new Uint8Array([255, 255, 255, 255, 255, 255]);

/** The interface (or its netns) is gone: the lease cannot be kept. */
export class LinkGoneError extends Error {
  override name = 'LinkGoneError';
}

/** One datagram received on port 68. */
export interface Received {
  payload: Uint8Array;
  srcIp: number;
  /** The sender's (server's or relay's) MAC: where unicast renewals go. */
  srcMac: Uint8Array;
}

/** Where a datagram goes: the broadcast address, or a unicast IP through a known MAC. */
export type Destination = { broadcast: true } | { ip: number; mac: Uint8Array };

/** An open channel on one container interface, used for one exchange. */
export interface DhcpTransport {
  readonly mac: Uint8Array;
  /** Sends a DHCP payload from `srcIp`:68 to the server port. */
  send(payload: Uint8Array, srcIp: number, to: Destination): void;
  /** The next datagram to port 68, or undefined when `timeoutMs` passes or `signal` aborts. */
  receive(timeoutMs: number, signal?: AbortSignal): Promise<Received | undefined>;
  close(): void;
}

/** What the lease logic needs from the host: open a transport, look at and change the link. */
export interface DhcpNet {
  /** Opens a transport on `ifname` in `netns`, bringing the link up first; throws LinkGoneError when it is gone. */
  open(netns: string, ifname: string): Promise<DhcpTransport>;
  /** True when the netns and the link in it still exist. */
  linkExists(netns: string, ifname: string): Promise<boolean>;
  /** Sets the link down (a lease that expired must not keep its address in use). */
  setDown(netns: string, ifname: string): Promise<void>;
}

/** Runs `fn` synchronously in the netns at `path`; throws LinkGoneError when that is not a netns. */
function inNetns<T>(libc: Libc, path: string, fn: () => T): T {
  let target: number;
  try {
    target = openSync(path, 'r');
  } catch {
    throw new LinkGoneError(`netns ${path} does not exist`);
  }
  try {
    const own = openSync('/proc/thread-self/ns/net', 'r');
    try {
      if (libc.setns(target, CLONE_NEWNET) !== 0)
        throw new LinkGoneError(`${path} is not a network namespace (setns errno ${libc.errno()})`);
      try {
        return fn();
      } finally {
        if (libc.setns(own, CLONE_NEWNET) !== 0) {
          // Carrying on in a foreign netns would make every later socket wrong.
          process.stderr.write(
            `cni-kit dhcp: cannot return to the own netns (errno ${libc.errno()}); aborting\n`,
          );
          process.abort();
        }
      }
    } finally {
      closeSync(own);
    }
  } finally {
    closeSync(target);
  }
}

function ifreq(ifname: string): Buffer {
  const b = Buffer.alloc(40);
  b.write(ifname, 0, 15, 'utf8');
  return b;
}

interface LinkInfo {
  index: number;
  mac: Uint8Array;
  flags: number;
}

/** Reads index, MAC and flags of `ifname` through a control socket; undefined when it does not exist. */
function linkInfo(libc: Libc, ctl: number, ifname: string): LinkInfo | undefined {
  const r = ifreq(ifname);
  if (libc.ioctl(ctl, SIOCGIFINDEX, r) !== 0) {
    if (libc.errno() === ENODEV) return undefined;
    throw new Error(`ioctl(SIOCGIFINDEX, ${ifname}): errno ${libc.errno()}`);
  }
  const index = r.readInt32LE(16);
  const h = ifreq(ifname);
  if (libc.ioctl(ctl, SIOCGIFHWADDR, h) !== 0) throw new Error(`ioctl(SIOCGIFHWADDR): errno ${libc.errno()}`);
  const f = ifreq(ifname);
  if (libc.ioctl(ctl, SIOCGIFFLAGS, f) !== 0) throw new Error(`ioctl(SIOCGIFFLAGS): errno ${libc.errno()}`);
  return { index, mac: Uint8Array.from(h.subarray(18, 24)), flags: f.readUInt16LE(16) };
}

function setFlags(libc: Libc, ctl: number, ifname: string, flags: number): void {
  const r = ifreq(ifname);
  r.writeUInt16LE(flags & 0xffff, 16);
  if (libc.ioctl(ctl, SIOCSIFFLAGS, r) !== 0)
    throw new Error(`ioctl(SIOCSIFFLAGS, ${ifname}): errno ${libc.errno()}`);
}

function withCtl<T>(libc: Libc, fn: (ctl: number) => T): T {
  const ctl = libc.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (ctl < 0) throw new Error(`socket(AF_INET): errno ${libc.errno()}`);
  try {
    return fn(ctl);
  } finally {
    libc.close(ctl);
  }
}

function sockaddrLl(index: number, mac?: Uint8Array): Buffer {
  const a = Buffer.alloc(20);
  a.writeUInt16LE(AF_PACKET, 0);
  a.writeUInt16BE(ETH_P_IP, 2);
  a.writeInt32LE(index, 4);
  if (mac) {
    a[11] = mac.length;
    a.set(mac, 12);
  }
  return a;
}

/** How often a waiting exchange polls its socket. */
export const POLL_MS = 5;

class PacketTransport implements DhcpTransport {
  private closed = false;
  private readonly rx = Buffer.alloc(2048);
  private readonly from = Buffer.alloc(20);
  private readonly fromLen = Buffer.alloc(4);

  constructor(
    private readonly libc: Libc,
    private readonly fd: number,
    private readonly index: number,
    readonly mac: Uint8Array,
  ) {}

  send(payload: Uint8Array, srcIp: number, to: Destination): void {
    const dst = 'broadcast' in to ? 0xffffffff : to.ip;
    const pkt = encodeIpUdp({ src: srcIp, dst, srcPort: CLIENT_PORT, dstPort: SERVER_PORT, payload });
    const addr = sockaddrLl(this.index, 'broadcast' in to ? BROADCAST_MAC : to.mac);
    for (;;) {
      const n = this.libc.sendto(this.fd, pkt, pkt.length, 0, addr, addr.length);
      if (n === pkt.length) return;
      if (n < 0 && this.libc.errno() === EINTR) continue;
      throw new Error(`sendto on the packet socket: ${n < 0 ? `errno ${this.libc.errno()}` : 'short write'}`);
    }
  }

  /** One non-blocking read; undefined when nothing for port 68 is queued. */
  private poll(): Received | undefined {
    for (;;) {
      this.fromLen.writeUInt32LE(20);
      const n = this.libc.recvfrom(this.fd, this.rx, this.rx.length, MSG_DONTWAIT, this.from, this.fromLen);
      if (n < 0) {
        const e = this.libc.errno();
        if (e === EINTR) continue;
        if (e === EAGAIN) return undefined;
        if (e === ENODEV) throw new LinkGoneError('the interface disappeared');
        throw new Error(`recvfrom on the packet socket: errno ${e}`);
      }
      if (this.from[10] === PACKET_OUTGOING) continue;
      const udp = decodeIpUdp(this.rx.subarray(0, n));
      if (!udp || udp.dstPort !== CLIENT_PORT || udp.srcPort !== SERVER_PORT) continue;
      const halen = Math.min(8, this.from[11] ?? 0);
      return {
        payload: udp.payload,
        srcIp: udp.src,
        srcMac: Uint8Array.from(this.from.subarray(12, 12 + halen)),
      };
    }
  }

  async receive(timeoutMs: number, signal?: AbortSignal): Promise<Received | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.closed || signal?.aborted) return undefined;
      const r = this.poll();
      if (r) return r;
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      await new Promise((res) => setTimeout(res, Math.min(POLL_MS, left)));
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.libc.close(this.fd);
  }
}

/** The real host: AF_PACKET sockets in container netns through the FFI (see the top of this file). */
export function packetNet(libc: Libc): DhcpNet {
  return {
    async open(netns, ifname) {
      return inNetns(libc, netns, () =>
        withCtl(libc, (ctl) => {
          const info = linkInfo(libc, ctl, ifname);
          if (!info) throw new LinkGoneError(`no interface ${ifname} in netns ${netns}`);
          if (!(info.flags & IFF_UP)) setFlags(libc, ctl, ifname, info.flags | IFF_UP);
          const fd = libc.socket(AF_PACKET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0x0008);
          if (fd < 0) throw new Error(`socket(AF_PACKET): errno ${libc.errno()}`);
          const addr = sockaddrLl(info.index);
          if (libc.bind(fd, addr, addr.length) !== 0) {
            const e = libc.errno();
            libc.close(fd);
            throw new Error(`bind the packet socket to ${ifname}: errno ${e}`);
          }
          return new PacketTransport(libc, fd, info.index, info.mac);
        }),
      );
    },
    async linkExists(netns, ifname) {
      try {
        return inNetns(libc, netns, () => withCtl(libc, (ctl) => linkInfo(libc, ctl, ifname) !== undefined));
      } catch (e) {
        if (e instanceof LinkGoneError) return false;
        throw e;
      }
    },
    async setDown(netns, ifname) {
      inNetns(libc, netns, () =>
        withCtl(libc, (ctl) => {
          const info = linkInfo(libc, ctl, ifname);
          if (info && info.flags & IFF_UP) setFlags(libc, ctl, ifname, info.flags & ~IFF_UP);
        }),
      );
    },
  };
}
