// whereabouts served by `cni-kit daemon` (one process, shared store connections), driven from
// outside the way a node drives it. A small C driver (bench/wb-load.c, compiled here with the
// system cc) forks N workers making CNI ADDs one after another, either speaking the daemon's wire
// protocol itself (POST /cni over its Unix socket, no exec) or fork/exec'ing the whereabouts shim
// with CNI_* in its environment and the config on its stdin, as a runtime does. Sections:
//   etcd    16 concurrent ADDs on one loopback etcd: wire vs shim, interleaved rounds;
//   fill    time per allocation in a /16 already holding 60,000 vs an empty /16 (sequential and
//           16 at once, interleaved), and an IPv6 /64 allocated at five points across it, the far
//           end included;
//   kube    16 concurrent ADDs on the Kubernetes store against the fake API server;
//   slices  8 simulated nodes (a daemon each) with node slices vs one IPPool shared by all,
//           interleaved; every address checked to lie in its node's slice;
//   burst   200 concurrent ADDs at once: the daemon's RSS against its memory limit (default
//           256 MiB), each call answered with a result or a code-11 refusal (both counted), and
//           the same with a small admission queue, where refusals are expected.
// Every row checks 0 duplicate addresses. CPU is user+sys: the driver with its workers and the
// shims it exec'd (getrusage of reaped children), the daemon(s) with their whole process trees (every
// live thread's run time of the daemon, its process helper and what that runs, plus what each
// reaped), and the
// store (etcd's threads; the fake API server runs in this process, so its rows count this
// process). Everything runs in a node network namespace of its own (the bench re-execs itself
// there), removed at the end, on failure and on SIGINT/SIGTERM too.
// Run as root after a build (npm run build):
//   npx tsx bench/ipam-whereabouts-daemon.ts [--rounds 3] [--only etcd,fill,kube,slices,burst] [--quick]
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseWhereaboutsConfig } from '../src/ipam/whereabouts/config.js';
import { openWhereaboutsStore } from '../src/ipam/whereabouts/index.js';
import { reconcileNodeSlices } from '../src/ipam/whereabouts/node-slice-controller.js';
import { openKubeApi } from '../src/k8s/connect.js';
import { parseIP, parseSubnet } from '../src/spec/addr.js';
import { hasEtcd, startEtcd, type TestEtcd } from '../test/helpers/etcd.js';
import { type FakeK8s, startFakeK8s } from '../test/helpers/fake-k8s.js';
import {
  type BenchDaemon,
  childCpuMs,
  inNodeNetns,
  median,
  procMemKiB,
  procTreeCpuFineMs,
  procTreeCpuTicksMs,
  startBenchDaemon,
  table,
} from './lib.js';

const ROOT = join(import.meta.dirname, '..');
const arg = (name: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const quick = process.argv.includes('--quick');
const ROUNDS = Number(arg('rounds') ?? (quick ? 1 : 3));
const ONLY = (arg('only') ?? 'etcd,fill,kube,slices,burst').split(',');
/** NODE_OPTIONS for the daemons (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile them). */
const DAEMON_NODE_OPTIONS = arg('daemon-node-options');
const CC = ['/usr/bin/cc', '/usr/bin/gcc'].find((p) => existsSync(p));

if (
  process.getuid?.() !== 0 ||
  !CC ||
  !hasEtcd() ||
  !existsSync(join(ROOT, 'dist', 'cli.cjs')) ||
  !existsSync(join(ROOT, 'dist', 'shim', 'whereabouts'))
) {
  console.error('skipped: needs root, a C compiler, etcd and a build (dist/cli.cjs, dist/bin, dist/shim)');
  process.exit(0);
}
const tag = `wbd${process.pid % 10000}`;

// ---- state and cleanup ----

const inNode = process.env.BENCH_NODE_NETNS !== undefined;
const work = inNode ? mkdtempSync(join(tmpdir(), `${tag}-`)) : '';
const daemons: BenchDaemon[] = [];
let etcd: TestEtcd | undefined;
let api: FakeK8s | undefined;
process.on('exit', () => {
  if (!inNode) return;
  for (const d of daemons) d.killNow();
  // etcd's guardian kills it when this process's pipe to it closes, i.e. now.
  rmSync(work, { recursive: true, force: true });
});
if (inNode) for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(130));

const say = (s = '') => console.log(s);
const f0 = (n: number) => n.toFixed(0);
const f1 = (n: number) => n.toFixed(1);
const f2 = (n: number) => n.toFixed(2);
const load = () => loadavg().map(f1).join(' ');

// ---- the driver ----

const driver = join(work, 'wb-load');

/** What one driver run saw. */
interface Drive {
  ok: number;
  /** Refused with CNI error code 11 (try again later). */
  code11: number;
  /** Any other failure (wrong status, other code, no answer). */
  other: number;
  ips: string[];
  /** Per-call latency, µs. */
  us: number[];
  wallS: number;
  /** CPU of the driver, its workers and the shims they exec'd. */
  driverCpuMs: number;
  firstError?: string;
}

/** Runs the driver: `clients` workers, `per` ADDs each, against a socket (wire) or a shim (exec). */
function drive(
  mode: 'wire' | 'exec',
  target: string,
  clients: number,
  per: number,
  id: string,
  conf: object,
  env: Record<string, string> = {},
): Promise<Drive> {
  const confFile = join(work, `conf-${id}.json`);
  writeFileSync(confFile, JSON.stringify(conf));
  const envs = Object.entries({ CNI_NETNS: process.env.BENCH_NODE_NETNS!, ...env }).map(
    ([k, v]) => `${k}=${v}`,
  );
  const c0 = childCpuMs();
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const p = spawn(driver, [mode, target, String(clients), String(per), id, confFile, ...envs], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let text = '';
    p.stdout.setEncoding('utf8');
    p.stdout.on('data', (s: string) => {
      text += s;
    });
    p.on('error', reject);
    p.on('close', (code) => {
      const wallS = (performance.now() - t0) / 1000;
      const d: Drive = { ok: 0, code11: 0, other: 0, ips: [], us: [], wallS, driverCpuMs: childCpuMs() - c0 };
      for (const line of text.split('\n')) {
        const [kind, us, a, ...rest] = line.split(' ');
        if (kind === 'ok') {
          d.ok++;
          d.ips.push(a!.replace(/\/\d+$/, ''));
          d.us.push(Number(us));
        } else if (kind === 'err') {
          if (a === '11') d.code11++;
          else d.other++;
          d.firstError ??= `code ${a}: ${rest.join(' ')}`.slice(0, 300);
        }
      }
      const missing = clients * per - d.ok - d.code11 - d.other;
      if (missing > 0 || code !== 0) {
        d.other += Math.max(0, missing);
        d.firstError ??= `driver exited ${code}, ${missing} calls unanswered`;
      }
      resolve(d);
    });
  });
}

const dups = (ips: string[]) => ips.length - new Set(ips).size;

/** The pid of the etcd the guardian shell of startEtcd runs (found by its unique data dir). */
function etcdPid(dataDir: string): number | undefined {
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      if (cmd[0]?.endsWith('etcd') && cmd.includes(dataDir)) return Number(p);
    } catch {
      // gone
    }
  }
  return undefined;
}

/** CPU ms of processes to watch around a run. */
type CpuProbe = () => number;
const cpuOf =
  (pids: number[]): CpuProbe =>
  () =>
    pids.reduce((s, p) => s + procTreeCpuFineMs(p) + procTreeCpuTicksMs(p).children, 0);
const selfCpu: CpuProbe = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/**
 * Requests the store has answered so far: etcd's KV gRPC calls (its metrics), or the fake API
 * server's requests; set per section.
 */
let storeCalls: () => Promise<number> = async () => Number.NaN;

/** etcd's KV gRPC calls answered so far (grpc_server_handled_total of etcdserverpb.KV). */
async function etcdCalls(): Promise<number> {
  const text = await (await fetch(`${etcd!.url}/metrics`)).text();
  let n = 0;
  for (const line of text.split('\n'))
    if (line.startsWith('grpc_server_handled_total{') && line.includes('"etcdserverpb.KV"'))
      n += Number(line.split(' ').at(-1));
  return n;
}

/** One measured run with the CPU of the daemon(s) and of the store around it. */
async function measured(
  daemonCpu: CpuProbe,
  storeCpu: CpuProbe,
  run: () => Promise<Drive[]>,
): Promise<{ d: Drive; daemonCpuMs: number; storeCpuMs: number; storeCalls: number }> {
  const d0 = daemonCpu();
  const s0 = storeCpu();
  const n0 = await storeCalls();
  const t0 = performance.now();
  const ds = await run();
  const wallS = (performance.now() - t0) / 1000;
  const all: Drive = {
    ok: 0,
    code11: 0,
    other: 0,
    ips: [],
    us: [],
    wallS,
    driverCpuMs: 0,
  };
  for (const x of ds) {
    all.ok += x.ok;
    all.code11 += x.code11;
    all.other += x.other;
    all.ips.push(...x.ips);
    all.us.push(...x.us);
    all.driverCpuMs += x.driverCpuMs;
    if (x.firstError) all.firstError ??= x.firstError;
  }
  const daemonCpuMs = daemonCpu() - d0;
  const storeCpuMs = storeCpu() - s0;
  return { d: all, daemonCpuMs, storeCpuMs, storeCalls: (await storeCalls()) - n0 };
}

type Measured = Awaited<ReturnType<typeof measured>>;

/** A table row from the rounds of one variant: medians of rounds, totals of failures and duplicates. */
function summary(ms: Measured[]): string[] {
  const per = (f: (m: Measured) => number) => median(ms.map((m) => f(m) / Math.max(1, m.d.ok)));
  const ok = ms.reduce((s, m) => s + m.d.ok, 0);
  const failed = ms.reduce((s, m) => s + m.d.code11 + m.d.other, 0);
  const dup = ms.reduce((s, m) => s + dups(m.d.ips), 0);
  const err = ms.find((m) => m.d.firstError)?.d.firstError;
  return [
    `${f0(median(ms.map((m) => m.d.ok / m.d.wallS)))} (${ms.map((m) => f0(m.d.ok / m.d.wallS)).join(', ')})`,
    latencies(ms.flatMap((m) => m.d.us)),
    `${f2(per((m) => m.d.driverCpuMs))} / ${f2(per((m) => m.daemonCpuMs))} / ${f2(per((m) => m.storeCpuMs))}`,
    f1(per((m) => m.storeCalls)),
    `${ok} ok, ${failed} failed, ${dup} dup${err ? ` (${err})` : ''}`,
  ];
}
/** Median / 99th percentile / slowest of per-call latencies (µs) in ms. */
function latencies(us: number[]): string {
  const s = [...us].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? Number.NaN;
  return `${f2(median(s) / 1000)} / ${f1(at(0.99) / 1000)} / ${f1((s.at(-1) ?? Number.NaN) / 1000)}`;
}
const HEAD = [
  'allocations/s: median (rounds)',
  'ms per call: median / p99 / max',
  'CPU ms per allocation: driver+shims / daemon / store',
  'store requests per allocation',
  'calls',
];

// ---- the sections ----

const wb = (range: string, store: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  cniVersion: '1.0.0',
  name: 'wbd',
  type: 'macvlan',
  ipam: { type: 'whereabouts', range, ...store, ...extra },
});
const etcdStore = (prefix: string) => ({
  datastore: 'etcd',
  etcd_host: etcd!.url,
  etcd_prefix: `/wbd/${prefix}`,
});

async function etcdSection(d: BenchDaemon, etcdCpu: CpuProbe): Promise<void> {
  const perWire = quick ? 25 : 100;
  const perShim = quick ? 8 : 25;
  const shim = join(d.shimDir, 'whereabouts');
  const env = { CNI_PATH: d.shimDir };
  const run = (mode: 'wire' | 'exec', r: number | 'w', per: number) =>
    measured(cpuOf([d.pid]), etcdCpu, async () => [
      await drive(
        mode,
        mode === 'wire' ? d.socket : shim,
        16,
        per,
        `e${mode}${r}`,
        wb(`10.${mode === 'wire' ? 100 : 110}.0.0/16`, etcdStore(`${mode}${r}`)),
        env,
      ),
    ]);
  await run('wire', 'w', quick ? 4 : 25);
  await run('exec', 'w', quick ? 2 : 6);
  const res = { wire: [] as Measured[], exec: [] as Measured[] };
  for (let r = 0; r < ROUNDS; r++) {
    for (const mode of r % 2 ? (['exec', 'wire'] as const) : (['wire', 'exec'] as const))
      res[mode].push(await run(mode, r, mode === 'wire' ? perWire : perShim));
  }
  say(`\n## etcd: 16 concurrent ADDs through the daemon (${new Date().toISOString()}, load ${load()})\n`);
  table(
    ['path', ...HEAD],
    [
      [`wire protocol, no exec (16 x ${perWire} per round)`, ...summary(res.wire)],
      [`shim exec'd per call by the C driver (16 x ${perShim} per round)`, ...summary(res.exec)],
    ],
  );
}

/** Claims `n` addresses from the range's start directly in the store and sets the cursor after them. */
async function fill(conf: ReturnType<typeof wb>, n: number): Promise<void> {
  const cfg = parseWhereaboutsConfig(conf.ipam);
  const r = cfg.ranges[0]!;
  const store = await openWhereaboutsStore(cfg.datastore, {});
  try {
    await store.session(r.ref, async (s) => {
      for (let i = 0; i < n; i += 500) {
        const jobs = [];
        for (let j = i; j < Math.min(n, i + 500); j++)
          jobs.push(
            s.claim({
              address: r.first + BigInt(j),
              pool: r.ref.pool,
              containerId: `fill${j}`,
              ifname: 'eth0',
            }),
          );
        await Promise.all(jobs);
      }
      await s.setCursor(r.first + BigInt(n - 1));
    });
  } finally {
    await store.close();
  }
}

async function setCursor(conf: ReturnType<typeof wb>, at: bigint): Promise<void> {
  const cfg = parseWhereaboutsConfig(conf.ipam);
  const r = cfg.ranges[0]!;
  const store = await openWhereaboutsStore(cfg.datastore, {});
  try {
    await store.session(r.ref, (s) => s.setCursor(at));
  } finally {
    await store.close();
  }
}

async function fillSection(d: BenchDaemon, etcdCpu: CpuProbe): Promise<void> {
  const held = quick ? 6_000 : 60_000;
  const empty = wb('10.120.0.0/16', etcdStore('empty'));
  const full = wb('10.121.0.0/16', etcdStore('full'));
  const tf = performance.now();
  await fill(full, held);
  const fillS = (performance.now() - tf) / 1000;
  const seq = quick ? 40 : 150;
  const conc = quick ? 10 : 40;
  const run = (conf: ReturnType<typeof wb>, id: string, clients: number, per: number) =>
    measured(cpuOf([d.pid]), etcdCpu, async () => [await drive('wire', d.socket, clients, per, id, conf)]);
  await run(empty, 'fw-e', 1, 5);
  await run(full, 'fw-f', 1, 5);
  const res: Record<string, Measured[]> = { e1: [], f1: [], e16: [], f16: [] };
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 ? (['f', 'e'] as const) : (['e', 'f'] as const);
    for (const k of order) res[`${k}1`]!.push(await run(k === 'e' ? empty : full, `f${k}1r${r}`, 1, seq));
    for (const k of order) res[`${k}16`]!.push(await run(k === 'e' ? empty : full, `f${k}16r${r}`, 16, conc));
  }
  // Every address handed out in the full pool lies past the held ones (none of them reused).
  const fullIps = [...res.f1!, ...res.f16!].flatMap((m) => m.d.ips);
  const reused = fullIps.filter((ip) => {
    const [, , c, dd] = ip.split('.').map(Number);
    return c! * 256 + dd! <= held;
  }).length;
  const lat = (k: string) => median(res[k]!.flatMap((m) => m.d.us)) / 1000;
  const rate = (k: string) => median(res[k]!.map((m) => m.d.ok / m.d.wallS));
  say(
    `\n## etcd: a /16 holding ${held} vs an empty /16, through the wire (${new Date().toISOString()}, load ${load()}; fill ${f1(fillS)} s)\n`,
  );
  table(
    ['pool', ...HEAD],
    [
      ['empty /16, 1 client', ...summary(res.e1!)],
      [`/16 holding ${held}, 1 client`, ...summary(res.f1!)],
      ['empty /16, 16 clients', ...summary(res.e16!)],
      [`/16 holding ${held}, 16 clients`, ...summary(res.f16!)],
    ],
  );
  say(
    `held/empty: ${f2(lat('f1') / lat('e1'))}x time per allocation one at a time, ${f2(rate('e16') / rate('f16'))}x at 16 at once (target <= 2x); ${reused} held addresses handed out again`,
  );

  // IPv6: a /64 allocated at five points, the cursor set just before each (the last near its far end).
  const v6 = wb('fd00:beec::/64', etcdStore('v6'));
  const net = parseSubnet('fd00:beec::/64').network;
  const points: Array<[string, bigint]> = [
    ['start', 0n],
    ['1/4', 1n << 62n],
    ['1/2', 1n << 63n],
    ['3/4', 3n << 62n],
    ['far end - 8', (1n << 64n) - 8n],
  ];
  // Clients at once per point: at the far end one, so the addresses come in order up to the last.
  const clientsAt = (name: string) => (name.startsWith('far') ? 1 : 16);
  const rows: string[][] = [];
  const all: string[] = [];
  for (const [name, off] of points) {
    await setCursor(v6, net + off);
    const m = await measured(cpuOf([d.pid]), etcdCpu, async () => [
      await drive(
        'wire',
        d.socket,
        clientsAt(name),
        32 / clientsAt(name),
        `v6${name.replace(/\W/g, '')}`,
        v6,
      ),
    ]);
    const sorted = [...m.d.ips].sort((a, b) => (parseIP(a).value < parseIP(b).value ? -1 : 1));
    all.push(...m.d.ips);
    rows.push([
      name,
      `${sorted[0]} .. ${sorted.at(-1)}`,
      f2(median(m.d.us) / 1000),
      `${m.d.ok} ok, ${m.d.code11 + m.d.other} failed, ${dups(m.d.ips)} dup${m.d.firstError ? ` (${m.d.firstError})` : ''}`,
    ]);
  }
  say(
    `\n## etcd: IPv6 fd00:beec::/64, 32 ADDs after the cursor at each point (16 at once; at the far end one at a time)\n`,
  );
  table(['cursor at', 'addresses handed out (lowest .. highest)', 'ms per call (median)', 'calls'], rows);
  say(`over the /64: ${all.length} addresses, ${dups(all)} duplicates`);
}

async function kubeSection(d: BenchDaemon): Promise<void> {
  const kubeconfig = api!.writeKubeconfig(join(work, 'kc-kube.json'), 'json', 'wbk');
  const per = quick ? 10 : 40;
  const conf = (r: number | string) =>
    wb(
      `10.${130 + (typeof r === 'number' ? r : 9)}.0.0/16`,
      { kubernetes: { kubeconfig } },
      { network_name: `k${r}` },
    );
  const puts = () =>
    api!.requests.filter((x) => x.method === 'PUT' && x.path.includes('/namespaces/wbk/ippools/'));
  await drive('wire', d.socket, 16, 2, 'kw', conf('w'));
  const p0 = puts();
  const res: Measured[] = [];
  for (let r = 0; r < ROUNDS; r++)
    res.push(
      await measured(cpuOf([d.pid]), selfCpu, async () => [
        await drive('wire', d.socket, 16, per, `k${r}`, conf(r)),
      ]),
    );
  const ps = puts().slice(p0.length);
  say(
    `\n## Kubernetes store (fake API server over TLS, in the bench's process): 16 concurrent ADDs through the wire (${new Date().toISOString()}, load ${load()})\n`,
  );
  table(
    ['path', ...HEAD],
    [[`wire, 16 x ${per} per round (store CPU: the fake API server)`, ...summary(res)]],
  );
  say(
    `IPPool PUTs over the measured rounds: ${ps.filter((p) => p.code === 200).length} written, ${ps.filter((p) => p.code === 409).length} lost (409)`,
  );
}

async function slicesSection(): Promise<void> {
  const nodes = Array.from({ length: 8 }, (_, i) => `node-${i}`);
  const kubeconfig = api!.writeKubeconfig(join(work, 'kc-slices.json'), 'json', 'wbs');
  const access = await openKubeApi(kubeconfig);
  const perClient = quick ? 5 : 20;
  const clients = 4;
  const ipam = (r: number | string, sliced: boolean) => ({
    range: `10.${160 + (typeof r === 'number' ? r : ROUNDS) * 8}.0.0/13`,
    kubernetes: { kubeconfig },
    network_name: `${sliced ? 's' : 'o'}${r}`,
    ...(sliced ? { node_slice_size: '/16' } : {}),
  });
  const names = [...Array(ROUNDS).keys(), 'w'];
  for (const r of names) {
    const nad = {
      metadata: { name: `s${r}`, namespace: 'default', uid: `u${r}` },
      spec: {
        config: JSON.stringify({
          cniVersion: '1.0.0',
          name: `s${r}`,
          type: 'macvlan',
          ipam: { type: 'whereabouts', ...ipam(r, true) },
        }),
      },
    };
    const rep = await reconcileNodeSlices({ kube: access, nads: [nad], nodes, flatFilePaths: [] });
    if (rep.problems.length) throw new Error(`node slices: ${rep.problems.join('; ')}`);
  }
  // One daemon per simulated node; each call carries its node's NODENAME.
  const ds: BenchDaemon[] = [];
  for (const n of nodes) {
    const d = await startBenchDaemon({
      dir: join(work, `d-${n}`),
      netns: process.env.BENCH_NODE_NETNS!,
      root: ROOT,
      ...(DAEMON_NODE_OPTIONS ? { nodeOptions: DAEMON_NODE_OPTIONS } : {}),
    });
    daemons.push(d);
    ds.push(d);
  }
  const nodeIps = new Map<string, string[]>();
  const run = (r: number | string, sliced: boolean, per: number) =>
    measured(cpuOf(ds.map((d) => d.pid)), selfCpu, () =>
      Promise.all(
        ds.map(async (d, i) => {
          const id = `${sliced ? 's' : 'o'}${r}n${i}`;
          const x = await drive('wire', d.socket, clients, per, id, wb('', {}, ipam(r, sliced)), {
            NODENAME: nodes[i]!,
          });
          nodeIps.set(id, x.ips);
          return x;
        }),
      ),
    );
  const puts = (p: string) =>
    api!.requests.filter((x) => x.method === 'PUT' && x.path.includes(`/namespaces/wbs/ippools/${p}`));
  await run('w', true, 2);
  await run('w', false, 2);
  const res = { s: [] as Measured[], o: [] as Measured[] };
  const pc: Record<'s' | 'o', [number, number]> = { s: [0, 0], o: [0, 0] };
  let outside = 0;
  for (let r = 0; r < ROUNDS; r++) {
    for (const sliced of r % 2 ? [false, true] : [true, false]) {
      const k = sliced ? 's' : 'o';
      const before = puts(`${k}${r}`).length;
      const m = await run(r, sliced, perClient);
      const ps = puts(`${k}${r}`).slice(before);
      pc[k][0] += ps.filter((p) => p.code === 200).length;
      pc[k][1] += ps.filter((p) => p.code === 409).length;
      res[k].push(m);
    }
    // Each node's addresses lie inside the slice the NodeSlicePool gives it.
    const pool = api!.objects('nodeslicepools').get(`wbs/s${r}`) as unknown as {
      status: { allocations: Array<{ nodeName: string; sliceRange: string }> };
    };
    const slice = new Map(pool.status.allocations.map((a) => [a.nodeName, a.sliceRange]));
    for (const [i, n] of nodes.entries()) {
      const s = slice.get(n)!;
      const [a, b] = s.split('.').map(Number);
      const ips = nodeIps.get(`s${r}n${i}`) ?? [];
      outside += ips.filter((ip) => {
        const [x, y] = ip.split('.').map(Number);
        return x !== a || y !== b;
      }).length;
    }
  }
  say(
    `\n## node slices: 8 simulated nodes (a daemon each) x ${clients} concurrent clients, fake API server (${new Date().toISOString()}, load ${load()})\n`,
  );
  table(
    ['variant', ...HEAD, 'IPPool PUTs written / lost (409)'],
    [
      [
        'node slices (/13 cut into /16 slices, one IPPool per node)',
        ...summary(res.s),
        `${pc.s[0]} / ${pc.s[1]}`,
      ],
      ['one IPPool shared by the 8 nodes', ...summary(res.o), `${pc.o[0]} / ${pc.o[1]}`],
    ],
  );
  say(`addresses outside their node's slice: ${outside}`);
  for (const d of ds) await d.stop();
}

async function burstSection(d: BenchDaemon, etcdCpu: CpuProbe): Promise<void> {
  const one = async (dm: BenchDaemon, id: string, limitNote: string) => {
    const before = procMemKiB(dm.pid);
    let peak = before.rss;
    const sampler = setInterval(() => {
      try {
        peak = Math.max(peak, procMemKiB(dm.pid).rss);
      } catch {
        // exited
      }
    }, 5);
    const m = await measured(cpuOf([dm.pid]), etcdCpu, async () => [
      await drive('wire', dm.socket, 200, 1, id, wb('10.140.0.0/16', etcdStore(id))),
    ]);
    clearInterval(sampler);
    const after = procMemKiB(dm.pid);
    return [
      limitNote,
      String(m.d.ok),
      String(m.d.code11),
      String(m.d.other),
      String(dups(m.d.ips)),
      f2(m.d.wallS),
      f1(before.rss / 1024),
      `${f1(peak / 1024)} (VmHWM ${f1(after.hwm / 1024)})`,
      m.d.firstError ?? '',
    ];
  };
  const rows = [
    await one(d, 'burst1', 'defaults (256 MiB, 64 running, 1,024 queued), the daemon of the sections above'),
  ];
  const fresh = await startBenchDaemon({
    dir: join(work, 'd-fresh'),
    netns: process.env.BENCH_NODE_NETNS!,
    root: ROOT,
    ...(DAEMON_NODE_OPTIONS ? { nodeOptions: DAEMON_NODE_OPTIONS } : {}),
  });
  daemons.push(fresh);
  await drive('wire', fresh.socket, 4, 2, 'bfw', wb('10.142.0.0/16', etcdStore('bfw')));
  rows.push(await one(fresh, 'burst3', 'defaults, a fresh daemon (one warm-up call of 8)'));
  await fresh.stop();
  const small = await startBenchDaemon({
    dir: join(work, 'd-small'),
    netns: process.env.BENCH_NODE_NETNS!,
    root: ROOT,
    ...(DAEMON_NODE_OPTIONS ? { nodeOptions: DAEMON_NODE_OPTIONS } : {}),
    extraArgs: ['--max-concurrent-calls', '8', '--max-queued-calls', '8'],
  });
  daemons.push(small);
  await drive('wire', small.socket, 4, 2, 'bsw', wb('10.141.0.0/16', etcdStore('bsw')));
  rows.push(await one(small, 'burst2', '256 MiB, 8 running, 8 queued, a fresh daemon'));
  await small.stop();
  say(
    `\n## a burst of 200 concurrent ADDs (etcd store), each a new connection (${new Date().toISOString()}, load ${load()})\n`,
  );
  table(
    [
      'daemon',
      'results',
      'refused, code 11',
      'other',
      'dup',
      'wall s',
      'RSS before MiB',
      'peak RSS MiB (5 ms samples)',
      'first refusal',
    ],
    rows,
  );
}

async function main(): Promise<void> {
  execFileSync(CC!, ['-O2', '-o', driver, join(ROOT, 'bench', 'wb-load.c')]);
  etcd = await startEtcd('wbd');
  const pid = etcdPid(etcd.dataDir);
  const etcdCpu: CpuProbe = pid ? cpuOf([pid]) : () => Number.NaN;
  api = await startFakeK8s();
  try {
    const d = await startBenchDaemon({
      dir: join(work, 'd'),
      netns: process.env.BENCH_NODE_NETNS!,
      root: ROOT,
      ...(DAEMON_NODE_OPTIONS ? { nodeOptions: DAEMON_NODE_OPTIONS } : {}),
    });
    daemons.push(d);
    say(`# whereabouts through cni-kit daemon; ${ROUNDS} rounds; 2 cores shared with other jobs`);
    storeCalls = etcdCalls;
    if (ONLY.includes('etcd')) await etcdSection(d, etcdCpu);
    if (ONLY.includes('fill')) await fillSection(d, etcdCpu);
    storeCalls = async () => api!.requests.length;
    if (ONLY.includes('kube')) await kubeSection(d);
    if (ONLY.includes('slices')) await slicesSection();
    storeCalls = etcdCalls;
    if (ONLY.includes('burst')) await burstSection(d, etcdCpu);
    await d.stop();
  } finally {
    await api.close();
    await etcd.stop();
  }
}

// The node: a network namespace with its own loopback (etcd, the fake API server).
await inNodeNetns(tag);
await main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
