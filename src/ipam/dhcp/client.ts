// The client side of DHCPv4 exchanges (RFC 2131 §3, §4.4): acquire (DISCOVER, OFFER, REQUEST,
// ACK), renew (unicast REQUEST to the server that granted the lease), rebind (broadcast REQUEST)
// and release. One exchange runs over one transport; retries and backoff are the caller's.
import { randomInt } from 'node:crypto';
import type { Destination, DhcpTransport } from './link.js';
import {
  BOOTREPLY,
  BOOTREQUEST,
  type DhcpMessage,
  decodeDhcp,
  encodeDhcp,
  ip4Bytes,
  ip4List,
  MessageType,
  Opt,
} from './packet.js';

/** What identifies and shapes every message of one lease. */
export interface ClientParams {
  /** Option 61 value. */
  clientId: Uint8Array;
  /** Extra options (provided values, parameter request list), added after the defaults. */
  options: ReadonlyMap<number, Uint8Array>;
  /** Ask servers to broadcast replies (the daemon's --broadcast). */
  broadcast: boolean;
  /** How long to wait for each reply before giving up on the exchange. */
  timeoutMs: number;
}

/** What a successful exchange yields. */
export interface Granted {
  ack: DhcpMessage;
  /** Option 54 of the ACK (or of the OFFER when the ACK lacks it). */
  serverId: number;
  /** Where unicast messages to the server go (the sender of the ACK). */
  serverMac: Uint8Array;
}

/** The server said no (DHCPNAK): the lease is gone, start over. */
export class NakError extends Error {
  override name = 'NakError';
}

/** No reply in time. */
export class NoReplyError extends Error {
  override name = 'NoReplyError';
}

function newXid(): number {
  return randomInt(0, 0xffffffff);
}

function messageType(m: DhcpMessage): number | undefined {
  return m.options.get(Opt.MESSAGE_TYPE)?.[0];
}

function build(
  t: DhcpTransport,
  p: ClientParams,
  xid: number,
  type: number,
  fields: Partial<DhcpMessage>,
  extra: Array<[number, Uint8Array]>,
): Uint8Array {
  const options = new Map<number, Uint8Array>([[Opt.MESSAGE_TYPE, Uint8Array.of(type)]]);
  for (const [k, v] of extra) options.set(k, v);
  options.set(Opt.CLIENT_ID, p.clientId);
  if (type !== MessageType.RELEASE) {
    options.set(Opt.MAX_MESSAGE_SIZE, Uint8Array.of(0x05, 0xdc));
    for (const [k, v] of p.options) options.set(k, v);
  }
  return encodeDhcp({
    op: BOOTREQUEST,
    xid,
    secs: 0,
    broadcast: p.broadcast,
    ciaddr: 0,
    yiaddr: 0,
    siaddr: 0,
    giaddr: 0,
    chaddr: t.mac,
    options,
    ...fields,
  });
}

/** Waits for a reply to `xid` of one of `types`; ignores everything else. */
async function await_(
  t: DhcpTransport,
  xid: number,
  types: readonly number[],
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<{ msg: DhcpMessage; srcMac: Uint8Array }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = deadline - Date.now();
    const r = left > 0 ? await t.receive(left, signal) : undefined;
    if (!r) {
      if (signal?.aborted) throw signal.reason ?? new Error('aborted');
      throw new NoReplyError(`no DHCP ${types.map(typeName).join('/')} within ${timeoutMs} ms`);
    }
    let msg: DhcpMessage;
    try {
      msg = decodeDhcp(r.payload);
    } catch {
      continue; // not a DHCP message (decodeDhcp only throws DhcpDecodeError)
    }
    const type = messageType(msg);
    if (msg.op !== BOOTREPLY || msg.xid !== xid || type === undefined || !types.includes(type)) continue;
    if (Buffer.compare(Buffer.from(msg.chaddr), Buffer.from(t.mac)) !== 0) continue;
    return { msg, srcMac: r.srcMac };
  }
}

/** A message type's name, for errors and logs. */
export function typeName(t: number): string {
  return Object.entries(MessageType).find(([, v]) => v === t)?.[0] ?? `type ${t}`;
}

function serverIdOf(m: DhcpMessage): number | undefined {
  return ip4List(m.options.get(Opt.SERVER_ID))[0];
}

function finish(ack: { msg: DhcpMessage; srcMac: Uint8Array }, fallbackServer: number | undefined): Granted {
  if (messageType(ack.msg) === MessageType.NAK) {
    const text = ack.msg.options.get(Opt.MESSAGE);
    throw new NakError(
      `the DHCP server refused (NAK)${text ? `: ${Buffer.from(text).toString('utf8')}` : ''}`,
    );
  }
  const serverId = serverIdOf(ack.msg) ?? fallbackServer ?? 0;
  return { ack: ack.msg, serverId, serverMac: ack.srcMac };
}

/** DISCOVER → OFFER → REQUEST → ACK. */
export async function acquire(t: DhcpTransport, p: ClientParams, signal?: AbortSignal): Promise<Granted> {
  const xid = newXid();
  t.send(build(t, p, xid, MessageType.DISCOVER, {}, []), 0, { broadcast: true });
  const offer = await await_(t, xid, [MessageType.OFFER], p.timeoutMs, signal);
  const server = serverIdOf(offer.msg);
  const req: Array<[number, Uint8Array]> = [[Opt.REQUESTED_IP, ip4Bytes(offer.msg.yiaddr)]];
  if (server !== undefined) req.push([Opt.SERVER_ID, ip4Bytes(server)]);
  t.send(build(t, p, xid, MessageType.REQUEST, {}, req), 0, { broadcast: true });
  return finish(await await_(t, xid, [MessageType.ACK, MessageType.NAK], p.timeoutMs, signal), server);
}

/**
 * A REQUEST from the bound address (ciaddr set, no server ID): unicast to the granting server when
 * renewing, broadcast when rebinding.
 */
export async function extend(
  t: DhcpTransport,
  p: ClientParams,
  lease: Granted,
  how: 'renew' | 'rebind',
  signal?: AbortSignal,
): Promise<Granted> {
  const xid = newXid();
  const ip = lease.ack.yiaddr;
  const to: Destination =
    how === 'renew' ? { ip: lease.serverId, mac: lease.serverMac } : { broadcast: true };
  // Replies to a bound client are unicast to ciaddr, which the packet socket sees either way.
  t.send(build(t, { ...p, broadcast: false }, xid, MessageType.REQUEST, { ciaddr: ip }, []), ip, to);
  const r = await await_(t, xid, [MessageType.ACK, MessageType.NAK], p.timeoutMs, signal);
  const g = finish(r, lease.serverId);
  if (g.ack.yiaddr !== ip) throw new NakError('the DHCP server acknowledged another address');
  return g;
}

/** DHCPRELEASE to the granting server; no reply is expected (RFC 2131 §4.4.6). */
export function release(t: DhcpTransport, p: ClientParams, lease: Granted): void {
  const ip = lease.ack.yiaddr;
  const msg = build(t, { ...p, broadcast: false }, newXid(), MessageType.RELEASE, { ciaddr: ip }, [
    [Opt.SERVER_ID, ip4Bytes(lease.serverId)],
  ]);
  t.send(msg, ip, { ip: lease.serverId, mac: lease.serverMac });
}
