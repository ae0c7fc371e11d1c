// File backend (one node): a directory of small files, one per held address, like host-local's.
// ADD takes no lock: an address is claimed by hard-linking a fully written temp file into place
// (link(2) fails with EEXIST, so two processes can never both win), then the attachment's owner
// index is claimed the same way. DEL, STS adoption and GC rewrite several files and so hold the
// space's flock. A crash between two steps leaves either an address without an index (GC frees
// it) or an index pointing nowhere (ignored on read, removed by GC), never a wrong owner.
//
// Layout under `data_dir` (default /var/lib/cni/whereabouts):
//   spaces/<space>/<4|6>/<ip>                   JSON {ip, pool, id, ifname, podref?}
//   spaces/<space>/lock                         flock for DEL / adoption / GC
//   pools/<pool>/owners/<containerId%0Aifname>  the held ip
//   pools/<pool>/pods/<ns%2Fname%0Aifname>      the held ip
//   pools/<pool>/cursor                         last ip handed out (round-robin hint)
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { createFileExclusiveSync, writeFileAtomicSync } from '../../../fs/index.js';
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
}

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
  return {
    kind: 'file',
    async session<T>(ref: PoolRef, fn: (s: PoolSession) => Promise<T>): Promise<T> {
      const s = new FileSession(opts, ref, format);
      for (const d of [s.ipsDir, s.ownersDir, s.podsDir]) mkdir(d);
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
  private readonly atomic: { fsync: boolean };

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
    this.atomic = { fsync: opts.fsync !== false };
  }

  private ipText(a: bigint): string {
    return this.format(a, this.ref.family);
  }
  private ipPath(a: bigint): string {
    return join(this.ipsDir, this.ipText(a));
  }
  private ownerPath(containerId: string, ifname: string): string {
    return join(this.ownersDir, encodeURIComponent(`${containerId}\n${ifname}`));
  }
  private podPath(podRef: string, ifname: string): string {
    return join(this.podsDir, encodeURIComponent(`${podRef}\n${ifname}`));
  }
  private locked<T>(fn: () => T | Promise<T>): Promise<T> {
    return withFileLock(join(this.spaceDir, 'lock'), fn);
  }

  private readRecord(address: bigint): Allocation | undefined {
    return decodeAllocation(readText(this.ipPath(address)), address);
  }

  private readVia(indexPath: string): Allocation | undefined {
    const ip = tryParseIP((readText(indexPath) ?? '').trim());
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
    if (!createFileExclusiveSync(ipPath, encodeAllocation(a, ip), this.atomic)) return { kind: 'taken' };
    const ownerPath = this.ownerPath(a.containerId, a.ifname);
    for (let tries = 0; tries < 2; tries++) {
      if (createFileExclusiveSync(ownerPath, ip, this.atomic)) {
        if (a.podRef !== undefined) writeFileAtomicSync(this.podPath(a.podRef, a.ifname), ip, this.atomic);
        await this.setCursor(a.address);
        return { kind: 'claimed' };
      }
      const existing = await this.byOwner(a.containerId, a.ifname);
      if (existing) {
        unlinkQuiet(ipPath);
        return { kind: 'owner-exists', existing };
      }
      // The index points at an address the attachment no longer holds (a crash mid-DEL): replace it.
      await this.locked(async () => {
        if (!(await this.byOwner(a.containerId, a.ifname))) unlinkQuiet(ownerPath);
      });
    }
    unlinkQuiet(ipPath);
    return { kind: 'taken' };
  }

  async adopt(prev: Allocation, containerId: string): Promise<boolean> {
    return this.locked(async () => {
      const ip = this.ipText(prev.address);
      const ipPath = this.ipPath(prev.address);
      if (readText(ipPath) !== encodeAllocation(prev, ip)) return false;
      const next: Allocation = { ...prev, containerId };
      const newOwner = this.ownerPath(containerId, prev.ifname);
      if (!createFileExclusiveSync(newOwner, ip, this.atomic)) {
        if (await this.byOwner(containerId, prev.ifname)) return false;
        writeFileAtomicSync(newOwner, ip, this.atomic);
      }
      writeFileAtomicSync(ipPath, encodeAllocation(next, ip), this.atomic);
      const oldOwner = this.ownerPath(prev.containerId, prev.ifname);
      if (readText(oldOwner) === ip) unlinkQuiet(oldOwner);
      return true;
    });
  }

  async release(a: Allocation): Promise<void> {
    await this.locked(() => {
      const ip = this.ipText(a.address);
      const ipPath = this.ipPath(a.address);
      if (readText(ipPath) === encodeAllocation(a, ip)) unlinkQuiet(ipPath);
      for (const p of [
        this.ownerPath(a.containerId, a.ifname),
        a.podRef !== undefined ? this.podPath(a.podRef, a.ifname) : undefined,
      ]) {
        if (p && readText(p) === ip) unlinkQuiet(p);
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
    writeFileAtomicSync(join(this.poolDir, 'cursor'), this.ipText(address), { fsync: false });
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
      for (const name of readdirSync(this.ownersDir)) {
        if (name.startsWith('.tmp.')) continue;
        const [id, ifname] = decodeURIComponent(name).split('\n');
        if (id !== undefined && ifname !== undefined && !(await this.byOwner(id, ifname))) {
          unlinkQuiet(join(this.ownersDir, name));
        }
      }
      for (const name of readdirSync(this.podsDir)) {
        if (name.startsWith('.tmp.')) continue;
        const key = decodeURIComponent(name);
        const cut = key.lastIndexOf('\n');
        if (cut < 0 || !(await this.byPod(key.slice(0, cut), key.slice(cut + 1)))) {
          unlinkQuiet(join(this.podsDir, name));
        }
      }
    });
  }
}
