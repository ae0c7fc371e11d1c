// Shared helpers for the bench scripts: timing child processes and printing tables.
import { spawn, spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import { request as httpRequest } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rebindShim } from '../test/helpers/daemon.js';

/** One measured run of a command: wall time, CPU (user+sys, children included) and peak RSS (GNU time). */
export interface Sample {
  ms: number;
  /** From GNU time: user+sys of the command and its children, in 10 ms steps. */
  cpuMs: number;
  /**
   * The same at µs resolution (getrusage(RUSAGE_CHILDREN) of this process around the run, minus the
   * median cost of `/usr/bin/time … /bin/true`, i.e. the wrapper); undefined when koffi cannot load.
   */
  cpuFineMs: number | undefined;
  rssKiB: number;
}

// Made on first use, not at import: tests import this module for its statistics helpers, and a
// directory made at import would outlive the test worker.
let scratch: string | undefined;
function timeDir(): string {
  if (scratch === undefined) {
    const dir = mkdtempSync(join(tmpdir(), 'ck-bench-'));
    scratch = dir;
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  return scratch;
}

let rusage: (() => number) | null | undefined;

/**
 * CPU ms (user+sys) of every child this process has reaped so far. Through koffi (getrusage with
 * RUSAGE_CHILDREN, µs resolution; `childCpuPrecise()` is then true); else /proc/self/stat's cutime
 * and cstime, in 10 ms ticks. Loads koffi on first call.
 */
export function childCpuMs(): number {
  if (rusage === undefined) {
    try {
      interface K {
        load(p: null): { func(d: string): (...a: unknown[]) => number };
      }
      const k = createRequire(import.meta.url)('koffi') as K;
      const getrusage = k.load(null).func('int getrusage(int, void *)');
      const ru = Buffer.alloc(144); // struct rusage; ru_utime and ru_stime (timevals) come first
      const us = (o: number) => Number(ru.readBigInt64LE(o)) * 1e6 + Number(ru.readBigInt64LE(o + 8));
      rusage = () => {
        if (getrusage(-1 /* RUSAGE_CHILDREN */, ru) !== 0) throw new Error('getrusage failed');
        return (us(0) + us(16)) / 1000;
      };
    } catch {
      rusage = null;
    }
  }
  if (rusage) return rusage();
  const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[13]) + Number(f[14])) * 10;
}

/** Whether `childCpuMs()` has µs resolution (koffi loaded). */
export function childCpuPrecise(): boolean {
  childCpuMs();
  return rusage !== null;
}

let wrapperMs: number | undefined;

/** Median CPU of `/usr/bin/time -f … /bin/true` as seen from here: what `measure` subtracts. */
export function timeWrapperCpuMs(): number {
  if (wrapperMs === undefined) {
    wrapperMs = 0;
    const out = join(timeDir(), 'time');
    const xs: number[] = [];
    for (let i = 0; i < 21; i++) {
      const c0 = childCpuMs();
      spawnSync('/usr/bin/time', ['-f', '%M %U %S', '-o', out, '/bin/true']);
      xs.push(childCpuMs() - c0);
    }
    wrapperMs = median(xs);
  }
  return wrapperMs;
}

/** Runs `cmd args` once under /usr/bin/time with the given env and stdin. */
export function measure(cmd: string, args: string[], env: Record<string, string>, input = ''): Sample {
  const out = join(timeDir(), 'time');
  const fine = childCpuPrecise();
  const wrapper = fine ? timeWrapperCpuMs() : 0;
  const c0 = childCpuMs();
  const t0 = process.hrtime.bigint();
  const r = spawnSync('/usr/bin/time', ['-f', '%M %U %S', '-o', out, cmd, ...args], { env, input });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const cpuFineMs = fine ? childCpuMs() - c0 - wrapper : undefined;
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stdout}${r.stderr}`);
  }
  const [rss, user, sys] = (readFileSync(out, 'utf8').trim().split('\n').at(-1) ?? '').split(' ');
  return { ms, cpuMs: (Number(user) + Number(sys)) * 1000, cpuFineMs, rssKiB: Number(rss) };
}

/** The median of a list of numbers. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** The q-quantile (0..1) of xs, linear between the sorted values. */
export function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
}

/**
 * Paired ratios a[i] / b[i] of runs made side by side (one round each), summarised as the median
 * and the interquartile range: on a machine whose load changes from second to second, the pairs
 * share their load while the medians of a and b may come from different minutes.
 */
export function pairedRatio(a: number[], b: number[]): { median: number; q1: number; q3: number } {
  const r = a.slice(0, b.length).map((x, i) => x / b[i]!);
  return { median: median(r), q1: quantile(r, 0.25), q3: quantile(r, 0.75) };
}

/** Prints rows as an aligned text table. */
export function table(headers: string[], rows: Array<Array<string | number>>): void {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  console.log(line(headers));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of cells.slice(1)) console.log(line(r));
}

/** A list of per-iteration counts as one figure when they all agree, else "min–max". */
export function spread(xs: number[]): string {
  if (xs.length === 0) return 'n/a';
  const lo = Math.min(...xs);
  const hi = Math.max(...xs);
  return lo === hi ? String(lo) : `${lo}–${hi}`;
}

/**
 * Private network namespaces of one bench run (`ip netns add <tag>-<suffix>`). `removeAll()` deletes
 * every namespace whose name starts with `<tag>-`, including any a child process of the bench made
 * under the same tag and could not remove itself (links inside go with their namespace).
 */
export class Namespaces {
  constructor(readonly tag: string) {}

  /** Creates `<tag>-<suffix>` (replacing a stale one) and returns its path. */
  add(suffix: string): string {
    const name = `${this.tag}-${suffix}`;
    spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
    const r = spawnSync('ip', ['netns', 'add', name], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`ip netns add ${name}: ${r.stderr}`);
    return `/var/run/netns/${name}`;
  }

  /** Deletes one namespace by path. */
  remove(path: string): void {
    spawnSync('ip', ['netns', 'del', path.split('/').pop()!], { stdio: 'ignore' });
  }

  /** Deletes every namespace of this tag. */
  removeAll(): void {
    const list = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '';
    for (const line of list.split('\n')) {
      const name = line.split(' ')[0] ?? '';
      if (name.startsWith(`${this.tag}-`)) spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
    }
  }
}

/**
 * The bench's node: a network namespace of its own (`<tag>-node`, loopback up) in which the bench
 * runs everything, so nothing touches this machine's interfaces. Called first thing: outside the
 * node it creates the namespace, re-runs this same script inside it (signals forwarded), deletes the
 * namespace when that run ends and exits with its status, never resolving; inside, it resolves to
 * the node's netns path.
 */
export function inNodeNetns(tag: string): Promise<string> {
  const inside = process.env.BENCH_NODE_NETNS;
  if (inside) return Promise.resolve(inside);
  const node = `${tag}-node`;
  spawnSync('ip', ['netns', 'del', node], { stdio: 'ignore' });
  const made = spawnSync('ip', ['netns', 'add', node], { encoding: 'utf8' });
  if (made.status !== 0) throw new Error(`ip netns add ${node}: ${made.stderr}`);
  spawnSync('ip', ['-n', node, 'link', 'set', 'lo', 'up'], { stdio: 'ignore' });
  const child = spawn(
    'ip',
    ['netns', 'exec', node, process.execPath, ...process.execArgv, ...process.argv.slice(1)],
    { stdio: 'inherit', env: { ...process.env, BENCH_NODE_NETNS: `/var/run/netns/${node}` } },
  );
  const forward = (sig: NodeJS.Signals) => child.kill(sig);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  child.on('exit', (code, sig) => {
    spawnSync('ip', ['netns', 'del', node], { stdio: 'ignore' });
    process.exit(code ?? (sig ? 1 : 0));
  });
  return new Promise<string>(() => {});
}

/**
 * The multus benches' networks: the cluster network (Go bridge `<tag>br` + host-local on
 * `<prefix>.0.0/24`) and attachment `i` (Go macvlan on `master` + host-local on `<prefix>.<i>.0/24`),
 * host-local's state under `work`.
 */
export function multusBenchNetworks(tag: string, work: string, master: string, prefix: string) {
  const ipam = (subnet: string) => ({ type: 'host-local', subnet, dataDir: join(work, 'ipam') });
  return {
    cluster: {
      cniVersion: '1.0.0',
      name: 'bench-cluster',
      plugins: [{ type: 'bridge', bridge: `${tag}br`, isGateway: true, ipam: ipam(`${prefix}.0.0/24`) }],
    },
    mv: (i: number) => ({
      cniVersion: '1.0.0',
      name: `bench-mv${i}`,
      type: 'macvlan',
      master,
      ipam: ipam(`${prefix}.${i}.0/24`),
    }),
  };
}

/**
 * Runs `cleanup` once, on whichever way out comes first: normal exit, or SIGINT/SIGTERM/SIGHUP (then
 * exits 130). Returns the once-only function, for the bench to call itself when it is done.
 */
export function cleanupOnExit(cleanup: () => void): () => void {
  let done = false;
  const once = (): void => {
    if (done) return;
    done = true;
    cleanup();
  };
  process.on('exit', once);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      console.error(`\n${sig}: cleaning up`);
      once();
      process.exit(130);
    });
  }
  return once;
}

/** strace(1), when installed (it is not on CI). */
export const STRACE = ['/usr/bin/strace', '/bin/strace'].find((p) => existsSync(p));

/** Children a command started, from an strace of its execve calls. */
export interface Children {
  /** Successful execve calls outside the command's own exec chain (nsenter → script → node). */
  execs: number;
  /** Distinct processes that made them (nsenter → sh is one process, two execs). */
  procs: number;
  /** The programs exec'd, in order. */
  programs: string[];
}

/**
 * Runs `cmd args` once under `strace -f -e trace=execve` and counts the successful execve calls made
 * by processes other than the command's own (whose exec chain, e.g. nsenter → the shebang'd plugin →
 * env → node, all happens in the first pid). Undefined when strace is not installed.
 */
export function countChildren(
  cmd: string,
  args: string[],
  env: Record<string, string>,
  input = '',
): Children | undefined {
  if (!STRACE) return undefined;
  const out = join(timeDir(), 'strace');
  const r = spawnSync(STRACE, ['-f', '-qq', '-e', 'trace=execve', '-o', out, cmd, ...args], { env, input });
  if (r.status !== 0)
    throw new Error(`strace ${cmd} ${args.join(' ')} exited ${r.status}: ${r.stdout}${r.stderr}`);
  let root: string | undefined;
  const pids = new Set<string>();
  const programs: string[] = [];
  const pending = new Map<string, string>();
  for (const line of readFileSync(out, 'utf8').split('\n')) {
    const m = /^(\d+)\s+(.*)$/.exec(line);
    if (!m || !m[2]!.includes('execve')) continue;
    const [, pid, rest] = m as unknown as [string, string, string];
    const prog = /execve\("([^"]*)"/.exec(rest)?.[1];
    if (prog && rest.endsWith('<unfinished ...>')) pending.set(pid, prog);
    if (!/= 0$/.test(rest)) continue;
    root ??= pid;
    if (pid === root) continue;
    pids.add(pid);
    programs.push((prog ?? pending.get(pid) ?? '?').split('/').pop()!);
  }
  return { execs: programs.length, procs: pids.size, programs };
}

/** "10 (9 processes)" style text for a Children count; "n/a" without strace. */
export function childrenText(c: Children | undefined): string {
  if (!c) return 'n/a (no strace)';
  return c.procs === c.execs ? String(c.execs) : `${c.execs} (${c.procs} proc)`;
}

// ---- daemon mode (bench/daemon.ts) ----

/** CPU of a live process from /proc/<pid>/stat: own (utime+stime) and reaped children's, in ms (10 ms ticks). */
export function procCpuTicksMs(pid: number): { own: number; children: number } {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const tick = 1000 / 100; // USER_HZ is 100 on Linux
  return {
    own: (Number(f[11]) + Number(f[12])) * tick,
    children: (Number(f[13]) + Number(f[14])) * tick,
  };
}

/**
 * CPU time of every live thread of a process at ns resolution (the first field of each
 * /proc/<pid>/task/<tid>/schedstat: time spent running), in ms. Threads that exited and reaped
 * children are not in it; a long-lived Node process keeps its threads.
 */
export function procCpuFineMs(pid: number): number {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // the thread exited meanwhile
    }
  }
  return ns / 1e6;
}

/**
 * The live processes of the tree rooted at `pid` (itself first, then its descendants), found by
 * the parent field of every /proc/<p>/stat: a daemon's process helper and the plugins it runs.
 */
export function procTree(pid: number): number[] {
  const kids = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const ppid = Number(readFileSync(`/proc/${name}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
      const list = kids.get(ppid);
      if (list) list.push(Number(name));
      else kids.set(ppid, [Number(name)]);
    } catch {
      // exited meanwhile
    }
  }
  const out = [pid];
  for (let i = 0; i < out.length; i++) out.push(...(kids.get(out[i]!) ?? []));
  return out;
}

/**
 * CPU of a process and all its live descendants, ms in ticks, in the shape of procCpuTicksMs:
 * `own` sums user+sys of every live process of the tree, `children` what each has reaped
 * (cutime+cstime). A child's time is in `own` while it runs and, once reaped, in its parent's
 * `children`, so the difference of `own + children` over a run is the whole tree's CPU in it
 * (the daemon, its process helper, and the plugins the helper ran).
 */
export function procTreeCpuTicksMs(pid: number): { own: number; children: number } {
  const sum = { own: 0, children: 0 };
  for (const p of procTree(pid)) {
    try {
      const t = procCpuTicksMs(p);
      sum.own += t.own;
      sum.children += t.children;
    } catch {
      // exited meanwhile: its time is in its parent's `children` once reaped
    }
  }
  return sum;
}

/**
 * The live threads of every process of the tree at ns resolution (procCpuFineMs summed); add the
 * difference of procTreeCpuTicksMs(pid).children for what was reaped meanwhile.
 */
export function procTreeCpuFineMs(pid: number): number {
  let ms = 0;
  for (const p of procTree(pid)) {
    try {
      ms += procCpuFineMs(p);
    } catch {
      // exited meanwhile
    }
  }
  return ms;
}

/** Resident set size of a live process, KiB (VmRSS of /proc/<pid>/status). */
export function procRssKiB(pid: number): number {
  return procMemKiB(pid).rss;
}

/** Memory of a live process from /proc/<pid>/status, KiB: RSS, its anonymous part (heaps), peak RSS. */
export function procMemKiB(pid: number): { rss: number; anon: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status);
    return m ? Number(m[1]) : Number.NaN;
  };
  return { rss: field('VmRSS'), anon: field('RssAnon'), hwm: field('VmHWM') };
}

/** A `cni-kit daemon` the bench started, and shims bound to it. */
export interface BenchDaemon {
  pid: number;
  socket: string;
  /** Shims of every built type, bound to this daemon; their fallback points nowhere. */
  shimDir: string;
  logFile: string;
  /** SIGTERM, wait (SIGKILL after 10 s). */
  stop(): Promise<void>;
  /** SIGKILL now, synchronously (for exit and signal handlers). */
  killNow(): void;
}

/** GET /<path> over a Unix socket: the HTTP status, 0 when nothing answers. */
export function socketStatus(socket: string, path: string): Promise<number> {
  return new Promise((resolve) => {
    const req = httpRequest({ socketPath: socket, path, method: 'GET', timeout: 2000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
    req.end();
  });
}

/**
 * Starts `cni-kit daemon` (dist/cli.cjs over the dist/bin bundles) inside the network namespace
 * `netns` (its netns is the host side of every call, as on a node with hostNetwork), with its
 * socket and logs under `dir`, and writes shims bound to it into `<dir>/shim/`, each with a
 * fallback that does not exist, so a call that misses the daemon fails instead of silently
 * running in exec mode. Resolves once /readyz answers 200.
 */
export async function startBenchDaemon(opts: {
  dir: string;
  netns: string;
  root: string;
  extraArgs?: string[];
  /** NODE_OPTIONS for the daemon's node (e.g. V8 heap flags to compare memory). */
  nodeOptions?: string;
  /** Flags for the daemon's node that NODE_OPTIONS refuses (e.g. --cpu-prof to profile it). */
  nodeArgs?: string[];
  /** More environment for the daemon (it gets PATH, and NODE_OPTIONS when given, otherwise). */
  env?: Record<string, string>;
}): Promise<BenchDaemon> {
  const shims = join(opts.root, 'dist', 'shim');
  const bundles = join(opts.root, 'dist', 'bin');
  const cli = join(opts.root, 'dist', 'cli.cjs');
  if (!existsSync(join(shims, '.cni-kit-shim')))
    throw new Error('dist/shim is missing: build first (npm run build compiles the shim)');
  mkdirSync(opts.dir, { recursive: true });
  const run = join(opts.dir, 'run');
  mkdirSync(run, { mode: 0o700 });
  const socket = join(run, 'daemon.sock');
  const shimDir = join(opts.dir, 'shim');
  mkdirSync(shimDir);
  for (const type of readdirSync(shims)) {
    if (type.startsWith('.')) continue;
    rebindShim(join(shims, type), join(shimDir, type), socket, join(opts.dir, 'no-fallback', type));
  }
  const logFile = join(opts.dir, 'daemon.log');
  const out = openSync(logFile, 'a');
  // nsenter without --fork execs node in place: the pid is the daemon's own.
  const proc = spawn(
    'nsenter',
    [
      `--net=${opts.netns}`,
      process.execPath,
      ...(opts.nodeArgs ?? []),
      cli,
      'daemon',
      '--plugins',
      bundles,
      '--socket',
      socket,
      ...(opts.extraArgs ?? []),
    ],
    {
      stdio: ['ignore', out, out],
      env: {
        PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
        ...(opts.nodeOptions ? { NODE_OPTIONS: opts.nodeOptions } : {}),
        ...opts.env,
      },
    },
  );
  closeSync(out);
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const alive = () => proc.exitCode === null && proc.signalCode === null;
  const killNow = () => {
    if (alive()) proc.kill('SIGKILL');
  };
  const d: BenchDaemon = {
    pid: proc.pid ?? 0,
    socket,
    shimDir,
    logFile,
    killNow,
    async stop() {
      if (alive()) {
        proc.kill('SIGTERM');
        const t = setTimeout(killNow, 10_000);
        await exited;
        clearTimeout(t);
      }
    },
  };
  const deadline = Date.now() + 30_000;
  while ((await socketStatus(socket, '/readyz')) !== 200) {
    if (!alive() || Date.now() > deadline) {
      killNow();
      throw new Error(`cni-kit daemon did not become ready:\n${readFileSync(logFile, 'utf8')}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return d;
}

/** One asynchronous run of a command: exit status, stdout, wall ms. */
export function runAsync(
  cmd: string,
  args: string[],
  env: Record<string, string>,
  input = '',
): Promise<{ status: number | null; stdout: string; stderr: string; ms: number }> {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const c = spawn(cmd, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (b: Buffer) => {
      stdout += b;
    });
    c.stderr.on('data', (b: Buffer) => {
      stderr = (stderr + b).slice(-4000);
    });
    c.on('error', (e) => resolve({ status: -1, stdout, stderr: String(e), ms: 0 }));
    c.on('close', (status) =>
      resolve({ status, stdout, stderr, ms: Number(process.hrtime.bigint() - t0) / 1e6 }),
    );
    c.stdin.on('error', () => {});
    c.stdin.end(input);
  });
}
