// etcd backend: every address is its own key, taken with a compare-and-swap transaction that also
// creates the attachment's index keys, so allocators on many nodes never collide and never queue
// behind one lock, and a crash can never leave half an allocation behind.
//
// Layout under the prefix (default `/cni-kit/whereabouts`):
//   spaces/<space>/ips/<4|6>/<32 hex digits>   -> JSON {ip, pool, id, ifname, podref?}
//   pools/<pool>/owners/<containerId>/<ifname> -> 32 hex digits
//   pools/<pool>/pods/<ns>/<name>/<ifname>     -> 32 hex digits
//   pools/<pool>/cursor                        -> 32 hex digits (round-robin hint)
// Fixed-width hex keys sort like the numbers they encode, so a run of candidates is one range read.
import { readFileSync } from 'node:fs';
import type { Etcd3, IOptions } from 'etcd3';
import { CniError, describeSystemError, ErrorCode, importOptionalPeer } from '../../../spec/errors.js';
import {
  type AddReads,
  type Allocation,
  ascendingRuns,
  type ClaimOutcome,
  decodeAllocation,
  encodeAllocation,
  type PoolRef,
  type PoolSession,
  type Store,
} from '../store.js';

/** Connection settings, named after whereabouts' own config keys. */
export interface EtcdStoreOptions {
  /** `etcd_host`: one URL or several separated by commas. */
  etcd_host: string;
  etcd_username?: string;
  etcd_password?: string;
  etcd_key_file?: string;
  etcd_cert_file?: string;
  etcd_ca_cert_file?: string;
  /** Key prefix; lets several clusters or tests share one etcd. */
  etcd_prefix?: string;
}

const hex = (a: bigint): string => a.toString(16).padStart(32, '0');

/**
 * An open etcd client (one gRPC connection per endpoint), on which stores under any number of
 * prefixes are built: a long-lived process keeps one per endpoint set and credentials.
 */
export interface EtcdConnection {
  /** A store under `prefix` (default `/cni-kit/whereabouts`) on this connection; closing it leaves the connection open. */
  store(prefix: string | undefined, format: (a: bigint, family: 4 | 6) => string): Store;
  /** Closes the connection (and with it every store built on it). */
  close(): Promise<void>;
}

/** Opens an etcd-backed store; etcd3 (and gRPC) load only here. Closing the store closes its connection. */
export async function openEtcdStore(
  opts: EtcdStoreOptions,
  format: (a: bigint, family: 4 | 6) => string,
): Promise<Store> {
  const conn = await openEtcdConnection(opts);
  return { ...conn.store(opts.etcd_prefix, format), close: () => conn.close() };
}

/** Opens a connection to the etcd `opts` names (its prefix is not used: stores choose theirs). */
export async function openEtcdConnection(
  opts: Omit<EtcdStoreOptions, 'etcd_prefix'>,
): Promise<EtcdConnection> {
  const { Etcd3 } = await importOptionalPeer('etcd3', 'the whereabouts etcd store', () => import('etcd3'));
  const hosts = opts.etcd_host
    .split(',')
    .map((h) => h.trim())
    .filter((h) => h !== '');
  if (hosts.length === 0) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `ipam.etcd_host: '${opts.etcd_host}' names no host; use e.g. "http://127.0.0.1:2379"`,
    );
  }
  const options: IOptions = { hosts, dialTimeout: 5000 };
  if (opts.etcd_username !== undefined) {
    options.auth = { username: opts.etcd_username, password: opts.etcd_password ?? '' };
  }
  if (opts.etcd_ca_cert_file || opts.etcd_cert_file || opts.etcd_key_file) {
    const read = (field: string, path: string | undefined): Buffer | undefined => {
      if (!path) return undefined;
      try {
        return readFileSync(path);
      } catch (err) {
        throw new CniError(
          ErrorCode.InvalidNetworkConfig,
          `ipam.${field}: ${describeSystemError(err) ?? `cannot read '${path}' (${(err as Error).message})`}; point it at a readable PEM file`,
        );
      }
    };
    const ca = read('etcd_ca_cert_file', opts.etcd_ca_cert_file);
    const creds: NonNullable<IOptions['credentials']> = { rootCertificate: ca ?? Buffer.alloc(0) };
    const key = read('etcd_key_file', opts.etcd_key_file);
    const cert = read('etcd_cert_file', opts.etcd_cert_file);
    if (key) creds.privateKey = key;
    if (cert) creds.certChain = cert;
    options.credentials = creds;
  }
  const client = new Etcd3(options);
  return {
    store(etcdPrefix, format) {
      const prefix = (etcdPrefix ?? '/cni-kit/whereabouts').replace(/\/+$/, '');
      return {
        kind: 'etcd',
        async session<T>(ref: PoolRef, fn: (s: PoolSession) => Promise<T>): Promise<T> {
          try {
            return await fn(new EtcdSession(client, prefix, ref, format));
          } catch (err) {
            throw wrapEtcdError(err, opts.etcd_host);
          }
        },
        async close() {},
      };
    },
    async close() {
      client.close();
    },
  };
}

function wrapEtcdError(err: unknown, host: string): unknown {
  // Programming errors are ours, not etcd's; they must not be disguised as "try again".
  if (err instanceof CniError || err instanceof TypeError || err instanceof RangeError) return err;
  if (err instanceof ReferenceError || err instanceof SyntaxError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  // Unreachable or overloaded etcd is worth a retry by the runtime, not a hard failure.
  return new CniError(
    ErrorCode.TryAgainLater,
    `whereabouts etcd store at '${host}' failed: ${msg.split('\n')[0]}; check that etcd is reachable from this node`,
    undefined,
    { cause: err },
  );
}

class EtcdSession implements PoolSession {
  private readonly ipsPrefix: string;
  private readonly poolPrefix: string;

  constructor(
    private readonly c: Etcd3,
    prefix: string,
    private readonly ref: PoolRef,
    private readonly format: (a: bigint, family: 4 | 6) => string,
  ) {
    this.ipsPrefix = `${prefix}/spaces/${ref.space}/ips/${ref.family}/`;
    this.poolPrefix = `${prefix}/pools/${ref.pool}/`;
  }

  private ipKey(a: bigint): string {
    return this.ipsPrefix + hex(a);
  }
  private ownerKey(containerId: string, ifname: string): string {
    return `${this.poolPrefix}owners/${containerId}/${ifname}`;
  }
  private podKey(podRef: string, ifname: string): string {
    return `${this.poolPrefix}pods/${podRef}/${ifname}`;
  }

  private async readVia(indexKey: string): Promise<Allocation | undefined> {
    const h = await this.c.get(indexKey).string();
    if (!h) return undefined;
    const address = BigInt(`0x${h}`);
    return decodeAllocation(await this.c.get(this.ipKey(address)).string(), address);
  }

  /** The record an index entry (32 hex digits) names, if any. */
  private async resolve(h: string | undefined): Promise<Allocation | undefined> {
    if (!h) return undefined;
    const address = BigInt(`0x${h}`);
    return decodeAllocation(await this.c.get(this.ipKey(address)).string(), address);
  }

  private mineIf(a: Allocation | undefined, containerId: string, ifname: string): Allocation | undefined {
    return a && a.containerId === containerId && a.ifname === ifname && a.pool === this.ref.pool
      ? a
      : undefined;
  }

  private podIf(a: Allocation | undefined, podRef: string, ifname: string): Allocation | undefined {
    return a && a.podRef === podRef && a.ifname === ifname && a.pool === this.ref.pool ? a : undefined;
  }

  async byOwner(containerId: string, ifname: string): Promise<Allocation | undefined> {
    return this.mineIf(await this.readVia(this.ownerKey(containerId, ifname)), containerId, ifname);
  }

  async byPod(podRef: string, ifname: string): Promise<Allocation | undefined> {
    return this.podIf(await this.readVia(this.podKey(podRef, ifname)), podRef, ifname);
  }

  async readForAdd(
    containerId: string,
    ifname: string,
    podRef: string | undefined,
    candidates: readonly bigint[] = [],
  ): Promise<AddReads> {
    // One transaction of plain reads (the same reads on either branch, so its compare does not
    // matter): the owner index, the pod index, the cursor, and the keys of the candidates' runs.
    // Each gRPC call costs the client and etcd about as much CPU as the work it carries, so the
    // reads in one call cost a fraction of them apart.
    const keys = [`${this.poolPrefix}cursor`, this.ownerKey(containerId, ifname)];
    if (podRef !== undefined) keys.push(this.podKey(podRef, ifname));
    const runs = ascendingRuns(candidates);
    const reads: Array<{ request_range: { key: Buffer; range_end?: Buffer; keys_only?: boolean } }> =
      keys.map((k) => ({ request_range: { key: Buffer.from(k) } }));
    for (const run of runs) {
      const range_end = Buffer.from(this.ipKey(run[run.length - 1]! + 1n));
      reads.push({ request_range: { key: Buffer.from(this.ipKey(run[0]!)), range_end, keys_only: true } });
    }
    const res = await this.c
      .if(keys[0]!, 'Create', '==', 0)
      .then(...reads)
      .else(...reads)
      .commit();
    const value = (i: number) => res.responses[i]?.response_range?.kvs?.[0]?.value?.toString();
    const cur = value(0);
    const owner = this.resolve(value(1));
    // Both indexes usually name the same address (a repeated ADD): one read of its record.
    const pod = podRef === undefined ? undefined : value(2) === value(1) ? owner : this.resolve(value(2));
    const [mine, prev] = await Promise.all([
      owner.then((a) => this.mineIf(a, containerId, ifname)),
      pod?.then((a) => this.podIf(a, podRef!, ifname)),
    ]);
    const out: AddReads = {
      mine,
      prev,
      cursor: cur && /^[0-9a-f]{1,32}$/.test(cur) ? BigInt(`0x${cur}`) : undefined,
    };
    if (runs.length > 0) {
      const wanted = new Set(candidates);
      out.taken = new Set();
      for (let i = keys.length; i < keys.length + runs.length; i++) {
        for (const kv of res.responses[i]?.response_range?.kvs ?? []) {
          const a = BigInt(`0x${kv.key.toString().slice(this.ipsPrefix.length)}`);
          if (wanted.has(a)) out.taken.add(a);
        }
      }
    }
    return out;
  }

  async claim(a: Allocation): Promise<ClaimOutcome> {
    const ipKey = this.ipKey(a.address);
    const ownerKey = this.ownerKey(a.containerId, a.ifname);
    const puts = [
      this.c.put(ipKey).value(encodeAllocation(a, this.format(a.address, this.ref.family))),
      this.c.put(ownerKey).value(hex(a.address)),
    ];
    if (a.podRef !== undefined) puts.push(this.c.put(this.podKey(a.podRef, a.ifname)).value(hex(a.address)));
    puts.push(this.c.put(`${this.poolPrefix}cursor`).value(hex(a.address)));
    const res = await this.c
      .if(ipKey, 'Create', '==', 0)
      .and(ownerKey, 'Create', '==', 0)
      .then(...puts)
      .else(this.c.get(ownerKey))
      .commit();
    if (res.succeeded) return { kind: 'claimed' };
    const kv = res.responses[0]?.response_range?.kvs?.[0];
    if (kv) {
      const existing = await this.byOwner(a.containerId, a.ifname);
      if (existing) return { kind: 'owner-exists', existing };
      // A dangling owner key cannot come from this store's own writes; clear it so the caller retries.
      await this.c
        .if(ownerKey, 'Mod', '==', Number(kv.mod_revision))
        .then(this.c.delete().key(ownerKey))
        .commit();
    }
    return { kind: 'taken' };
  }

  async adopt(prev: Allocation, containerId: string): Promise<boolean> {
    const ip = this.format(prev.address, this.ref.family);
    const next: Allocation = { ...prev, containerId };
    const ipKey = this.ipKey(prev.address);
    const newOwner = this.ownerKey(containerId, prev.ifname);
    const ops = [
      this.c.put(ipKey).value(encodeAllocation(next, ip)),
      this.c.delete().key(this.ownerKey(prev.containerId, prev.ifname)),
      this.c.put(newOwner).value(hex(prev.address)),
    ];
    const res = await this.c
      .if(ipKey, 'Value', '==', encodeAllocation(prev, ip))
      .and(newOwner, 'Create', '==', 0)
      .then(...ops)
      .commit();
    return res.succeeded;
  }

  async release(a: Allocation): Promise<void> {
    const ip = this.format(a.address, this.ref.family);
    const ipKey = this.ipKey(a.address);
    const ownerKey = this.ownerKey(a.containerId, a.ifname);
    const h = hex(a.address);
    await this.c.if(ipKey, 'Value', '==', encodeAllocation(a, ip)).then(this.c.delete().key(ipKey)).commit();
    await this.c.if(ownerKey, 'Value', '==', h).then(this.c.delete().key(ownerKey)).commit();
    if (a.podRef !== undefined) {
      const podKey = this.podKey(a.podRef, a.ifname);
      await this.c.if(podKey, 'Value', '==', h).then(this.c.delete().key(podKey)).commit();
    }
  }

  async repair(containerId: string, ifname: string, podRef?: string): Promise<void> {
    // release() is three transactions: a process killed between them leaves an index key naming
    // an address the attachment no longer holds. Drop it unless it changed meanwhile.
    const checks: Array<[string, () => Promise<Allocation | undefined>]> = [
      [this.ownerKey(containerId, ifname), () => this.byOwner(containerId, ifname)],
    ];
    if (podRef !== undefined) checks.push([this.podKey(podRef, ifname), () => this.byPod(podRef, ifname)]);
    for (const [key, resolves] of checks) {
      const kv = (await this.c.get(key).exec()).kvs[0];
      if (!kv || (await resolves())) continue;
      await this.c.if(key, 'Mod', '==', Number(kv.mod_revision)).then(this.c.delete().key(key)).commit();
    }
  }

  async takenAmong(addresses: readonly bigint[]): Promise<Set<bigint>> {
    const wanted = new Set(addresses);
    const out = new Set<bigint>();
    await Promise.all(
      ascendingRuns(addresses).map(async (run) => {
        const lo = run[0]!;
        const hi = run[run.length - 1]!;
        const keys = await this.c
          .getAll()
          .inRange({ start: this.ipKey(lo), end: this.ipKey(hi + 1n) })
          .keys();
        for (const k of keys) {
          const a = BigInt(`0x${k.slice(this.ipsPrefix.length)}`);
          if (wanted.has(a)) out.add(a);
        }
      }),
    );
    return out;
  }

  async cursor(): Promise<bigint | undefined> {
    const h = await this.c.get(`${this.poolPrefix}cursor`).string();
    return h && /^[0-9a-f]{1,32}$/.test(h) ? BigInt(`0x${h}`) : undefined;
  }

  async setCursor(address: bigint): Promise<void> {
    await this.c.put(`${this.poolPrefix}cursor`).value(hex(address));
  }

  async list(): Promise<Allocation[]> {
    const all = await this.c.getAll().prefix(this.ipsPrefix).strings();
    const out: Allocation[] = [];
    for (const [k, v] of Object.entries(all)) {
      const a = decodeAllocation(v, BigInt(`0x${k.slice(this.ipsPrefix.length)}`));
      if (a && a.pool === this.ref.pool) out.push(a);
    }
    return out;
  }
}
