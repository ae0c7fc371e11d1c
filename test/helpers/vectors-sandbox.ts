// The sandbox of one vector run. Every plugin call runs in a private mount namespace
// (`unshare -m`) whose /etc/cni, /var/lib/cni, /run and /tmp are directories of the run's own, and
// inside a node network namespace of the test's own (`nsenter --net`), with a pod netns as
// CNI_NETNS: the JSON stays as the docs print it and the environment adapts (the node gets the
// eth0/master the config names; flanneld's subnet.env and whereabouts' flat file are where the
// plugins look for them), and nothing of the machine's /etc, /run, /tmp or interfaces is touched.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, connect as netConnect, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ProcOutcome, runProc } from '../../src/conform/proc.js';
import { type NetSnapshot, takeFileSnapshot, takeNetSnapshot } from '../../src/conform/snapshot.js';
import type { FakeK8s } from './fake-k8s.js';
import type { Vector } from './vectors.js';

/** What the plugins see mapped to the sandbox's own directories. */
const MOUNTS: Array<[string, string]> = [
  ['/etc/cni', 'etc-cni'],
  ['/var/lib/cni', 'var-lib-cni'],
  ['/run', 'run'],
  ['/tmp', 'tmp'],
];

// $1 sandbox root, $2 node netns path ("-" for none), $3 the checkout's path below /tmp ("-" when it
// is elsewhere), then the command. /run/netns is carried into the private /run so CNI_NETNS paths
// keep working; a checkout under /tmp (a CI clone) is carried into the private /tmp so dist/bin
// stays where it was; /tmp goes last, as the root lives under it.
const ENTER = [
  'set -e',
  'R="$1"; NODE="$2"; KEEP="$3"; shift 3',
  'mount --rbind /run/netns "$R/run/netns"',
  'mount --rbind "$R/run" /run',
  'mount --bind "$R/etc-cni" /etc/cni',
  'mount --bind "$R/var-lib-cni" /var/lib/cni',
  'if [ "$KEEP" != - ]; then mkdir -p "$R/tmp$KEEP"; mount --bind "/tmp$KEEP" "$R/tmp$KEEP"; fi',
  'mount --rbind "$R/tmp" /tmp',
  'if [ "$NODE" = - ]; then exec "$@"; fi',
  'exec nsenter --net="$NODE" -- "$@"',
].join('\n');

const CHECKOUT = realpathSync(fileURLToPath(new URL('../..', import.meta.url))).replace(/\/$/, '');
const KEEP = CHECKOUT.startsWith('/tmp/') ? CHECKOUT.slice('/tmp'.length) : '-';

const netnsLive = new Set<string>();
process.once('exit', () => {
  for (const n of netnsLive) spawnSync('ip', ['netns', 'del', n], { stdio: 'ignore' });
});

function sh(cmd: string, env: NodeJS.ProcessEnv = {}): void {
  const r = spawnSync('sh', ['-c', cmd], { encoding: 'utf8', env: { ...process.env, ...env } });
  if (r.status !== 0) throw new Error(`${cmd}: ${r.stderr.trim() || `exit ${r.status}`}`);
}

let seq = 0;

/** The node and pod namespaces and the private directories of one vector run. */
export class Sandbox {
  readonly root: string;
  readonly node: string;
  readonly pod: string;
  readonly containerId: string;
  private relay: { server: Server; stop: () => void } | undefined;

  private constructor(tag: string) {
    const n = ++seq;
    this.root = mkdtempSync(join(tmpdir(), `vec-${tag}-`));
    this.node = `vk${tag}n${n}`;
    this.pod = `vk${tag}p${n}`;
    this.containerId = `vector-${tag}-${n}`;
  }

  get nodePath(): string {
    return `/run/netns/${this.node}`;
  }
  get podPath(): string {
    return `/run/netns/${this.pod}`;
  }
  /** The Kubernetes namespace of the run's pod and of its vector's `default` NADs. */
  get k8sNamespace(): string {
    return this.containerId;
  }
  /** The name of the run's pod in the fake API server. */
  get podName(): string {
    return `pod-${this.containerId}`;
  }

  /** Creates the namespaces and directories, writes the vector's files and runs its setup. */
  static open(v: Vector, tag: string): Sandbox {
    const s = new Sandbox(tag);
    for (const [, d] of MOUNTS) mkdirSync(join(s.root, d), { recursive: true });
    mkdirSync(join(s.root, 'run/netns'));
    mkdirSync(join(s.root, 'etc-cni/net.d'));
    for (const f of v.files) s.write(f.path, `${f.text}\n`);
    for (const ns of [s.node, s.pod]) {
      netnsLive.add(ns);
      sh(`ip netns add ${ns}`);
    }
    sh(`ip -n ${s.node} link set lo up`);
    const env = { POD: s.pod, NODE: s.node };
    if (v.header.node)
      sh(`nsenter --net=${s.nodePath} sh -c '${v.header.node.replaceAll("'", `'\\''`)}'`, env);
    if (v.header.pod) sh(`nsenter --net=${s.nodePath} sh -c '${v.header.pod.replaceAll("'", `'\\''`)}'`, env);
    return s;
  }

  /** The machine path of a path as the plugins see it. */
  path(p: string): string {
    for (const [prefix, dir] of MOUNTS) {
      if (p === prefix || p.startsWith(`${prefix}/`)) return join(this.root, dir, p.slice(prefix.length));
    }
    throw new Error(`${p}: not under a sandboxed directory (${MOUNTS.map(([m]) => m).join(', ')})`);
  }

  write(p: string, text: string): void {
    const host = this.path(p);
    mkdirSync(dirname(host), { recursive: true });
    writeFileSync(host, text);
  }

  /** A symlink at a path as the plugins see it. */
  link(p: string, target: string): void {
    const host = this.path(p);
    mkdirSync(dirname(host), { recursive: true });
    symlinkSync(target, host);
  }

  /** Runs a command in the sandbox: private mounts, node netns (unless `node` is false). */
  exec(
    file: string,
    args: string[],
    env: NodeJS.ProcessEnv,
    stdin: string,
    node = true,
  ): Promise<ProcOutcome> {
    return runProc(
      'unshare',
      [
        '-m',
        '--propagation',
        'private',
        'sh',
        '-c',
        ENTER,
        'enter',
        this.root,
        node ? this.nodePath : '-',
        KEEP,
        file,
        ...args,
      ],
      { env, stdin, timeoutMs: 20_000 },
    );
  }

  /** Node, pod and state-directory snapshots (the directories the plugins keep state in). */
  async snapshot(): Promise<{ node: NetSnapshot; pod: NetSnapshot; files: Set<string> }> {
    const [node, pod, files] = await Promise.all([
      takeNetSnapshot(this.nodePath),
      takeNetSnapshot(this.podPath),
      takeFileSnapshot([join(this.root, 'var-lib-cni'), join(this.root, 'run')]),
    ]);
    return { node, pod, files };
  }

  /**
   * Makes the fake API server reachable at the same 127.0.0.1 port inside the node netns (a unix
   * socket carries the bytes across), and writes the kubeconfigs the vector names.
   */
  async connectK8s(k8s: FakeK8s, kubeconfigs: string[]): Promise<void> {
    const port = Number(new URL(k8s.url).port);
    const sock = join(this.root, 'k8s.sock');
    const server = createServer((c) => {
      const up = netConnect(port, '127.0.0.1');
      c.pipe(up).pipe(c);
      const end = () => {
        c.destroy();
        up.destroy();
      };
      c.on('error', end);
      up.on('error', end);
    });
    await new Promise<void>((resolve) => server.listen(sock, resolve));
    const script = `const net=require('node:net');net.createServer(c=>{const u=net.connect(process.argv[1]);c.pipe(u).pipe(c);c.on('error',()=>u.destroy());u.on('error',()=>c.destroy())}).listen(${port},'127.0.0.1',()=>console.log('ready'))`;
    const child = spawn('nsenter', [`--net=${this.nodePath}`, '--', process.execPath, '-e', script, sock], {
      stdio: ['ignore', 'pipe', 'inherit'],
      detached: true,
    });
    await new Promise<void>((resolve, reject) => {
      child.stdout?.once('data', () => resolve());
      child.once('exit', (code) => reject(new Error(`k8s relay in ${this.node} exited (${code})`)));
    });
    this.relay = {
      server,
      stop: () => {
        try {
          if (child.pid) process.kill(-child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
        server.close();
      },
    };
    for (const p of kubeconfigs) {
      mkdirSync(dirname(this.path(p)), { recursive: true });
      k8s.writeKubeconfig(this.path(p));
    }
  }

  /** Removes everything: the relay, both namespaces (and so every link in them), the directories. */
  close(): void {
    this.relay?.stop();
    for (const ns of [this.pod, this.node]) {
      spawnSync('ip', ['netns', 'del', ns]);
      netnsLive.delete(ns);
    }
    rmSync(this.root, { recursive: true, force: true });
  }
}
