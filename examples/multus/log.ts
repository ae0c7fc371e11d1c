// multus's logFile with the rotation multus applies to it (natefinch/lumberjack behind
// `logOptions`): when a write would reach maxSize MB the file is renamed to
// `<name>-<UTC time, 2006-01-02T15-04-05.000><ext>` and a new one started; then backups beyond
// maxBackups or older than maxAge days are removed and the rest gzipped when compress is on.
// Each multus call is a short process, so the size is taken from the file, not from memory.
import {
  appendFileSync,
  chmodSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { gzipSync } from 'node:zlib';

/** Rotation settings; multus's defaults apply whenever logFile is set. */
export interface LogRotation {
  /** Megabytes before the file is rotated; 0 means lumberjack's default, 100. */
  maxSize: number;
  /** Days a backup is kept; 0 keeps them regardless of age. */
  maxAge: number;
  /** Backups kept; 0 keeps them all. */
  maxBackups: number;
  /** Gzip backups (`.gz`). */
  compress: boolean;
}

/** multus's defaults (pkg/logging): 100 MB, 5 days, 5 backups, compressed. */
export const MULTUS_LOG_ROTATION: LogRotation = { maxSize: 100, maxAge: 5, maxBackups: 5, compress: true };

const MB = 1024 * 1024;
const pad = (n: number, w = 2) => String(n).padStart(w, '0');

/** Lumberjack's backup time stamp (UTC): 2006-01-02T15-04-05.000. */
export function backupStamp(t: Date): string {
  return `${t.getUTCFullYear()}-${pad(t.getUTCMonth() + 1)}-${pad(t.getUTCDate())}T${pad(t.getUTCHours())}-${pad(t.getUTCMinutes())}-${pad(t.getUTCSeconds())}.${pad(t.getUTCMilliseconds(), 3)}`;
}

const STAMP_RE = /^(\d{4})-(\d\d)-(\d\d)T(\d\d)-(\d\d)-(\d\d)\.(\d{3})$/;

function parseStamp(s: string): number | undefined {
  const m = STAMP_RE.exec(s);
  if (!m) return undefined;
  const [y = 0, mo = 1, d = 1, h = 0, mi = 0, se = 0, ms = 0] = m.slice(1).map(Number);
  return Date.UTC(y, mo - 1, d, h, mi, se, ms);
}

/** The backups of `file`, newest first. */
function backups(file: string): Array<{ name: string; time: number }> {
  const ext = extname(file);
  const prefix = `${basename(file, ext)}-`;
  let names: string[];
  try {
    names = readdirSync(dirname(file));
  } catch {
    return [];
  }
  const out: Array<{ name: string; time: number }> = [];
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const rest = name.slice(prefix.length);
    const stamp = rest.endsWith(`${ext}.gz`)
      ? rest.slice(0, rest.length - ext.length - 3)
      : rest.endsWith(ext)
        ? rest.slice(0, rest.length - ext.length)
        : undefined;
    const time = stamp === undefined ? undefined : parseStamp(stamp);
    if (time !== undefined) out.push({ name, time });
  }
  return out.sort((a, b) => b.time - a.time);
}

/** Removes backups beyond maxBackups or maxAge and compresses the rest (lumberjack's "mill"). */
function mill(file: string, rot: LogRotation, now: Date): void {
  const dir = dirname(file);
  let files = backups(file);
  const drop = (f: { name: string }) => {
    try {
      unlinkSync(join(dir, f.name));
    } catch {
      // another process got there first
    }
  };
  if (rot.maxBackups > 0) {
    const kept = new Set<string>();
    const remaining: typeof files = [];
    for (const f of files) {
      const key = f.name.endsWith('.gz') ? f.name.slice(0, -3) : f.name;
      if (kept.has(key) || kept.size < rot.maxBackups) {
        kept.add(key);
        remaining.push(f);
      } else drop(f);
    }
    files = remaining;
  }
  if (rot.maxAge > 0) {
    const cutoff = now.getTime() - rot.maxAge * 24 * 3600 * 1000;
    files = files.filter((f) => {
      if (f.time >= cutoff) return true;
      drop(f);
      return false;
    });
  }
  if (rot.compress) {
    for (const f of files) {
      if (f.name.endsWith('.gz')) continue;
      const src = join(dir, f.name);
      try {
        const mode = statSync(src).mode & 0o777;
        writeFileSync(`${src}.gz`, gzipSync(readFileSync(src)), { mode });
        unlinkSync(src);
      } catch {
        // compressed by a concurrent call, or unreadable: left as it is
      }
    }
  }
}

/**
 * Appends `text` to `file`, rotating first when the file would reach maxSize. Returns false when
 * the line alone is larger than maxSize (lumberjack refuses such a write too).
 */
export function appendRotated(file: string, text: string, rot: LogRotation, now = new Date()): boolean {
  const max = (rot.maxSize > 0 ? rot.maxSize : 100) * MB;
  const len = Buffer.byteLength(text);
  if (len > max) return false;
  let size = -1;
  let mode = 0o600;
  try {
    const st = statSync(file);
    size = st.size;
    mode = st.mode & 0o777;
  } catch {
    // no file yet: it is created below
  }
  if (size >= 0 && size + len >= max) {
    const ext = extname(file);
    const backup = join(dirname(file), `${basename(file, ext)}-${backupStamp(now)}${ext}`);
    try {
      renameSync(file, backup);
    } catch {
      // a concurrent call rotated it already
    }
    appendFileSync(file, text, { mode });
    chmodSync(file, mode);
    mill(file, rot, now);
    return true;
  }
  appendFileSync(file, text, { mode: 0o600 });
  return true;
}
