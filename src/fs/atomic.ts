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
  readdirSync,
  renameSync,
  statSync,
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
  /**
   * Make the file durable when this batch is flushed instead of before the write returns: the
   * file is renamed into place at once (whole, for every reader) and fsynced, with its directory,
   * together with the batch's other files (see SyncBatch). `fsync: false` still wins.
   */
  syncBatch?: SyncBatch | undefined;
}

/**
 * Files whose durability is settled at one point instead of one by one: an operation that writes
 * several state files (a meta plugin's delegate cache and its delegates' result caches) joins them
 * to a batch and flushes it before it answers. A flush fsyncs every file and each directory once,
 * all at the same time, so the filesystem commits them together (on ext4 one journal commit instead
 * of two per file, each of which waits for the disk). A file is renamed into place before its
 * data is on disk: until the flush, a power loss can leave it empty or missing (never half of
 * another content), which readers of such caches already treat as absent; a process crash
 * cannot, the page cache outlives it. The owner must flush before it acknowledges the operation.
 */
export class SyncBatch {
  private readonly files = new Set<string>();

  /** Adds a file written outside writeFileAtomic (already in place). */
  add(path: string): void {
    this.files.add(path);
  }

  /** Files waiting for the flush. */
  get pending(): readonly string[] {
    return [...this.files];
  }

  /**
   * fsyncs every file added since the last flush and each of their directories, concurrently.
   * A file removed meanwhile is skipped (nothing of it needs to survive); any other failure is
   * thrown after every fsync has ended.
   */
  async flush(): Promise<void> {
    const files = [...this.files];
    this.files.clear();
    const dirs = [...new Set(files.map((f) => dirname(f)))];
    const syncFile = async (f: string) => {
      let fh: Awaited<ReturnType<typeof fsp.open>>;
      try {
        fh = await fsp.open(f, 'r');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw err;
      }
      try {
        await fh.sync();
      } finally {
        await fh.close().catch(() => {});
      }
    };
    const done = await Promise.allSettled([...files.map(syncFile), ...dirs.map((d) => fsyncDir(d))]);
    const failed = done.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }
}

/** Characters of the target's name kept in a temp file's name (the rest is pid and a random tag). */
const TEMP_NAME_KEEP = 48;

function tempPath(path: string, tmpDir?: string): string {
  // `.tmp.<start of the target name>.<pid>.<random hex>`: bounded whatever the target's length
  // (a 255-byte target name must not make its temp name too long), and the writer's pid lets a
  // later open tell a dead writer's leftover from a live write (removeStaleTempFiles).
  return join(
    tmpDir ?? dirname(path),
    // Not secret, only distinct (the file is created O_EXCL): Math.random spares loading node:crypto.
    `.tmp.${basename(path).slice(0, TEMP_NAME_KEEP)}.${process.pid}.${Math.floor(Math.random() * 2 ** 32).toString(16)}`,
  );
}

/** True when a process with this pid exists (EPERM means it exists but is not ours to signal). */
export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pid a temp file name carries (`.tmp.<name>.<pid>.<hex>`), or undefined for other names. */
export function tempFileWriter(name: string): number | undefined {
  if (!name.startsWith('.tmp.')) return undefined;
  const m = /\.(\d+)\.[0-9a-f]+$/.exec(name);
  return m ? Number(m[1]) : undefined;
}

/** Options of removeStaleTempFiles. */
export interface StaleTempOptions {
  /** Also remove temp files older than this whatever their writer (pid reuse); default 10 minutes. */
  maxAgeMs?: number | undefined;
  /** Remove every temp file (the caller holds the lock every writer of this directory takes). */
  all?: boolean | undefined;
}

/**
 * Removes the temp files the atomic writers left in `dir` when killed between creating the temp
 * file and renaming or unlinking it: those whose writer process is gone, and any older than
 * `maxAgeMs`. A live writer's temp file is kept. Returns how many were removed; a missing
 * directory is fine.
 */
export function removeStaleTempFiles(dir: string, opts: StaleTempOptions = {}): number {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return 0;
  }
  const maxAge = opts.maxAgeMs ?? 10 * 60_000;
  let n = 0;
  for (const name of names) {
    if (!name.startsWith('.tmp.')) continue;
    const p = join(dir, name);
    let stale = opts.all === true;
    if (!stale) {
      const pid = tempFileWriter(name);
      stale = pid === undefined || (pid !== process.pid && !processAlive(pid));
    }
    if (!stale) {
      try {
        stale = Date.now() - statSync(p).mtimeMs > maxAge;
      } catch {
        continue;
      }
    }
    if (!stale) continue;
    try {
      unlinkSync(p);
      n++;
    } catch {
      // gone meanwhile
    }
  }
  return n;
}

/** Longest file name boundedFileName returns, in bytes: Linux's NAME_MAX (temp names are capped apart). */
export const MAX_FILE_NAME = 255;

/**
 * A file name for an arbitrary key that fits every Linux filesystem: the key itself when it is
 * short enough and holds no '/', else its start plus a SHA-256 of the whole key, so distinct keys
 * keep distinct names (container IDs have no length limit in the spec; a 300-character one must
 * not make a state file fail with ENAMETOOLONG). Callers that must tell keys apart store the key
 * in the file too.
 */
export function boundedFileName(key: string, max = MAX_FILE_NAME): string {
  if (Buffer.byteLength(key) <= max && !key.includes('/') && key !== '.' && key !== '..' && key !== '')
    return key;
  const hash = process.getBuiltinModule('node:crypto').createHash('sha256').update(key).digest('hex');
  // Keep a readable ASCII start (the hash alone is unique); 64 hex + '~' + the start stays <= max.
  const start = key.replace(/[^A-Za-z0-9._%-]/g, '_').slice(0, Math.max(0, max - 65));
  return `${start}~${hash}`;
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
  const later = opts.fsync !== false ? opts.syncBatch : undefined;
  try {
    await fh.writeFile(data);
    if (opts.fsync !== false && !later) await fh.sync();
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
  if (later) later.add(path);
  else await fsyncDir(dir);
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
