// Snapshots of a network namespace (links, addresses, routes, rules, iptables and nftables) and of
// data directories, and the diff that decides what a plugin left behind, with the by-design
// allowlist applied. Everything is read through the commands a user would run (iproute2 -j,
// iptables-save, nft list ruleset), never through the SDK's own netlink layer.
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { tryParseIP } from '../spec/index.js';
import { BY_DESIGN_LEFTOVERS as A } from './allowlist.js';
import { inNetns } from './netns.js';
import { runProc } from './proc.js';

interface LinkFacts {
  kind: string;
  mtu?: number;
  address?: string;
  master?: string;
  txqlen?: number;
  flags: string[];
}

interface FwEntry {
  /** `ip4 nat`, `ip6 filter`, `nft inet foo`: where the entry lives. */
  where: string;
  chain: string;
  kind: 'chain' | 'rule';
  text: string;
}

export interface NetSnapshot {
  links: Map<string, LinkFacts>;
  /** `<dev> <local>/<prefix>[ peer <address>]`, per dev. */
  addrs: Array<{ dev: string; key: string }>;
  routes: Array<{ dev: string | undefined; key: string }>;
  rules: string[];
  /** iptables-save and ip6tables-save entries; null when iptables-save is not installed. */
  iptables: FwEntry[] | null;
  nft: FwEntry[] | null;
}

/** Link flags that are state, not configuration. */
const OPERATIONAL_FLAGS = new Set(['LOWER_UP', 'NO-CARRIER', 'M-DOWN', 'DORMANT', 'ECHO']);
/** Tables iptables-nft owns: their content is compared through iptables-save. */
const IPTABLES_TABLES = /^(ip|ip6) (filter|nat|mangle|raw|security)$/;

async function cmd(netns: string | undefined, file: string, args: string[]): Promise<string | null> {
  const [f, a] = inNetns(netns, file, args);
  const r = await runProc(f, a, { timeoutMs: 20_000 });
  if (r.spawnError || r.exitCode === 127) return null;
  if (r.exitCode !== 0) {
    // nsenter reports a missing binary as exit 127 / "No such file"; anything else is a real error.
    if (/No such file|not found/i.test(r.stderr)) return null;
    throw new Error(`${file} ${args.join(' ')}: ${r.stderr.trim() || `exit ${r.exitCode}`}`);
  }
  return r.stdout;
}

async function ipJson<T>(netns: string | undefined, args: string[]): Promise<T[]> {
  const out = await cmd(netns, 'ip', ['-j', ...args]);
  if (out === null) throw new Error('iproute2 (ip) is not installed');
  const text = out.trim();
  return text ? (JSON.parse(text) as T[]) : [];
}

interface JLink {
  ifname: string;
  link_type?: string;
  mtu?: number;
  address?: string;
  master?: string;
  txqlen?: number;
  flags?: string[];
  linkinfo?: { info_kind?: string };
}
interface JAddr {
  ifname: string;
  addr_info?: Array<{ family: string; local: string; prefixlen: number; address?: string }>;
}
type JRoute = Record<string, unknown> & { dev?: string; protocol?: string };

const stableJson = (o: Record<string, unknown>): string =>
  JSON.stringify(Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b))));

function routeKey(r: JRoute, family: string): string {
  const parts: string[] = [family];
  const add = (label: string, v: unknown) => {
    if (v !== undefined && v !== null && v !== '') parts.push(label ? `${label} ${String(v)}` : String(v));
  };
  if (r.type && r.type !== 'unicast') add('', r.type);
  add('', r.dst);
  add('via', r.gateway);
  add('dev', r.dev);
  add('table', r.table ?? 'main');
  add('proto', r.protocol);
  add('scope', r.scope);
  add('src', r.prefsrc);
  add('metric', r.metric);
  if (Array.isArray(r.nexthops)) add('nexthops', JSON.stringify(r.nexthops));
  const flags = Array.isArray(r.flags) ? r.flags.filter((f) => f !== 'linkdown' && f !== 'dead') : [];
  if (flags.length) add('flags', flags.join(','));
  return parts.join(' ');
}

/** iptables-save output as entries; counters and comments dropped. */
export function parseIptablesSave(text: string, fam: string): FwEntry[] {
  const out: FwEntry[] = [];
  let table = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim().replace(/^\[\d+:\d+\]\s+/, '');
    if (!line || line.startsWith('#') || line === 'COMMIT') continue;
    if (line.startsWith('*')) {
      table = line.slice(1);
      continue;
    }
    if (line.startsWith(':')) {
      const [name = '', policy = '-'] = line.slice(1).split(/\s+/);
      out.push({ where: `${fam} ${table}`, chain: name, kind: 'chain', text: `:${name} ${policy}` });
      continue;
    }
    const m = /^-A\s+(\S+)/.exec(line);
    if (m) out.push({ where: `${fam} ${table}`, chain: m[1]!, kind: 'rule', text: line });
  }
  return out;
}

/** `nft list ruleset` as entries: rules keyed by table and chain, counters normalised. */
export function parseNftRuleset(text: string): FwEntry[] {
  const out: FwEntry[] = [];
  let table = '';
  let chain = '';
  let depth = 0;
  for (const raw of text.split('\n')) {
    const line = raw.trim().replace(/counter packets \d+ bytes \d+/g, 'counter');
    if (!line) continue;
    const t = /^table\s+(\S+)\s+(\S+)\s*\{$/.exec(line);
    if (t) {
      table = `${t[1]} ${t[2]}`;
      depth = 1;
      out.push({ where: `nft ${table}`, chain: '', kind: 'chain', text: `table ${table}` });
      continue;
    }
    const c = /^(chain|set|map|flowtable)\s+(\S+)\s*\{$/.exec(line);
    if (c && depth === 1) {
      chain = `${c[1]} ${c[2]}`;
      depth = 2;
      out.push({ where: `nft ${table}`, chain, kind: 'chain', text: chain });
      continue;
    }
    if (line === '}') {
      depth = Math.max(0, depth - 1);
      if (depth < 2) chain = '';
      continue;
    }
    if (depth === 2 && /^(type \S+ hook|policy )/.test(line)) continue;
    if (depth >= 2) out.push({ where: `nft ${table}`, chain, kind: 'rule', text: line });
  }
  return out;
}

/** Reads everything the leftover checks compare in one netns (undefined: the caller's). */
export async function takeNetSnapshot(netns: string | undefined): Promise<NetSnapshot> {
  const [links, addrs, r4, r6, rule4, rule6, ipt4, ipt6, nft] = await Promise.all([
    ipJson<JLink>(netns, ['-d', 'link', 'show']),
    ipJson<JAddr>(netns, ['addr', 'show']),
    ipJson<JRoute>(netns, ['route', 'show', 'table', 'all']),
    ipJson<JRoute>(netns, ['-6', 'route', 'show', 'table', 'all']),
    ipJson<Record<string, unknown>>(netns, ['rule', 'show']),
    ipJson<Record<string, unknown>>(netns, ['-6', 'rule', 'show']),
    cmd(netns, 'iptables-save', []),
    cmd(netns, 'ip6tables-save', []),
    cmd(netns, 'nft', ['list', 'ruleset']),
  ]);
  const snap: NetSnapshot = {
    links: new Map(),
    addrs: [],
    routes: [],
    rules: [...rule4.map((r) => `4 ${stableJson(r)}`), ...rule6.map((r) => `6 ${stableJson(r)}`)],
    iptables:
      ipt4 === null ? null : [...parseIptablesSave(ipt4, 'ip4'), ...parseIptablesSave(ipt6 ?? '', 'ip6')],
    nft: nft === null ? null : parseNftRuleset(nft),
  };
  for (const l of links) {
    snap.links.set(l.ifname, {
      kind: l.linkinfo?.info_kind ?? l.link_type ?? '?',
      ...(l.mtu !== undefined ? { mtu: l.mtu } : {}),
      ...(l.address !== undefined ? { address: l.address } : {}),
      ...(l.master !== undefined ? { master: l.master } : {}),
      ...(l.txqlen !== undefined ? { txqlen: l.txqlen } : {}),
      flags: (l.flags ?? []).filter((f) => !OPERATIONAL_FLAGS.has(f)).sort(),
    });
  }
  for (const a of addrs) {
    for (const i of a.addr_info ?? []) {
      if (A.isKernelAddress(a.ifname, i.family, i.local, i.prefixlen)) continue;
      const peer = i.address && i.address !== i.local ? ` peer ${i.address}` : '';
      snap.addrs.push({ dev: a.ifname, key: `${i.local}/${i.prefixlen}${peer} on ${a.ifname}` });
    }
  }
  for (const [list, fam] of [
    [r4, 'inet'],
    [r6, 'inet6'],
  ] as const) {
    for (const r of list) {
      if (typeof r.protocol === 'string' && A.kernelRouteProtocols.includes(r.protocol)) continue;
      snap.routes.push({ dev: r.dev, key: routeKey(r, fam) });
    }
  }
  return snap;
}

/** Context of one comparison. */
export interface DiffContext {
  /** Links the kit itself created (prevResult scaffolding): never compared. */
  kitLinks: ReadonlySet<string>;
  /** Shared links of the allowlist: may appear, change and keep addresses. */
  sharedLinks: ReadonlySet<string>;
  /** A string every container ID of the run contains (the run tag). */
  runTag: string;
}

function multisetDiff<T>(before: T[], after: T[], key: (t: T) => string): { added: T[]; removed: T[] } {
  const count = new Map<string, number>();
  for (const b of before) count.set(key(b), (count.get(key(b)) ?? 0) + 1);
  const added: T[] = [];
  for (const a of after) {
    const k = key(a);
    const n = count.get(k) ?? 0;
    if (n > 0) count.set(k, n - 1);
    else added.push(a);
  }
  const left = new Map(count);
  const removed: T[] = [];
  for (const b of before) {
    const k = key(b);
    const n = left.get(k) ?? 0;
    if (n > 0) {
      left.set(k, n - 1);
      removed.push(b);
    }
  }
  return { added, removed };
}

/** True when a token of a rule is an IP address or CIDR (with an optional port). */
function isAddressToken(token: string): boolean {
  let t = token.replace(/^[\\"'[]+|[\\"',;\]]+$/g, '');
  t = t.replace(/\/\d+$/, '');
  const v4port = /^(\d+\.\d+\.\d+\.\d+)(:\d+(-\d+)?)?$/.exec(t);
  if (v4port) t = v4port[1]!;
  // nft writes an IPv6 address with a port as [fd00::5]:80 (the leading bracket is gone by now).
  const v6port = /^([0-9a-fA-F:.]+)\]:\d+(-\d+)?$/.exec(t);
  if (v6port) t = v6port[1]!;
  return t !== '' && tryParseIP(t) !== undefined;
}

function fwTarget(text: string): string | undefined {
  return /\s-[jg]\s+(\S+)/.exec(` ${text}`)?.[1];
}

/** Whether a firewall entry is shared infrastructure that may stay (or go) by design. */
function sharedFwEntry(e: FwEntry, after: FwEntry[], ctx: DiffContext): boolean {
  if (e.where.startsWith('nft ')) {
    if (e.kind === 'chain') return true;
    const chain = e.chain.replace(/^chain /, '');
    if (!e.chain.startsWith('chain ') || !A.isSharedNftRule(e.where.slice(4), chain, e.text)) return false;
    return !e.text.includes(ctx.runTag) && !e.text.split(/\s+/).some(isAddressToken);
  }
  if (e.kind === 'chain') {
    if (A.isBuiltinChain(e.chain) || A.isSharedChain(e.chain)) return true;
    if (A.isEmptyOnlyChain(e.chain)) {
      return !after.some((x) => x.where === e.where && x.kind === 'rule' && x.chain === e.chain);
    }
    return false;
  }
  if (!A.isBuiltinChain(e.chain) && !A.isSharedChain(e.chain)) return false;
  const target = fwTarget(e.text);
  if (target) {
    const isChain = after.some((x) => x.where === e.where && x.kind === 'chain' && x.chain === target);
    if (isChain && !A.isSharedChain(target)) return false;
  }
  if (e.text.includes(ctx.runTag)) return false;
  return !e.text.split(/\s+/).some(isAddressToken);
}

/** Everything `after` holds that `before` did not (and the reverse), minus the allowlist. */
export function diffNetSnapshots(before: NetSnapshot, after: NetSnapshot, ctx: DiffContext): string[] {
  const problems: string[] = [];
  // A shared link may stay or change only if the plugin made it or it was a bridge before: a link of
  // that name that existed as something else (a veth named as `bridge`) is the node's, not the
  // plugin's, and what ADD did to it must be undone (F12 of issue 11 slipped past a name match).
  const isShared = (name: string) => {
    if (!ctx.sharedLinks.has(name)) return false;
    const was = before.links.get(name);
    return was === undefined || was.kind === 'bridge' || /\.\d+$/.test(name);
  };
  const ignoredDev = (dev: string | undefined) =>
    dev !== undefined && (ctx.kitLinks.has(dev) || isShared(dev));
  const changedLinks = new Set<string>();
  for (const [name, facts] of after.links) {
    if (ctx.kitLinks.has(name) || isShared(name)) continue;
    const was = before.links.get(name);
    if (!was) {
      problems.push(`link ${name} (${facts.kind}) left behind`);
      changedLinks.add(name);
      continue;
    }
    const diffs: string[] = [];
    for (const k of ['kind', 'mtu', 'address', 'master', 'txqlen'] as const) {
      if (was[k] !== facts[k]) diffs.push(`${k} ${was[k] ?? '-'} -> ${facts[k] ?? '-'}`);
    }
    if (was.flags.join(',') !== facts.flags.join(',')) {
      diffs.push(`flags ${was.flags.join(',')} -> ${facts.flags.join(',')}`);
    }
    if (diffs.length) problems.push(`link ${name} changed: ${diffs.join('; ')}`);
  }
  for (const name of before.links.keys()) {
    if (!after.links.has(name) && !ctx.kitLinks.has(name) && !isShared(name)) {
      problems.push(`link ${name} removed (it was there before ADD)`);
      changedLinks.add(name);
    }
  }
  const skipDev = (dev: string | undefined) =>
    ignoredDev(dev) || (dev !== undefined && changedLinks.has(dev));
  const addrs = multisetDiff(before.addrs, after.addrs, (a) => a.key);
  for (const a of addrs.added) if (!skipDev(a.dev)) problems.push(`address ${a.key} left behind`);
  for (const a of addrs.removed) if (!skipDev(a.dev)) problems.push(`address ${a.key} removed`);
  const routes = multisetDiff(before.routes, after.routes, (r) => r.key);
  for (const r of routes.added) if (!skipDev(r.dev)) problems.push(`route ${r.key} left behind`);
  for (const r of routes.removed) if (!skipDev(r.dev)) problems.push(`route ${r.key} removed`);
  const rules = multisetDiff(before.rules, after.rules, (r) => r);
  for (const r of rules.added) problems.push(`ip rule ${r} left behind`);
  for (const r of rules.removed) problems.push(`ip rule ${r} removed`);
  const fw = (b: FwEntry[] | null, a: FwEntry[] | null, skip?: (e: FwEntry) => boolean) => {
    if (!b || !a) return;
    const key = (e: FwEntry) => `${e.where} ${e.kind} ${e.chain} ${e.text}`;
    const d = multisetDiff(b, a, key);
    // iptables rules name their chain (-A CHAIN ...); nft rules get it from their block.
    const where = (e: FwEntry) => (e.where.startsWith('nft ') && e.chain ? `${e.where} ${e.chain}` : e.where);
    for (const e of d.added) {
      if (skip?.(e) || sharedFwEntry(e, a, ctx)) continue;
      problems.push(`${e.kind} ${where(e)}: ${e.text} left behind`);
    }
    for (const e of d.removed) {
      if (skip?.(e) || sharedFwEntry(e, b, ctx)) continue;
      problems.push(`${e.kind} ${where(e)}: ${e.text} removed`);
    }
  };
  fw(before.iptables, after.iptables);
  const iptablesSeen = after.iptables !== null;
  fw(before.nft, after.nft, (e) => iptablesSeen && IPTABLES_TABLES.test(e.where.slice(4)));
  return problems;
}

/** Files (not directories) under each data dir, as `<dir>/<relative path>`. */
export async function takeFileSnapshot(dirs: readonly string[]): Promise<Set<string>> {
  const files = new Set<string>();
  const walk = async (dir: string, rel: string): Promise<void> => {
    let names: string[];
    try {
      names = await readdir(join(dir, rel));
    } catch {
      return;
    }
    for (const n of names) {
      const r = rel ? `${rel}/${n}` : n;
      const st = await lstat(join(dir, r)).catch(() => undefined);
      if (!st) continue;
      if (st.isDirectory()) await walk(dir, r);
      else files.add(join(dir, r));
    }
  };
  for (const d of dirs) await walk(d, '');
  return files;
}

/** New files after DEL that the allowlist does not name. Removed files are not leftovers. */
export function diffFileSnapshots(before: Set<string>, after: Set<string>): string[] {
  const problems: string[] = [];
  for (const f of after) {
    if (before.has(f)) continue;
    const base = f.slice(f.lastIndexOf('/') + 1);
    if (!A.isDataFile(base)) problems.push(`file ${f} left behind`);
  }
  return problems;
}
