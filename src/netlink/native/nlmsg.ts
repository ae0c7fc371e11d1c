// Netlink message framing: a writer for requests (header, fixed struct, attributes, nested
// attributes) and a reader for replies. Layouts follow the kernel's uapi headers
// (linux/netlink.h): 16-byte nlmsghdr, 4-byte-aligned attributes of { u16 len, u16 type, value }.
// Host byte order is little-endian on every platform the FFI package ships for; `be16`/`be32`
// exist for the few fields the kernel keeps in network order.

export const NLMSG_HDRLEN = 16;
export const NLA_HDRLEN = 4;
export const NLA_F_NESTED = 0x8000;
const NLA_TYPE_MASK = ~(NLA_F_NESTED | 0x4000) & 0xffff;

/** nlmsg_flags. */
export const NLM_F = {
  REQUEST: 0x1,
  MULTI: 0x2,
  ACK: 0x4,
  ROOT: 0x100,
  MATCH: 0x200,
  DUMP: 0x300,
  REPLACE: 0x100,
  EXCL: 0x200,
  CREATE: 0x400,
  APPEND: 0x800,
  /** On NLMSG_ERROR: the echoed request was capped to its header (NETLINK_CAP_ACK). */
  CAPPED: 0x100,
  /** On NLMSG_ERROR: extended-ack attributes follow. */
  ACK_TLVS: 0x200,
} as const;

/** Control message types. */
export const NLMSG = { NOOP: 1, ERROR: 2, DONE: 3, OVERRUN: 4 } as const;

const align4 = (n: number): number => (n + 3) & ~3;

/** Builds one request: header, the family's fixed struct, then attributes. */
export class NlWriter {
  private buf: Buffer;
  private len = NLMSG_HDRLEN;
  private readonly nests: number[] = [];

  constructor(
    readonly type: number,
    readonly flags: number,
    size = 256,
  ) {
    this.buf = Buffer.alloc(Math.max(size, 64));
  }

  private room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const next = Buffer.alloc(Math.max(this.buf.length * 2, this.len + n + 64));
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  /** Appends raw bytes (a fixed struct), padded to 4 bytes. Returns the offset it starts at. */
  struct(bytes: Buffer): number {
    const at = this.len;
    this.room(align4(bytes.length));
    bytes.copy(this.buf, at);
    this.len = at + align4(bytes.length);
    return at;
  }

  /** Appends an attribute holding `value` as is. */
  attr(type: number, value: Buffer): this {
    const total = NLA_HDRLEN + value.length;
    this.room(align4(total));
    this.buf.writeUInt16LE(total, this.len);
    this.buf.writeUInt16LE(type, this.len + 2);
    value.copy(this.buf, this.len + NLA_HDRLEN);
    this.len += align4(total);
    return this;
  }
  u8(type: number, v: number): this {
    return this.attr(type, Buffer.from([v & 0xff]));
  }
  u16(type: number, v: number): this {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(v);
    return this.attr(type, b);
  }
  be16(type: number, v: number): this {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(v);
    return this.attr(type, b);
  }
  u32(type: number, v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    return this.attr(type, b);
  }
  s32(type: number, v: number): this {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    return this.attr(type, b);
  }
  u64(type: number, v: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(v);
    return this.attr(type, b);
  }
  /** A NUL-terminated string (NLA_STRING / NLA_NUL_STRING). */
  str(type: number, s: string): this {
    return this.attr(type, Buffer.from(`${s}\0`));
  }
  /** A string without terminator (the kernel takes the attribute length as the string length). */
  bytesOf(type: number, s: string): this {
    return this.attr(type, Buffer.from(s));
  }
  flag(type: number): this {
    return this.attr(type, Buffer.alloc(0));
  }
  /** Opens a nested attribute; close it with `end()`. */
  begin(type: number, nested = true): this {
    this.room(NLA_HDRLEN);
    this.nests.push(this.len);
    this.buf.writeUInt16LE(type | (nested ? NLA_F_NESTED : 0), this.len + 2);
    this.len += NLA_HDRLEN;
    return this;
  }
  end(): this {
    const at = this.nests.pop();
    if (at === undefined) throw new Error('netlink writer: end() without begin()');
    this.buf.writeUInt16LE(this.len - at, at);
    return this;
  }
  /** The finished message with `seq` in its header. */
  finish(seq: number): Buffer {
    if (this.nests.length) throw new Error('netlink writer: unclosed nested attribute');
    this.buf.writeUInt32LE(this.len, 0);
    this.buf.writeUInt16LE(this.type, 4);
    this.buf.writeUInt16LE(this.flags, 6);
    this.buf.writeUInt32LE(seq >>> 0, 8);
    this.buf.writeUInt32LE(0, 12);
    return this.buf.subarray(0, this.len);
  }
}

/** One message of a reply. `body` is everything after the 16-byte header. */
export interface NlMessage {
  type: number;
  flags: number;
  seq: number;
  body: Buffer;
}

/** Splits a datagram into messages (stops at a truncated one). */
export function splitMessages(buf: Buffer): NlMessage[] {
  const out: NlMessage[] = [];
  let off = 0;
  while (off + NLMSG_HDRLEN <= buf.length) {
    const len = buf.readUInt32LE(off);
    if (len < NLMSG_HDRLEN || off + len > buf.length) break;
    out.push({
      type: buf.readUInt16LE(off + 4),
      flags: buf.readUInt16LE(off + 6),
      seq: buf.readUInt32LE(off + 8),
      body: buf.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return out;
}

/** Attributes of a region, by type (nested flag masked off; the last of a repeated type wins in `get`). */
export class NlAttrs {
  private readonly map = new Map<number, Buffer>();
  /** Every attribute in order (for lists such as repeated IFLA_BRIDGE_VLAN_INFO). */
  readonly all: Array<{ type: number; value: Buffer }> = [];

  constructor(buf: Buffer, start = 0, end = buf.length) {
    let off = start;
    while (off + NLA_HDRLEN <= end) {
      const len = buf.readUInt16LE(off);
      if (len < NLA_HDRLEN || off + len > end) break;
      const type = buf.readUInt16LE(off + 2) & NLA_TYPE_MASK;
      const value = buf.subarray(off + NLA_HDRLEN, off + len);
      this.map.set(type, value);
      this.all.push({ type, value });
      off += align4(len);
    }
  }
  has(type: number): boolean {
    return this.map.has(type);
  }
  get(type: number): Buffer | undefined {
    return this.map.get(type);
  }
  u8(type: number): number | undefined {
    const v = this.map.get(type);
    return v && v.length >= 1 ? v.readUInt8(0) : undefined;
  }
  u16(type: number): number | undefined {
    const v = this.map.get(type);
    return v && v.length >= 2 ? v.readUInt16LE(0) : undefined;
  }
  be16(type: number): number | undefined {
    const v = this.map.get(type);
    return v && v.length >= 2 ? v.readUInt16BE(0) : undefined;
  }
  u32(type: number): number | undefined {
    const v = this.map.get(type);
    return v && v.length >= 4 ? v.readUInt32LE(0) : undefined;
  }
  s32(type: number): number | undefined {
    const v = this.map.get(type);
    return v && v.length >= 4 ? v.readInt32LE(0) : undefined;
  }
  u64(type: number): bigint | undefined {
    const v = this.map.get(type);
    return v && v.length >= 8 ? v.readBigUInt64LE(0) : undefined;
  }
  /** A string attribute, NUL terminator (if any) removed. */
  str(type: number): string | undefined {
    const v = this.map.get(type);
    if (!v) return undefined;
    const nul = v.indexOf(0);
    return v.subarray(0, nul < 0 ? v.length : nul).toString();
  }
  /** The attributes nested inside `type`. */
  nested(type: number): NlAttrs | undefined {
    const v = this.map.get(type);
    return v ? new NlAttrs(v) : undefined;
  }
}
