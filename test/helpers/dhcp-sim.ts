// A simulated DHCP server, host and clock for the lease logic's unit tests: the lease code runs
// unchanged over a `DhcpNet` whose transports hand messages to `SimServer`, and time moves only
// when the test says (`SimClock.advance`).
import type { Clock } from '../../src/ipam/dhcp/lease.js';
import type { Destination, DhcpNet, DhcpTransport, Received } from '../../src/ipam/dhcp/link.js';
import { LinkGoneError } from '../../src/ipam/dhcp/link.js';
import {
  BOOTREPLY,
  type DhcpMessage,
  decodeDhcp,
  encodeDhcp,
  ip4,
  ip4Bytes,
  MessageType,
  macText,
  Opt,
} from '../../src/ipam/dhcp/packet.js';

interface Timer {
  due: number;
  resolve: () => void;
}

/** A clock that moves only in `advance`; sleepers wake in order, with the event loop run between. */
export class SimClock implements Clock {
  t = 1_000_000;
  private timers: Timer[] = [];
  now(): number {
    return this.t;
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      const onAbort = () => {
        this.timers = this.timers.filter((x) => x !== timer);
        resolve();
      };
      const timer: Timer = {
        due: this.t + ms,
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      this.timers.push(timer);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
  /** How many sleeps are pending (an aborted sleep is no longer one). */
  sleepers(): number {
    return this.timers.length;
  }
  /** Lets pending promise chains run (they may start new sleeps). */
  async settle(): Promise<void> {
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  }
  /** Moves time forward by `ms`, waking each sleeper at its due time. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    await this.settle();
    for (;;) {
      this.timers.sort((a, b) => a.due - b.due);
      const next = this.timers[0];
      if (!next || next.due > end) break;
      this.timers.shift();
      this.t = Math.max(this.t, next.due);
      next.resolve();
      await this.settle();
    }
    this.t = end;
    await this.settle();
  }
}

/** One message the server saw, with how it was addressed. */
export interface Seen {
  at: number;
  msg: DhcpMessage;
  type: number;
  to: 'broadcast' | 'unicast';
  /** The destination MAC of a unicast. */
  toMac?: string;
  srcIp: number;
}

/** A DHCP server for one /24 that grants .100 upwards; switches make it misbehave on purpose. */
export class SimServer {
  readonly seen: Seen[] = [];
  readonly serverIp = ip4('192.168.50.1');
  leaseSeconds = 120;
  t1?: number;
  t2?: number;
  /** Extra options in every OFFER/ACK. */
  extra = new Map<number, Uint8Array>();
  /** Answer unicast (renewing) requests. */
  answerUnicast = true;
  /** Answer broadcast requests. */
  answerBroadcast = true;
  /** NAK the next n REQUESTs. */
  nakNext = 0;
  sendMask = true;
  private next = 100;
  readonly leases = new Map<string, number>();

  constructor(private readonly clock: SimClock) {}

  private key(m: DhcpMessage): string {
    return Buffer.from(m.options.get(Opt.CLIENT_ID) ?? m.chaddr).toString('hex');
  }

  private reply(req: DhcpMessage, type: number, yiaddr: number): Uint8Array {
    const options = new Map<number, Uint8Array>([
      [Opt.MESSAGE_TYPE, Uint8Array.of(type)],
      [Opt.SERVER_ID, ip4Bytes(this.serverIp)],
    ]);
    if (type !== MessageType.NAK) {
      const u32 = (n: number) => ip4Bytes(n);
      options.set(Opt.LEASE_TIME, u32(this.leaseSeconds));
      if (this.t1 !== undefined) options.set(Opt.RENEWAL_TIME, u32(this.t1));
      if (this.t2 !== undefined) options.set(Opt.REBINDING_TIME, u32(this.t2));
      if (this.sendMask) options.set(Opt.SUBNET_MASK, ip4Bytes(ip4('255.255.255.0')));
      options.set(Opt.ROUTER, ip4Bytes(this.serverIp));
      for (const [k, v] of this.extra) options.set(k, v);
    }
    return encodeDhcp({
      op: BOOTREPLY,
      xid: req.xid,
      secs: 0,
      broadcast: req.broadcast,
      ciaddr: req.ciaddr,
      yiaddr,
      siaddr: 0,
      giaddr: 0,
      chaddr: req.chaddr,
      options,
    });
  }

  /** Handles one datagram from a client; returns the reply, if any. */
  handle(payload: Uint8Array, srcIp: number, to: Destination): Uint8Array | undefined {
    const msg = decodeDhcp(payload);
    const type = msg.options.get(Opt.MESSAGE_TYPE)?.[0] ?? 0;
    const how = 'broadcast' in to ? 'broadcast' : 'unicast';
    this.seen.push({
      at: this.clock.now(),
      msg,
      type,
      to: how,
      srcIp,
      ...('mac' in to ? { toMac: macText(to.mac) } : {}),
    });
    if (how === 'unicast' && !this.answerUnicast) return undefined;
    if (how === 'broadcast' && !this.answerBroadcast) return undefined;
    const key = this.key(msg);
    if (type === MessageType.DISCOVER) {
      const ip = this.leases.get(key) ?? ip4('192.168.50.0') + this.next++;
      this.leases.set(key, ip);
      return this.reply(msg, MessageType.OFFER, ip);
    }
    if (type === MessageType.REQUEST) {
      if (this.nakNext > 0) {
        this.nakNext--;
        return this.reply(msg, MessageType.NAK, 0);
      }
      const ip = this.leases.get(key);
      if (ip === undefined) return this.reply(msg, MessageType.NAK, 0);
      return this.reply(msg, MessageType.ACK, ip);
    }
    if (type === MessageType.RELEASE) this.leases.delete(key);
    return undefined;
  }

  /** Messages of one type. */
  of(type: number): Seen[] {
    return this.seen.filter((s) => s.type === type);
  }
}

/** A host whose links are a set of "netns/ifname" strings, every transport wired to `server`. */
export class SimNet implements DhcpNet {
  readonly links = new Set<string>();
  readonly downs: string[] = [];
  opened = 0;
  constructor(
    readonly server: SimServer,
    readonly clock: SimClock,
  ) {}

  add(netns: string, ifname: string): void {
    this.links.add(`${netns}/${ifname}`);
  }

  async open(netns: string, ifname: string): Promise<DhcpTransport> {
    if (!this.links.has(`${netns}/${ifname}`))
      throw new LinkGoneError(`no interface ${ifname} in netns ${netns}`);
    this.opened++;
    const queue: Received[] = [];
    const { server, clock } = this;
    return {
      mac: Uint8Array.of(0x0a, 0x58, 0, 0, 0, 7),
      send(payload, srcIp, to) {
        const r = server.handle(payload, srcIp, to);
        if (r) queue.push({ payload: r, srcIp: server.serverIp, srcMac: Uint8Array.of(2, 0, 0, 0, 0, 1) });
      },
      async receive(timeoutMs, signal) {
        const r = queue.shift();
        if (r) return r;
        await clock.sleep(timeoutMs, signal);
        return undefined;
      },
      close() {},
    };
  }

  async linkExists(netns: string, ifname: string): Promise<boolean> {
    return this.links.has(`${netns}/${ifname}`);
  }

  async setDown(netns: string, ifname: string): Promise<void> {
    this.downs.push(`${netns}/${ifname}`);
  }
}
