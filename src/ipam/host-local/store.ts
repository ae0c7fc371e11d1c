// host-local's on-disk state, byte-compatible with the Go plugin so both can share one directory:
//   <dataDir>/<network>/<ip>                 "<containerID>\r\n<ifname>" (no newline), mode 0644
//   <dataDir>/<network>/last_reserved_ip.<n> the last address handed out from range set n
//   <dataDir>/<network>/lock                 flock(2)ed for every operation (see ../lock.ts)
// Beyond the reference, a small index lets ADD, DEL and CHECK find an attachment without reading
// every file (the Go plugin reads all of them on every call):
//   <dataDir>/<network>/.cni-kit/a/<sha256(id,ifname)>  {"containerID","ifname","ips":[...]}
// The index is a hint, never the truth: every address it names is checked against its file, and ADD
// writes the entry before it creates the files the entry names, so a crash leaves nothing unnamed.
// DEL and CHECK fall back to the reference's full scan when a key has no entry (files the Go plugin
// wrote). The Go plugin ignores the index (its content never equals an ID) and may delete IP files,
// which the check catches. Temp files also live under .cni-kit, so the IP files are created whole
// (written, fsynced, then hard-linked into place) and a crash never leaves an empty one.
import {
  closeSync,
  constants,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { createFileExclusiveSync } from '../../fs/index.js';
import { formatIP, type IP, tryParseIP } from '../../spec/addr.js';
import { type FileLockOptions, withFileLock } from '../lock.js';

// node:crypto costs ~2 ms to load: only calls that hash or draw a random name pay for it.
const crypto = () => process.getBuiltinModule('node:crypto');

/** (containerID, ifname): the key of every allocation. */
export interface AllocationKey {
  containerId: string;
  ifname: string;
}

/** One address file as found on disk. */
export interface StoredAllocation {
  ip: IP;
  /** Container ID from the file ('' for an empty file left by a crashed writer of the Go plugin). */
  containerId: string;
  /** Interface name; undefined for legacy files that hold only an ID. */
  ifname: string | undefined;
}

/** Index entry for one attachment. */
interface IndexEntry {
  containerID: string;
  ifname: string;
  podRef?: string;
  ips: string[];
}

/** Options for the disk store. */
export interface HostLocalStoreOptions extends FileLockOptions {
  /** fsync each address file before it appears (default true); off only for benchmarks on tmpfs. */
  fsync?: boolean | undefined;
  /** Called after each durable step; crash tests kill the process here to prove every step recovers. */
  onStep?: ((step: 'intent' | 'reserved' | 'released') => void) | undefined;
}

const LAST_RESERVED = 'last_reserved_ip.';
const META = '.cni-kit';

/**
 * Rewrites the round-robin cursor in place: write at offset 0, then cut to length. Truncating to zero
 * first (what O_TRUNC does) makes ext4 flush the file on close (auto_da_alloc), which cost 3.5 ms per
 * ADD here. A crash between the two steps leaves a stale or unparsable cursor, which only moves where
 * the next scan starts.
 */
function writeCursor(path: string, text: string): void {
  const fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o644);
  try {
    const buf = Buffer.from(text);
    writeSync(fd, buf, 0, buf.length, 0);
    ftruncateSync(fd, buf.length);
  } finally {
    closeSync(fd);
  }
}

/** The reference's file content for a key. */
export function fileContent(key: AllocationKey): string {
  return `${key.containerId.trim()}\r\n${key.ifname}`;
}

/** True when a file's content belongs to the key (the id-only legacy form included, as Go does). */
export function contentMatches(content: string, key: AllocationKey, legacy = true): boolean {
  const t = content.trim();
  return t === fileContent(key) || (legacy && t === key.containerId.trim());
}

/** The host-local state directory of one network; every method but `withLock` expects the lock held. */
export class HostLocalStore {
  readonly dir: string;
  private readonly meta: string;
  private readonly index: string;
  /** The options the store was opened with. */
  readonly opts: HostLocalStoreOptions;

  constructor(dataDir: string, network: string, opts: HostLocalStoreOptions = {}) {
    this.dir = join(dataDir, network);
    this.meta = join(this.dir, META);
    this.index = join(this.meta, 'a');
    this.opts = opts;
  }

  /**
   * Runs `fn` under the network's flock, the same lock the Go plugin takes. Our temp files are only
   * ever created under this lock, so any found on taking it were left by a writer killed mid-write:
   * every call removes them first (one readdir of .cni-kit, which is otherwise near empty).
   */
  async withLock<T>(fn: () => T | Promise<T>): Promise<T> {
    mkdirSync(this.dir, { recursive: true, mode: 0o755 });
    return withFileLock(
      join(this.dir, 'lock'),
      () => {
        this.removeTempFiles();
        return fn();
      },
      this.opts,
    );
  }

  private ipPath(ip: IP): string {
    return join(this.dir, formatIP(ip));
  }

  /** True when the address has a file (taken by anyone). */
  isTaken(ip: IP): boolean {
    try {
      statSync(this.ipPath(ip));
      return true;
    } catch {
      return false;
    }
  }

  /** Creates the address file for the key; false when the address is already taken. */
  reserve(ip: IP, key: AllocationKey, rangeId: string): boolean {
    if (this.isTaken(ip)) return false;
    mkdirSync(this.meta, { recursive: true, mode: 0o755 });
    const ok = createFileExclusiveSync(this.ipPath(ip), fileContent(key), {
      mode: 0o644,
      fsync: this.opts.fsync !== false,
      tmpDir: this.meta,
    });
    if (ok) writeCursor(join(this.dir, LAST_RESERVED + rangeId), formatIP(ip));
    return ok;
  }

  /** The round-robin cursor of a range set, as the Go plugin reads it (no trimming). */
  lastReserved(rangeId: string): IP | undefined {
    try {
      return tryParseIP(readFileSync(join(this.dir, LAST_RESERVED + rangeId), 'utf8'));
    } catch {
      return undefined;
    }
  }

  /** The content of an address file, or undefined when it has none. */
  owner(ip: IP): string | undefined {
    try {
      return readFileSync(this.ipPath(ip), 'utf8');
    } catch {
      return undefined;
    }
  }

  /** Removes an address file; a missing file is fine. */
  remove(ip: IP): void {
    rmSync(this.ipPath(ip), { force: true });
  }

  /** Every address file in the directory (names that parse as IPs), content read. */
  scan(): StoredAllocation[] {
    const out: StoredAllocation[] = [];
    for (const name of this.names()) {
      const ip = tryParseIP(name);
      if (!ip || formatIP(ip) !== name) continue;
      const content = this.owner(ip);
      if (content === undefined) continue;
      const t = content.trim();
      const nl = t.indexOf('\r\n');
      out.push(
        nl < 0
          ? { ip, containerId: t, ifname: undefined }
          : { ip, containerId: t.slice(0, nl), ifname: t.slice(nl + 2) },
      );
    }
    return out;
  }

  /** Addresses (parsed file names) without reading contents: for counting. */
  addresses(): IP[] {
    const out: IP[] = [];
    for (const name of this.names()) {
      const ip = tryParseIP(name);
      if (ip && formatIP(ip) === name) out.push(ip);
    }
    return out;
  }

  private names(): string[] {
    try {
      return readdirSync(this.dir);
    } catch {
      return [];
    }
  }

  /** Addresses whose files belong to the key, found by reading every file (the reference's walk). */
  scanFor(key: AllocationKey): IP[] {
    const all = this.scan();
    const exact = all.filter((a) => a.containerId === key.containerId.trim() && a.ifname === key.ifname);
    if (exact.length > 0) return exact.map((a) => a.ip);
    return all
      .filter((a) => a.ifname === undefined && a.containerId === key.containerId.trim())
      .map((a) => a.ip);
  }

  private entryPath(key: AllocationKey): string {
    return join(
      this.index,
      crypto().createHash('sha256').update(fileContent(key)).digest('hex').slice(0, 40),
    );
  }

  /**
   * The addresses the key holds: from the index when its entry is settled, else by a full scan.
   * With `scanIfUnindexed: false` (ADD) a key without an entry holds nothing: every address we create
   * is preceded by an entry naming it, so only the Go plugin can have made one (then ADD hands out a
   * second address where Go would refuse, which is the price of not reading every file).
   */
  held(key: AllocationKey, scanIfUnindexed = true): IP[] {
    const entry = this.readEntry(key);
    if (!entry && !scanIfUnindexed) return [];
    if (entry) {
      const out: IP[] = [];
      for (const s of entry.ips) {
        const ip = tryParseIP(s);
        const c = ip ? this.owner(ip) : undefined;
        if (ip && c !== undefined && contentMatches(c, key, false)) out.push(ip);
      }
      return out;
    }
    return this.scanFor(key);
  }

  private readEntry(key: AllocationKey): IndexEntry | undefined {
    try {
      const e = JSON.parse(readFileSync(this.entryPath(key), 'utf8')) as IndexEntry;
      if (e.containerID !== key.containerId || e.ifname !== key.ifname || !Array.isArray(e.ips))
        return undefined;
      return e;
    } catch {
      return undefined;
    }
  }

  /**
   * Records what the key holds (or is about to create). A plain write, not temp+rename: a rename over
   * an existing file costs a data flush on ext4, and a torn entry only reads as "no entry", which
   * the verification in `held` tolerates (it is written before the files it names).
   */
  writeEntry(key: AllocationKey, ips: readonly IP[], podRef?: string): void {
    if (ips.length === 0) {
      this.removeEntry(key);
      return;
    }
    mkdirSync(this.index, { recursive: true, mode: 0o755 });
    const e: IndexEntry = {
      containerID: key.containerId,
      ifname: key.ifname,
      ips: ips.map((ip) => formatIP(ip)),
    };
    if (podRef) e.podRef = podRef;
    writeFileSync(this.entryPath(key), JSON.stringify(e), { mode: 0o644 });
  }

  /** Drops the key's index entry. */
  removeEntry(key: AllocationKey): void {
    rmSync(this.entryPath(key), { force: true });
  }

  /** Index entries and temp files, for GC: returns the keys the index knows. */
  indexKeys(): AllocationKey[] {
    const out: AllocationKey[] = [];
    let names: string[] = [];
    try {
      names = readdirSync(this.index);
    } catch {}
    for (const n of names) {
      try {
        const e = JSON.parse(readFileSync(join(this.index, n), 'utf8')) as IndexEntry;
        out.push({ containerId: e.containerID, ifname: e.ifname });
      } catch {
        rmSync(join(this.index, n), { force: true });
      }
    }
    return out;
  }

  /** Removes temp files a crashed writer left under .cni-kit (only ever created under the lock). */
  removeTempFiles(): number {
    let n = 0;
    let names: string[] = [];
    try {
      names = readdirSync(this.meta);
    } catch {}
    for (const name of names) {
      if (name.startsWith('.tmp.')) {
        try {
          unlinkSync(join(this.meta, name));
          n++;
        } catch {}
      }
    }
    return n;
  }
}
