import { readdir, readFile, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { boundedFileName, removeStaleTempFiles, type SyncBatch, writeFileAtomic } from '../fs/index.js';
import { CniError, ErrorCode } from '../spec/errors.js';

/** The `kind` tag of libcni's cache record. */
export const CACHE_KIND_V1 = 'cniCacheV1';

/** Default cache directory, shared with libcni-based runtimes (containerd, CRI-O, cnitool). */
export const DEFAULT_CACHE_DIR = '/var/lib/cni';

/**
 * libcni's `cniCacheV1` record, field for field and in the same order; `config` holds the
 * network configuration bytes in base64 because Go encodes a []byte that way.
 */
export interface CacheRecordJson {
  kind: typeof CACHE_KIND_V1;
  containerId: string;
  config: string;
  ifName: string;
  networkName: string;
  netns?: string;
  cniArgs?: Array<[string, string]>;
  capabilityArgs?: Record<string, unknown>;
  result?: Record<string, unknown>;
}

/** A cache record with its config decoded to text (the wire record keeps it base64). */
export interface CachedAttachment {
  containerId: string;
  ifname: string;
  networkName: string;
  /** The network (list) configuration as it was at ADD time (JSON text). */
  config: string;
  netns?: string;
  cniArgs?: Array<[string, string]>;
  capabilityArgs?: Record<string, unknown>;
  /** The final ADD result, in its own version. */
  result?: Record<string, unknown>;
}

/** Which attachment a cache file belongs to. */
export interface AttachmentKey {
  networkName: string;
  containerId: string;
  ifname: string;
}

/** True for a name boundedFileName hashed (`<start>~<64 hex>`): names, IDs and ifnames have no '~'+hash. */
function isHashedFileName(name: string): boolean {
  return /~[0-9a-f]{64}$/.test(name);
}

function plainCacheName(key: AttachmentKey): string {
  return `${key.networkName}-${key.containerId}-${key.ifname}`;
}

/**
 * The path libcni uses, `<cacheDir>/results/<network>-<containerID>-<ifname>`, unless that name is
 * too long for a file name (over 255 bytes, where libcni fails with ENAMETOOLONG): then
 * boundedFileName's `<start>~<sha256>`, and the record inside names the attachment.
 */
export function cacheFilePath(cacheDir: string, key: AttachmentKey): string {
  for (const [field, v] of [
    ['network name', key.networkName],
    ['container ID', key.containerId],
    ['interface name', key.ifname],
  ] as const) {
    if (!v) {
      throw new CniError(
        ErrorCode.InvalidEnvironmentVariables,
        `result cache: ${field} is empty; it is part of the cache file name`,
      );
    }
    if (v.includes('/') || v === '.' || v === '..') {
      throw new CniError(
        ErrorCode.InvalidEnvironmentVariables,
        `result cache: ${field} ${JSON.stringify(v)} cannot be part of a file name; remove "/"`,
      );
    }
  }
  const plain = plainCacheName(key);
  return join(cacheDir, 'results', boundedFileName(plain));
}

/** Serialises an attachment as libcni does (Go's field order; empty optional fields omitted). */
export function encodeCacheRecord(a: CachedAttachment): string {
  const rec: CacheRecordJson = {
    kind: CACHE_KIND_V1,
    containerId: a.containerId,
    config: Buffer.from(a.config, 'utf8').toString('base64'),
    ifName: a.ifname,
    networkName: a.networkName,
  };
  if (a.netns) rec.netns = a.netns;
  if (a.cniArgs && a.cniArgs.length > 0) rec.cniArgs = a.cniArgs.map(([k, v]) => [k, v]);
  if (a.capabilityArgs && Object.keys(a.capabilityArgs).length > 0) rec.capabilityArgs = a.capabilityArgs;
  if (a.result && Object.keys(a.result).length > 0) rec.result = a.result;
  return JSON.stringify(rec);
}

/** Why a cache file could not be used. */
export type CacheDecodeFailure = { ok: false; reason: string };

/**
 * Decodes a cache file's text. A cniCacheV1 record yields `{ok, record}`; a legacy file (just
 * the result JSON, written by libcni before 0.7) yields `{ok, legacyResult}`; anything else
 * (empty, truncated, not an object) yields a reason.
 */
export function decodeCacheRecord(
  text: string,
):
  | { ok: true; record: CachedAttachment; legacyResult?: undefined }
  | { ok: true; record?: undefined; legacyResult: Record<string, unknown> }
  | CacheDecodeFailure {
  if (text.trim() === '') return { ok: false, reason: 'the file is empty (an interrupted write?)' };
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    return { ok: false, reason: `not JSON (${(err as Error).message})` };
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    return { ok: false, reason: 'not a JSON object' };
  const o = v as Record<string, unknown>;
  if (o.kind !== CACHE_KIND_V1) {
    // libcni falls back to reading the whole file as a result; do the same, but only when it looks like one
    if (o.kind === undefined && typeof o.cniVersion === 'string') return { ok: true, legacyResult: o };
    return { ok: false, reason: `unknown record kind ${JSON.stringify(o.kind)}` };
  }
  const str = (k: string) => (typeof o[k] === 'string' ? (o[k] as string) : undefined);
  const containerId = str('containerId');
  const ifName = str('ifName');
  const networkName = str('networkName');
  if (containerId === undefined || ifName === undefined || networkName === undefined) {
    return { ok: false, reason: 'containerId, ifName or networkName is missing' };
  }
  let config = '';
  if (o.config !== undefined && o.config !== null) {
    if (typeof o.config !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(o.config)) {
      return { ok: false, reason: 'config is not base64' };
    }
    config = Buffer.from(o.config, 'base64').toString('utf8');
  }
  const record: CachedAttachment = { containerId, ifname: ifName, networkName, config };
  const netns = str('netns');
  if (netns) record.netns = netns;
  if (Array.isArray(o.cniArgs)) {
    if (
      !o.cniArgs.every((p) => Array.isArray(p) && p.length === 2 && p.every((s) => typeof s === 'string'))
    ) {
      return { ok: false, reason: 'cniArgs is not a list of [key, value] string pairs' };
    }
    record.cniArgs = (o.cniArgs as Array<[string, string]>).map(([k, val]) => [k, val]);
  }
  if (isObject(o.capabilityArgs)) record.capabilityArgs = o.capabilityArgs;
  if (isObject(o.result)) record.result = o.result;
  return { ok: true, record };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Result of reading one attachment's cache file. */
export type CacheReadOutcome =
  | { status: 'missing'; path: string }
  | { status: 'ok'; path: string; record?: CachedAttachment; result: Record<string, unknown> | undefined }
  | { status: 'corrupt'; path: string; reason: string };

/** The result cache directory layout shared with libcni: one file per attachment under `results/`. */
export class ResultCache {
  /**
   * `dir` is the cache root (libcni's CacheDir), e.g. /var/lib/cni. With `syncBatch`, writes are
   * made durable when the batch is flushed rather than each before it returns.
   */
  constructor(
    readonly dir: string = DEFAULT_CACHE_DIR,
    private readonly syncBatch?: SyncBatch | undefined,
  ) {}

  /** The file that holds one attachment. */
  path(key: AttachmentKey): string {
    return cacheFilePath(this.dir, key);
  }

  /** Writes an attachment's record atomically (dir 0700, file 0600 as libcni). */
  async write(a: CachedAttachment): Promise<void> {
    await writeFileAtomic(this.path(a), encodeCacheRecord(a), {
      mode: 0o600,
      dirMode: 0o700,
      syncBatch: this.syncBatch,
    });
  }

  /** Reads one attachment's cache file without throwing on damage: the caller decides what a corrupt file means. */
  async read(key: AttachmentKey): Promise<CacheReadOutcome> {
    const path = this.path(key);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { status: 'missing', path };
      return { status: 'corrupt', path, reason: `cannot read it: ${(err as Error).message}` };
    }
    const d = decodeCacheRecord(text);
    if (!d.ok) return { status: 'corrupt', path, reason: d.reason };
    if (d.record) {
      const r = d.record;
      const mismatch =
        r.containerId !== key.containerId || r.networkName !== key.networkName || r.ifname !== key.ifname;
      // A hashed name carries no key to eyeball, so the record must prove it is this attachment's.
      if (mismatch && isHashedFileName(basename(path))) {
        return {
          status: 'corrupt',
          path,
          reason: `it belongs to ${r.networkName}/${r.containerId}/${r.ifname}, not to this attachment`,
        };
      }
      return { status: 'ok', path, record: r, result: r.result };
    }
    return { status: 'ok', path, result: d.legacyResult };
  }

  /**
   * Removes an attachment's cache file; a missing file is fine. The directory is not fsynced: a
   * file that reappears after a crash only hands a later DEL a prevResult, which DEL tolerates.
   */
  async remove(key: AttachmentKey): Promise<void> {
    try {
      await unlink(this.path(key));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    // A cache write killed between its temp file and the rename leaves `.tmp.*` (writer gone).
    removeStaleTempFiles(dirname(this.path(key)));
  }

  /**
   * Lists cached attachments, optionally of one container, sorted by file name as libcni does.
   * Unreadable, corrupt and legacy files are skipped (they carry no attachment identity).
   */
  async list(containerId?: string): Promise<CachedAttachment[]> {
    const dir = join(this.dir, 'results');
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    names.sort();
    const out: CachedAttachment[] = [];
    for (const name of names) {
      if (name.startsWith('.')) continue; // our in-flight temp files
      if (containerId && !isHashedFileName(name)) {
        const part = `-${containerId}-`;
        const pos = name.indexOf(part);
        if (pos <= 0 || pos + part.length >= name.length) continue;
      }
      let text: string;
      try {
        text = await readFile(join(dir, name), 'utf8');
      } catch {
        continue;
      }
      const d = decodeCacheRecord(text);
      if (!d.ok || !d.record) continue;
      const r = d.record;
      if (containerId && r.containerId !== containerId) continue;
      if (!r.ifname || !r.networkName) continue;
      out.push(r);
    }
    return out;
  }
}
