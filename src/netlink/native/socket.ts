// One NETLINK_ROUTE socket: synchronous request/ack and dump on Node's main thread. Each call is a
// send(2) and one or more recv(2) through the FFI; the kernel answers rtnetlink requests before
// send returns, so the recv never waits in practice (a receive timeout guards it anyway).
import type { Libc } from '../../sys/libc.js';
import { NLM_F, NLMSG, NlAttrs, type NlMessage, type NlWriter, splitMessages } from './nlmsg.js';

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0x80000;
const NETLINK_ROUTE = 0;
const SOL_SOCKET = 1;
const SO_RCVTIMEO = 20;
const SO_SNDBUF = 7;
const SO_RCVBUF = 8;
const SOL_NETLINK = 270;
const NETLINK_CAP_ACK = 10;
const NETLINK_EXT_ACK = 11;
const NLMSGERR_ATTR_MSG = 1;
const EAGAIN = 11;
const EINTR = 4;

/** A failed request: the kernel's errno (positive) and its extended-ack message, if any. */
export class KernelError extends Error {
  constructor(
    readonly errno: number,
    readonly extack: string | undefined,
  ) {
    super(extack ? `errno ${errno}: ${extack}` : `errno ${errno}`);
  }
}

/** Receive buffer: big enough for the largest dump datagram the kernel builds (32 KiB + headers). */
const RECV_SIZE = 256 * 1024;
let shared: Buffer | undefined;

export class RtnlSocket {
  private seq = Math.floor(Math.random() * 0x7fffffff);
  private closed = false;
  private readonly rx: Buffer;

  /** Opens a socket in the calling thread's current netns (call inside withNetns for another). */
  constructor(
    private readonly libc: Libc,
    readonly fd: number = -1,
  ) {
    if (fd < 0) {
      const s = libc.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
      if (s < 0) throw new KernelError(libc.errno(), 'socket(AF_NETLINK, NETLINK_ROUTE)');
      this.fd = s;
      const one = Buffer.alloc(4);
      one.writeInt32LE(1);
      // Errors carry the kernel's own message (extack); echo only the request header back.
      libc.setsockopt(s, SOL_NETLINK, NETLINK_EXT_ACK, one, 4);
      libc.setsockopt(s, SOL_NETLINK, NETLINK_CAP_ACK, one, 4);
      const tv = Buffer.alloc(16);
      tv.writeBigInt64LE(10n, 0);
      libc.setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, tv, 16);
      const size = Buffer.alloc(4);
      size.writeInt32LE(RECV_SIZE);
      libc.setsockopt(s, SOL_SOCKET, SO_RCVBUF, size, 4);
      libc.setsockopt(s, SOL_SOCKET, SO_SNDBUF, size, 4);
    }
    shared ??= Buffer.alloc(RECV_SIZE);
    this.rx = shared;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.libc.close(this.fd);
  }

  private sendMsg(w: NlWriter): number {
    this.seq = (this.seq + 1) & 0x7fffffff;
    const seq = this.seq;
    const msg = w.finish(seq);
    for (;;) {
      const n = this.libc.send(this.fd, msg, msg.length, 0);
      if (n === msg.length) return seq;
      const e = this.libc.errno();
      if (n < 0 && e === EINTR) continue;
      throw new KernelError(n < 0 ? e : 5, n < 0 ? undefined : 'short send to the netlink socket');
    }
  }

  private recvBatch(): NlMessage[] {
    for (;;) {
      const n = this.libc.recv(this.fd, this.rx, this.rx.length, 0);
      if (n >= 0) return splitMessages(Buffer.from(this.rx.subarray(0, n)));
      const e = this.libc.errno();
      if (e === EINTR) continue;
      throw new KernelError(
        e === EAGAIN ? 110 : e,
        e === EAGAIN ? 'no netlink reply within 10 s' : undefined,
      );
    }
  }

  /** Sends a request with NLM_F_ACK and waits for its ack; throws KernelError on a kernel error. */
  request(w: NlWriter): void {
    const seq = this.sendMsg(w);
    for (;;) {
      for (const m of this.recvBatch()) {
        if (m.seq !== seq) continue;
        if (m.type === NLMSG.ERROR) {
          const err = m.body.readInt32LE(0);
          if (err === 0) return;
          throw new KernelError(-err, extack(m));
        }
      }
    }
  }

  /** Sends a dump request and collects every reply message of the requested kind. */
  dump(w: NlWriter): NlMessage[] {
    const seq = this.sendMsg(w);
    const out: NlMessage[] = [];
    for (;;) {
      for (const m of this.recvBatch()) {
        if (m.seq !== seq) continue;
        if (m.type === NLMSG.DONE) return out;
        if (m.type === NLMSG.ERROR) {
          const err = m.body.readInt32LE(0);
          if (err === 0) return out;
          throw new KernelError(-err, extack(m));
        }
        out.push(m);
        if (!(m.flags & NLM_F.MULTI)) return out;
      }
    }
  }
}

/** The kernel's extended-ack message of an NLMSG_ERROR, when it sent one. */
function extack(m: NlMessage): string | undefined {
  if (!(m.flags & NLM_F.ACK_TLVS)) return undefined;
  // nlmsgerr: int error + the request's header (capped: header only) or the whole request.
  const echoed = m.flags & NLM_F.CAPPED ? 16 : m.body.length >= 8 ? m.body.readUInt32LE(4) : 16;
  const attrs = new NlAttrs(m.body, 4 + echoed);
  return attrs.str(NLMSGERR_ATTR_MSG);
}
