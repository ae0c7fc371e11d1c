// The DHCPv4 wire format (RFC 2131/2132): the BOOTP message with its options, and the IPv4 + UDP
// headers around it, since the daemon talks through an AF_PACKET socket (the container interface
// has no address yet, and replies may be unicast to the address being offered). Pure: bytes in,
// values out. Decoding never throws anything but DhcpDecodeError, whatever the bytes.
import { formatIP, parseIP } from '../../spec/addr.js';

/** The op of a client's message. */
export const BOOTREQUEST = 1;
/** The op of a server's message. */
export const BOOTREPLY = 2;

/** DHCP message types (option 53). */
export const MessageType = {
  DISCOVER: 1,
  OFFER: 2,
  REQUEST: 3,
  DECLINE: 4,
  ACK: 5,
  NAK: 6,
  RELEASE: 7,
  INFORM: 8,
} as const;

/** Option codes this module and the lease logic use by name. */
export const Opt = {
  PAD: 0,
  SUBNET_MASK: 1,
  ROUTER: 3,
  HOST_NAME: 12,
  STATIC_ROUTES: 33,
  REQUESTED_IP: 50,
  LEASE_TIME: 51,
  OVERLOAD: 52,
  MESSAGE_TYPE: 53,
  SERVER_ID: 54,
  PARAMETER_LIST: 55,
  MESSAGE: 56,
  MAX_MESSAGE_SIZE: 57,
  RENEWAL_TIME: 58,
  REBINDING_TIME: 59,
  CLASS_ID: 60,
  CLIENT_ID: 61,
  USER_CLASS: 77,
  CLASSLESS_ROUTES: 121,
  END: 255,
} as const;

/** The DHCP magic cookie that starts the options field. */
const MAGIC = 0x63825363;
/** Fixed part of a BOOTP message, cookie included. */
const HEADER = 240;
/** BOOTP's minimum message size; some relays and servers drop shorter ones. */
const MIN_SIZE = 300;

/** A BOOTP/DHCP message. Addresses are IPv4 values as unsigned 32-bit numbers. */
export interface DhcpMessage {
  op: number;
  xid: number;
  secs: number;
  /** The BROADCAST flag (bit 15 of flags): ask the server to broadcast its replies. */
  broadcast: boolean;
  ciaddr: number;
  yiaddr: number;
  siaddr: number;
  giaddr: number;
  /** Client hardware address (htype 1, 6 bytes). */
  chaddr: Uint8Array;
  /** Options in wire order; a code appears once (split long values are joined, RFC 3396). */
  options: Map<number, Uint8Array>;
}

/** Why bytes are not a DHCP message (or IPv4/UDP packet). */
export class DhcpDecodeError extends Error {
  override name = 'DhcpDecodeError';
}

/** Encodes a message; options over 255 bytes are split into consecutive instances (RFC 3396). */
export function encodeDhcp(m: DhcpMessage): Buffer {
  let optLen = 1;
  for (const [code, v] of m.options) {
    checkCode(code);
    optLen += Math.max(1, Math.ceil(v.length / 255)) * 2 + v.length;
  }
  const b = Buffer.alloc(Math.max(MIN_SIZE, HEADER + optLen));
  b[0] = m.op;
  b[1] = 1; // Ethernet
  b[2] = 6;
  b.writeUInt32BE(m.xid >>> 0, 4);
  b.writeUInt16BE(m.secs & 0xffff, 8);
  b.writeUInt16BE(m.broadcast ? 0x8000 : 0, 10);
  b.writeUInt32BE(m.ciaddr >>> 0, 12);
  b.writeUInt32BE(m.yiaddr >>> 0, 16);
  b.writeUInt32BE(m.siaddr >>> 0, 20);
  b.writeUInt32BE(m.giaddr >>> 0, 24);
  if (m.chaddr.length > 16) throw new RangeError('chaddr is longer than 16 bytes');
  b.set(m.chaddr, 28);
  b.writeUInt32BE(MAGIC, 236);
  let o = HEADER;
  for (const [code, v] of m.options) {
    let at = 0;
    do {
      const n = Math.min(255, v.length - at);
      b[o++] = code;
      b[o++] = n;
      b.set(v.subarray(at, at + n), o);
      o += n;
      at += n;
    } while (at < v.length);
  }
  b[o] = Opt.END;
  return b;
}

function checkCode(code: number): void {
  if (!Number.isInteger(code) || code <= Opt.PAD || code >= Opt.END)
    throw new RangeError(`option code ${code} is not 1..254`);
}

/** Decodes a BOOTP message with the DHCP cookie; throws DhcpDecodeError on malformed bytes. */
export function decodeDhcp(buf: Uint8Array): DhcpMessage {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < HEADER) throw new DhcpDecodeError(`message of ${b.length} bytes is shorter than 240`);
  if (b.readUInt32BE(236) !== MAGIC) throw new DhcpDecodeError('no DHCP magic cookie');
  const hlen = b[2] ?? 0;
  if (hlen > 16) throw new DhcpDecodeError(`hlen ${hlen} is over 16`);
  const options = new Map<number, Uint8Array>();
  readOptions(b, HEADER, b.length, options);
  return {
    op: b[0] ?? 0,
    xid: b.readUInt32BE(4),
    secs: b.readUInt16BE(8),
    broadcast: (b.readUInt16BE(10) & 0x8000) !== 0,
    ciaddr: b.readUInt32BE(12),
    yiaddr: b.readUInt32BE(16),
    siaddr: b.readUInt32BE(20),
    giaddr: b.readUInt32BE(24),
    chaddr: Uint8Array.from(b.subarray(28, 28 + hlen)),
    options,
  };
}

function readOptions(b: Buffer, start: number, end: number, into: Map<number, Uint8Array>): void {
  let o = start;
  while (o < end) {
    const code = b[o++] as number;
    if (code === Opt.PAD) continue;
    if (code === Opt.END) return;
    if (o >= end) throw new DhcpDecodeError(`option ${code} has no length byte`);
    const n = b[o++] as number;
    if (o + n > end) throw new DhcpDecodeError(`option ${code} runs past the end of the message`);
    const v = b.subarray(o, o + n);
    const prev = into.get(code);
    into.set(code, prev ? Buffer.concat([prev, v]) : Uint8Array.from(v));
    o += n;
  }
}

/** An IPv4 address value from dotted text (validated by the addr module). */
export function ip4(text: string): number {
  const ip = parseIP(text);
  if (ip.family !== 4) throw new RangeError(`${text} is not an IPv4 address`);
  return Number(ip.value);
}

/** Dotted text of an IPv4 value. */
export function ip4Text(value: number): string {
  return formatIP({ family: 4, value: BigInt(value >>> 0) });
}

/** Big-endian 4-byte form of an IPv4 value. */
export function ip4Bytes(value: number): Uint8Array {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value >>> 0);
  return b;
}

/** Reads consecutive IPv4 addresses from an option value (a trailing partial address is ignored). */
export function ip4List(v: Uint8Array | undefined): number[] {
  if (!v) return [];
  const out: number[] = [];
  const b = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  for (let o = 0; o + 4 <= b.length; o += 4) out.push(b.readUInt32BE(o));
  return out;
}

/** An option value read as an unsigned 32-bit number (lease times), or undefined if it is not 4 bytes. */
export function u32(v: Uint8Array | undefined): number | undefined {
  if (v?.length !== 4) return undefined;
  return Buffer.from(v.buffer, v.byteOffset, 4).readUInt32BE(0);
}

/** A MAC as lower-case colon-separated hex. */
export function macText(mac: Uint8Array): string {
  return [...mac].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** A UDP datagram carried in an IPv4 packet. */
export interface UdpPacket {
  src: number;
  dst: number;
  srcPort: number;
  dstPort: number;
  payload: Uint8Array;
}

function checksum(b: Uint8Array, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < b.length; i += 2) sum += ((b[i] as number) << 8) | (b[i + 1] as number);
  if (b.length % 2) sum += (b[b.length - 1] as number) << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** An IPv4 packet (no options, TTL 64) carrying one UDP datagram, both checksums filled in. */
export function encodeIpUdp(p: UdpPacket): Buffer {
  const total = 28 + p.payload.length;
  if (total > 0xffff) throw new RangeError('datagram too large for IPv4');
  const b = Buffer.alloc(total);
  b[0] = 0x45;
  b.writeUInt16BE(total, 2);
  b[8] = 64;
  b[9] = 17;
  b.writeUInt32BE(p.src >>> 0, 12);
  b.writeUInt32BE(p.dst >>> 0, 16);
  b.writeUInt16BE(checksum(b.subarray(0, 20)), 10);
  b.writeUInt16BE(p.srcPort, 20);
  b.writeUInt16BE(p.dstPort, 22);
  b.writeUInt16BE(8 + p.payload.length, 24);
  b.set(p.payload, 28);
  // Pseudo-header sum: source, destination, protocol, UDP length.
  const pseudo =
    (p.src >>> 16) + (p.src & 0xffff) + (p.dst >>> 16) + (p.dst & 0xffff) + 17 + 8 + p.payload.length;
  const c = checksum(b.subarray(20), pseudo);
  b.writeUInt16BE(c === 0 ? 0xffff : c, 26);
  return b;
}

/**
 * The UDP datagram in an IPv4 packet, or undefined when the bytes are not one (another protocol,
 * a fragment, a bad header checksum or lengths that do not add up): such packets are not ours.
 */
export function decodeIpUdp(buf: Uint8Array): UdpPacket | undefined {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < 28 || (b[0] as number) >> 4 !== 4) return undefined;
  const ihl = ((b[0] as number) & 0xf) * 4;
  const total = b.readUInt16BE(2);
  if (ihl < 20 || total < ihl + 8 || total > b.length) return undefined;
  if (b[9] !== 17 || (b.readUInt16BE(6) & 0x3fff) !== 0) return undefined;
  if (checksum(b.subarray(0, ihl)) !== 0) return undefined;
  const udpLen = b.readUInt16BE(ihl + 4);
  if (udpLen < 8 || ihl + udpLen > total) return undefined;
  return {
    src: b.readUInt32BE(12),
    dst: b.readUInt32BE(16),
    srcPort: b.readUInt16BE(ihl),
    dstPort: b.readUInt16BE(ihl + 2),
    payload: Uint8Array.from(b.subarray(ihl + 8, ihl + udpLen)),
  };
}
