// The black-box fuzz harness's world: a node network namespace of the test's own, container
// namespaces, an etcd inside the node namespace for whereabouts, bounded runs of the built
// binaries (dist/bin) inside the node namespace, and snapshots. How a case is judged (protocol
// invariants, leftovers, FUZZ_BY_DESIGN) is in fuzz-judge.ts. Over 400 lines: FuzzWorld owns every
// resource a suite makes (netns, cgroup, etcd, dirs) so one dispose() removes them all.
//
// Every plugin run is bounded twice: in time (FUZZ_RUN_TIMEOUT_MS, then SIGKILL to its process
// group and to every process it started) and, where the machine has the cgroup v1 pids controller,
// in processes (a pids cgroup of the world's own with FUZZ_PIDS_MAX tasks), so a plugin that execs
// itself without end (issue 11, F1) cannot exhaust the process table.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type NetSnapshot, takeFileSnapshot, takeNetSnapshot } from '../../src/conform/snapshot.js';
import { type Json, parseSingleJson } from '../../src/conform/validate.js';
import { pluginDir } from './mode.js';
import { BIN_DIR } from './plugin.js';

const ETCD_BIN = process.env.ETCD_BIN ?? '/usr/bin/etcd';

/** Every binary of dist/bin the fuzzer drives. */
export const FUZZ_PLUGINS = [
  'bridge',
  'ptp',
  'macvlan',
  'ipvlan',
  'vlan',
  'host-device',
  'host-local',
  'static',
  'whereabouts',
  'loopback',
  'tuning',
  'flannel',
  'multus',
  'debug',
] as const;
export type FuzzPlugin = (typeof FUZZ_PLUGINS)[number];

/** The versions the reference accepts for every one of these plugins (Go's `version.All`). */
export const KNOWN_VERSIONS = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;

/** Wall-clock bound of one plugin run. */
export const FUZZ_RUN_TIMEOUT_MS = Number(process.env.CNI_KIT_FUZZ_RUN_TIMEOUT_MS ?? 20_000);
/** Tasks (threads count) one plugin run and everything it starts may have at once. */
export const FUZZ_PIDS_MAX = 400;

const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

/** Why the fuzz suites cannot run here, or undefined when they can. */
export function fuzzUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root for network namespaces';
  if (!has('ip') || !has('nsenter')) return 'iproute2 and nsenter are needed';
  if (spawnSync('ip', ['netns', 'list']).status !== 0) return 'ip netns does not work here';
  if (!existsSync(join(BIN_DIR, 'bridge'))) return 'dist/bin is not built (node scripts/build-bins.mjs)';
  return undefined;
}

/** One plugin run: how it ended and what it printed. */
export interface FuzzCall {
  command: string;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /** Killed on purpose by the harness (the SIGKILL suite). */
  killed: boolean;
  /** Process IDs of the run and of everything it started (seen in its pids cgroup). */
  pids: number[];
  durationMs: number;
  json?: Json;
  jsonError?: string;
}

/** Options of one bounded run. */
export interface RunOptions {
  timeoutMs?: number;
  /** SIGKILL the run's process group after this many ms (a runtime giving up mid-ADD). */
  killAfterMs?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A private pids cgroup (v1) for the plugin runs of one world, or undefined where the machine
 * has none or it cannot be created.
 */
function makePidsCgroup(name: string): string | undefined {
  const root = '/sys/fs/cgroup/pids';
  if (!existsSync(join(root, 'cgroup.procs'))) return undefined;
  const dir = join(root, name);
  try {
    mkdirSync(dir);
    writeFileSync(join(dir, 'pids.max'), String(FUZZ_PIDS_MAX));
    return dir;
  } catch {
    try {
      rmdirSync(dir);
    } catch {
      // never made
    }
    return undefined;
  }
}

function cgroupPids(dir: string): number[] {
  try {
    return readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** SIGKILLs every process of a cgroup until it is empty (or 5 s pass). */
async function drainCgroup(dir: string | undefined): Promise<number> {
  if (!dir) return 0;
  let killed = 0;
  const deadline = Date.now() + 5000;
  for (;;) {
    const pids = cgroupPids(dir);
    if (pids.length === 0 || Date.now() > deadline) return killed;
    for (const p of pids) {
      try {
        process.kill(p, 'SIGKILL');
        killed++;
      } catch {
        // gone already
      }
    }
    await sleep(20);
  }
}

interface JLink {
  ifname: string;
  link_netnsid?: number;
}

/**
 * A node network namespace of the test's own with what the fuzzed configs expect in it: `lo` up
 * and an `eth0` (a bridge: this kernel has no dummy links) that macvlan/ipvlan/vlan use as master.
 * Containers are namespaces `<node>-c<n>`; each fuzz case gets a fresh directory under `dir`.
 */
export class FuzzWorld {
  readonly tag: string;
  readonly node: string;
  readonly nodePath: string;
  readonly dir: string;
  private readonly cgroup: string | undefined;
  private readonly containers = new Set<string>();
  private seq = 0;
  /** Orphans the harness had to kill after a run had exited (processes a plugin left running). */
  strays = 0;
  /** The folder the node's runtime execs plugins from: dist/bin, or (daemon mode) shims bound to a daemon in the node. */
  get binDir(): string {
    return pluginDir(this.nodePath);
  }
  /** Client URL of the world's etcd (inside the node netns), once startEtcd succeeded. */
  etcdUrl: string | undefined;
  private etcd: ChildProcess | undefined;

  private constructor(tag: string) {
    this.tag = tag;
    this.node = `ckfz${tag}`;
    this.nodePath = `/run/netns/${this.node}`;
    this.dir = mkdtempSync(join(tmpdir(), `ckfz${tag}-`));
    this.cgroup = makePidsCgroup(`cni-kit-fuzz-${tag}-${process.pid}`);
  }

  /** Makes the node namespace; `tag` keeps names of files that run side by side apart. */
  static async create(): Promise<FuzzWorld> {
    const w = new FuzzWorld(randomBytes(3).toString('hex'));
    live.add(w);
    w.ip('netns', 'add', w.node);
    w.ipn('link', 'set', 'lo', 'up');
    w.ipn('link', 'add', 'eth0', 'type', 'bridge');
    w.ipn('link', 'set', 'eth0', 'up');
    // A veth pair that configs may name where a bridge or master is expected (F12: a bridge
    // plugin given an existing veth as its bridge).
    w.ipn('link', 'add', 'fzveth0', 'type', 'veth', 'peer', 'name', 'fzveth1');
    return w;
  }

  /** Whether runs are bounded by a pids cgroup too. */
  get pidsBounded(): boolean {
    return this.cgroup !== undefined;
  }

  ip(...args: string[]): string {
    const r = spawnSync('ip', args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim()}`);
    return r.stdout;
  }

  /** `ip` in the node namespace. */
  ipn(...args: string[]): string {
    return this.ip('-n', this.node, ...args);
  }

  /** A fresh directory for one case. */
  caseDir(): string {
    const d = join(this.dir, `case${++this.seq}`);
    mkdirSync(d, { recursive: true });
    return d;
  }

  /** A fresh container namespace; returns its name and path. */
  addContainer(): { name: string; path: string } {
    const name = `${this.node}-c${++this.seq}`;
    this.containers.add(name);
    this.ip('netns', 'add', name);
    return { name, path: `/run/netns/${name}` };
  }

  /** Removes a container namespace (gone already is fine). */
  removeContainer(name: string): void {
    spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
    this.containers.delete(name);
  }

  /** Node links whose peer is in another namespace (veths into containers). */
  peeredLinks(): Set<string> {
    const r = spawnSync('ip', ['-n', this.node, '-j', 'link', 'show'], { encoding: 'utf8' });
    const list = JSON.parse(r.stdout || '[]') as JLink[];
    return new Set(list.filter((l) => l.link_netnsid !== undefined).map((l) => l.ifname));
  }

  /** Waits until the kernel has destroyed these node links (a deleted netns takes veth peers). */
  async settle(peers: ReadonlySet<string>): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (peers.size && Date.now() < deadline) {
      const now = this.peeredLinks();
      if (![...peers].some((p) => now.has(p))) return;
      await sleep(50);
    }
  }

  /**
   * Runs `dist/bin/<plugin>` (or the executable at an absolute path) once in the node namespace with exactly `env` (plus PATH) and
   * `stdin`, bounded as the file comment says.
   */
  async run(
    plugin: string,
    env: Record<string, string>,
    stdin: string,
    opts: RunOptions = {},
  ): Promise<FuzzCall> {
    const timeoutMs = opts.timeoutMs ?? FUZZ_RUN_TIMEOUT_MS;
    const bin = plugin.startsWith('/') ? plugin : join(this.binDir, plugin);
    const script = this.cgroup
      ? 'echo $$ > "$0/cgroup.procs" && exec nsenter --net="$1" -- "$2"'
      : 'exec nsenter --net="$1" -- "$2"';
    const started = Date.now();
    const child = spawn('sh', ['-c', script, this.cgroup ?? '-', this.nodePath, bin], {
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...env },
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const pids = new Set<number>(child.pid !== undefined ? [child.pid] : []);
    // Sampled while it runs: names a plugin derives from its pid (temp netns) can then be traced.
    const sampler = this.cgroup
      ? setInterval(() => {
          for (const p of cgroupPids(this.cgroup as string)) pids.add(p);
        }, 10)
      : undefined;
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.stdin.on('error', () => {});
    child.stdin.end(stdin);
    let timedOut = false;
    let killed = false;
    const killGroup = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // the group is gone
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
      void drainCgroup(this.cgroup);
    }, timeoutMs);
    const killTimer =
      opts.killAfterMs === undefined
        ? undefined
        : setTimeout(() => {
            killed = true;
            killGroup();
          }, opts.killAfterMs);
    const [exitCode, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
      child.on('error', () => resolve([null, null]));
      child.on('close', (code, sig) => resolve([code, sig]));
    });
    clearTimeout(timer);
    if (killTimer) clearTimeout(killTimer);
    if (sampler) clearInterval(sampler);
    if (killed) {
      // A runtime that kills a plugin kills that process; what it started may run on (a delegated
      // call finishing its work) for a moment. Then nothing of it may be left.
      const deadline = Date.now() + 3000;
      while (this.cgroup && cgroupPids(this.cgroup).length && Date.now() < deadline) await sleep(25);
    }
    this.strays += await drainCgroup(this.cgroup);
    const call: FuzzCall = {
      command: env.CNI_COMMAND ?? '',
      exitCode,
      signal,
      stdout: Buffer.concat(out).toString('utf8'),
      stderr: Buffer.concat(err).toString('utf8'),
      timedOut,
      killed,
      pids: [...pids],
      durationMs: Date.now() - started,
    };
    const parsed = parseSingleJson(call.stdout);
    if ('value' in parsed) call.json = parsed.value;
    else call.jsonError = parsed.why;
    return call;
  }

  /** Snapshots of the node, of a container (when given) and of the data dirs. */
  async snapshot(
    containerPath: string | undefined,
    dataDirs: string[],
    etcdPrefix?: string,
  ): Promise<WorldSnapshot> {
    const [node, container, files] = await Promise.all([
      takeNetSnapshot(this.nodePath),
      containerPath && existsSync(containerPath) ? takeNetSnapshot(containerPath) : undefined,
      takeFileSnapshot(dataDirs),
    ]);
    return etcdPrefix && this.etcdUrl
      ? { node, container, files, keys: this.etcdKeys(etcdPrefix) }
      : { node, container, files };
  }

  /**
   * Starts an etcd inside the node namespace (where the plugins run, so 127.0.0.1 is theirs) for
   * whereabouts' etcd store; resolves false where /usr/bin/etcd is not installed or it won't start.
   * A shell guardian kills it when the worker's pipe closes, even if the worker dies.
   */
  async startEtcd(): Promise<boolean> {
    if (!existsSync(ETCD_BIN)) return false;
    const url = 'http://127.0.0.1:23790';
    const peer = 'http://127.0.0.1:23800';
    const name = `fz${this.tag}`;
    const child = spawn(
      'nsenter',
      [
        `--net=${this.nodePath}`,
        '--',
        '/bin/sh',
        '-c',
        '"$0" "$@" & pid=$!; read _ignored; kill -9 $pid 2>/dev/null; wait $pid',
        ETCD_BIN,
        ...['--name', name, '--data-dir', join(this.dir, 'etcd')],
        ...['--listen-client-urls', url, '--advertise-client-urls', url],
        ...['--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer],
        ...['--initial-cluster', `${name}=${peer}`, '--unsafe-no-fsync', '--log-level', 'error'],
      ],
      { stdio: ['pipe', 'ignore', 'ignore'] },
    );
    this.etcd = child;
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && child.exitCode === null) {
      const r = spawnSync('nsenter', [`--net=${this.nodePath}`, '--', 'curl', '-sf', `${url}/health`], {
        encoding: 'utf8',
      });
      if (r.stdout.includes('"true"')) {
        this.etcdUrl = url;
        return true;
      }
      await sleep(100);
    }
    await this.stopEtcd();
    return false;
  }

  /** Keys under `prefix` in the world's etcd (through its v3 JSON gateway). */
  etcdKeys(prefix: string): Set<string> {
    if (!this.etcdUrl) return new Set();
    const b64 = (t: string) => Buffer.from(t).toString('base64');
    const end = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
    const body = JSON.stringify({ key: b64(prefix), range_end: b64(end), keys_only: true });
    const r = spawnSync(
      'nsenter',
      [
        `--net=${this.nodePath}`,
        '--',
        'curl',
        '-sf',
        '-X',
        'POST',
        `${this.etcdUrl}/v3/kv/range`,
        '-d',
        body,
      ],
      { encoding: 'utf8' },
    );
    if (r.status !== 0) throw new Error(`etcd range ${prefix}: curl exit ${r.status}`);
    const kvs = (JSON.parse(r.stdout || '{}') as { kvs?: Array<{ key: string }> }).kvs ?? [];
    return new Set(kvs.map((kv) => Buffer.from(kv.key, 'base64').toString('utf8')));
  }

  private async stopEtcd(): Promise<void> {
    const child = this.etcd;
    this.etcd = undefined;
    this.etcdUrl = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const done = new Promise((r) => child.once('exit', r));
    child.stdin?.end();
    await Promise.race([done, sleep(5000)]);
  }

  /** Removes everything of the world: containers, the node namespace, the dir, the cgroup. */
  async dispose(): Promise<void> {
    live.delete(this);
    await this.stopEtcd();
    await drainCgroup(this.cgroup);
    for (const c of [...this.containers]) this.removeContainer(c);
    spawnSync('ip', ['netns', 'del', this.node], { stdio: 'ignore' });
    rmSync(this.dir, { recursive: true, force: true });
    if (this.cgroup) {
      try {
        rmdirSync(this.cgroup);
      } catch {
        // a process still in it: it dies with the worker, the kernel frees the empty cgroup
      }
    }
  }

  /** Synchronous last resort for a worker that exits without afterAll. */
  disposeSync(): void {
    this.etcd?.kill('SIGKILL');
    if (this.cgroup) for (const p of cgroupPids(this.cgroup)) spawnSync('kill', ['-9', String(p)]);
    for (const c of [...this.containers]) this.removeContainer(c);
    spawnSync('ip', ['netns', 'del', this.node], { stdio: 'ignore' });
    rmSync(this.dir, { recursive: true, force: true });
    if (this.cgroup) spawnSync('rmdir', [this.cgroup]);
  }
}

const live = new Set<FuzzWorld>();
process.once('exit', () => {
  for (const w of live) w.disposeSync();
});

/** What one snapshot of a case holds. */
export interface WorldSnapshot {
  node: NetSnapshot;
  container: NetSnapshot | undefined;
  files: Set<string>;
  /** Keys of the case's prefix in the world's etcd, when the case uses it. */
  keys?: Set<string>;
}
