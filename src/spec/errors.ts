/** CNI error codes from the spec (0–99 reserved, 100+ plugin-specific) plus the Go-only 8 and 999. */
export const ErrorCode = {
  IncompatibleCNIVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnvironmentVariables: 4,
  IOFailure: 5,
  DecodingFailure: 6,
  InvalidNetworkConfig: 7,
  /** Not in the spec: the Go skel's "netns is the plugin's own" error. Kept for interop. */
  InvalidNetNS: 8,
  TryAgainLater: 11,
  PluginNotAvailable: 50,
  LimitedConnectivity: 51,
  Internal: 999,
} as const;

/** A numeric CNI error code: a well-known one or any plugin-specific code >= 100. */
export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode] | (number & {});

/** The error object a plugin prints on stdout: `{cniVersion, code, msg, details}`. */
export interface CniErrorJson {
  cniVersion?: string;
  code: number;
  msg: string;
  details?: string;
}

/** An error that carries a CNI code; thrown anywhere in the SDK and printed as CNI error JSON. */
export class CniError extends Error {
  override readonly name = 'CniError';
  readonly code: number;
  readonly details: string | undefined;

  constructor(code: ErrorCodeValue, msg: string, details?: string, options?: { cause?: unknown }) {
    super(msg, options);
    this.code = code;
    this.details = details === '' ? undefined : details;
  }

  /** The spec's error JSON; `cniVersion` is stamped when known (the Go library leaves it out). */
  toJSON(cniVersion?: string): CniErrorJson {
    const out: CniErrorJson = {} as CniErrorJson;
    if (cniVersion !== undefined) out.cniVersion = cniVersion;
    out.code = this.code;
    out.msg = this.message;
    if (this.details !== undefined) out.details = this.details;
    return out;
  }

  /** Same text as Go's `types.Error.Error()`: `msg` or `msg; details`. */
  override toString(): string {
    return this.details ? `${this.message}; ${this.details}` : this.message;
  }

  /**
   * Wraps anything thrown into a CniError; non-CniErrors become code 999 with a one-line message.
   * A failed system call (Node's `ENOENT: no such file or directory, open '/x'`) is reworded to
   * name the operation, the path and a fix, with code 5 (I/O failure) unless `code` is given.
   */
  static from(err: unknown, code?: ErrorCodeValue): CniError {
    if (err instanceof CniError) return err;
    const sys = describeSystemError(err);
    if (sys) return new CniError(code ?? ErrorCode.IOFailure, sys, undefined, { cause: err });
    const msg = err instanceof Error ? err.message : String(err);
    return new CniError(code ?? ErrorCode.Internal, firstLine(msg) || 'internal error', undefined, {
      cause: err,
    });
  }
}

const ERRNO_FIX: Record<string, string> = {
  ENOENT: 'create it or fix the path in the config',
  EACCES: 'run the plugin as root or fix the permissions',
  EPERM: 'run the plugin as root (CAP_NET_ADMIN and CAP_SYS_ADMIN are needed)',
  ENAMETOOLONG: 'a file name part is longer than 255 bytes: use shorter names and IDs',
  ENOSPC: 'free space on that file system',
  EROFS: 'the file system is read-only: point the data directory somewhere writable',
  ENOTDIR: 'a part of the path is a file, not a directory: fix the path',
  EISDIR: 'the path is a directory: name a file',
  EEXIST: 'it already exists: remove it or pick another name',
  EMFILE: 'too many open files: raise the limit (ulimit -n)',
  ENFILE: 'too many open files on the system',
};

const SYSCALL_WHAT: Record<string, string> = {
  open: 'cannot open',
  mkdir: 'cannot create directory',
  rmdir: 'cannot remove directory',
  unlink: 'cannot remove',
  rename: 'cannot rename',
  read: 'cannot read',
  write: 'cannot write',
  scandir: 'cannot list directory',
  stat: 'cannot stat',
  lstat: 'cannot stat',
  access: 'cannot access',
  link: 'cannot link',
  symlink: 'cannot link',
  spawn: 'cannot run',
};

/**
 * A readable sentence for a Node system-call error (`{code: "ENOENT", syscall: "open", path}`),
 * or undefined for any other value: `cannot open "/x": no such file or directory (ENOENT); <fix>`.
 */
export function describeSystemError(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { code?: unknown; syscall?: unknown; path?: unknown; dest?: unknown; message?: unknown };
  if (typeof e.code !== 'string' || !/^E[A-Z0-9]+$/.test(e.code) || typeof e.syscall !== 'string') {
    return undefined;
  }
  const raw = typeof e.message === 'string' ? e.message : '';
  // Node's text is "<CODE>: <description>, <syscall> '<path>'": keep the description only.
  const m = /^E[A-Z0-9]+: ([^,]+)/.exec(raw);
  const desc = m?.[1]?.trim() || e.code.toLowerCase();
  const spawn = e.syscall.startsWith('spawn');
  const verb = SYSCALL_WHAT[spawn ? 'spawn' : e.syscall] ?? `${e.syscall} failed on`;
  const path = typeof e.path === 'string' ? ` ${JSON.stringify(e.path)}` : '';
  const dest = typeof e.dest === 'string' ? ` to ${JSON.stringify(e.dest)}` : '';
  const fix = ERRNO_FIX[e.code];
  return `${verb}${path}${dest}: ${desc} (${e.code})${fix ? `; ${fix}` : ''}`;
}

function firstLine(s: string): string {
  const i = s.indexOf('\n');
  return (i < 0 ? s : s.slice(0, i)).trim();
}

/** True when a value is shaped like CNI error JSON (a numeric `code` and a string `msg`). */
export function isCniErrorJson(v: unknown): v is CniErrorJson {
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof (v as { code?: unknown }).code === 'number' &&
    typeof (v as { msg?: unknown }).msg === 'string'
  );
}

/**
 * Loads an optional peer dependency (heavy clients only some stores use). When it is not
 * installed, the CNI error names the package, what needs it, and how to install it; a plugin built
 * by `cni-kit build` looks for it in the lib/ folder beside its binary.
 */
export async function importOptionalPeer<T>(
  pkg: string,
  feature: string,
  load: () => Promise<T>,
): Promise<T> {
  try {
    return await load();
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    const missing =
      (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') &&
      String((err as Error).message).includes(pkg.startsWith('@') ? pkg.split('/')[1]! : pkg);
    if (!missing) throw err;
    throw new CniError(
      ErrorCode.Internal,
      `${feature} needs ${pkg}, an optional peer dependency of cni-kit that is not installed`,
      `install it next to cni-kit (npm i ${pkg}); a plugin built with cni-kit build needs the lib/ folder written beside its binary when ${pkg} was installed`,
      { cause: err },
    );
  }
}
