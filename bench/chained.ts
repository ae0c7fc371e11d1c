// The chained plugins of issue 16 (portmap, bandwidth, firewall, sbr) after bridge + host-local,
// against the Go reference, interleaved in one run. Columns, as in bench/daemon.ts:
//   Go        Debian's Go plugins (/usr/lib/cni) for the whole chain;
//   exec      cni-kit's Node bundles in dist/bin, one process per call;
//   daemon    cni-kit's native shims (dist/shim, rebound to a daemon this bench starts in the
//             column's node netns, exec-mode fallback pointing nowhere).
// Each round runs every chain in every column (rotating the column order): ADD of the whole
// conflist, then its DEL, as libcni does it (prevResult handed down on ADD; DEL in reverse order
// with the ADD's result as prevResult; portmap's mapping as runtimeConfig). Timed per exec'd
// plugin: wall, and CPU = user+sys of the exec'd process and its children (getrusage), plus in
// the daemon column the daemon's CPU from just before the call to just before the next one.
// Medians over the rounds, ratios to Go.
//
// Every plugin and the daemon run in private network namespaces (chn<pid>-…: one node and one
// container per column); they, their iptables chains and ifb links, the daemon and the temp folder
// are removed at the end, on failure and on SIGINT/SIGTERM too.
//
// Usage (root, after npm run build): npx tsx bench/chained.ts [rounds=30]
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type BenchDaemon,
  childCpuMs,
  childCpuPrecise,
  cleanupOnExit,
  median,
  Namespaces,
  procCpuFineMs,
  procCpuTicksMs,
  startBenchDaemon,
  table,
} from './lib.js';

const N = Number(process.argv[2] ?? 30);
if (!Number.isInteger(N) || N < 1) throw new Error(`rounds: ${process.argv[2]} is not a whole number >= 1`);

const ROOT = join(import.meta.dirname, '..');
const GO = '/usr/lib/cni';
const BIN = join(ROOT, 'dist', 'bin');
const PATH = process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin';
const CHAINED = ['portmap', 'bandwidth', 'firewall', 'sbr'] as const;
type Chained = (typeof CHAINED)[number];

if (process.getuid?.() !== 0) {
  console.log('bench/chained.ts needs root (network namespaces)');
  process.exit(0);
}
for (const p of ['bridge', 'host-local', ...CHAINED]) {
  if (!existsSync(join(GO, p))) throw new Error(`Go reference ${p} not found in ${GO}`);
  if (!existsSync(join(BIN, p))) throw new Error(`dist/bin/${p} is missing: build first (npm run build)`);
  if (!existsSync(join(ROOT, 'dist', 'shim', p)))
    throw new Error(`dist/shim/${p} is missing: build first (npm run build compiles the shim)`);
}

// ---- cleanup, on every way out ----
const ns = new Namespaces(`chn${process.pid % 100000}`);
const work = mkdtempSync(join(tmpdir(), `${ns.tag}-`));
let daemon: BenchDaemon | undefined;
const cleanupNow = cleanupOnExit(() => {
  daemon?.killNow();
  ns.removeAll();
  rmSync(work, { recursive: true, force: true });
});

// ---- columns and timed calls ----
type ColKey = 'go' | 'exec' | 'daemon';
interface Column {
  key: ColKey;
  name: string;
  dir: string;
  node: string;
  ctr: string;
  daemon?: BenchDaemon;
}
/** One timed call: wall ms, CPU ms of the exec'd side, and the daemon's CPU meanwhile. */
interface Rec {
  ms: number;
  cpu: number;
}
const add = (a: Rec, b: Rec): Rec => ({ ms: a.ms + b.ms, cpu: a.cpu + b.cpu });
const ZERO: Rec = { ms: 0, cpu: 0 };

// The daemon's CPU for a call runs from just before it to just before the next call of any column,
// so what it does after replying (its log line) is counted too.
let pending: { rec: Rec; fine0: number; kids0: number; pid: number } | undefined;
function settle(): void {
  if (!pending) return;
  const { rec, fine0, kids0, pid } = pending;
  pending = undefined;
  rec.cpu += procCpuFineMs(pid) - fine0 + (procCpuTicksMs(pid).children - kids0);
}

/** Execs one plugin under nsenter into the column's node netns; returns its stdout and cost. */
function call(
  col: Column,
  plugin: string,
  env: Record<string, string>,
  input: string,
): { rec: Rec; out: string } {
  settle();
  const pid = col.daemon?.pid;
  const before = pid ? { fine0: procCpuFineMs(pid), kids0: procCpuTicksMs(pid).children, pid } : undefined;
  const c0 = childCpuMs();
  const t0 = process.hrtime.bigint();
  const r = spawnSync('nsenter', [`--net=${col.node}`, join(col.dir, plugin)], {
    env: { PATH, ...env },
    input,
    encoding: 'utf8',
  });
  const rec: Rec = { ms: Number(process.hrtime.bigint() - t0) / 1e6, cpu: childCpuMs() - c0 };
  if (r.status !== 0) {
    throw new Error(`${col.key} ${plugin} ${env.CNI_COMMAND} exited ${r.status}: ${r.stdout}${r.stderr}`);
  }
  if (before) pending = { rec, ...before };
  return { rec, out: r.stdout };
}

// ---- the conflists ----
const MAPPING = { hostPort: 18080, containerPort: 80, protocol: 'tcp' };
function conflist(col: Column, chained: Chained): Array<Record<string, unknown>> {
  const bridge = {
    type: 'bridge',
    bridge: 'cni0',
    isGateway: true,
    ipMasq: false,
    ipam: { type: 'host-local', subnet: '10.254.0.0/16', dataDir: join(work, col.key, 'hl') },
  };
  const second: Record<string, Record<string, unknown>> = {
    portmap: {
      type: 'portmap',
      capabilities: { portMappings: true },
      runtimeConfig: { portMappings: [MAPPING] },
    },
    bandwidth: {
      type: 'bandwidth',
      ingressRate: 8_000_000,
      ingressBurst: 80_000,
      egressRate: 16_000_000,
      egressBurst: 160_000,
    },
    firewall: { type: 'firewall', backend: 'iptables', dataDir: join(work, col.key, 'fw') },
    sbr: { type: 'sbr' },
  };
  return [bridge, second[chained]!].map((p) => ({ cniVersion: '1.0.0', name: `chn-${chained}`, ...p }));
}

/** One ADD then DEL of bridge + host-local + `chained`: the chain's and the chained plugin's cost. */
function chainRound(col: Column, chained: Chained, cid: string, verify = false): { total: Rec; own: Rec } {
  const env = (command: string) => ({
    CNI_COMMAND: command,
    CNI_CONTAINERID: cid,
    CNI_NETNS: col.ctr,
    CNI_IFNAME: 'eth0',
    CNI_PATH: col.dir,
  });
  const plugins = conflist(col, chained);
  let total = ZERO;
  let own = ZERO;
  let prev: unknown;
  const recs: Rec[] = [];
  for (const p of plugins) {
    const conf = prev === undefined ? p : { ...p, prevResult: prev };
    const r = call(col, p.type as string, env('ADD'), JSON.stringify(conf));
    prev = JSON.parse(r.out);
    recs.push(r.rec);
  }
  if (verify) {
    settle();
    verifyEffect(col, chained);
  }
  for (const p of [...plugins].reverse()) {
    recs.push(call(col, p.type as string, env('DEL'), JSON.stringify({ ...p, prevResult: prev })).rec);
  }
  settle();
  for (const [i, r] of recs.entries()) {
    total = add(total, r);
    if (i === 1 || i === 2) own = add(own, r); // the chained plugin's ADD and DEL
  }
  return { total, own };
}

const sh = (args: string[]) => execFileSync('ip', args, { encoding: 'utf8' });
/** Between the warm-up round's ADD and DEL: the chained plugin did its work (else the bench times nothing). */
function verifyEffect(col: Column, chained: Chained): void {
  const node = col.node.split('/').pop()!;
  const ctr = col.ctr.split('/').pop()!;
  const ok = {
    portmap: () =>
      sh(['netns', 'exec', node, 'iptables-save', '-t', 'nat']).includes(`--dport ${MAPPING.hostPort}`),
    bandwidth: () =>
      sh(['-n', node, 'link', 'show', 'type', 'ifb']).trim() !== '' &&
      / tbf /.test(sh(['netns', 'exec', node, 'tc', 'qdisc', 'show'])) &&
      / tbf /.test(sh(['netns', 'exec', ctr, 'tc', 'qdisc', 'show'])) === false,
    firewall: () => sh(['netns', 'exec', node, 'iptables-save', '-t', 'filter']).includes(' 10.254.'),
    sbr: () => /lookup 100/.test(sh(['-n', ctr, 'rule', 'show'])),
  }[chained];
  if (!ok()) throw new Error(`${col.key}: ${chained} ADD left no trace of its work`);
}

/** After the warm-up round: the container has nothing but lo, the chained state is gone. */
function checkClean(col: Column): void {
  const links = execFileSync('ip', ['-n', col.ctr.split('/').pop()!, '-o', 'link'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.includes(' lo:'));
  if (links.length > 0) throw new Error(`${col.key}: links left in the container: ${links.join('; ')}`);
  const node = col.node.split('/').pop()!;
  const saved = execFileSync('ip', ['netns', 'exec', node, 'iptables-save'], { encoding: 'utf8' });
  const leftover = saved.split('\n').filter((l) => l.startsWith('-A') && l.includes('10.254.'));
  if (leftover.length > 0) throw new Error(`${col.key}: iptables rules left: ${leftover.join('; ')}`);
}

async function main(): Promise<void> {
  const cols: Column[] = [];
  for (const [key, name] of [
    ['go', 'Go 1.1.1'],
    ['exec', 'cni-kit exec'],
    ['daemon', 'cni-kit shim→daemon'],
  ] as const) {
    const col: Column = {
      key,
      name,
      dir: key === 'go' ? GO : BIN,
      node: ns.add(`${key}-n`),
      ctr: ns.add(`${key}-c`),
    };
    mkdirSync(join(work, key), { recursive: true });
    if (key === 'daemon') {
      daemon = await startBenchDaemon({ dir: join(work, 'daemon'), netns: col.node, root: ROOT });
      col.daemon = daemon;
      col.dir = daemon.shimDir;
    }
    cols.push(col);
  }
  // One untimed warm-up round each (the bridge exists, the daemon has compiled its paths), checked clean.
  for (const col of cols) {
    for (const c of CHAINED) chainRound(col, c, `warm-${c}`, true);
    checkClean(col);
  }
  const res = new Map<string, Rec[]>();
  const push = (k: string, r: Rec) => res.set(k, [...(res.get(k) ?? []), r]);
  const t0 = Date.now();
  for (let i = 0; i < N; i++) {
    for (const [j, c] of CHAINED.entries()) {
      const shift = (i + j) % cols.length;
      for (const col of [...cols.slice(shift), ...cols.slice(0, shift)]) {
        // Back to the event loop between chains, so SIGINT/SIGTERM clean up promptly.
        await new Promise((r) => setImmediate(r));
        const r = chainRound(col, c, `r${i}-${c}`);
        push(`${col.key}:${c}:total`, r.total);
        push(`${col.key}:${c}:own`, r.own);
      }
    }
  }
  for (const col of cols) checkClean(col);
  const seconds = (Date.now() - t0) / 1000;

  const f1 = (x: number) => x.toFixed(1);
  const med = (k: string) => {
    const xs = res.get(k) ?? [];
    return { ms: median(xs.map((r) => r.ms)), cpu: median(xs.map((r) => r.cpu)) };
  };
  const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
  const rows: string[][] = [];
  for (const c of CHAINED) {
    for (const part of ['total', 'own'] as const) {
      const [g, e, d] = (['go', 'exec', 'daemon'] as const).map((k) => med(`${k}:${c}:${part}`)) as [
        Rec,
        Rec,
        Rec,
      ];
      rows.push([
        part === 'total' ? `bridge + host-local + ${c} ADD+DEL` : `  of which ${c} ADD+DEL`,
        `${f1(g.ms)} / ${f1(g.cpu)}`,
        `${f1(e.ms)} / ${f1(e.cpu)}`,
        `${f1(d.ms)} / ${f1(d.cpu)}`,
        `${ratio(e.ms, g.ms)}, ${ratio(e.cpu, g.cpu)}`,
        `${ratio(d.ms, g.ms)}, ${ratio(d.cpu, g.cpu)}`,
      ]);
    }
  }
  const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  console.log(
    `${N} rounds in ${seconds.toFixed(0)} s, load ${load}, CPU ${childCpuPrecise() ? 'µs (getrusage)' : '10 ms ticks'}; median ms`,
  );
  table(
    [
      'chain',
      'Go wall / CPU',
      'exec wall / CPU',
      'daemon wall / CPU',
      'exec / Go (wall, CPU)',
      'daemon / Go (wall, CPU)',
    ],
    rows,
  );
  if (daemon) {
    const log = readFileSync(daemon.logFile, 'utf8');
    const count = (msg: string) => log.split('\n').filter((l) => l.includes(`"msg":"${msg}"`)).length;
    console.log(`daemon: ${count('call done')} calls served, ${count('call failed')} failed`);
    await daemon.stop();
    daemon = undefined;
  }
}

main().then(
  () => cleanupNow(),
  (e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    cleanupNow();
    process.exit(1);
  },
);
