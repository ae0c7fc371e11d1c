// What the fuzzer generates: a case is a plain JSON recipe (plugin, cniVersion, config mutations,
// raw stdin, environment, flow), so a failure prints a recipe that CNI_KIT_FUZZ_CASE replays
// exactly. `materialize` turns a recipe into the stdin and env of the runs, with the paths of the
// case (data dirs, the debug record file, flannel's subnet.env, multus' dirs) pinned to the
// case's own directory after mutation: no mutation can send a plugin to write into the machine's
// /var/lib/cni or /run.
//
// Over 400 lines: the documented config of each of the 14 plugins sits next to the mutations and
// the pins that apply to it.
//
// IPAM types a plugin runs by exec include the main plugins (bridge, ptp ...): such a type makes
// the plugin exec itself (F1 of issue 11: before the SDK's delegation guard it exhausted the
// process table). The guard refuses it now; CNI_KIT_FUZZ_SELF_IPAM=0 leaves those types out, and
// =1 insists on the harness's pids cgroup bound as well.
import fc from 'fast-check';
import { FUZZ_PLUGINS, type FuzzPlugin, KNOWN_VERSIONS } from './fuzz.js';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Obj = { [k: string]: Json };

/** Whether configs may name a main plugin as their IPAM type (see the file comment). */
export const SELF_IPAM = process.env.CNI_KIT_FUZZ_SELF_IPAM !== '0';
/** With CNI_KIT_FUZZ_SELF_IPAM=1 the harness refuses to run where runs are bounded in time only. */
export function checkSelfIpamBound(pidsBounded: boolean): void {
  if (process.env.CNI_KIT_FUZZ_SELF_IPAM === '1' && !pidsBounded)
    throw new Error('CNI_KIT_FUZZ_SELF_IPAM=1 needs the pids cgroup bound (cgroup v1 pids controller, root)');
}

const MAIN_TYPES = ['bridge', 'ptp', 'macvlan', 'ipvlan', 'vlan', 'host-device'];
/** IPAM types that never exec the plugin back and write only where the case says. */
const SAFE_IPAM_TYPES = ['host-local', 'static', 'whereabouts', 'debug', 'loopback', 'no-such-plugin', ''];
/** Plugin types a delegate (multus, flannel) may name. */
const SAFE_DELEGATE_TYPES = ['bridge', 'ptp', 'macvlan', 'debug', 'loopback', 'host-local', 'no-such-plugin'];

/** How the environment of a case deviates from a runtime's. */
export interface EnvRecipe {
  containerId: 'ok' | 'long' | 'odd' | 'missing' | 'empty';
  ifname: 'eth0' | 'net1' | 'lo' | 'x15' | 'x16' | 'missing' | 'empty' | 'slash' | 'dots';
  netns: 'ok' | 'file' | 'gone' | 'unset' | 'empty' | 'dir' | 'relative';
  args: 'none' | 'ignore' | 'ip' | 'ip-ignore' | 'k8s' | 'garbage' | 'mac';
  path: 'ok' | 'missing' | 'empty';
}

/** One config mutation: which path (an index into the mutable paths), what to do, the value. */
export interface Mutation {
  at: number;
  op: 'delete' | 'set' | 'add';
  key: string;
  value: Json;
}

export type Flow = 'lifecycle' | 'netns-gone' | 'del-only' | 'sigkill';

/** One fuzz case, as generated and as printed for replay. */
export interface FuzzCase {
  plugin: FuzzPlugin;
  /** null: the config has no cniVersion (the spec reads it as 0.1.0). */
  version: Json;
  variant: number;
  mutations: Mutation[];
  /** Replaces stdin entirely when set. */
  raw: string | null;
  env: EnvRecipe;
  flow: Flow;
  /** SIGKILL delay of the ADD in the sigkill flow. */
  killAfterMs: number;
}

/** Stands for a 70,000-character string in recipes (kept short for printing), expanded in stdin. */
export const HUGE = '<huge>';
const expandHuge = (v: Json): Json => {
  if (v === HUGE) return 'x'.repeat(70_000);
  if (Array.isArray(v)) return v.map(expandHuge);
  if (v !== null && typeof v === 'object')
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, expandHuge(x)]));
  return v;
};
const BAD_CIDRS = [
  '10.0.0.0/33',
  '10.0.0.1',
  '300.1.1.0/24',
  '::/129',
  '10.0.0.0/0',
  'fe80::/64',
  '0.0.0.0/32',
  '10.0.0.0-10.0.0.9/24',
  '10.0.0.0/24/24',
  ' 10.0.0.0/24',
  '10.1.0.0/31',
  '2001:db8::/127',
];
const ODD_STRINGS = [
  '',
  ' ',
  'eth0',
  'lo',
  'fzveth0',
  'a'.repeat(16),
  'a'.repeat(300),
  '../../x',
  'a/b',
  'ñ',
  '\u0000',
  '-1',
];

/** Values a mutation writes: wrong types, nulls, huge and empty strings, bad CIDRs, odd names. */
export const valueArb: fc.Arbitrary<Json> = fc.oneof(
  { weight: 3, arbitrary: fc.constant(null) },
  { weight: 2, arbitrary: fc.boolean() },
  {
    weight: 2,
    arbitrary: fc.constantFrom(-1, 0, 1, 68, 1500, 4095, 65_536, 2 ** 31, -(2 ** 53), 1.5, 1e308),
  },
  { weight: 2, arbitrary: fc.constantFrom(...ODD_STRINGS) },
  { weight: 1, arbitrary: fc.constant(HUGE) },
  { weight: 3, arbitrary: fc.constantFrom(...BAD_CIDRS) },
  { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
  { weight: 2, arbitrary: fc.constantFrom<Json>([], {}, [null], { a: 1 }, [[]], ['10.0.0.0/24'], [{}]) },
);

const UNKNOWN_KEYS = ['unknownField', 'x-fuzz', 'capabilities', 'runtimeConfig', 'args', 'dns', 'prevResult'];

export const mutationArb: fc.Arbitrary<Mutation> = fc.record({
  at: fc.nat(1000),
  op: fc.constantFrom<Mutation['op']>('set', 'set', 'delete', 'add'),
  key: fc.constantFrom(...UNKNOWN_KEYS),
  value: valueArb,
});

const RAW = [
  '',
  '{',
  'null',
  '[]',
  '42',
  '"x"',
  'not json',
  '{"cniVersion":"1.0.0"}',
  '{}',
  '{"a":1}{"b":2}',
];

export const envArb = (okWeight = 8): fc.Arbitrary<EnvRecipe> =>
  fc.record({
    containerId: fc.oneof(
      { weight: okWeight, arbitrary: fc.constant('ok' as const) },
      {
        weight: 1,
        arbitrary: fc.constantFrom('long' as const, 'odd' as const, 'missing' as const, 'empty' as const),
      },
    ),
    ifname: fc.oneof(
      { weight: okWeight, arbitrary: fc.constantFrom('eth0' as const, 'net1' as const) },
      {
        weight: 1,
        arbitrary: fc.constantFrom(
          'lo' as const,
          'x15' as const,
          'x16' as const,
          'missing' as const,
          'empty' as const,
          'slash' as const,
          'dots' as const,
        ),
      },
    ),
    netns: fc.oneof(
      { weight: okWeight, arbitrary: fc.constant('ok' as const) },
      {
        weight: 1,
        arbitrary: fc.constantFrom(
          'file' as const,
          'gone' as const,
          'unset' as const,
          'empty' as const,
          'dir' as const,
          'relative' as const,
        ),
      },
    ),
    args: fc.oneof(
      { weight: okWeight, arbitrary: fc.constant('none' as const) },
      {
        weight: 1,
        arbitrary: fc.constantFrom(
          'ignore' as const,
          'ip' as const,
          'ip-ignore' as const,
          'k8s' as const,
          'garbage' as const,
          'mac' as const,
        ),
      },
    ),
    path: fc.oneof(
      { weight: okWeight * 2, arbitrary: fc.constant('ok' as const) },
      { weight: 1, arbitrary: fc.constantFrom('missing' as const, 'empty' as const) },
    ),
  });

const ONLY_VERSIONS = process.env.CNI_KIT_FUZZ_VERSIONS?.split(',').map((v) => (v === 'none' ? null : v));

/**
 * cniVersion values: mostly current ones, often none/0.1.0/0.2.0/0.3.0 (issue 11 item 1), sometimes
 * junk. CNI_KIT_FUZZ_VERSIONS=0.4.0,1.0.0 (none: no cniVersion) narrows them, e.g. to look past a
 * known version defect.
 */
const versionArb: fc.Arbitrary<Json> = ONLY_VERSIONS
  ? fc.constantFrom<Json>(...ONLY_VERSIONS)
  : fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom<Json>('1.0.0', '1.1.0', '0.4.0', '0.3.1') },
      { weight: 4, arbitrary: fc.constantFrom<Json>(null, '0.1.0', '0.2.0', '0.3.0') },
      { weight: 1, arbitrary: fc.constantFrom<Json>('', '2.0.0', '0.0.1', 'abc', 1, '1.0') },
    );

/** The generator of cases for one plugin. `mutated`: how often configs are mutated (0..1). */
export function caseArb(
  plugin: FuzzPlugin,
  opts: { flows: Flow[]; mutated?: number; envOk?: number; rawWeight?: number },
): fc.Arbitrary<FuzzCase> {
  const mutated = opts.mutated ?? 0.5;
  const w = Math.round(mutated * 10);
  const mutationsArb = fc.oneof(
    { weight: 10 - w, arbitrary: fc.constant<Mutation[]>([]) },
    { weight: w, arbitrary: fc.array(mutationArb, { minLength: 1, maxLength: 3 }) },
  );
  return fc.record({
    plugin: fc.constant(plugin),
    version: versionArb,
    variant: fc.nat(11),
    mutations: mutationsArb,
    raw: fc.oneof(
      { weight: 30, arbitrary: fc.constant(null) },
      { weight: opts.rawWeight ?? 1, arbitrary: fc.constantFrom(...RAW) },
    ),
    env: envArb(opts.envOk ?? 8),
    flow: fc.constantFrom(...opts.flows),
    // Most kills land while a plugin run (~150-400 ms here) is still going; some after it ended.
    killAfterMs: fc.oneof(
      { weight: 7, arbitrary: fc.integer({ min: 0, max: 350 }) },
      { weight: 3, arbitrary: fc.integer({ min: 350, max: 900 }) },
    ),
  });
}

/** Where the files of a case go, and what the world offers it. */
export interface CaseContext {
  /** Compared before and after: everything plugins may write lives here. */
  dataDir: string;
  /** Runtime-side files the harness provides (not compared). */
  caseDir: string;
  /** Index of the plugin, for a subnet of its own. */
  index: number;
  /** The folder the node's runtime execs plugins from (dist/bin, or shims in daemon mode). */
  binDir: string;
  /** A device the node has for host-device to take. */
  hostDevice: string;
  /** The container's netns path and name, when there is one. */
  netnsPath: string;
  containerId: string;
  tag: string;
  /** The world's etcd, when it has one: whereabouts cases then use its etcd store half the time. */
  etcdUrl?: string | undefined;
  /** Key prefix of the case in that etcd. */
  etcdPrefix?: string;
}

const subnetOf = (c: CaseContext) => `10.${60 + c.index}.0.0/24`;
const hostLocal = (c: CaseContext, variant: number): Obj =>
  variant % 3 === 0
    ? {
        type: 'host-local',
        ranges: [[{ subnet: subnetOf(c), rangeStart: `10.${60 + c.index}.0.10` }]],
        routes: [{ dst: '0.0.0.0/0' }],
      }
    : { type: 'host-local', subnet: subnetOf(c), ...(variant % 2 ? { routes: [{ dst: '0.0.0.0/0' }] } : {}) };

/** The unmutated config of a case: a config the plugin's docs would show. */
export function baseConfig(fc0: FuzzCase, c: CaseContext): Obj {
  const v = fc0.variant;
  const name = `fz${c.tag}n${c.index}`;
  const head: Obj = { name };
  if (fc0.version !== null) head.cniVersion = fc0.version;
  const net = `10.${60 + c.index}.0`;
  switch (fc0.plugin) {
    case 'bridge':
      return {
        ...head,
        type: 'bridge',
        bridge: v % 4 === 3 ? 'fzbr1' : 'fzbr0',
        isGateway: v % 2 === 0,
        isDefaultGateway: v % 4 === 0,
        ipMasq: v % 3 === 0,
        hairpinMode: v % 5 === 0,
        ...(v === 7 ? { mtu: 1400 } : {}),
        ipam: hostLocal(c, v),
      };
    case 'ptp':
      return {
        ...head,
        type: 'ptp',
        ipMasq: v % 2 === 0,
        ...(v % 3 === 0 ? { mtu: 1400 } : {}),
        ipam: hostLocal(c, v),
      };
    case 'macvlan':
      return {
        ...head,
        type: 'macvlan',
        master: 'eth0',
        mode: ['bridge', 'private', 'vepa'][v % 3]!,
        // An L2-only attachment (no IPAM) is a documented use.
        ...(v % 4 === 3 ? {} : { ipam: hostLocal(c, v) }),
      };
    case 'ipvlan':
      return {
        ...head,
        type: 'ipvlan',
        master: 'eth0',
        mode: ['l2', 'l3', 'l3s'][v % 3]!,
        ipam: hostLocal(c, v),
      };
    case 'vlan':
      return { ...head, type: 'vlan', master: 'eth0', vlanId: 100 + v, ipam: hostLocal(c, v) };
    case 'host-device':
      return {
        ...head,
        type: 'host-device',
        device: c.hostDevice,
        ...(v % 2 ? { ipam: hostLocal(c, v) } : {}),
      };
    case 'host-local':
      return { ...head, type: 'bridge', ipam: hostLocal(c, v) };
    case 'static':
      return {
        ...head,
        type: 'bridge',
        ipam: {
          type: 'static',
          addresses: [
            { address: `${net}.5/24`, gateway: `${net}.1` },
            ...(v % 2 ? [{ address: `fd00:${c.index}::5/64` }] : []),
          ],
          routes: [{ dst: '0.0.0.0/0' }],
          dns: { nameservers: ['10.1.1.1'] },
        },
      };
    case 'whereabouts': {
      const ipam: Obj = { type: 'whereabouts', datastore: 'file' };
      if (v % 3 === 0) ipam.range = `${net}.0/24`;
      else if (v % 3 === 1) ipam.ipRanges = [{ range: `${net}.0/24` }, { range: `fd00:${c.index}::/120` }];
      else
        Object.assign(ipam, {
          range: `${net}.100-${net}.120/24`,
          exclude: [`${net}.104/30`],
          gateway: `${net}.1`,
        });
      if (c.etcdUrl && v % 2 === 1) ipam.datastore = 'etcd';
      return { ...head, type: 'macvlan', master: 'eth0', ipam };
    }
    case 'loopback':
      return { ...head, type: 'loopback' };
    case 'tuning':
      return {
        ...head,
        type: 'tuning',
        mtu: 1400 + v,
        ...(v % 2 ? { promisc: true } : { allmulti: true }),
        ...(v % 3 === 0 ? { mac: `02:00:00:00:${(16 + c.index).toString(16)}:0${v % 10}` } : {}),
        ...(v % 4 === 0 ? { txQLen: 500 } : {}),
        // A sysctl the kernel does not have fails ADD after the MTU/MAC changes (F3).
        sysctl:
          v % 5 === 4
            ? { 'net.ipv4.conf.IFNAME.fz_no_such': '1' }
            : { 'net.ipv4.conf.IFNAME.arp_notify': '1' },
      };
    case 'flannel':
      return {
        ...head,
        type: 'flannel',
        delegate: {
          bridge: 'fzfl0',
          hairpinMode: v % 2 === 0,
          ...(v % 3 === 0 ? { isDefaultGateway: true } : {}),
        },
      };
    case 'multus': {
      const types = ['bridge', 'ptp', 'debug', 'macvlan'];
      const t = types[v % types.length]!;
      const d: Obj = { name: `fzmd${c.index}`, type: t };
      if (fc0.version !== null && typeof fc0.version === 'string') d.cniVersion = fc0.version;
      if (t === 'bridge') Object.assign(d, { bridge: 'fzmb0', isGateway: true, ipam: hostLocal(c, v) });
      if (t === 'ptp' || t === 'macvlan') Object.assign(d, { ipam: hostLocal(c, v) });
      if (t === 'macvlan') d.master = 'eth0';
      if (t === 'debug') d.ips = [`${net}.7/24`];
      const delegate: Obj =
        v % 5 === 4 ? { name: d.name as string, cniVersion: d.cniVersion ?? '1.0.0', plugins: [d] } : d;
      if (delegate !== d) delete d.name;
      return { ...head, type: 'multus', delegates: [delegate] };
    }
    case 'debug':
      return {
        ...head,
        type: 'debug',
        ips: [`${net}.9/24`],
        gateway: `${net}.1`,
        routes: [{ dst: '0.0.0.0/0', gw: `${net}.1` }],
        ...(v % 4 === 3 ? { dns: { nameservers: ['10.1.1.1'] } } : {}),
      };
  }
}

/** Keys the harness owns: paths into the case's dirs. Never mutated; set again after mutation. */
const PINNED = new Set([
  'etcd_host',
  'etcd_prefix',
  'dataDir',
  'data_dir',
  'cniDir',
  'confDir',
  'binDir',
  'logFile',
  'subnetFile',
  'recordFile',
]);

type PathStep = string | number;

/** Every path under the config a mutation may target (pinned keys excluded), depth first. */
export function mutablePaths(v: Json, prefix: PathStep[] = [], out: PathStep[][] = []): PathStep[][] {
  if (prefix.length >= 5) return out;
  if (Array.isArray(v)) {
    v.forEach((x, i) => {
      out.push([...prefix, i]);
      mutablePaths(x, [...prefix, i], out);
    });
  } else if (v !== null && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      if (PINNED.has(k)) continue;
      out.push([...prefix, k]);
      mutablePaths(x, [...prefix, k], out);
    }
  }
  return out;
}

/** A `type` value a mutation may write: safe types, main types only with SELF_IPAM. */
function typeValue(path: PathStep[], value: Json, seed: number): Json {
  if (typeof value !== 'string') return value;
  const inIpam = path.includes('ipam');
  const list = inIpam ? [...SAFE_IPAM_TYPES, ...(SELF_IPAM ? MAIN_TYPES : [])] : SAFE_DELEGATE_TYPES;
  // The top-level type of the exec'd plugin is only a label for it; delegates' types matter.
  return list[seed % list.length]!;
}

/**
 * Strings for keys whose odd values matter most, so a string mutation of such a key tries them:
 * link names that exist in the node (an existing veth as a bridge, F12; lo), and network names
 * past the 255 bytes a file name can hold (F14).
 */
const KEY_STRINGS: Record<string, string[]> = {
  bridge: ['fzveth0', 'lo', 'eth0', 'a'.repeat(16)],
  master: ['fzveth0', 'lo', 'fzbr0', 'nosuchdev'],
  device: ['lo', 'eth0', 'fzveth0', 'nosuchdev'],
  name: ['a'.repeat(256), 'a'.repeat(300), 'a/b', '..', ''],
};

/** The value a set/add mutation writes at `path`: safe types for `type`, key pools for strings. */
function valueFor(path: PathStep[], m: Mutation): Json {
  const last = path[path.length - 1];
  if (last === 'type') return typeValue(path, m.value, m.at);
  const pool = typeof last === 'string' ? KEY_STRINGS[last] : undefined;
  if (pool && typeof m.value === 'string') return pool[Math.floor(m.at / 7) % pool.length]!;
  return m.value;
}

function apply(config: Obj, m: Mutation, paths: PathStep[][]): void {
  if (paths.length === 0) return;
  const path = paths[m.at % paths.length]!;
  let parent: Json = config;
  for (const step of path.slice(0, -1)) parent = (parent as Record<string | number, Json>)[step] as Json;
  if (parent === null || typeof parent !== 'object') return;
  const last = path[path.length - 1]!;
  const p = parent as Record<string | number, Json>;
  if (m.op === 'delete') {
    if (Array.isArray(parent) && typeof last === 'number') parent.splice(last, 1);
    else delete p[last];
  } else if (m.op === 'add') {
    const target = p[last];
    if (target !== null && typeof target === 'object' && !Array.isArray(target) && !PINNED.has(m.key)) {
      (target as Obj)[m.key] = m.value;
    } else p[last] = valueFor(path, m);
  } else {
    p[last] = valueFor(path, m);
  }
}

/** Sets the pinned paths of every object that needs one, wherever mutations left it. */
function pin(v: Json, c: CaseContext, top: FuzzPlugin | undefined): void {
  if (Array.isArray(v)) {
    for (const x of v) pin(x, c, undefined);
    return;
  }
  if (v === null || typeof v !== 'object') return;
  const o = v as Obj;
  for (const [k, x] of Object.entries(o)) {
    if (k === 'ipam' && x !== null && typeof x === 'object' && !Array.isArray(x)) {
      // Whatever type the block names, its store is the case's data dir.
      Object.assign(x, { dataDir: `${c.dataDir}/ipam`, data_dir: `${c.dataDir}/whereabouts` });
      // The etcd store, when a block selects it: the world's etcd, under the case's own prefix.
      if (c.etcdUrl && c.etcdPrefix) Object.assign(x, { etcd_host: c.etcdUrl, etcd_prefix: c.etcdPrefix });
    }
    pin(x, c, undefined);
  }
  // The binary that runs reads the top-level object whatever its (possibly mutated) type says.
  const type = top ?? o.type;
  if (type === 'tuning') o.dataDir = `${c.dataDir}/tuning`;
  if (type === 'debug') o.recordFile = `${c.caseDir}/record.jsonl`;
  if (type === 'flannel') {
    o.dataDir = `${c.dataDir}/flannel`;
    o.subnetFile = `${c.caseDir}/subnet.env`;
  }
  if (type === 'multus') {
    Object.assign(o, { cniDir: `${c.dataDir}/multus`, confDir: `${c.caseDir}/multus.d`, binDir: c.binDir });
    delete o.logFile;
    delete o.kubeconfig;
  }
  if (top && type === 'flannel') {
    // flannel builds its delegate's IPAM from this block: a block that is not an object would send
    // host-local to the machine's /var/lib/cni, so the block stays an object here.
    const ipam = o.ipam !== null && typeof o.ipam === 'object' && !Array.isArray(o.ipam) ? o.ipam : {};
    o.ipam = { ...ipam, dataDir: `${c.dataDir}/ipam`, data_dir: `${c.dataDir}/whereabouts` };
  }
}

/** stdin of the case's calls; `prevResult` is added for chained plugins (tuning). */
export function materializeConfig(fc0: FuzzCase, c: CaseContext): { config: Json; stdin: string } {
  if (fc0.raw !== null) return { config: null, stdin: fc0.raw };
  const config = baseConfig(fc0, c);
  for (const m of fc0.mutations) apply(config, { ...m, value: expandHuge(m.value) }, mutablePaths(config));
  pin(config, c, fc0.plugin);
  return { config, stdin: JSON.stringify(config) };
}

/** A container ID of the case: contains the world's tag, as leftover checks expect. */
export function containerIdFor(recipe: EnvRecipe, tag: string, n: number): string | undefined {
  const id = `fz${tag}-${n}`;
  switch (recipe.containerId) {
    case 'ok':
      return id;
    case 'long':
      return `${id}-${'a'.repeat(300)}`;
    case 'odd':
      return `${id}/../x y`;
    case 'missing':
      return undefined;
    case 'empty':
      return '';
  }
}

export const IFNAMES: Record<EnvRecipe['ifname'], string | undefined> = {
  eth0: 'eth0',
  net1: 'net1',
  lo: 'lo',
  x15: 'fzif56789012345',
  x16: 'fzif567890123456',
  missing: undefined,
  empty: '',
  slash: 'a/b',
  dots: '..',
};

/** The env of a call; `paths` are the netns path choices the world made for the case. */
export function envFor(
  command: string,
  r: EnvRecipe,
  c: {
    containerId: string | undefined;
    netnsPath: string;
    notNetns: string;
    gone: string;
    dir: string;
    binDir: string;
  },
): Record<string, string> {
  const env: Record<string, string> = { CNI_COMMAND: command };
  if (c.containerId !== undefined) env.CNI_CONTAINERID = c.containerId;
  const ifname = IFNAMES[r.ifname];
  if (ifname !== undefined) env.CNI_IFNAME = ifname;
  const netns: Record<EnvRecipe['netns'], string | undefined> = {
    ok: c.netnsPath,
    file: c.notNetns,
    gone: c.gone,
    unset: undefined,
    empty: '',
    dir: c.dir,
    relative: 'netns/x',
  };
  const ns = netns[r.netns];
  if (ns !== undefined) env.CNI_NETNS = ns;
  const cid = c.containerId ?? 'x';
  const args: Record<EnvRecipe['args'], string | undefined> = {
    none: undefined,
    ignore: 'IgnoreUnknown=1',
    ip: 'IP=10.250.0.9',
    'ip-ignore': 'IgnoreUnknown=1;IP=10.250.0.9',
    k8s: `IgnoreUnknown=1;K8S_POD_NAMESPACE=fz;K8S_POD_NAME=pod-${cid.slice(0, 40)};K8S_POD_INFRA_CONTAINER_ID=${cid}`,
    garbage: 'a=b=c;;=;IgnoreUnknown=maybe',
    mac: 'IgnoreUnknown=1;MAC=02:00:00:00:00:99',
  };
  const a = args[r.args];
  if (a !== undefined) env.CNI_ARGS = a;
  if (r.path === 'ok') env.CNI_PATH = c.binDir;
  else if (r.path === 'empty') env.CNI_PATH = '';
  return env;
}

/** The config is what the plugin's docs show, at a version the reference accepts (none and "" read as 0.1.0). */
export function configValid(fc0: FuzzCase): boolean {
  return (
    fc0.raw === null &&
    fc0.mutations.length === 0 &&
    (fc0.version === null || fc0.version === '' || (KNOWN_VERSIONS as readonly Json[]).includes(fc0.version))
  );
}

/**
 * The env is one a runtime may send for DEL: an ID (also a long one), a plausible ifname (also one
 * that names an existing link), the netns or a netns that is gone, args the plugin may ignore.
 */
export function envWellFormed(r: EnvRecipe): boolean {
  return (
    (r.containerId === 'ok' || r.containerId === 'long') &&
    ['eth0', 'net1', 'lo', 'x15'].includes(r.ifname) &&
    (r.netns === 'ok' || r.netns === 'gone') &&
    ['none', 'ignore', 'ip-ignore', 'k8s', 'mac'].includes(r.args) &&
    r.path === 'ok'
  );
}

export { FUZZ_PLUGINS };
