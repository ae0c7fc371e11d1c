// Daemon mode against exec mode and the Go reference plugins, interleaved in one run: every
// iteration runs each row in each column (rotating the column order), so load hits all alike.
//   Go        Debian's Go plugins (/usr/lib/cni), as a runtime execs them;
//   exec      cni-kit exec mode: the Node bundles in dist/bin, one process per call;
//   daemon    cni-kit daemon mode: the native shim (dist/shim, rebound to a daemon this bench starts)
//             forwarding each call to one long-lived `cni-kit daemon`. The shims' exec-mode fallback
//             points nowhere, so a call that misses the daemon fails instead of quietly running in
//             exec mode.
// Rows: VERSION (bridge); host-local ADD (ADD+DEL pairs, the ADD timed); bridge + host-local ADD+DEL;
// macvlan + host-local ADD+DEL; multus (eth0 + 2 macvlan attachments, delegates in the config: thin
// mode without Kubernetes) ADD+DEL, next to the same delegates called directly.
// Wall time and CPU per call: CPU = user+sys of the exec'd process and its children (getrusage) PLUS,
// in the daemon column, what the daemon spent meanwhile (its threads' run time from
// /proc/<pid>/task/*/schedstat at ns resolution, its reaped children from /proc/<pid>/stat; the
// tick-based utime+stime of the whole column is printed too). Medians, ratios to Go.
// Then: the daemon's RSS over 10,000 bridge + host-local calls; with the etcd client loaded (a real
// etcd started here), RSS after 1,000 whereabouts calls and allocations/s with 16 concurrent ADDs
// through the shim vs exec mode; with --stress, 32 bridge + host-local ADD/DEL pairs at once through
// the shim, R times, counting failed calls and anything left behind.
//
// One file past ~400 lines on purpose: its sections share the columns, the daemon start-up and the
// measurement helpers, and each prints its own table.
//
// Every plugin and the daemon run in private network namespaces (dbn<pid>-…: one "node" per column
// and section, containers in others); all of them, the daemons, etcd and the temp folder are removed
// at the end, on failure and on SIGINT/SIGTERM too.
//
// Usage (root, after npm run build; dist/bin and dist/shim are used as built):
//   npx tsx bench/daemon.ts [iterations=15] [--rss-calls N=10000] [--rss-concurrency C=1] [--etcd-calls N=1000]
//                           [--stress] [--stress-rounds R=1000] [--stress-minutes M] [--stress-only]
// --rss-calls 0 / --etcd-calls 0 skip those sections; --stress-only and --rss-only run that section
// alone; --daemon-node-options '<flags>' starts every daemon with NODE_OPTIONS (e.g. V8 heap flags).
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type BenchDaemon,
  childCpuPrecise,
  cleanupOnExit,
  measure,
  median,
  Namespaces,
  procCpuFineMs,
  procCpuTicksMs,
  procMemKiB,
  procRssKiB,
  runAsync,
  startBenchDaemon,
  table,
  timeWrapperCpuMs,
} from './lib.js';

// ---- options ----
const argv = process.argv.slice(2);
function option(name: string, fallback: number): number {
  const i = argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(argv[i + 1]);
  if (!Number.isFinite(v) || v < 0) throw new Error(`--${name}: ${argv[i + 1]} is not a number >= 0`);
  return v;
}
const positional = argv.filter((a, i) => !a.startsWith('--') && !(argv[i - 1] ?? '').startsWith('--'));
const N = Number(positional[0] ?? 15);
const RSS_CALLS = option('rss-calls', 10_000);
const RSS_CONCURRENCY = Math.max(1, option('rss-concurrency', 1));
const ETCD_CALLS = option('etcd-calls', 1_000);
const STRESS_ONLY = argv.includes('--stress-only');
const RSS_ONLY = argv.includes('--rss-only');
const nodeOptionsAt = argv.indexOf('--daemon-node-options');
const DAEMON_NODE_OPTIONS = nodeOptionsAt < 0 ? undefined : argv[nodeOptionsAt + 1];
const STRESS = STRESS_ONLY || argv.includes('--stress');
const STRESS_ROUNDS = option('stress-rounds', 1_000);
const STRESS_MINUTES = option('stress-minutes', Number.POSITIVE_INFINITY);

const ROOT = join(import.meta.dirname, '..');
const GO = '/usr/lib/cni';
const BIN = join(ROOT, 'dist', 'bin');
const PATH = process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin';
const ETCD = process.env.ETCD_BIN ?? '/usr/bin/etcd';

if (process.getuid?.() !== 0) {
  console.log('bench/daemon.ts needs root (network namespaces)');
  process.exit(0);
}
for (const p of ['bridge', 'macvlan', 'host-local']) {
  if (!existsSync(join(GO, p))) throw new Error(`Go reference ${p} not found in ${GO}`);
}
for (const p of ['bridge', 'macvlan', 'host-local', 'multus', 'whereabouts']) {
  if (!existsSync(join(BIN, p))) throw new Error(`dist/bin/${p} is missing: build first (npm run build)`);
  if (!existsSync(join(ROOT, 'dist', 'shim', p)))
    throw new Error(`dist/shim/${p} is missing: build first (npm run build compiles the shim)`);
}

// ---- cleanup, on every way out ----
const ns = new Namespaces(`dbn${process.pid % 100000}`);
const work = mkdtempSync(join(tmpdir(), `${ns.tag}-`));
const daemons = new Set<BenchDaemon>();
let etcdProc: ChildProcess | undefined;
const cleanupNow = cleanupOnExit(() => {
  for (const d of daemons) d.killNow();
  etcdProc?.kill('SIGKILL');
  ns.removeAll();
  rmSync(work, { recursive: true, force: true });
});

async function daemonIn(label: string, node: string, extraArgs: string[] = []): Promise<BenchDaemon> {
  const d = await startBenchDaemon({
    dir: join(work, `daemon-${label}`),
    netns: node,
    root: ROOT,
    extraArgs,
    ...(DAEMON_NODE_OPTIONS ? { nodeOptions: DAEMON_NODE_OPTIONS } : {}),
  });
  daemons.add(d);
  return d;
}
async function stopDaemon(d: BenchDaemon): Promise<void> {
  await d.stop();
  daemons.delete(d);
}
/** Calls the daemon served (its JSON log lines), and how many failed. */
function daemonCalls(d: BenchDaemon): { done: number; failed: number } {
  const lines = readFileSync(d.logFile, 'utf8').split('\n');
  return {
    done: lines.filter((l) => l.includes('"msg":"call done"')).length,
    failed: lines.filter((l) => l.includes('"msg":"call failed"')).length,
  };
}
/** Median time the daemon took per plugin, command and nesting depth, from its log lines after the first `skip`. */
function daemonDurations(d: BenchDaemon, skip: number): Array<[string, number, number]> {
  const by = new Map<string, number[]>();
  let seen = 0;
  for (const line of readFileSync(d.logFile, 'utf8').split('\n')) {
    if (!line.includes('"msg":"call done"')) continue;
    if (seen++ < skip) continue;
    const e = JSON.parse(line) as { plugin: string; command: string; depth?: number; durationMs: number };
    const key = `${e.plugin} ${e.command}${e.depth ? ' (nested)' : ''}`;
    by.set(key, [...(by.get(key) ?? []), e.durationMs]);
  }
  return [...by.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, xs]) => [k, median(xs), xs.length]);
}
const nodeName = (path: string) => path.split('/').pop()!;
function veth(node: string, name: string): void {
  execFileSync('ip', ['-n', nodeName(node), 'link', 'add', name, 'type', 'veth', 'peer', 'name', `${name}p`]);
  execFileSync('ip', ['-n', nodeName(node), 'link', 'set', name, 'up']);
}
const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a');
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');
const ratio = (a: number, b: number) =>
  Number.isFinite(a) && Number.isFinite(b) ? `${(a / b).toFixed(2)}x` : 'n/a';
const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const mib = (kib: number) => (kib / 1024).toFixed(1);

// ---- 1–5: the interleaved table ----

type ColKey = 'go' | 'exec' | 'daemon';
interface Column {
  key: ColKey;
  name: string;
  /** Where the runtime finds the plugins (also CNI_PATH). */
  dir: string;
  node: string;
  ctr: string;
  pod: string;
  daemon?: BenchDaemon;
}
/** One timed call: wall, the exec'd side's CPU, and the daemon's CPU meanwhile (fine and in ticks). */
interface Rec {
  ms: number;
  own: number;
  daemonFine: number;
  daemonTicks: number;
}
const cpuOf = (r: Rec) => r.own + r.daemonFine;

// The daemon's CPU for a call is read from just before it to just before the next call of any
// column, so work the daemon does after replying (its log line, metrics) is counted too.
let pending: { rec: Rec; fine0: number; own0: number; kids0: number; pid: number } | undefined;
function settle(): void {
  if (!pending) return;
  const { rec, fine0, own0, kids0, pid } = pending;
  pending = undefined;
  const t = procCpuTicksMs(pid);
  rec.daemonFine = procCpuFineMs(pid) - fine0 + (t.children - kids0);
  rec.daemonTicks = t.own + t.children - own0 - kids0;
}

function call(col: Column, plugin: string, env: Record<string, string>, input = ''): Rec {
  settle();
  const pid = col.daemon?.pid;
  const before = pid ? { fine0: procCpuFineMs(pid), ...ticks0(pid) } : undefined;
  const s = measure('nsenter', [`--net=${col.node}`, join(col.dir, plugin)], { PATH, ...env }, input);
  const rec: Rec = { ms: s.ms, own: s.cpuFineMs ?? s.cpuMs, daemonFine: 0, daemonTicks: 0 };
  if (pid && before) pending = { rec, ...before, pid };
  return rec;
}
function ticks0(pid: number): { own0: number; kids0: number } {
  const t = procCpuTicksMs(pid);
  return { own0: t.own, kids0: t.children };
}
/** A call whose cost is not recorded (the DEL after a timed host-local ADD). */
function untimed(col: Column, plugin: string, env: Record<string, string>, input = ''): void {
  settle();
  const r = spawnSync('nsenter', [`--net=${col.node}`, join(col.dir, plugin)], {
    env: { PATH, ...env },
    input,
  });
  if (r.status !== 0) throw new Error(`${col.key} ${plugin} exited ${r.status}: ${r.stdout}${r.stderr}`);
}

const cniEnv = (col: Column, command: string, cid: string, netns: string, ifname: string) => ({
  CNI_COMMAND: command,
  CNI_CONTAINERID: cid,
  CNI_NETNS: netns,
  CNI_IFNAME: ifname,
  CNI_PATH: col.dir,
});

// Configs. host-local gets its parent's config, as a main plugin execs it (type bridge): the daemon
// runs the plugin the shim names, not the config's type.
const hostLocalConf = (col: Column) =>
  JSON.stringify({
    cniVersion: '1.0.0',
    name: 'dbn-hl',
    type: 'bridge',
    ipam: { type: 'host-local', subnet: '10.252.0.0/16', dataDir: join(work, col.key, 'hl') },
  });
const bridgeConf = (col: Column, bridge = 'cni0', subnet = '10.253.1.0/24', dataDir = 'br') => ({
  cniVersion: '1.0.0',
  name: `dbn-${bridge}`,
  type: 'bridge',
  bridge,
  isGateway: true,
  ipam: { type: 'host-local', subnet, dataDir: join(work, col.key, dataDir) },
});
const macvlanConf = (col: Column, n: number) => ({
  cniVersion: '1.0.0',
  name: `dbn-mv${n}`,
  type: 'macvlan',
  master: 'mvm0',
  mode: 'bridge',
  ipam: { type: 'host-local', subnet: `10.253.${10 + n}.0/24`, dataDir: join(work, col.key, 'mv') },
});
const multusConf = (col: Column) =>
  JSON.stringify({
    cniVersion: '1.0.0',
    name: 'multus-cni-network',
    type: 'multus',
    cniDir: join(work, col.key, 'multus'),
    binDir: col.dir,
    delegates: [
      {
        cniVersion: '1.0.0',
        name: 'dbn-cluster',
        plugins: [bridgeConf(col, 'mbr0', '10.253.100.0/24', 'm')],
      },
      macvlanConf(col, 1),
      macvlanConf(col, 2),
    ],
  });

type RowKey =
  | 'version'
  | 'hl-add'
  | 'br-add'
  | 'br-del'
  | 'br'
  | 'mv-add'
  | 'mv-del'
  | 'mv'
  | 'direct'
  | 'multus-add'
  | 'multus-del'
  | 'multus';
type Results = Map<ColKey, Map<RowKey, Rec[]>>;
const push = (res: Results, col: ColKey, row: RowKey, rec: Rec) => {
  const byRow = res.get(col) ?? new Map<RowKey, Rec[]>();
  res.set(col, byRow);
  byRow.set(row, [...(byRow.get(row) ?? []), rec]);
};
const sum = (recs: Rec[]): Rec => ({
  ms: recs.reduce((a, r) => a + r.ms, 0),
  own: recs.reduce((a, r) => a + r.own, 0),
  daemonFine: recs.reduce((a, r) => a + r.daemonFine, 0),
  daemonTicks: recs.reduce((a, r) => a + r.daemonTicks, 0),
});

/** One iteration of every row for one column. `tag` keeps container IDs unique. */
function iteration(col: Column, res: Results, tag: string, check: boolean): void {
  const record = (row: RowKey, rec: Rec) => push(res, col.key, row, rec);
  // 1. VERSION
  record('version', call(col, 'bridge', { CNI_COMMAND: 'VERSION' }));
  // 2. host-local ADD (timed), then its DEL (not timed) so the pool never fills
  const hl = hostLocalConf(col);
  const hlAdd = call(col, 'host-local', cniEnv(col, 'ADD', `hl-${tag}`, col.ctr, 'eth0'), hl);
  record('hl-add', hlAdd);
  untimed(col, 'host-local', cniEnv(col, 'DEL', `hl-${tag}`, col.ctr, 'eth0'), hl);
  // 3. bridge + host-local ADD, DEL
  const br = JSON.stringify(bridgeConf(col));
  const bAdd = call(col, 'bridge', cniEnv(col, 'ADD', `br-${tag}`, col.ctr, 'eth0'), br);
  const bDel = call(col, 'bridge', cniEnv(col, 'DEL', `br-${tag}`, col.ctr, 'eth0'), br);
  record('br-add', bAdd);
  record('br-del', bDel);
  record('br', sum([bAdd, bDel]));
  // 4. macvlan + host-local ADD, DEL
  const mv = JSON.stringify(macvlanConf(col, 0));
  const mAdd = call(col, 'macvlan', cniEnv(col, 'ADD', `mv-${tag}`, col.ctr, 'eth1'), mv);
  const mDel = call(col, 'macvlan', cniEnv(col, 'DEL', `mv-${tag}`, col.ctr, 'eth1'), mv);
  record('mv-add', mAdd);
  record('mv-del', mDel);
  record('mv', sum([mAdd, mDel]));
  // 5. the pod's three networks called directly, as a runtime would (one exec chain per network)...
  const cluster = JSON.stringify(bridgeConf(col, 'mbr0', '10.253.100.0/24', 'm'));
  const mv1 = JSON.stringify(macvlanConf(col, 1));
  const mv2 = JSON.stringify(macvlanConf(col, 2));
  const e = (cmd: string, ifname: string) => cniEnv(col, cmd, `d-${tag}`, col.pod, ifname);
  record(
    'direct',
    sum([
      call(col, 'bridge', e('ADD', 'eth0'), cluster),
      call(col, 'macvlan', e('ADD', 'net1'), mv1),
      call(col, 'macvlan', e('ADD', 'net2'), mv2),
      call(col, 'macvlan', e('DEL', 'net2'), mv2),
      call(col, 'macvlan', e('DEL', 'net1'), mv1),
      call(col, 'bridge', e('DEL', 'eth0'), cluster),
    ]),
  );
  // ... and through multus (cni-kit only: there is no Go multus here)
  if (col.key !== 'go') {
    const mc = multusConf(col);
    const me = (cmd: string) => ({
      ...cniEnv(col, cmd, `m-${tag}`, col.pod, 'eth0'),
      CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=bench',
    });
    const a = call(col, 'multus', me('ADD'), mc);
    const d = call(col, 'multus', me('DEL'), mc);
    record('multus-add', a);
    record('multus-del', d);
    record('multus', sum([a, d]));
  }
  settle();
  if (check) checkClean(col);
}

/** After a warm-up iteration: nothing of the container side is left. */
function checkClean(col: Column): void {
  for (const c of [col.ctr, col.pod]) {
    const links = execFileSync('ip', ['-n', nodeName(c), '-o', 'link'], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => l.split(': ')[1]!.split('@')[0]!)
      .filter((n) => n !== 'lo');
    if (links.length > 0) throw new Error(`${col.key}: links left in ${c}: ${links.join(', ')}`);
  }
}

async function mainTable(): Promise<void> {
  const cols: Column[] = [];
  for (const [key, name] of [
    ['go', 'Go plugins'],
    ['exec', 'cni-kit exec'],
    ['daemon', 'cni-kit shim→daemon'],
  ] as const) {
    const node = ns.add(`${key}-node`);
    const col: Column = {
      key,
      name,
      dir: key === 'go' ? GO : BIN,
      node,
      ctr: ns.add(`${key}-ctr`),
      pod: ns.add(`${key}-pod`),
    };
    veth(node, 'mvm0');
    mkdirSync(join(work, key), { recursive: true });
    if (key === 'daemon') {
      col.daemon = await daemonIn('main', node);
      col.dir = col.daemon.shimDir;
    }
    cols.push(col);
  }
  const daemon = cols[2]!.daemon!;
  // One untimed warm-up iteration each: the bridges exist, the daemon has loaded and compiled the
  // code paths; every output is checked once.
  const warm: Results = new Map();
  for (const col of cols) iteration(col, warm, 'warm', true);
  const calls0 = daemonCalls(daemon);
  const t0 = procCpuTicksMs(daemon.pid);
  const fine0 = procCpuFineMs(daemon.pid);

  const res: Results = new Map();
  const started = Date.now();
  for (let i = 0; i < N; i++) {
    for (let k = 0; k < cols.length; k++) {
      const col = cols[(k + i) % cols.length]!;
      iteration(col, res, String(i), false);
    }
    if (i === 0) {
      const per = (Date.now() - started) / 1000;
      console.error(
        `iteration 1 of ${N}: ${per.toFixed(1)} s (about ${((per * N) / 60).toFixed(1)} min in all)`,
      );
    }
  }
  settle();
  const t1 = procCpuTicksMs(daemon.pid);
  const fine1 = procCpuFineMs(daemon.pid);
  const calls1 = daemonCalls(daemon);
  for (const col of cols) checkClean(col);

  const get = (c: ColKey, r: RowKey) => res.get(c)?.get(r) ?? [];
  const med = (c: ColKey, r: RowKey, f: (x: Rec) => number) => {
    const xs = get(c, r);
    return xs.length ? median(xs.map(f)) : Number.NaN;
  };
  console.log(
    `\n## daemon mode vs exec mode vs Go: ${N} interleaved iterations per column (${new Date().toISOString()}, load ${loadavg()})`,
  );
  console.log(
    'median wall ms per call; CPU ms = user+sys of the exec’d process and its children',
    childCpuPrecise()
      ? `(getrusage, minus the ${timeWrapperCpuMs().toFixed(2)} ms of the GNU time wrapper)`
      : '(GNU time, 10 ms steps)',
    '\n+ in the daemon column the daemon’s CPU meanwhile (threads’ schedstat, ns; children from /proc/<pid>/stat).',
    '\nEvery call runs under nsenter into the column’s node netns (all columns alike).\n',
  );
  const rows: Array<[RowKey, string]> = [
    ['version', 'VERSION (bridge)'],
    ['hl-add', 'host-local ADD'],
    ['br-add', '  bridge + host-local ADD'],
    ['br-del', '  bridge + host-local DEL'],
    ['br', 'bridge + host-local ADD+DEL'],
    ['mv-add', '  macvlan + host-local ADD'],
    ['mv-del', '  macvlan + host-local DEL'],
    ['mv', 'macvlan + host-local ADD+DEL'],
    ['direct', 'pod delegates called directly (3 ADD + 3 DEL)'],
    ['multus', 'multus ADD+DEL (eth0 + 2 attachments)'],
  ];
  // The multus row's Go reference is the Go delegates called directly.
  const goRow = (r: RowKey): RowKey => (r === 'multus' ? 'direct' : r);
  table(
    [
      'call',
      'Go wall',
      'Go CPU',
      'exec wall',
      'exec CPU',
      'daemon wall',
      'daemon CPU',
      'exec/Go wall',
      'exec/Go CPU',
      'daemon/Go wall',
      'daemon/Go CPU',
    ],
    rows.map(([r, label]) => {
      const gw = med('go', goRow(r), (x) => x.ms);
      const gc = med('go', goRow(r), cpuOf);
      const ew = med('exec', r, (x) => x.ms);
      const ec = med('exec', r, cpuOf);
      const dw = med('daemon', r, (x) => x.ms);
      const dc = med('daemon', r, cpuOf);
      return [
        r === 'multus' ? `${label} [Go: delegates direct]` : label,
        f1(gw),
        f1(gc),
        f1(ew),
        f1(ec),
        f1(dw),
        f1(dc),
        ratio(ew, gw),
        ratio(ec, gc),
        ratio(dw, gw),
        ratio(dc, gc),
      ];
    }),
  );
  console.log('\nmultus overhead over its delegates called directly (median of per-iteration ADD+DEL sums):');
  table(
    [
      'mode',
      'direct wall',
      'multus wall',
      'multus/direct wall',
      'direct CPU',
      'multus CPU',
      'multus/direct CPU',
    ],
    (['exec', 'daemon'] as const).map((c) => {
      const dw = med(c, 'direct', (x) => x.ms);
      const mw = med(c, 'multus', (x) => x.ms);
      const dc = med(c, 'direct', cpuOf);
      const mc = med(c, 'multus', cpuOf);
      return [c, f1(dw), f1(mw), ratio(mw, dw), f1(dc), f1(mc), ratio(mc, dc)];
    }),
  );
  // Number of daemon calls per row per iteration, for the ticks figure per call.
  const callsPer: Partial<Record<RowKey, number>> = {
    version: 0,
    'hl-add': 1,
    br: 2,
    mv: 2,
    direct: 6,
    multus: 2,
  };
  console.log(
    '\nthe daemon column’s CPU split (medians per row; ticks: utime+stime over the row’s calls / calls):',
  );
  table(
    ['call', 'shim side CPU', 'daemon CPU (schedstat)', 'daemon CPU (ticks, column total / calls)'],
    (['version', 'hl-add', 'br', 'mv', 'direct', 'multus'] as const).map((r) => {
      const recs = get('daemon', r);
      const n = callsPer[r] ?? 1;
      const ticks = recs.reduce((a, x) => a + x.daemonTicks, 0);
      return [
        rows.find((x) => x[0] === r)![1],
        f2(med('daemon', r, (x) => x.own)),
        f2(med('daemon', r, (x) => x.daemonFine)),
        n === 0
          ? 'no daemon call (answered by the shim)'
          : `${f2(ticks / (recs.length * n))} ms per top-level call (${n} per row)`,
      ];
    }),
  );
  const served = calls1.done - calls0.done;
  const perIter = 2 + 2 + 2 + 6 + 2; // host-local ADD+DEL, bridge, macvlan, direct, multus top-level calls
  console.log(
    `\ndaemon over the whole timed run: ${served} calls served (${calls1.failed - calls0.failed} failed; expected ≥ ${perIter * N} top-level calls plus multus' nested delegate calls), ` +
      `CPU ${f1(t1.own + t1.children - t0.own - t0.children)} ms in ticks, ${f1(fine1 - fine0)} ms schedstat (threads only); ` +
      `${f2((t1.own + t1.children - t0.own - t0.children) / Math.max(1, served))} ms per served call (ticks), RSS now ${mib(procRssKiB(daemon.pid))} MiB`,
  );
  console.log('\ntime inside the daemon per call (its log’s durationMs, median over the timed run):');
  table(
    ['plugin command', 'median ms', 'calls'],
    daemonDurations(daemon, calls0.done).map(([k, m, n]) => [k, f2(m), n]),
  );
  await stopDaemon(daemon);
  for (const c of cols) {
    for (const p of [c.node, c.ctr, c.pod]) ns.remove(p);
  }
}

// ---- 6: RSS over many bridge + host-local calls ----

/** Runs `pairs` ADD+DEL pairs through the shim with `workers` at a time; calls `at(n)` after every n-th call of `every`. */
async function drivePairs(opts: {
  shim: string;
  conf: string;
  ctrs: string[];
  pairs: number;
  prefix: string;
  every: number;
  at: (calls: number) => void;
  env?: Record<string, string>;
}): Promise<{ failed: number; first?: string }> {
  let next = 0;
  let calls = 0;
  let failed = 0;
  let first: string | undefined;
  let mark = opts.every;
  const one = async (cmd: string, cid: string, netns: string) => {
    const r = await runAsync(
      opts.shim,
      [],
      {
        PATH,
        CNI_COMMAND: cmd,
        CNI_CONTAINERID: cid,
        CNI_NETNS: netns,
        CNI_IFNAME: 'eth0',
        CNI_PATH: join(opts.shim, '..'),
        ...(opts.env ?? {}),
      },
      opts.conf,
    );
    calls += 1;
    if (r.status !== 0 || (cmd === 'ADD' && !r.stdout.includes('"ips"'))) {
      failed += 1;
      first ??= `${cmd} ${cid}: exit ${r.status}: ${r.stdout.trim()} ${r.stderr.trim()}`.slice(0, 600);
    }
    while (calls >= mark) {
      opts.at(mark);
      mark += opts.every;
    }
  };
  await Promise.all(
    opts.ctrs.map(async (netns) => {
      for (;;) {
        const i = next++;
        if (i >= opts.pairs) return;
        const cid = `${opts.prefix}-${i}`;
        await one('ADD', cid, netns);
        await one('DEL', cid, netns);
      }
    }),
  );
  return { failed, ...(first ? { first } : {}) };
}

async function rssSection(): Promise<void> {
  const node = ns.add('rss-node');
  const d = await daemonIn('rss', node);
  const ctrs = Array.from({ length: RSS_CONCURRENCY }, (_, i) => ns.add(`rss-ctr${i}`));
  const conf = JSON.stringify({
    cniVersion: '1.0.0',
    name: 'dbn-rss',
    type: 'bridge',
    bridge: 'rbr0',
    isGateway: true,
    ipam: { type: 'host-local', subnet: '10.254.0.0/24', dataDir: join(work, 'rss-ipam') },
  });
  const calls = Math.ceil(RSS_CALLS / 2) * 2;
  // Checkpoints every 2,000 calls (every fifth of the run when shorter), samples 4 times as often
  // so each window's low and high show whether it grows or only saw-tooths with the GC.
  const every = calls >= 10_000 ? 2_000 : Math.max(8, Math.round(calls / 5 / 8) * 8);
  const samples: Array<[number, { rss: number; anon: number; hwm: number }]> = [[0, procMemKiB(d.pid)]];
  const t0 = Date.now();
  const c0 = procCpuTicksMs(d.pid);
  const r = await drivePairs({
    shim: join(d.shimDir, 'bridge'),
    conf,
    ctrs,
    pairs: calls / 2,
    prefix: 'rss',
    every: every / 4,
    at: (n) => samples.push([n, procMemKiB(d.pid)]),
  });
  const secs = (Date.now() - t0) / 1000;
  const c1 = procCpuTicksMs(d.pid);
  console.log(
    `\n## daemon RSS over ${calls} bridge + host-local calls through the shim (${calls / 2} ADD+DEL pairs, ${RSS_CONCURRENCY} at a time; no Kubernetes or etcd client loaded; ${new Date().toISOString()}, load ${loadavg()})\n`,
  );
  const rows: Array<Array<string | number>> = [];
  for (let at = 0; at <= calls; at += every) {
    const m = samples.find(([n]) => n === at)?.[1];
    const win = samples.filter(([n]) => n > at - every && n <= at).map(([, x]) => x.rss);
    if (!m) continue;
    rows.push([
      at,
      mib(m.rss),
      mib(m.anon),
      at === 0 ? '' : `${mib(Math.min(...win))}–${mib(Math.max(...win))}`,
    ]);
  }
  table([`calls`, 'RSS MiB', 'of which anonymous', `RSS low–high over the ${every} calls before`], rows);
  const after = samples.filter(([n]) => n >= every).map(([, x]) => x.rss);
  const last = samples.at(-1)![1];
  console.log(
    `\nafter the first ${every}: RSS between ${mib(Math.min(...after))} and ${mib(Math.max(...after))} MiB (${after.length} samples); ` +
      `peak RSS ${mib(last.hwm)} MiB; failed calls: ${r.failed}${r.first ? ` (first: ${r.first})` : ''}; ` +
      `${f1(calls / secs)} calls/s; daemon CPU ${f2((c1.own + c1.children - c0.own - c0.children) / calls)} ms per call (ticks)`,
  );
  await stopDaemon(d);
  for (const p of [node, ...ctrs]) ns.remove(p);
}

// ---- 7: with the etcd client loaded ----

/** A real etcd on 127.0.0.1:2379 inside `node`, with its data in the work folder. */
async function startEtcdIn(node: string): Promise<void> {
  const data = join(work, 'etcd');
  execFileSync('ip', ['-n', nodeName(node), 'link', 'set', 'lo', 'up']);
  // A shell guardian kills etcd when our stdin pipe closes, so even a SIGKILLed bench leaves none.
  etcdProc = spawn(
    'nsenter',
    [
      `--net=${node}`,
      '/bin/sh',
      '-c',
      '"$0" "$@" & pid=$!; read _ignored; kill -9 $pid 2>/dev/null; wait $pid',
      ETCD,
      '--name',
      'dbn',
      '--data-dir',
      data,
      '--listen-client-urls',
      'http://127.0.0.1:2379',
      '--advertise-client-urls',
      'http://127.0.0.1:2379',
      '--listen-peer-urls',
      'http://127.0.0.1:2380',
      '--initial-advertise-peer-urls',
      'http://127.0.0.1:2380',
      '--initial-cluster',
      'dbn=http://127.0.0.1:2380',
      '--unsafe-no-fsync',
      '--log-level',
      'error',
    ],
    { stdio: ['pipe', 'ignore', 'ignore'] },
  );
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const r = spawnSync(
      'nsenter',
      [`--net=${node}`, 'curl', '-s', '-m', '1', 'http://127.0.0.1:2379/health'],
      {
        encoding: 'utf8',
      },
    );
    if (r.stdout.includes('"health":"true"')) return;
    await new Promise((res) => setTimeout(res, 200));
  }
  throw new Error('etcd did not become healthy in its netns');
}
async function stopEtcd(): Promise<void> {
  const p = etcdProc;
  if (!p || p.exitCode !== null) return;
  const done = new Promise((r) => p.once('exit', r));
  p.stdin?.end();
  await done;
  etcdProc = undefined;
}

async function etcdSection(): Promise<void> {
  if (!existsSync(ETCD)) {
    console.log(`\n## with the etcd client loaded: skipped (no ${ETCD})`);
    return;
  }
  const node = ns.add('etcd-node');
  await startEtcdIn(node);
  const d = await daemonIn('etcd', node);
  const ctrs = Array.from({ length: 16 }, (_, i) => ns.add(`etcd-ctr${i}`));
  const wb = (prefix: string, range = '10.200.0.0/16') =>
    JSON.stringify({
      cniVersion: '1.0.0',
      name: 'dbn-wb',
      type: 'whereabouts',
      ipam: {
        type: 'whereabouts',
        range,
        datastore: 'etcd',
        etcd_host: 'http://127.0.0.1:2379',
        etcd_prefix: `/dbn/${prefix}`,
      },
    });
  // RSS: 0, then after ETCD_CALLS whereabouts calls (ADD+DEL pairs, --rss-concurrency at a time) through the shim.
  const rss0 = procRssKiB(d.pid);
  const points: Array<[number, number]> = [];
  const every = Math.max(2, Math.round(ETCD_CALLS / 5 / 2) * 2);
  const rr = await drivePairs({
    shim: join(d.shimDir, 'whereabouts'),
    conf: wb('rss'),
    ctrs: ctrs.slice(0, RSS_CONCURRENCY),
    pairs: Math.ceil(ETCD_CALLS / 2),
    prefix: 'wrss',
    every,
    at: (n) => points.push([n, procRssKiB(d.pid)]),
  });

  // allocations/s, 16 ADDs at a time, exec mode (the Node bundle under nsenter, to reach etcd on the
  // node's loopback) vs through the shim; interleaved rounds, each on a fresh prefix.
  const rate = async (mode: 'exec' | 'daemon', round: number, per: number) => {
    const conf = wb(`${mode}${round}`, `10.${201 + round}.0.0/16`);
    const ips = new Set<string>();
    let failed = 0;
    let first: string | undefined;
    const t0 = performance.now();
    await Promise.all(
      ctrs.map(async (netns, w) => {
        for (let j = 0; j < per; j++) {
          const env = {
            PATH,
            CNI_COMMAND: 'ADD',
            CNI_CONTAINERID: `${mode}${round}-${w}-${j}`,
            CNI_NETNS: netns,
            CNI_IFNAME: 'eth0',
            CNI_PATH: mode === 'exec' ? BIN : d.shimDir,
          };
          const r =
            mode === 'exec'
              ? await runAsync('nsenter', [`--net=${node}`, join(BIN, 'whereabouts')], env, conf)
              : await runAsync(join(d.shimDir, 'whereabouts'), [], env, conf);
          const ip = /"address":\s*"([^"]+)"/.exec(r.stdout)?.[1];
          if (r.status !== 0 || !ip) {
            failed += 1;
            first ??= `exit ${r.status}: ${r.stdout.trim()} ${r.stderr.trim()}`.slice(0, 400);
          } else ips.add(ip);
        }
      }),
    );
    const secs = (performance.now() - t0) / 1000;
    return { perSec: (16 * per) / secs, dup: 16 * per - failed - ips.size, failed, first };
  };
  const execRates: number[] = [];
  const daemonRates: number[] = [];
  const notes: string[] = [];
  for (let round = 0; round < 3; round++) {
    const e = await rate('exec', round * 2, 3);
    const s = await rate('daemon', round * 2 + 1, 25);
    execRates.push(e.perSec);
    daemonRates.push(s.perSec);
    for (const [m, x] of [
      ['exec', e],
      ['daemon', s],
    ] as const) {
      if (x.failed || x.dup)
        notes.push(`${m} round ${round}: ${x.failed} failed, ${x.dup} duplicates ${x.first ?? ''}`);
    }
  }
  const rssAfter = procRssKiB(d.pid);
  console.log(
    `\n## with the etcd client loaded (whereabouts on a real etcd in the daemon's netns; ${new Date().toISOString()}, load ${loadavg()})\n`,
  );
  table(
    [`whereabouts calls through the shim (${RSS_CONCURRENCY} at a time)`, 'RSS MiB'],
    [
      [0, mib(rss0)],
      ...points.map(([n, k]) => [n, mib(k)] as [number, string]),
      ['then after the allocation rounds below', mib(rssAfter)],
    ],
  );
  console.log(`failed calls: ${rr.failed}${rr.first ? ` (first: ${rr.first})` : ''}\n`);
  table(
    ['16 concurrent whereabouts ADDs', 'allocations/s (median of 3 rounds)', 'rounds'],
    [
      ['exec mode (dist/bin/whereabouts, 48 per round)', f1(median(execRates)), execRates.map(f1).join(', ')],
      [
        'through the shim to the daemon (400 per round)',
        f1(median(daemonRates)),
        daemonRates.map(f1).join(', '),
      ],
      ['daemon / exec', ratio(median(daemonRates), median(execRates)), ''],
    ],
  );
  console.log(
    notes.length ? `problems: ${notes.join('; ')}` : 'every ADD answered with an address, no duplicates',
  );
  await stopDaemon(d);
  await stopEtcd();
  for (const p of [node, ...ctrs]) ns.remove(p);
}

// ---- 8: stress ----

async function stressSection(): Promise<void> {
  const node = ns.add('stress-node');
  const d = await daemonIn('stress', node);
  const ctrs = Array.from({ length: 32 }, (_, i) => ns.add(`s${i}`));
  const ipamDir = join(work, 'stress-ipam');
  const conf = JSON.stringify({
    cniVersion: '1.0.0',
    name: 'dbn-stress',
    type: 'bridge',
    bridge: 'sbr0',
    isGateway: true,
    ipam: { type: 'host-local', subnet: '10.255.0.0/24', dataDir: ipamDir },
  });
  const shim = join(d.shimDir, 'bridge');
  let failed = 0;
  const firsts: string[] = [];
  const t0 = Date.now();
  const c0 = procCpuTicksMs(d.pid);
  const rounds: number[] = [];
  let r = 0;
  for (; r < STRESS_ROUNDS; r++) {
    if ((Date.now() - t0) / 60_000 > STRESS_MINUTES) break;
    const tr = performance.now();
    await Promise.all(
      ctrs.map(async (netns, i) => {
        for (const cmd of ['ADD', 'DEL']) {
          const x = await runAsync(
            shim,
            [],
            {
              PATH,
              CNI_COMMAND: cmd,
              CNI_CONTAINERID: `st-${r}-${i}`,
              CNI_NETNS: netns,
              CNI_IFNAME: 'eth0',
              CNI_PATH: d.shimDir,
            },
            conf,
          );
          if (x.status !== 0 || (cmd === 'ADD' && !x.stdout.includes('"ips"'))) {
            failed += 1;
            if (firsts.length < 5)
              firsts.push(`round ${r} ${cmd} ${i}: exit ${x.status}: ${x.stdout.trim()}`.slice(0, 400));
          }
        }
      }),
    );
    rounds.push(performance.now() - tr);
    if ((r + 1) % 50 === 0) {
      const el = (Date.now() - t0) / 1000;
      console.error(
        `stress: ${r + 1} rounds, ${failed} failed calls, ${el.toFixed(0)} s, RSS ${mib(procRssKiB(d.pid))} MiB`,
      );
    }
  }
  // What is left: links other than lo and the bridge on the node, any link in a container, and any
  // host-local reservation.
  const linksOf = (p: string) =>
    execFileSync('ip', ['-n', nodeName(p), '-o', 'link'], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => l.split(': ')[1]!.split('@')[0]!);
  const nodeLeft = linksOf(node).filter((n) => n !== 'lo' && n !== 'sbr0');
  const ctrLeft = ctrs.flatMap((c) =>
    linksOf(c)
      .filter((n) => n !== 'lo')
      .map((n) => `${nodeName(c)}:${n}`),
  );
  const netDir = join(ipamDir, 'dbn-stress');
  const ipamLeft = existsSync(netDir)
    ? readdirSync(netDir).filter((f) => f !== 'lock' && f !== '.cni-kit' && !f.startsWith('last_reserved_ip'))
    : [];
  const metaLeft = existsSync(join(netDir, '.cni-kit')) ? readdirSync(join(netDir, '.cni-kit')) : [];
  const secs = (Date.now() - t0) / 1000;
  const c1 = procCpuTicksMs(d.pid);
  const calls = daemonCalls(d);
  console.log(
    `\n## stress: 32 bridge + host-local ADD/DEL pairs at once through the shim, ${r} rounds (${r * 64} calls; ${new Date().toISOString()}, load ${loadavg()})\n`,
  );
  table(
    ['figure', 'value'],
    [
      [
        'rounds run (asked)',
        `${r} (${STRESS_ROUNDS}${Number.isFinite(STRESS_MINUTES) ? `, at most ${STRESS_MINUTES} min` : ''})`,
      ],
      ['failed calls', failed],
      ['daemon log: calls done / failed', `${calls.done} / ${calls.failed}`],
      [
        'round wall ms, median (min–max)',
        rounds.length
          ? `${f1(median(rounds))} (${f1(Math.min(...rounds))}–${f1(Math.max(...rounds))})`
          : 'n/a',
      ],
      ['node links left (besides lo and the bridge)', nodeLeft.length ? nodeLeft.join(', ') : 'none'],
      ['container links left', ctrLeft.length ? ctrLeft.slice(0, 10).join(', ') : 'none'],
      ['host-local reservations left', ipamLeft.length ? ipamLeft.slice(0, 10).join(', ') : 'none'],
      [
        'host-local .cni-kit metadata entries at the end',
        metaLeft.length ? metaLeft.slice(0, 10).join(', ') : 'none',
      ],
      ['calls/s', f1((r * 64) / secs)],
      [
        'daemon CPU per call (ticks)',
        f2((c1.own + c1.children - c0.own - c0.children) / Math.max(1, r * 64)),
      ],
      ['daemon RSS at the end MiB', mib(procRssKiB(d.pid))],
    ],
  );
  if (firsts.length) console.log(`first failures:\n  ${firsts.join('\n  ')}`);
  await stopDaemon(d);
  for (const p of [node, ...ctrs]) ns.remove(p);
}

try {
  if (RSS_ONLY) {
    await rssSection();
  } else if (!STRESS_ONLY) {
    await mainTable();
    if (RSS_CALLS > 0) await rssSection();
    if (ETCD_CALLS > 0) await etcdSection();
  }
  if (STRESS) await stressSection();
} finally {
  for (const d of [...daemons]) await stopDaemon(d).catch(() => {});
  await stopEtcd().catch(() => {});
  cleanupNow();
}
