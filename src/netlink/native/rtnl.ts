// rtnetlink basics shared by link.ts and route.ts: message types, address families, scopes and IP
// addresses as network-order bytes (uapi linux/rtnetlink.h). The codecs in this folder are pure:
// index lookups and netns file descriptors are resolved by the caller (engine.ts).
import { formatIP, type IP, tryParseIP } from '../../spec/addr.js';
import type { Family } from '../types.js';
import { NLM_F } from './nlmsg.js';

export const RTM = {
  NEWLINK: 16,
  DELLINK: 17,
  GETLINK: 18,
  SETLINK: 19,
  NEWADDR: 20,
  DELADDR: 21,
  GETADDR: 22,
  NEWROUTE: 24,
  DELROUTE: 25,
  GETROUTE: 26,
  NEWRULE: 32,
  DELRULE: 33,
  GETRULE: 34,
} as const;

export const AF = { UNSPEC: 0, INET: 2, BRIDGE: 7, INET6: 10 } as const;

export const SCOPE_IDS: Record<string, number> = { global: 0, site: 200, link: 253, host: 254, nowhere: 255 };
export const SCOPE_NAMES: Record<number, string> = {
  0: 'global',
  200: 'site',
  253: 'link',
  254: 'host',
  255: 'nowhere',
};
export const REQ_ACK = NLM_F.REQUEST | NLM_F.ACK;

// ---------------------------------------------------------------- addresses as bytes

export const afOf = (family: Family): number => (family === 4 ? AF.INET : AF.INET6);
export const familyOf = (af: number): Family | undefined =>
  af === AF.INET ? 4 : af === AF.INET6 ? 6 : undefined;

/** An IP (already validated text) as network-order bytes. */
export function ipBytes(text: string): Buffer {
  const ip = tryParseIP(text, { mapped: 'v6' });
  if (!ip) throw new Error(`not an IP address: ${text}`);
  const n = ip.family === 4 ? 4 : 16;
  const b = Buffer.alloc(n);
  let v = ip.value;
  for (let i = n - 1; i >= 0; i--) {
    b[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return b;
}

/** Network-order bytes (4 or 16) as canonical IP text. */
export function ipText(b: Buffer): string {
  let v = 0n;
  for (const byte of b) v = (v << 8n) | BigInt(byte);
  const ip: IP = { family: b.length === 4 ? 4 : 6, value: v };
  return formatIP(ip, { mapped: 'v6' });
}
