// whereabouts' `ipam` block, parsed into ranges the allocator walks without further parsing.
// Where whereabouts is silent or surprising, we are explicit:
//   - a `range_start`/`range_end` outside the range's subnet is an error (whereabouts ignores it);
//     one on the network or broadcast address is clamped to the first/last usable address;
//   - `gateway` is never handed out (whereabouts needs it in `exclude`, wa#107), and it is put only
//     on addresses of its own family in the result;
//   - a malformed `exclude` entry fails when the config is read, not at allocation time.
//
// The flat file: like whereabouts, the `ipam` block is completed from the first whereabouts.conf
// found among `configuration_path` (when set inline), /etc/kubernetes/cni/net.d/whereabouts.d/,
// /etc/cni/net.d/whereabouts.d/ and /host/etc/cni/net.d/whereabouts.d/. A field set (non-empty)
// inline wins; an unset, empty, zero or false one takes the flat file's value, objects such as
// `kubernetes` field by field; `enable_overlapping_ranges` is always the inline value (default
// true). The store: `datastore` names it (inline or in the flat file); unnamed, it is the
// Kubernetes one, which needs `kubernetes.kubeconfig` from either side. When nothing resolves a
// store, ADD fails naming the files searched and the fields to set: never a node-local pool by
// default (it would hand out the same addresses on every node).

import { readFileSync, statSync } from 'node:fs';
import {
  familyBits,
  formatIP,
  formatSubnet,
  type IP,
  type IPFamily,
  parseCIDR,
  parseIP,
  type Subnet,
  subnetBroadcast,
  subnetContains,
  tryParseIP,
} from '../../spec/addr.js';
import { CniError, ErrorCode } from '../../spec/errors.js';
import { dnsSchema } from '../../spec/result/schema.js';
import { conf, type Infer, type InferShape } from '../../spec/schema.js';
import { routesSchema } from '../schema.js';
import type { PoolRef } from './store.js';
import type { EtcdStoreOptions } from './stores/etcd.js';
import type { KubernetesStoreOptions } from './stores/kubernetes.js';

/** An inclusive interval of addresses. */
export interface Interval {
  lo: bigint;
  hi: bigint;
}

/** One range ready for allocation: the allowed addresses are `segments` (sorted, disjoint). */
export interface WhereaboutsRange {
  /** Config path used in messages, e.g. `ipam.ipRanges[1]`. */
  field: string;
  subnet: Subnet;
  /** Effective first and last address (after range_start/range_end). */
  first: bigint;
  last: bigint;
  /** [first, last] minus excludes and the gateway. */
  segments: Interval[];
  /** Number of addresses in `segments`. */
  capacity: bigint;
  /** The excluded entries as written (for messages). */
  exclude: string[];
  ref: PoolRef;
}

/** Which backend holds the pools, with its whereabouts-named settings. */
export type DatastoreConfig =
  | { kind: 'file'; dir: string }
  | ({ kind: 'etcd' } & EtcdStoreOptions)
  | ({ kind: 'kubernetes' } & Pick<KubernetesStoreOptions, 'kubeconfig' | 'k8s_api_root'>)
  /** No store could be resolved: ADD, CHECK, GC and STATUS fail with `message`; DEL holds nothing to free. */
  | { kind: 'none'; message: string };

/** whereabouts' log levels, least verbose first (a message is written when its level <= the configured one). */
export const WHEREABOUTS_LOG_LEVELS = ['panic', 'error', 'verbose', 'debug'] as const;
/** A whereabouts log level. */
export type WhereaboutsLogLevel = (typeof WHEREABOUTS_LOG_LEVELS)[number];

/** Where the flat file came from and what the config took from it (for logs and messages). */
export interface FlatFileInfo {
  /** The files looked for, in order. */
  searched: string[];
  /** The one read, if any. */
  path?: string;
  /** `configuration_path` set inline but missing. */
  missingConfigurationPath?: string;
}

/** A parsed whereabouts `ipam` block. */
export interface WhereaboutsConfig {
  ranges: WhereaboutsRange[];
  gateway?: IP;
  networkName: string;
  enableOverlappingRanges: boolean;
  datastore: DatastoreConfig;
  /** Passed through to the result unchanged. */
  routes?: Array<{ dst: string; gw?: string }>;
  dns?: { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] };
  /** Static extras (`addresses[]`), appended after the dynamic addresses. */
  addresses: Array<{ address: string; gateway?: string }>;
  /** `log_file` (appended to) and `log_level` (default debug, as whereabouts). */
  log: { file?: string; level: WhereaboutsLogLevel; badLevel?: string };
  /** Fields accepted for whereabouts' controllers, which this binary does not run (logged). */
  controllerFields: Record<string, unknown>;
  /** `node_slice_size` as a prefix length: allocate inside this node's slice of the (single) range. */
  nodeSliceSize?: number;
  /** The flat file search. */
  flat: FlatFileInfo;
}

/** The flat file locations whereabouts searches after `configuration_path`, in its order. */
export const FLAT_FILE_PATHS: readonly string[] = [
  '/etc/kubernetes/cni/net.d/whereabouts.d/whereabouts.conf',
  '/etc/cni/net.d/whereabouts.d/whereabouts.conf',
  '/host/etc/cni/net.d/whereabouts.d/whereabouts.conf',
];

/** Options of parseWhereaboutsConfig. */
export interface WhereaboutsConfigOptions {
  /** Flat file locations searched after `configuration_path`; default FLAT_FILE_PATHS. */
  flatFilePaths?: readonly string[] | undefined;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Go's zero value test as whereabouts' merge applies it: unset, null, "", 0, false, an empty list. */
function isZero(v: unknown): boolean {
  return (
    v === undefined ||
    v === null ||
    v === '' ||
    v === 0 ||
    v === false ||
    (Array.isArray(v) && v.length === 0)
  );
}

/**
 * Completes an inline `ipam` block from the flat file: inline values that are set win, unset or
 * zero ones take the file's, objects merge key by key. `enable_overlapping_ranges` is never taken
 * from the file (whereabouts keeps the inline value, default true).
 */
export function mergeFlatFile(
  inline: Record<string, unknown>,
  flat: Record<string, unknown>,
): Record<string, unknown> {
  const merge = (a: Record<string, unknown>, b: Record<string, unknown>, top: boolean) => {
    const out: Record<string, unknown> = { ...a };
    for (const [k, v] of Object.entries(b)) {
      if (top && k === 'enable_overlapping_ranges') continue;
      const mine = a[k];
      if (isPlainObject(mine) && isPlainObject(v)) out[k] = merge(mine, v, false);
      else if (isZero(mine) && !isZero(v)) out[k] = v;
    }
    return out;
  };
  return merge(inline, flat, true);
}

function fileExists(path: string): boolean {
  try {
    // No error object for the common case, a missing file (ENOTDIR still throws).
    return statSync(path, { throwIfNoEntry: false }) !== undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code !== 'ENOENT' && code !== 'ENOTDIR';
  }
}

/** Finds and reads the flat file: the first of `configuration_path` and `paths` that exists. */
export function readFlatFile(
  configurationPath: string | undefined,
  paths: readonly string[] = FLAT_FILE_PATHS,
): { values: Record<string, unknown> | undefined; info: FlatFileInfo } {
  const searched = configurationPath ? [configurationPath, ...paths] : [...paths];
  const info: FlatFileInfo = { searched };
  if (configurationPath && !fileExists(configurationPath)) info.missingConfigurationPath = configurationPath;
  for (const path of searched) {
    // Most nodes have no flat file: a stat that finds nothing costs a daemon serving many calls a
    // fraction of a failed read, which throws (about 14 µs per path per call).
    if (!fileExists(path)) continue;
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') continue;
      throw bad(
        `whereabouts flat file ${path}: cannot be read (${code ?? String(err)}); make it readable by the plugin or remove it`,
      );
    }
    let values: unknown;
    try {
      values = JSON.parse(text);
    } catch (err) {
      throw bad(
        `whereabouts flat file ${path}: not valid JSON (${(err as Error).message}); fix it, e.g. {"datastore": "kubernetes", "kubernetes": {"kubeconfig": "/etc/cni/net.d/whereabouts.d/whereabouts.kubeconfig"}}`,
      );
    }
    if (!isPlainObject(values)) {
      throw bad(
        `whereabouts flat file ${path}: holds ${Array.isArray(values) ? 'a list' : JSON.stringify(values)}, not an object; write the ipam fields as one JSON object`,
      );
    }
    info.path = path;
    return { values, info };
  }
  return { values: undefined, info };
}

/** Default directory of the file datastore. */
export const DEFAULT_FILE_DIR = '/var/lib/cni/whereabouts';

function bad(msg: string): CniError {
  return new CniError(ErrorCode.InvalidNetworkConfig, msg);
}

/** whereabouts' IPPool name for a range: "/" and ":" become "-", prefixed by network_name. */
export function poolName(subnet: Subnet, networkName: string): string {
  let n = formatSubnet(subnet).replace(/[/:]/g, '-');
  if (n.startsWith('-')) n = `0${n}`;
  return networkName ? `${networkName}-${n}` : n;
}

/** Subtracts sorted, merged intervals from [lo, hi]. */
export function subtract(lo: bigint, hi: bigint, holes: Interval[]): Interval[] {
  const merged = mergeIntervals(holes);
  const out: Interval[] = [];
  let cur = lo;
  for (const h of merged) {
    if (h.hi < cur) continue;
    if (h.lo > hi) break;
    if (h.lo > cur) out.push({ lo: cur, hi: h.lo - 1n });
    cur = h.hi + 1n;
    if (cur > hi) break;
  }
  if (cur <= hi) out.push({ lo: cur, hi });
  return out;
}

/** Sorts and merges overlapping or touching intervals. */
export function mergeIntervals(xs: Interval[]): Interval[] {
  const s = [...xs].sort((a, b) => (a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : 0));
  const out: Interval[] = [];
  for (const x of s) {
    const last = out[out.length - 1];
    if (last && x.lo <= last.hi + 1n) {
      if (x.hi > last.hi) last.hi = x.hi;
    } else out.push({ lo: x.lo, hi: x.hi });
  }
  return out;
}

function parseRangeText(text: string, field: string): { subnet: Subnet; start?: IP } {
  // "A-B/nn": start A, end B, subnet B/nn. IPv6 never contains '-', so the split is unambiguous.
  const dash = text.indexOf('-');
  if (dash > 0) {
    const start = parseIP(text.slice(0, dash), `${field}.range`);
    const { ip: end, subnet } = parseCIDR(text.slice(dash + 1), `${field}.range`);
    if (!subnetContains(subnet, start)) {
      throw bad(
        `${field}.range: ${JSON.stringify(text)}: start ${formatIP(start)} is not in ${formatSubnet(subnet)}; write it as "<start>-<end>/<prefix>" with both inside one subnet`,
      );
    }
    if (start.value > end.value) {
      throw bad(
        `${field}.range: ${JSON.stringify(text)}: start ${formatIP(start)} is after end ${formatIP(end)}; swap them`,
      );
    }
    return { subnet, start };
  }
  // whereabouts ignores the host part ("10.0.0.225/28" is the network 10.0.0.224/28).
  return { subnet: parseCIDR(text, `${field}.range`).subnet };
}

function parseExclude(
  entries: readonly string[],
  field: string,
  family: IPFamily,
): { holes: Interval[]; text: string[] } {
  const holes: Interval[] = [];
  entries.forEach((e, i) => {
    const bare = tryParseIP(e.trim());
    let lo: bigint;
    let hi: bigint;
    let fam: IPFamily;
    if (bare) {
      lo = hi = bare.value;
      fam = bare.family;
    } else {
      const { subnet } = parseCIDR(e, `${field}[${i}]`);
      lo = subnet.network;
      hi = subnetBroadcast(subnet).value;
      fam = subnet.family;
    }
    // An entry of the other family cannot exclude anything here; whereabouts ignores it too.
    if (fam === family) holes.push({ lo, hi });
  });
  return { holes, text: [...entries] };
}

function parseOneRange(
  raw: RangeText,
  field: string,
  networkName: string,
  overlapping: boolean,
  gateway: IP | undefined,
): WhereaboutsRange {
  const text = raw.range;
  if (!text) throw bad(`${field}.range: missing; give a CIDR such as "10.10.0.0/16"`);
  const { subnet, start: dashStart } = parseRangeText(text, field);
  const bits = familyBits(subnet.family);
  if (subnet.prefix > bits - 2) {
    throw bad(
      `${field}.range: ${JSON.stringify(text)} has no usable addresses; use a /${bits - 2} or larger`,
    );
  }
  const usableLo = subnet.network + 1n;
  const usableHi = subnetBroadcast(subnet).value - 1n;
  const bound = (key: 'range_start' | 'range_end', fallback: bigint): bigint => {
    const v = raw[key];
    if (v === undefined) return fallback;
    const ip = parseIP(v, `${field}.${key}`);
    if (!subnetContains(subnet, ip)) {
      throw bad(
        `${field}.${key}: ${JSON.stringify(v)} is not in range ${formatSubnet(subnet)}; pick an address inside it or drop ${key}`,
      );
    }
    // The network and broadcast addresses are never handed out; naming them as the bound on
    // their own side means "from the start" / "to the end", on the other side nothing is left.
    if (key === 'range_start' && ip.value > usableHi) throw empty(key, v);
    if (key === 'range_end' && ip.value < usableLo) throw empty(key, v);
    return ip.value < usableLo ? usableLo : ip.value > usableHi ? usableHi : ip.value;
  };
  const empty = (key: string, v: string) =>
    bad(
      `${field}.${key}: ${JSON.stringify(v)} leaves no usable address in ${formatSubnet(subnet)}; use an address between ${formatIP({ family: subnet.family, value: usableLo })} and ${formatIP({ family: subnet.family, value: usableHi })}`,
    );
  const first = bound('range_start', dashStart && dashStart.value > usableLo ? dashStart.value : usableLo);
  let last = bound('range_end', usableHi);
  if (dashStart !== undefined && raw.range_end === undefined) {
    const endIp = parseCIDR(text.slice(text.indexOf('-') + 1), `${field}.range`).ip.value;
    last = endIp < usableHi ? endIp : usableHi;
  }
  if (last < first) {
    throw bad(
      `${field}: range_end ${formatIP({ family: subnet.family, value: last })} is before range_start ${formatIP({ family: subnet.family, value: first })}; swap them`,
    );
  }
  const { holes, text: exclude } = parseExclude(raw.exclude ?? [], `${field}.exclude`, subnet.family);
  if (gateway && gateway.family === subnet.family) holes.push({ lo: gateway.value, hi: gateway.value });
  const segments = subtract(first, last, holes);
  let capacity = 0n;
  for (const s of segments) capacity += s.hi - s.lo + 1n;
  const pool = poolName(subnet, networkName);
  return {
    field,
    subnet,
    first,
    last,
    segments,
    capacity,
    exclude,
    ref: {
      pool,
      range: formatSubnet(subnet),
      base: subnet.network,
      space: overlapping ? `net.${networkName || '_'}` : `pool.${pool}`,
      family: subnet.family,
    },
  };
}

function parseDatastore(ipam: WhereaboutsIpam, flat: FlatFileInfo): DatastoreConfig {
  const kind = ipam.datastore;
  if (kind === 'file') return { kind, dir: ipam.data_dir ?? DEFAULT_FILE_DIR };
  if (kind === 'etcd') {
    const host = ipam.etcd_host;
    if (!host)
      throw bad(
        'ipam.etcd_host: missing; "datastore": "etcd" needs e.g. "etcd_host": "http://127.0.0.1:2379"',
      );
    const out: DatastoreConfig = { kind, etcd_host: host };
    for (const k of [
      'etcd_username',
      'etcd_password',
      'etcd_key_file',
      'etcd_cert_file',
      'etcd_ca_cert_file',
      'etcd_prefix',
    ] as const) {
      const v = ipam[k];
      if (v !== undefined) out[k] = v;
    }
    return out;
  }
  const kubeconfig = ipam.kubernetes?.kubeconfig;
  if (!kubeconfig) return { kind: 'none', message: noStoreMessage(kind, flat) };
  const root = ipam.kubernetes?.k8s_api_root;
  return root ? { kind: 'kubernetes', kubeconfig, k8s_api_root: root } : { kind: 'kubernetes', kubeconfig };
}

/** The message of an ADD that has no store: what was looked at, and what to set. */
function noStoreMessage(kind: 'kubernetes' | undefined, flat: FlatFileInfo): string {
  const why =
    kind === 'kubernetes'
      ? '"datastore": "kubernetes" needs "kubernetes": {"kubeconfig": ...}'
      : 'no "datastore" is named, so the store is the Kubernetes one (IPPools, as whereabouts), which needs "kubernetes": {"kubeconfig": ...}';
  const found = flat.path
    ? `the flat file ${flat.path} was read but sets no kubernetes.kubeconfig`
    : `no flat file was found (searched ${flat.searched.join(', ')})`;
  const missing = flat.missingConfigurationPath
    ? `; configuration_path ${flat.missingConfigurationPath} does not exist`
    : '';
  return `ipam.kubernetes.kubeconfig: missing: ${why}, and it is set neither inline nor in a whereabouts flat file: ${found}${missing}. Set "kubernetes": {"kubeconfig": "/etc/cni/net.d/whereabouts.d/whereabouts.kubeconfig"} in /etc/cni/net.d/whereabouts.d/whereabouts.conf (or the file "configuration_path" names, or the ipam block), or name another store: "datastore": "etcd" with "etcd_host", or "datastore": "file" (this node only: other nodes hand out the same addresses)`;
}

function parseLog(file: string | undefined, level: string | undefined): WhereaboutsConfig['log'] {
  const out: WhereaboutsConfig['log'] = { level: 'debug' };
  if (file) out.file = file;
  if (level !== undefined) {
    const l = level.toLowerCase();
    // whereabouts warns about an unknown level and keeps its default; so do we (the log says so).
    if ((WHEREABOUTS_LOG_LEVELS as readonly string[]).includes(l)) out.level = l as WhereaboutsLogLevel;
    else out.badLevel = level;
  }
  return out;
}

/** An optional string field, trimmed; "" is unset (as whereabouts reads its Go strings). */
const text = () =>
  conf
    .string()
    .optional()
    .transform((v) => v?.trim() || undefined);

/** The fields one range has, at the top level or in `ipRanges`. */
const rangeFields = {
  range: text(),
  range_start: text(),
  range_end: text(),
  exclude: conf
    .array(conf.string().fix('use a CIDR or IP string'))
    .fix('use a list of CIDRs or IPs such as ["10.0.0.0/30", "10.0.0.9"]')
    .optional(),
};

type RangeText = InferShape<typeof rangeFields>;

/** whereabouts' `ipam` block, as its Go struct reads it. */
const whereaboutsIpamSchema = conf
  .object({
    ...rangeFields,
    network_name: text().refine(
      (v) =>
        v === undefined || /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(v)
          ? undefined
          : 'has characters a pool name cannot hold',
      "use letters, digits, '_', '.' and '-'",
    ),
    enable_overlapping_ranges: conf.bool().default(true),
    gateway: conf.ip().optional(),
    ipRanges: conf
      .array(conf.object(rangeFields).fix('use an object like {"range": "10.0.0.0/24"}'))
      .fix('use a list like [{"range": "10.0.0.0/24"}]')
      .default([]),
    addresses: conf
      .array(
        conf
          .object({ address: conf.cidr(), gateway: conf.ip().optional() })
          .fix('use {"address": "10.1.2.3/24", "gateway"?: "10.1.2.1"}'),
      )
      .default([]),
    routes: routesSchema.optional(),
    dns: dnsSchema.optional(),
    datastore: conf.enum(['file', 'etcd', 'kubernetes']).optional(),
    data_dir: text(),
    etcd_host: text(),
    etcd_username: text(),
    etcd_password: text(),
    etcd_key_file: text(),
    etcd_cert_file: text(),
    etcd_ca_cert_file: text(),
    etcd_prefix: text(),
    kubernetes: conf.object({ kubeconfig: text(), k8s_api_root: text() }).optional(),
    configuration_path: text(),
    log_file: text(),
    log_level: text(),
    node_slice_size: text(),
    reconciler_cron_expression: text(),
    leader_lease_duration: conf.int(0).optional(),
    leader_renew_deadline: conf.int(0).optional(),
    leader_retry_period: conf.int(0).optional(),
    sleep_for_race: conf.int(0).optional(),
  })
  .fix('the config needs an "ipam" object with "type": "whereabouts"');

type WhereaboutsIpam = Infer<typeof whereaboutsIpamSchema>;

/** Fields whereabouts' controllers read (from the flat file); the IPAM binary only logs them. */
const CONTROLLER_FIELDS = [
  'reconciler_cron_expression',
  'leader_lease_duration',
  'leader_renew_deadline',
  'leader_retry_period',
  'sleep_for_race',
] as const;

/**
 * Parses and validates a whereabouts `ipam` block, completed from whereabouts' flat file (throws
 * CniError 7 naming the field).
 */
export function parseWhereaboutsConfig(
  ipamIn: unknown,
  opts: WhereaboutsConfigOptions = {},
): WhereaboutsConfig {
  let merged = ipamIn;
  let flat: FlatFileInfo = { searched: [] };
  if (isPlainObject(ipamIn)) {
    const cp = ipamIn.configuration_path;
    const read = readFlatFile(
      typeof cp === 'string' && cp.trim() !== '' ? cp.trim() : undefined,
      opts.flatFilePaths ?? FLAT_FILE_PATHS,
    );
    flat = read.info;
    if (read.values) merged = mergeFlatFile(ipamIn, read.values);
  }
  const ipam = whereaboutsIpamSchema.parse(merged, { path: 'ipam' });
  const networkName = ipam.network_name ?? '';
  const overlapping = ipam.enable_overlapping_ranges;
  const gateway = ipam.gateway ? parseIP(ipam.gateway, 'ipam.gateway') : undefined;
  const raws: Array<{ raw: RangeText; field: string }> = [];
  if (ipam.range !== undefined) raws.push({ raw: ipam, field: 'ipam' });
  ipam.ipRanges.forEach((raw, i) => {
    raws.push({ raw, field: `ipam.ipRanges[${i}]` });
  });
  const addresses = ipam.addresses.map((a) => ({ ...a }));
  if (raws.length === 0 && addresses.length === 0) {
    throw bad('ipam.range: missing; give "range": "10.0.0.0/24" or "ipRanges": [{"range": ...}, ...]');
  }
  const ranges = raws.map(({ raw, field }) => parseOneRange(raw, field, networkName, overlapping, gateway));
  const seen = new Map<string, string>();
  for (const r of ranges) {
    const prev = seen.get(r.ref.pool);
    if (prev) {
      throw bad(
        `${r.field}.range: ${r.ref.range} repeats ${prev}; one address per range, list each range once`,
      );
    }
    seen.set(r.ref.pool, r.field);
  }
  const out: WhereaboutsConfig = {
    ranges,
    networkName,
    enableOverlappingRanges: overlapping,
    datastore: parseDatastore(ipam, flat),
    addresses,
    log: parseLog(ipam.log_file, ipam.log_level),
    controllerFields: {},
    flat,
  };
  for (const k of CONTROLLER_FIELDS) if (ipam[k] !== undefined) out.controllerFields[k] = ipam[k];
  if (ipam.node_slice_size !== undefined) {
    const text = JSON.stringify(ipam.node_slice_size);
    if (ranges.length !== 1) {
      throw bad(
        `ipam.node_slice_size: ${text} cuts one range into node slices, and this config has ${ranges.length} ranges; keep one range ("range" or a single "ipRanges" entry) or drop node_slice_size`,
      );
    }
    const kind = out.datastore.kind;
    if (kind === 'file' || kind === 'etcd') {
      throw bad(
        `ipam.node_slice_size: ${text} needs the Kubernetes store (slices are handed out in NodeSlicePool objects), and "datastore" is "${kind}"; use the Kubernetes store or drop node_slice_size`,
      );
    }
    out.nodeSliceSize = parseSliceSize(ipam.node_slice_size, ranges[0]!.subnet);
  }
  if (gateway) out.gateway = gateway;
  if (ipam.routes) out.routes = ipam.routes;
  if (ipam.dns) out.dns = ipam.dns;
  return out;
}

/** More slices than this would not fit in one object (whereabouts hit the size limit, wa#497). */
export const MAX_SLICES = 16_384;

/** The prefix length `node_slice_size` names ("/26" or "26"); CniError 7 naming the field otherwise. */
export function parseSliceSize(text: string, subnet: Subnet, field = 'ipam.node_slice_size'): number {
  const m = /^\/?(\d{1,3})$/.exec(text.trim());
  const bits = familyBits(subnet.family);
  const fix = `use a prefix length such as "/${Math.min(subnet.prefix + 2, bits - 2)}": longer than the range's /${subnet.prefix}, at most /${bits - 2}`;
  if (!m)
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `${field}: ${JSON.stringify(text)} is not a prefix length; ${fix}`,
    );
  const size = Number(m[1]);
  if (size < subnet.prefix || size > bits - 2) {
    const why =
      size < subnet.prefix
        ? `is wider than the range ${formatSubnet(subnet)}`
        : `leaves no usable address in a slice (a /${bits - 1} or /${bits} has none)`;
    throw new CniError(ErrorCode.InvalidNetworkConfig, `${field}: ${JSON.stringify(text)} ${why}; ${fix}`);
  }
  if (2n ** BigInt(size - subnet.prefix) > BigInt(MAX_SLICES)) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `${field}: ${JSON.stringify(text)} cuts ${formatSubnet(subnet)} into ${2n ** BigInt(size - subnet.prefix)} slices, more than the ${MAX_SLICES} one NodeSlicePool object can list; use a shorter prefix`,
    );
  }
  return size;
}
