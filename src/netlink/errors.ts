// Netlink failures as CniErrors that name the operation, the object and the netns, plus the errno
// so callers can branch (DEL treats "missing" as success, ADD treats "exists" as success for bridges).
import { CniError, ErrorCode } from '../spec/errors.js';

/** The kernel error names the SDK distinguishes. */
export type Errno =
  | 'EEXIST'
  | 'ENODEV'
  | 'ENOENT'
  | 'ESRCH'
  | 'EADDRNOTAVAIL'
  | 'EADDRINUSE'
  | 'EPERM'
  | 'EACCES'
  | 'EBUSY'
  | 'EINVAL'
  | 'ENETUNREACH'
  | 'ENETDOWN'
  | 'EOPNOTSUPP'
  | 'ERANGE'
  | 'ETIMEDOUT'
  | 'EIO';

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

/** Errnos that mean "the thing is not there" (DEL-style operations treat them as success). */
export const MISSING_ERRNOS: ReadonlySet<Errno> = new Set(['ENODEV', 'ENOENT', 'ESRCH', 'EADDRNOTAVAIL']);

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
  return new CniError(ErrorCode.InvalidNetworkConfig, `netlink: ${what}: ${JSON.stringify(value)} ${fix}`);
}

// iproute2 and shell messages mapped to errnos; order matters (most specific first).
const TEXT_ERRNO: Array<[RegExp, Errno]> = [
  [/File exists|already assigned|already exists|same name exists|Exclusivity flag on/i, 'EEXIST'],
  [/Cannot find device|No such device|does not exist|Device not found/i, 'ENODEV'],
  [/Unknown device type|Operation not supported|not supported/i, 'EOPNOTSUPP'],
  [/No such process/i, 'ESRCH'],
  [/Cannot assign requested address|Address not found/i, 'EADDRNOTAVAIL'],
  [/Address already in use/i, 'EADDRINUSE'],
  [/Operation not permitted/i, 'EPERM'],
  [/Permission denied/i, 'EACCES'],
  [/Device or resource busy/i, 'EBUSY'],
  [/Network is unreachable|Nexthop has invalid gateway|invalid gateway|No route to host/i, 'ENETUNREACH'],
  [/Network is down|is not up/i, 'ENETDOWN'],
  [/Numerical result out of range/i, 'ERANGE'],
  [
    /No such file or directory|nonexistent|Cannot open network namespace|doesn't exist|Cannot find specified qdisc|handle of zero/i,
    'ENOENT',
  ],
  [/Invalid argument|Invalid prefix|invalid|immutable|Can not enslave/i, 'EINVAL'],
];

/** Best errno for an error text printed by `ip`, `nsenter` or `sh`. */
export function errnoFromText(text: string): Errno {
  for (const [re, errno] of TEXT_ERRNO) if (re.test(text)) return errno;
  return 'EIO';
}
