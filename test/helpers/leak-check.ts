// The end-of-run leak check: what the machine looked like before the tests and after them, and
// what differs. Global setup takes a snapshot before any worker starts and compares after the
// last test file (test/helpers/global-setup.ts); `diffSnapshots` is pure, so
// test/unit/leak-check.test.ts proves with made-up snapshots that a leak is reported.
//
// Only what changed during the run counts, so namespaces, mounts or files that other things on
// the machine made earlier are never reported. Kernel cleanup is partly asynchronous (a deleted
// namespace takes its veth peers with it a little later), so a non-empty difference is looked at
// again for a few seconds and only what stays is reported. What another process on the machine
// makes during the run and keeps (another test run, a conformance run) cannot be told apart from
// the tests' own: CNI_KIT_LEAK_CHECK=0 turns the check off for such a shared machine.
import { spawnSync } from 'node:child_process';
import { type Dirent, existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** What one snapshot holds, one normalized line per object. */
export const LEAK_KINDS = [
  'netns', // names in /run/netns
  'mount', // mount points of this mount namespace (netns bind mounts show here)
  'link', // links of the root network namespace
  'address', // addresses in the root network namespace
  'route', // routes (all tables) and rules of the root network namespace
  'iptables', // iptables-save / ip6tables-save of the root network namespace, without counters
  'nft', // nft list ruleset of the root network namespace, without counters
  'cni-state', // files under /run/cni and /var/lib/cni
  'tmp', // entries in the run's private temp directory
  'process', // processes that inherited the run's private TMPDIR and are still alive
  'checkout', // files in this checkout that git neither tracks nor ignores
] as const;
export type LeakKind = (typeof LEAK_KINDS)[number];
export type Snapshot = Record<LeakKind, string[]>;

/**
 * Kinds where a disappearance counts too: the tests must leave the root network namespace as they
 * found it. Elsewhere only what appeared counts (a namespace or file that other things on the
 * machine remove during the run is not the tests' doing).
 */
const BOTH_WAYS: ReadonlySet<LeakKind> = new Set(['link', 'address', 'route', 'iptables', 'nft']);

export interface Leak {
  kind: LeakKind;
  /** `added`: made during the run and still there; `removed`: there before, gone after. */
  change: 'added' | 'removed';
  item: string;
}

const counts = (items: readonly string[]) => {
  const m = new Map<string, number>();
  for (const i of items) m.set(i, (m.get(i) ?? 0) + 1);
  return m;
};

/** Items of `b` not in `a`, as multisets (two identical mounts stacked on one point are two). */
function minus(b: readonly string[], a: readonly string[]): string[] {
  const have = counts(a);
  const out: string[] = [];
  for (const i of b) {
    const n = have.get(i) ?? 0;
    if (n > 0) have.set(i, n - 1);
    else out.push(i);
  }
  return out;
}

/** Everything that differs between the snapshot before the run and the one after it. */
export function diffSnapshots(before: Snapshot, after: Snapshot): Leak[] {
  const leaks: Leak[] = [];
  for (const kind of LEAK_KINDS) {
    const [b, a] = [before[kind] ?? [], after[kind] ?? []];
    for (const item of [...new Set(minus(a, b))].sort()) leaks.push({ kind, change: 'added', item });
    if (BOTH_WAYS.has(kind))
      for (const item of [...new Set(minus(b, a))].sort()) leaks.push({ kind, change: 'removed', item });
  }
  return leaks;
}

/** The report printed when something leaked. */
export function formatLeaks(leaks: readonly Leak[]): string {
  const width = Math.max(...leaks.map((l) => l.kind.length));
  const lines = leaks.map((l) => `  ${l.kind.padEnd(width)}  ${l.change === 'added' ? '+' : '-'} ${l.item}`);
  return [
    `leak check: the test run changed ${leaks.length} thing(s) it should have left as it found them`,
    '(+ made during the run and still there, - there before the run and gone after it):',
    ...lines,
  ].join('\n');
}

// --- taking a snapshot of this machine -------------------------------------------------------

function run(cmd: string, args: string[]): string | undefined {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 20_000 });
  return r.status === 0 ? r.stdout : undefined;
}

function runJson<T>(cmd: string, args: string[]): T[] {
  const out = run(cmd, args);
  try {
    return out ? (JSON.parse(out) as T[]) : [];
  } catch {
    return [];
  }
}

const listDir = (dir: string): string[] => {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
};

/** Files (not directories) below `dir`, as full paths. */
function filesBelow(dir: string): string[] {
  const out: string[] = [];
  let entries: Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...filesBelow(p));
    else out.push(p);
  }
  return out;
}

interface JsonLink {
  ifname: string;
  flags?: string[];
  mtu?: number;
  master?: string;
  link_type?: string;
  linkinfo?: { info_kind?: string };
}

function links(): string[] {
  return runJson<JsonLink>('ip', ['-j', '-d', 'link', 'show']).map((l) => {
    const kind = l.linkinfo?.info_kind ?? l.link_type ?? '?';
    const up = l.flags?.includes('UP') ? 'up' : 'down';
    return `${l.ifname} ${kind} mtu ${l.mtu} master ${l.master ?? '-'} ${up}`;
  });
}

function addresses(): string[] {
  const rows = runJson<{ ifname: string; addr_info?: Array<{ local: string; prefixlen: number }> }>('ip', [
    '-j',
    'addr',
    'show',
  ]);
  return rows.flatMap((l) => (l.addr_info ?? []).map((a) => `${l.ifname} ${a.local}/${a.prefixlen}`));
}

function routes(): string[] {
  const lines = [
    ...(run('ip', ['-4', 'route', 'show', 'table', 'all']) ?? '').split('\n'),
    ...(run('ip', ['-6', 'route', 'show', 'table', 'all']) ?? '').split('\n'),
    ...(run('ip', ['-4', 'rule', 'show']) ?? '').split('\n').map((l) => `rule ${l}`),
    ...(run('ip', ['-6', 'rule', 'show']) ?? '').split('\n').map((l) => `rule6 ${l}`),
  ];
  return lines
    .map((l) =>
      l
        .replace(/\s+expires \S+/g, '')
        .replace(/\s+linkdown\b/g, '')
        .trim(),
    )
    .filter((l) => l !== '' && l !== 'rule' && l !== 'rule6');
}

/**
 * iptables-save output as `<family> <table> <line>`, with packet counters dropped. Built-in chains
 * with the default ACCEPT policy are left out: with the nf_tables backend a table and its built-in
 * chains appear the first time anything lists or uses them, which changes nothing.
 */
export function normalizeIptablesSave(family: string, text: string): string[] {
  let table = '?';
  const out: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line === 'COMMIT') continue;
    if (line.startsWith('*')) {
      table = line.slice(1);
      continue;
    }
    if (/^:(PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) ACCEPT\b/.test(line)) continue;
    out.push(`${family} ${table} ${line.replace(/ \[\d+:\d+\]$/, '').replace(/^\[\d+:\d+\] /, '')}`);
  }
  return out;
}

interface NftBlock {
  header: string;
  statements: string[];
  children: NftBlock[];
}

const IPTABLES_NFT_TABLE = /^table (ip|ip6) (filter|nat|mangle|raw|security)$/;

/**
 * `nft list ruleset` as one line per table, chain, set and statement, each statement prefixed
 * with its table and chain or set, counters without their numbers. As for iptables, a base chain
 * with nothing in it but an accept policy is left out, and so is a table that held only such
 * chains (iptables-nft makes them the first time a table is used) or, for iptables' own tables,
 * nothing at all (iptables-nft keeps the table once its chains are deleted).
 */
export function normalizeNftRuleset(text: string): string[] {
  const root: NftBlock = { header: '', statements: [], children: [] };
  const stack = [root];
  for (const raw of text.split('\n')) {
    const line = raw
      .trim()
      .replace(/\bcounter packets \d+ bytes \d+/g, 'counter')
      .replace(/\s+#\s*handle \d+$/, '');
    const top = stack[stack.length - 1]!;
    if (line === '') continue;
    if (line === '}') {
      if (stack.length > 1) stack.pop();
    } else if (line.endsWith('{')) {
      const block: NftBlock = { header: line.slice(0, -1).trim(), statements: [], children: [] };
      top.children.push(block);
      stack.push(block);
    } else top.statements.push(line);
  }
  const emit = (b: NftBlock, prefix: string): string[] => {
    const path = prefix ? `${prefix} / ${b.header}` : b.header;
    const statements = b.statements.filter((st) => !/^type \S+ hook \S+ .*policy accept;$/.test(st));
    const children = b.children.map((c) => emit(c, path));
    const inner = [...statements.map((st) => `${path}: ${st}`), ...children.flat()];
    const defaultBaseChain = statements.length < b.statements.length && inner.length === 0;
    const onlyDefaultChains = b.children.length > 0 && inner.length === 0 && b.statements.length === 0;
    // iptables-nft keeps a table it once made after its chains are deleted (ip6tables -X).
    const emptyIptablesTable =
      prefix === '' && inner.length === 0 && b.statements.length === 0 && IPTABLES_NFT_TABLE.test(b.header);
    return defaultBaseChain || onlyDefaultChains || emptyIptablesTable ? [] : [path, ...inner];
  };
  return root.children.flatMap((c) => emit(c, ''));
}

function iptables(): string[] {
  return [
    ...normalizeIptablesSave('ip4', run('iptables-save', []) ?? ''),
    ...normalizeIptablesSave('ip6', run('ip6tables-save', []) ?? ''),
  ];
}

function nft(): string[] {
  return normalizeNftRuleset(run('nft', ['list', 'ruleset']) ?? '');
}

/**
 * Mount points with their file system type, from /proc/self/mountinfo. /run/netns itself is left
 * out: iproute2 bind-mounts it onto itself (to make it shared) the first time any namespace is
 * added on a machine and keeps it, which is set-up, not a leak.
 */
export function normalizeMountinfo(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const [left, right] = line.split(' - ');
    const point = left?.split(' ')[4];
    const fstype = right?.split(' ')[0];
    if (!point || !fstype) continue;
    const mountPoint = point.replace(/\\040/g, ' ');
    if (mountPoint === '/run/netns' || mountPoint === '/var/run/netns') continue;
    out.push(`${mountPoint} (${fstype})`);
  }
  return out;
}

/** Live processes whose environment carries `TMPDIR=<tmp>`, except `exclude` and its children. */
function processesWithTmp(tmp: string | undefined, exclude: number): string[] {
  if (!tmp) return [];
  const needle = `\0TMPDIR=${tmp}\0`;
  const out: string[] = [];
  for (const pid of listDir('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === exclude) continue;
    try {
      const env = `\0${readFileSync(`/proc/${pid}/environ`, 'latin1')}`;
      if (!env.includes(needle)) continue;
      // The pool's own workers are children of the vitest process; they are closed right after.
      const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === exclude) continue;
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0').filter(Boolean).join(' ');
      let exe = '';
      try {
        exe = readlinkSync(`/proc/${pid}/exe`);
      } catch {}
      out.push(`pid ${pid}: ${cmd.slice(0, 200) || exe}`);
    } catch {
      // gone already, or not ours to read
    }
  }
  return out;
}

/**
 * Entries of the run's temp directory that are not leaks: caches tools keep there on purpose and
 * reuse across runs. Found by experiment: tsx (tests run TypeScript through it) keeps its
 * compile cache in `$TMPDIR/tsx-<uid>`. Vitest itself keeps nothing in the workers' TMPDIR.
 */
const TOOL_CACHES = [/^tsx-\d+$/];

/** The names in the run's temp directory that count, without tool caches. */
export function tmpEntries(names: readonly string[]): string[] {
  return names.filter((n) => !TOOL_CACHES.some((re) => re.test(n)));
}

export interface SnapshotOptions {
  /** The run's private temp directory (the TMPDIR the workers get). */
  tmpDir?: string;
  /** The vitest process: itself and its direct children (pool workers) are not leaks. */
  selfPid?: number;
}

/** What the machine looks like now, for the kinds the check compares. */
export function takeSnapshot(opts: SnapshotOptions = {}): Snapshot {
  let mountinfo = '';
  try {
    mountinfo = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {}
  return {
    netns: listDir('/run/netns'),
    mount: normalizeMountinfo(mountinfo),
    link: links(),
    address: addresses(),
    route: routes(),
    iptables: iptables(),
    nft: nft(),
    'cni-state': ['/run/cni', '/var/lib/cni'].filter(existsSync).flatMap(filesBelow),
    tmp: opts.tmpDir ? tmpEntries(listDir(opts.tmpDir)) : [],
    process: processesWithTmp(opts.tmpDir, opts.selfPid ?? process.pid),
    checkout: untrackedFiles(),
  };
}

/** Files in the checkout git neither tracks nor ignores (a test writing to a relative path). */
function untrackedFiles(): string[] {
  const root = fileURLToPath(new URL('../..', import.meta.url));
  const out = run('git', ['-C', root, 'ls-files', '--others', '--exclude-standard']);
  return out ? out.split('\n').filter(Boolean).sort() : [];
}

/**
 * Compares the machine now with `before`. While something differs, looks again every 250 ms for
 * up to `settleMs` and keeps only what differed every time: cleanup the kernel finishes
 * asynchronously is not reported, and neither are short-lived objects of other processes that
 * happen to exist at one of the looks.
 */
export async function findLeaks(
  before: Snapshot,
  opts: SnapshotOptions & { settleMs?: number } = {},
): Promise<Leak[]> {
  const key = (l: Leak) => `${l.kind}\0${l.change}\0${l.item}`;
  const deadline = Date.now() + (opts.settleMs ?? 5000);
  let leaks = diffSnapshots(before, takeSnapshot(opts));
  while (leaks.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 250));
    const now = new Set(diffSnapshots(before, takeSnapshot(opts)).map(key));
    leaks = leaks.filter((l) => now.has(key(l)));
  }
  return leaks;
}
