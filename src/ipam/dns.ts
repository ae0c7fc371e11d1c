// resolv.conf parsing for IPAM results (host-local's `resolvConf` field).
import { readFileSync } from 'node:fs';
import { CniError, describeSystemError, ErrorCode } from '../spec/errors.js';
import type { DNS } from '../spec/result/types.js';

/** Parses resolv.conf text: nameserver, domain, search and options lines; comments skipped. */
export function parseResolvConf(text: string): DNS {
  const dns: DNS = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('#') || line.startsWith(';')) continue;
    const fields = line.split(/\s+/);
    if (fields.length < 2) continue;
    const [key, ...rest] = fields;
    if (key === 'nameserver') dns.nameservers = [...(dns.nameservers ?? []), rest[0]!];
    else if (key === 'domain') dns.domain = rest[0]!;
    else if (key === 'search') dns.search = [...(dns.search ?? []), ...rest];
    else if (key === 'options') dns.options = [...(dns.options ?? []), ...rest];
  }
  return dns;
}

/** Reads and parses a resolv.conf; errors name the config field and the path. */
export function readResolvConf(path: string, field = 'ipam.resolvConf'): DNS {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new CniError(
      ErrorCode.IOFailure,
      `${field}: ${describeSystemError(err) ?? `cannot read ${JSON.stringify(path)}: ${(err as Error).message}`}; point it at a readable resolv.conf or remove it`,
    );
  }
  return parseResolvConf(text);
}
