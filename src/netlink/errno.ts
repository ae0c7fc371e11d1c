// Kernel error names as the SDK distinguishes them, and the classification of iproute2's (and the
// kernel's extended-ack) message texts. Pure, no classes: the native engine's lazily loaded core
// uses it as well as errors.ts.

/** The kernel error names the SDK distinguishes. */
export const ERRNOS = [
  'EEXIST',
  'ENODEV',
  'ENOENT',
  'ESRCH',
  'EADDRNOTAVAIL',
  'EADDRINUSE',
  'EPERM',
  'EACCES',
  'EBUSY',
  'EINVAL',
  'ENETUNREACH',
  'ENETDOWN',
  'EOPNOTSUPP',
  'ERANGE',
  'ETIMEDOUT',
  'EIO',
] as const;

/** One of {@link ERRNOS}. */
export type Errno = (typeof ERRNOS)[number];

/** Errnos that mean "the thing is not there" (DEL-style operations treat them as success). */
export const MISSING_ERRNOS: ReadonlySet<Errno> = new Set(['ENODEV', 'ENOENT', 'ESRCH', 'EADDRNOTAVAIL']);

// iproute2 and shell messages mapped to errnos; order matters (most specific first).
const TEXT_ERRNO: Array<[RegExp, Errno]> = [
  [
    /File exists|already assigned|already exists|same name exists|Exclusivity flag on|TUNSETIFF\): Device or resource busy/i,
    'EEXIST',
  ],
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
  [
    /Invalid argument|Invalid prefix|invalid|immutable|Can not enslave|mtu (greater|less) than device/i,
    'EINVAL',
  ],
];

/** Best errno for an error text printed by `ip`, `nsenter` or `sh`. */
export function errnoFromText(text: string): Errno {
  for (const [re, errno] of TEXT_ERRNO) if (re.test(text)) return errno;
  return 'EIO';
}

/**
 * The errno of a failed /proc/sys read or write (a Node fs error). The kernel answers a sysctl
 * value it refuses with EIO on some keys; for a write that means the value is invalid.
 */
export function fsErrno(e: unknown, sysctlWrite = false): Errno {
  const code = (e as { code?: string }).code;
  if (code === 'ENOENT' || code === 'EACCES' || code === 'EPERM' || code === 'EINVAL') return code;
  return sysctlWrite && code === 'EIO' ? 'EINVAL' : 'EIO';
}
