// Crash-safe small-file writes for IPAM state. Synchronous on purpose: they run inside a held lock
// where nothing else should interleave, and a dozen tiny syscalls are cheaper than promise hops.
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** Options for the atomic writers. */
export interface AtomicWriteOptions {
  /** File mode of the new file (default 0o600). */
  mode?: number;
  /** fsync the data before it becomes visible (default true). */
  fsync?: boolean;
  /** Directory for the temp file; must be on the same filesystem (default: the target's directory). */
  tmpDir?: string;
}

function writeTemp(path: string, data: string | Uint8Array, opts: AtomicWriteOptions): string {
  const tmp = join(
    opts.tmpDir ?? dirname(path),
    `.tmp.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}`,
  );
  const fd = openSync(tmp, 'wx', opts.mode ?? 0o600);
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    if (opts.fsync !== false) fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {}
    throw err;
  }
  closeSync(fd);
  return tmp;
}

/** Replaces `path` with `data` so readers see the old or the whole new content, never a torn file. */
export function writeFileAtomicSync(
  path: string,
  data: string | Uint8Array,
  opts: AtomicWriteOptions = {},
): void {
  const tmp = writeTemp(path, data, opts);
  try {
    renameSync(tmp, path);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {}
    throw err;
  }
}

/**
 * Creates `path` holding `data` only if it does not exist, atomically: the content is written to a
 * temp file first and hard-linked into place (link(2) fails with EEXIST like O_EXCL), so a crash can
 * never leave an empty file behind. Returns false when the path already exists.
 */
export function createFileExclusiveSync(
  path: string,
  data: string | Uint8Array,
  opts: AtomicWriteOptions = {},
): boolean {
  const tmp = writeTemp(path, data, opts);
  try {
    linkSync(tmp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    try {
      unlinkSync(tmp);
    } catch {}
  }
}

/** fsyncs a directory so renames and links in it survive a power loss. */
export function fsyncDirSync(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
