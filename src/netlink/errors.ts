// Netlink failures as CniErrors that name the operation, the object and the netns, plus the errno
// so callers can branch (DEL treats "missing" as success, ADD treats "exists" as success for bridges).
import { CniError, ErrorCode } from '../spec/errors.js';
import type { Errno } from './errno.js';

export { type Errno, errnoFromText, MISSING_ERRNOS } from './errno.js';

import { MISSING_ERRNOS } from './errno.js';

const EXPLAIN: Record<Errno, string> = {
  EEXIST: 'already exists',
  ENODEV: 'no such device',
  ENOENT: 'no such file or object',
  ESRCH: 'no such route or rule',
  EADDRNOTAVAIL: 'address not present on the link',
  EADDRINUSE: 'address in use (IPv6 duplicate address detection failed)',
  EPERM: 'operation not permitted (run as root / with CAP_NET_ADMIN)',
  EACCES: 'permission denied',
  EBUSY: 'device or resource busy',
  EINVAL: 'invalid argument',
  ENETUNREACH: 'network unreachable (no route to the gateway on that link)',
  ENETDOWN: 'network is down',
  EOPNOTSUPP: 'not supported by this kernel',
  ERANGE: 'value out of range',
  ETIMEDOUT: 'timed out',
  EIO: 'input/output error',
};

/** A failed netlink/sysctl/netns operation; `code` is 999 unless the input itself was invalid (7). */
export class NetlinkError extends CniError {
  readonly errno: Errno;
  readonly op: string;
  readonly netns: string;

  constructor(errno: Errno, op: string, netns: string, detail?: string, code: number = ErrorCode.Internal) {
    super(code, `${op} in netns ${netns}: ${EXPLAIN[errno]} (${errno})`, detail);
    this.errno = errno;
    this.op = op;
    this.netns = netns;
  }
}

/** True when `err` is a NetlinkError meaning the object does not exist. */
export function isNotFound(err: unknown): boolean {
  return err instanceof NetlinkError && MISSING_ERRNOS.has(err.errno);
}

/** True when `err` is a NetlinkError meaning the object already exists. */
export function isExists(err: unknown): boolean {
  return err instanceof NetlinkError && err.errno === 'EEXIST';
}

/** Bad input to a netlink call: code 7, the message names the argument, the value and the fix. */
export function invalidArg(what: string, value: unknown, fix: string): CniError {
  const shown = value === undefined ? 'missing, it' : JSON.stringify(value);
  return new CniError(ErrorCode.InvalidNetworkConfig, `netlink: ${what}: ${shown} ${fix}`);
}
