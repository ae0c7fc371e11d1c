// File backend (one node): a directory of small files, one per held address, like host-local's.
// ADD takes no lock: the attachment's owner index is claimed first by hard-linking a fully written
// temp file into place (link(2) fails with EEXIST, so two processes can never both win), then the
// address record the same way. DEL, STS adoption and GC rewrite several files and so hold the
// space's flock.
//
// Crash consistency (a SIGKILL at any point of ADD or DEL): the index is written before the record
// it names and removed after it, so a kill leaves at most an index naming an address the attachment
// does not hold. That reads as "nothing held", the attachment's next ADD replaces it and its DEL
// removes it; a record is never left without the index that lets DEL find it. Every index carries
// its writer's pid, so a live writer's fresh index is never mistaken for a dead one's. Temp files
// live in `tmp/` and carry their writer's pid too; each open of the store removes those of dead
// writers.
//
// Layout under `data_dir` (default /var/lib/cni/whereabouts):
//   spaces/<space>/<4|6>/<ip>             JSON {ip, pool, id, ifname, podref?}
//   spaces/<space>/lock                   flock for DEL / adoption / GC
//   pools/<pool>/owners/<key(id, ifname)> "<ip>\n<writer pid>"
//   pools/<pool>/pods/<key(ns/name, if)>  "<ip>\n<writer pid>"
//   pools/<pool>/cursor                   last ip handed out (round-robin hint)
//   tmp/                                  temp files of the atomic writers
// key(a, b) is encodeURIComponent("a\nb"), bounded to 200 bytes by a SHA-256 suffix when longer
// (a container ID has no length limit): the record the index names holds the full key, and every
// read checks it.
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import {
  boundedFileName,
  createFileExclusiveSync,
  processAlive,
  removeStaleTempFiles,
  writeFileAtomicSync,
} from '../../../fs/index.js';
import { type IPFamily, tryParseIP } from '../../../spec/addr.js';
import { withFileLock } from '../../lock.js';
import {
  type Allocation,
  type ClaimOutcome,
  decodeAllocation,
  encodeAllocation,
  type PoolRef,
  type PoolSession,
  type Store,
} from '../store.js';

/** Options of the file store. */
export interface FileStoreOptions {
  dir: string;
  /** fsync records before they become visible (default true; benches on tmpfs may turn it off). */
  fsync?: boolean | undefined;
  /** Called after each durable step of a claim or release; crash tests kill the process there. */
  onStep?: ((step: FileStoreStep) => void) | undefined;
}

/** The durable steps of the file store: owner index written, record written, record removed. */
export type FileStoreStep = 'indexed' | 'claimed' | 'released';

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

function unlinkQuiet(path: string): void {
  try {
    unlinkSync(path);
  } catch {}
}

/** An index file's content: the address, then the pid of the process that wrote it. */
function indexText(ip: string): string {
  return `${ip}\n${process.pid}`;
}

/** The address and writer an index file names (files of older versions hold only the address). */
function readIndex(path: string): { ip: string; pid: number | undefined } | undefined {
  const t = readText(path);
  if (t === undefined) return undefined;
  const [ip = '', pid] = t.trim().split('\n');
  return { ip: ip.trim(), pid: pid && /^\d+$/.test(pid.trim()) ? Number(pid.trim()) : undefined };
}

/** True when an index may be replaced: its writer is gone (or is this process, which is not writing it). */
function writerGone(pid: number | undefined): boolean {
  return pid === undefined || pid === process.pid || !processAlive(pid);
}

/** Opens a file-backed store rooted at `opts.dir`. */
export function openFileStore(
  opts: FileStoreOptions,
  format: (a: bigint, family: IPFamily) => string,
): Store {
  const made = new Set<string>();
  const mkdir = (d: string) => {
    if (made.has(d)) return;
    mkdirSync(d, { recursive: true, mode: 0o755 });
    made.add(d);
  };
  // Temp files of writers killed mid-write: the directory is empty unless one was.
  removeStaleTempFiles(join(opts.dir, 'tmp'));
  return {
    kind: 'file',
    async session<T>(ref: PoolRef, fn: (s: PoolSession) => Promise<T>): Promise<T> {
      const s = new FileSession(opts, ref, format);
      for (const d of [s.ipsDir, s.ownersDir, s.podsDir, s.tmpDir]) mkdir(d);
      return fn(s);
    },
    async close() {},
  };
}

class FileSession implements PoolSession {
  readonly spaceDir: string;
  readonly ipsDir: string;
  readonly poolDir: string;
  readonly ownersDir: string;
  readonly podsDir: string;
  readonly tmpDir: string;
  private readonly atomic: { fsync: boolean; tmpDir: string };
  private readonly onStep: ((step: FileStoreStep) => void) | undefined;

  constructor(
    opts: FileStoreOptions,
    private readonly ref: PoolRef,
    private readonly format: (a: bigint, family: IPFamily) => string,
  ) {
    this.spaceDir = join(opts.dir, 'spaces', ref.space);
    this.ipsDir = join(this.spaceDir, String(ref.family));
    this.poolDir = join(opts.dir, 'pools', ref.pool);
    this.ownersDir = join(this.poolDir, 'owners');
    this.podsDir = join(this.poolDir, 'pods');
    this.tmpDir = join(opts.dir, 'tmp');
    this.onStep = opts.onStep;
    this.atomic = { fsync: opts.fsync !== false, tmpDir: this.tmpDir };
  }

  private ipText(a: bigint): string {
    return this.format(a, this.ref.family);
  }
  private ipPath(a: bigint): string {
    return join(this.ipsDir, this.ipText(a));
  }
  private ownerPath(containerId: string, ifname: string): string {
    return join(this.ownersDir, boundedFileName(encodeURIComponent(`${containerId}\n${ifname}`)));
  }
  private podPath(podRef: string, ifname: string): string {
    return join(this.podsDir, boundedFileName(encodeURIComponent(`${podRef}\n${ifname}`)));
  }
  private locked<T>(fn: () => T | Promise<T>): Promise<T> {
    return withFileLock(join(this.spaceDir, 'lock'), fn);
  }

  private readRecord(address: bigint): Allocation | undefined {
    return decodeAllocation(readText(this.ipPath(address)), address);
  }

  private readVia(indexPath: string): Allocation | undefined {
    const ip = tryParseIP(readIndex(indexPath)?.ip ?? '');
    if (!ip || ip.family !== this.ref.family) return undefined;
    return this.readRecord(ip.value);
  }

  async byOwner(containerId: string, ifname: string): Promise<Allocation | undefined> {
    const a = this.readVia(this.ownerPath(containerId, ifname));
    return a && a.containerId === containerId && a.ifname === ifname && a.pool === this.ref.pool
      ? a
      : undefined;
  }

  async byPod(podRef: string, ifname: string): Promise<Allocation | undefined> {
    const a = this.readVia(this.podPath(podRef, ifname));
    return a && a.podRef === podRef && a.ifname === ifname && a.pool === this.ref.pool ? a : undefined;
  }

  async claim(a: Allocation): Promise<ClaimOutcome> {
    const ip = this.ipText(a.address);
    const ipPath = this.ipPath(a.address);
    const ownerPath = this.ownerPath(a.containerId, a.ifname);
    // 1. The owner index, naming the address before it is held.
    for (let tries = 0; ; tries++) {
      if (createFileExclusiveSync(ownerPath, indexText(ip), this.atomic)) break;
      const existing = await this.byOwner(a.containerId, a.ifname);
      if (existing) return { kind: 'owner-exists', existing };
      // The index names an address the attachment does not hold: left by a writer killed between
      // the two steps (replace it), or being written right now by a live one (let it finish).
      if (tries > 0 || !writerGone(readIndex(ownerPath)?.pid)) return { kind: 'taken' };
      await this.locked(async () => {
        if (!(await this.byOwner(a.containerId, a.ifname)) && writerGone(readIndex(ownerPath)?.pid)) {
          unlinkQuiet(ownerPath);
        }
      });
    }
    this.onStep?.('indexed');
    // 2. The address record.
    if (!createFileExclusiveSync(ipPath, encodeAllocation(a, ip), this.atomic)) {
      if (readIndex(ownerPath)?.ip === ip) unlinkQuiet(ownerPath);
      return { kind: 'taken' };
    }
    this.onStep?.('claimed');
    if (a.podRef !== undefined) {
      writeFileAtomicSync(this.podPath(a.podRef, a.ifname), indexText(ip), this.atomic);
    }
    await this.setCursor(a.address);
    return { kind: 'claimed' };
  }

  async adopt(prev: Allocation, containerId: string): Promise<boolean> {
    return this.locked(async () => {
      const ip = this.ipText(prev.address);
      const ipPath = this.ipPath(prev.address);
      if (readText(ipPath) !== encodeAllocation(prev, ip)) return false;
      const next: Allocation = { ...prev, containerId };
      const newOwner = this.ownerPath(containerId, prev.ifname);
      if (!createFileExclusiveSync(newOwner, indexText(ip), this.atomic)) {
        if (await this.byOwner(containerId, prev.ifname)) return false;
        writeFileAtomicSync(newOwner, indexText(ip), this.atomic);
      }
      writeFileAtomicSync(ipPath, encodeAllocation(next, ip), this.atomic);
      const oldOwner = this.ownerPath(prev.containerId, prev.ifname);
      if (readIndex(oldOwner)?.ip === ip) unlinkQuiet(oldOwner);
      return true;
    });
  }

  async release(a: Allocation): Promise<void> {
    await this.locked(() => {
      // The record first, its indexes after: a kill in between leaves only indexes that name
      // nothing, which `repair` (the next DEL) and GC remove.
      const ip = this.ipText(a.address);
      const ipPath = this.ipPath(a.address);
      if (readText(ipPath) === encodeAllocation(a, ip)) unlinkQuiet(ipPath);
      this.onStep?.('released');
      for (const p of [
        this.ownerPath(a.containerId, a.ifname),
        a.podRef !== undefined ? this.podPath(a.podRef, a.ifname) : undefined,
      ]) {
        if (p && readIndex(p)?.ip === ip) unlinkQuiet(p);
      }
    });
  }

  async repair(containerId: string, ifname: string, podRef?: string): Promise<void> {
    const owner = this.ownerPath(containerId, ifname);
    const pod = podRef === undefined ? undefined : this.podPath(podRef, ifname);
    if (!existsSync(owner) && (pod === undefined || !existsSync(pod))) return;
    await this.locked(async () => {
      const mine = await this.byOwner(containerId, ifname);
      if (!mine && writerGone(readIndex(owner)?.pid)) unlinkQuiet(owner);
      if (pod === undefined || podRef === undefined) return;
      const held = await this.byPod(podRef, ifname);
      if (held && held.containerId === containerId) {
        // A record of this attachment that its owner index does not name (versions that wrote the
        // record first and were killed before the index): nothing else can find it, free it.
        if (mine) return;
        const ip = this.ipText(held.address);
        if (readText(this.ipPath(held.address)) === encodeAllocation(held, ip)) {
          unlinkQuiet(this.ipPath(held.address));
        }
        unlinkQuiet(pod);
      } else if (!held && writerGone(readIndex(pod)?.pid)) {
        unlinkQuiet(pod);
      }
    });
  }

  async takenAmong(addresses: readonly bigint[]): Promise<Set<bigint>> {
    const out = new Set<bigint>();
    for (const a of addresses) if (existsSync(this.ipPath(a))) out.add(a);
    return out;
  }

  async cursor(): Promise<bigint | undefined> {
    const ip = tryParseIP((readText(join(this.poolDir, 'cursor')) ?? '').trim());
    return ip && ip.family === this.ref.family ? ip.value : undefined;
  }

  async setCursor(address: bigint): Promise<void> {
    // Only a hint: a lost update costs one extra claim attempt, so no fsync.
    writeFileAtomicSync(join(this.poolDir, 'cursor'), this.ipText(address), {
      fsync: false,
      tmpDir: this.tmpDir,
    });
  }

  async list(): Promise<Allocation[]> {
    const out: Allocation[] = [];
    for (const name of readdirSync(this.ipsDir)) {
      const ip = tryParseIP(name);
      if (!ip || ip.family !== this.ref.family) continue;
      const a = this.readRecord(ip.value);
      if (a && a.pool === this.ref.pool) out.push(a);
    }
    return out;
  }

  async sweep(): Promise<void> {
    await this.locked(async () => {
      const now = Date.now();
      removeStaleTempFiles(this.tmpDir);
      // Versions before tmp/ wrote their temp files next to the targets.
      for (const dir of [this.ipsDir, this.ownersDir, this.podsDir, this.poolDir]) {
        for (const name of readdirSync(dir)) {
          // Temp files of writers that died mid-write; live writers rename theirs within milliseconds.
          if (name.startsWith('.tmp.')) {
            const p = join(dir, name);
            try {
              if (now - statSync(p).mtimeMs > 60_000) unlinkQuiet(p);
            } catch {}
          }
        }
      }
      // Indexes whose record is gone or belongs to another key (names may be hashed, so the key is
      // taken from the record, not decoded from the name); a live writer's fresh index is kept.
      const dangling = (p: string, pathOf: (a: Allocation) => string | undefined) => {
        const idx = readIndex(p);
        const ip = tryParseIP(idx?.ip ?? '');
        const rec = ip && ip.family === this.ref.family ? this.readRecord(ip.value) : undefined;
        const ok = rec !== undefined && rec.pool === this.ref.pool && pathOf(rec) === p;
        return !ok && writerGone(idx?.pid);
      };
      for (const name of readdirSync(this.ownersDir)) {
        if (name.startsWith('.tmp.')) continue;
        const p = join(this.ownersDir, name);
        if (dangling(p, (a) => this.ownerPath(a.containerId, a.ifname))) unlinkQuiet(p);
      }
      for (const name of readdirSync(this.podsDir)) {
        if (name.startsWith('.tmp.')) continue;
        const p = join(this.podsDir, name);
        if (dangling(p, (a) => (a.podRef === undefined ? undefined : this.podPath(a.podRef, a.ifname)))) {
          unlinkQuiet(p);
        }
      }
    });
  }
}
