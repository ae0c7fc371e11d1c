// Crash-safe file writes shared by every layer that keeps state on disk (IPAM reservations, the
// runtime's result cache, meta plugins' delegate caches). A leaf: it imports nothing from src/, so
// any layer may use it.
//
// The rule everywhere: write a temp file in the same directory, fsync it, then make it visible in
// one step (rename, or link for create-if-absent). A reader sees the old or the whole new content;
// a crash never leaves an empty file (libcni's plain write does: containernetworking/cni#1055).
import {
  closeSync,
  promises as fsp,
  fsyncSync,
  linkSync,
  openSync,
  renameSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** Options for the atomic writers. */
export interface AtomicWriteOptions {
  /** File mode of the new file (default 0o600). */
  mode?: number | undefined;
  /** fsync the data before it becomes visible (default true). */
  fsync?: boolean | undefined;
  /** Directory for the temp file; must be on the same filesystem (default: the target's directory). */
  tmpDir?: string | undefined;
}

/** Options for the async writer, which also creates the directory and fsyncs it. */
export interface AtomicWriteAsyncOptions extends AtomicWriteOptions {
  /** Mode of directories it creates (default 0o700). */
  dirMode?: number | undefined;
}

function tempPath(path: string, tmpDir?: string): string {
  return join(
    tmpDir ?? dirname(path),
    // Not secret, only distinct (the file is created O_EXCL): Math.random spares loading node:crypto.
    `.tmp.${basename(path)}.${process.pid}.${Math.floor(Math.random() * 2 ** 32).toString(16)}`,
  );
}

function unlinkQuiet(p: string): void {
  try {
    unlinkSync(p);
  } catch {
    // already gone
  }
}

function writeTempSync(path: string, data: string | Uint8Array, opts: AtomicWriteOptions): string {
  const tmp = tempPath(path, opts.tmpDir);
  const fd = openSync(tmp, 'wx', opts.mode ?? 0o600);
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    if (opts.fsync !== false) fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    unlinkQuiet(tmp);
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
  const tmp = writeTempSync(path, data, opts);
  try {
    renameSync(tmp, path);
  } catch (err) {
    unlinkQuiet(tmp);
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
  const tmp = writeTempSync(path, data, opts);
  try {
    linkSync(tmp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    unlinkQuiet(tmp);
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

/**
 * Async form of writeFileAtomicSync that also creates the directory and fsyncs it after the rename,
 * for callers outside a lock (the runtime's result cache, meta plugins' caches).
 */
export async function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  opts: AtomicWriteAsyncOptions = {},
): Promise<void> {
  const dir = dirname(path);
  await fsp.mkdir(dir, { recursive: true, mode: opts.dirMode ?? 0o700 });
  const tmp = tempPath(path, opts.tmpDir);
  const fh = await fsp.open(tmp, 'wx', opts.mode ?? 0o600);
  try {
    await fh.writeFile(data);
    if (opts.fsync !== false) await fh.sync();
  } catch (err) {
    await fh.close().catch(() => {});
    await fsp.unlink(tmp).catch(() => {});
    throw err;
  }
  await fh.close();
  try {
    await fsp.rename(tmp, path);
  } catch (err) {
    await fsp.unlink(tmp).catch(() => {});
    throw err;
  }
  await fsyncDir(dir);
}

/** Flushes a directory entry change (a rename or unlink) to disk; best effort where unsupported. */
export async function fsyncDir(dir: string): Promise<void> {
  let fh: Awaited<ReturnType<typeof fsp.open>> | undefined;
  try {
    fh = await fsp.open(dir, 'r');
    await fh.sync();
  } catch {
    // some filesystems refuse fsync on a directory; the rename itself is still atomic
  } finally {
    await fh?.close().catch(() => {});
  }
}
