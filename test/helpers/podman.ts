// A podman 4.x lab for the runtime suite: Debian's podman with its CNI backend driving cni-kit's
// plugins, in network namespaces and storage of the test's own.
//
// - One lab per test file: a temp dir, and in it one or more sites. A site is a podman
//   installation of its own (containers.conf, storage.conf, graphroot, runroot, tmp dir, events
//   log, network config dir, plugin dirs) with a node network namespace, and a busybox image
//   imported from a rootfs tarball built at test time from the static busybox binary (Debian's
//   busybox-static): no registry is ever contacted.
// - podman runs under `nsenter --net=<node>`, so the bridges, veths and iptables rules the plugins
//   make are in the node namespace, never the machine's. (`ip netns exec` is not used: it remounts
//   /sys, which hides the cgroup tree from runc.)
// - podman also runs in a mount namespace of the lab's own (see createPodmanLab), so its overlay,
//   shm and network namespace mounts never show in the machine's mount table.
// - CONTAINERS_CONF and CONTAINERS_STORAGE_CONF point podman at the site's files; the machine's
//   own container settings are neither read nor written.
// - podman 4.3's CNI backend cannot name a network's bridge or its host-local data dir, but it
//   re-reads the conflist it wrote from its network config dir on every command, so the lab
//   rewrites each new network's conflist: the bridge gets a name of the test's own, host-local,
//   tuning and firewall keep their state in the site's dir.
// - cleanup() removes everything whatever state a failed test left: containers, networks, the
//   lab's mount namespace with every mount in it, conmon processes, cgroups, the libcni cache
//   entries (podman keeps them in the machine's /var/lib/cni/results; podman 4.3 has no setting
//   for that dir), the node namespaces and the lab dir.
import { spawn, spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  readSync,
  rmdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { normalizeIptablesSave } from './leak-check.js';
import { DAEMON_MODE, pluginDir, stopPluginDaemons } from './mode.js';
import { BIN_DIR } from './plugin.js';

/** Where Debian installs the Go reference plugins (the comparison site runs them). */
export const GO_CNI_DIR = '/usr/lib/cni';
/** The plugins podman 4.3's generated conflists name (bridge with host-local IPAM, then the chained ones). */
export const PODMAN_PLUGINS = ['bridge', 'host-local', 'portmap', 'firewall', 'tuning'] as const;
/** Debian's busybox-static installs the static binary here (the dynamic `busybox` package too). */
export const BUSYBOX = '/bin/busybox';
/** libcni's result cache, where podman 4.3 keeps one file per container and network. */
export const LIBCNI_CACHE = '/var/lib/cni/results';
const CGROUP_ROOT = '/sys/fs/cgroup';
const RUNC_ROOT = '/run/runc';

/** One finished process. */
export interface Proc {
  status: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a command to completion (killed with its process group after `timeoutMs`). */
export function runProc(
  cmd: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; input?: string } = {},
): Promise<Proc> {
  const start = performance.now();
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, detached: true });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    // A command that exits before reading its input (podman refusing its arguments) must not
    // surface as an unhandled EPIPE in whichever test runs next.
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
    const timer = setTimeout(() => {
      stderr += `\n(killed after ${opts.timeoutMs} ms)`;
      if (child.pid) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {}
      }
    }, opts.timeoutMs ?? 60_000);
    const finish = (status: number | null) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr, ms: Math.round(performance.now() - start) });
    };
    child.on('error', (e) => {
      stderr += String(e);
      finish(null);
    });
    child.on('close', (code) => finish(code));
  });
}

/** True when `path` is an ELF executable without a program interpreter (statically linked). */
export function isStaticElf(path: string): boolean {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const h = Buffer.alloc(64);
    if (readSync(fd, h, 0, 64, 0) < 64 || h.readUInt32BE(0) !== 0x7f454c46) return false;
    const is64 = h[4] === 2;
    const le = h[5] === 1;
    const u16 = (b: Buffer, o: number) => (le ? b.readUInt16LE(o) : b.readUInt16BE(o));
    const u32 = (b: Buffer, o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
    const phoff = is64 ? Number(le ? h.readBigUInt64LE(32) : h.readBigUInt64BE(32)) : u32(h, 28);
    const phentsize = u16(h, is64 ? 54 : 42);
    const phnum = u16(h, is64 ? 56 : 44);
    const ph = Buffer.alloc(phentsize * phnum);
    readSync(fd, ph, 0, ph.length, phoff);
    for (let i = 0; i < phnum; i++) if (u32(ph, i * phentsize) === 3) return false; // PT_INTERP
    return true;
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function onPath(cmd: string): boolean {
  return (process.env.PATH ?? '')
    .split(':')
    .concat(['/usr/sbin', '/sbin'])
    .some((d) => d !== '' && existsSync(join(d, cmd)));
}

/**
 * Why podman cannot run the suite here, naming what is missing (undefined when everything is
 * there). Everything but podman itself is checked too, so the message names all of it at once.
 */
export function podmanMissing(): string | undefined {
  const why: string[] = [];
  if (process.platform !== 'linux') return 'podman with the CNI backend needs Linux';
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, rootful podman)';
  if (!onPath('podman')) why.push('podman is not installed (Debian package podman)');
  if (!onPath('runc')) why.push('runc is not installed (Debian package runc)');
  if (!onPath('conmon')) why.push('conmon is not installed (Debian package conmon)');
  if (!existsSync(BUSYBOX)) why.push(`${BUSYBOX} is missing (Debian package busybox-static)`);
  else if (!isStaticElf(BUSYBOX))
    why.push(`${BUSYBOX} is dynamically linked: a scratch image needs Debian's busybox-static`);
  for (const p of PODMAN_PLUGINS)
    if (!existsSync(join(BIN_DIR, p))) why.push(`dist/bin/${p} is not built (node scripts/build-bins.mjs)`);
  for (const c of ['nsenter', 'unshare', 'tar', 'iptables-save', 'ip'])
    if (!onPath(c)) why.push(`${c} is not installed`);
  if (!existsSync(join(CGROUP_ROOT, 'pids')) && !existsSync(join(CGROUP_ROOT, 'cgroup.controllers')))
    why.push(`no cgroup file system at ${CGROUP_ROOT}`);
  return why.length > 0 ? why.join('; ') : undefined;
}

/**
 * Why the Go reference plugins cannot run the comparison cases (undefined when they can): every
 * plugin podman's conflists name must be in {@link GO_CNI_DIR}.
 */
export function goPluginsMissing(): string | undefined {
  const gone = PODMAN_PLUGINS.filter((p) => !existsSync(join(GO_CNI_DIR, p)));
  return gone.length > 0
    ? `the Go ${gone.join(', ')} plugin(s) are not in ${GO_CNI_DIR} (Debian package containernetworking-plugins)`
    : undefined;
}

/** A network as created by a site: podman's name, the bridge name and where host-local keeps state. */
export interface PodmanNetwork {
  name: string;
  bridge: string;
  ipamDir: string;
  /** Where the network's tuning plugin keeps its backups. */
  tuningDir: string;
  /** Where the network's firewall plugin (cni-kit's; the Go one has no such field) keeps its records. */
  firewallDir: string;
  /** The plugin types of the conflist podman generated, in order (IPAM types included). */
  types: string[];
  /** The gateways podman chose, one per subnet. */
  gateways: string[];
}

/** One node namespace with a containers.conf of its own. */
export interface PodmanSite {
  readonly netns: string;
  readonly netnsPath: string;
  readonly pluginDirs: readonly string[];
  /** `podman <args>` in the node namespace with the site's configuration. */
  podman(args: readonly string[], timeoutMs?: number): Promise<Proc>;
  /** As podman(), failing with podman's stderr when it exits non-zero; returns stdout trimmed. */
  podmanOk(args: readonly string[], timeoutMs?: number): Promise<string>;
  /** A command in the node namespace (synchronous; for ip, iptables-save, busybox nc, ...). */
  inNode(cmd: string, args: readonly string[], timeoutMs?: number): Proc;
  /**
   * `podman network create` (with `--opt key=value` for each of `options`) plus the conflist
   * rewrite (bridge name, state dirs).
   */
  createNetwork(
    name: string,
    subnets: readonly string[],
    options?: Readonly<Record<string, string>>,
  ): Promise<PodmanNetwork>;
  /** The conflist of a network, as podman wrote it and the lab rewrote it. */
  conflist(name: string): { plugins: Array<Record<string, unknown>> };
  /** `podman run -d` of the lab image; records the container for the leak checks and clean-up. */
  runDetached(name: string, runArgs: readonly string[], cmd: readonly string[]): Promise<Proc>;
  /** Every iptables/ip6tables rule of the node namespace, normalized (see leak-check.ts). */
  iptables(): string[];
  /** The site's networks (those not removed yet). */
  readonly networks: PodmanNetwork[];
  /**
   * `podman network rm` of every network of the site (podman deletes their bridges). podman 4.3
   * runs VERSION on every plugin of every network in its config dir before each ADD and DEL, so a
   * case that leaves its networks makes every later container start and removal slower.
   */
  removeNetworks(): Promise<void>;
}

/** The whole lab; see the file comment. */
export interface PodmanLab {
  /** Mount points under the lab dir in podman's mount namespace (none once no container runs). */
  mounts(): string[];
  /** podman network namespaces still mounted in podman's mount namespace. */
  mountedSandboxes(): string[];
  readonly dir: string;
  readonly image: string;
  /** The lab's mount namespace (a bind-mounted nsfs file): podman and its network namespaces live in it. */
  readonly mountNs: string;
  /**
   * A new site: a node namespace `<tag>-<suffix>`, a podman configuration and storage of its own
   * with these plugin dirs, and the image imported into it.
   */
  site(suffix: string, pluginDirs: readonly string[]): Promise<PodmanSite>;
  /** A plain network namespace `<tag>-<suffix>` (lo up), deleted by cleanup(); returns its path. */
  netns(suffix: string): string;
  /** Container ids podman reported for every container the lab started (for leak checks). */
  readonly containerIds: Set<string>;
  /** Every site made so far. */
  readonly sites: readonly PodmanSite[];
  /** The podman network namespaces seen (inspect's SandboxKey), for leak checks. */
  readonly sandboxes: Set<string>;
  /** Removes everything (see the file comment); returns what had to be forced, for diagnostics. */
  cleanup(): Promise<string[]>;
}

/** The cgroup hierarchies podman's cgroupfs manager writes to: each v1 controller, or the v2 root (''). */
export const cgroupHierarchies = (): string[] => {
  try {
    return ['', ...readdirSync(CGROUP_ROOT).filter((c) => !c.includes('.') && c !== 'libpod_parent')];
  } catch {
    return [];
  }
};

/** Mount points at or below `dir` in a mountinfo text, deepest first. */
export function mountsBelow(dir: string, mountinfo: string): string[] {
  const points = mountinfo
    .split('\n')
    .map((l) => (l.split(' ')[4] ?? '').replace(/\\040/g, ' '))
    .filter((p) => p === dir || p.startsWith(`${dir}/`));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/** Pids whose command line mentions `needle` (conmon carries the lab dir in its arguments). */
export function pidsMentioning(needle: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(needle)) out.push(Number(e));
    } catch {}
  }
  return out;
}

/** Builds the rootfs tarball of the lab image: the static busybox and one symlink per applet. */
function buildRootfsTar(dir: string): string {
  const rootfs = join(dir, 'rootfs');
  for (const d of ['bin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'root'])
    mkdirSync(join(rootfs, d), { recursive: true });
  const bb = readFileSync(BUSYBOX);
  writeFileSync(join(rootfs, 'bin', 'busybox'), bb, { mode: 0o755 });
  const list = spawnSync(BUSYBOX, ['--list'], { encoding: 'utf8' });
  if (list.status !== 0) throw new Error(`${BUSYBOX} --list failed: ${list.stderr}`);
  for (const applet of list.stdout.split('\n').filter((a) => /^[\w.[-]+$/.test(a) && a !== 'busybox')) {
    symlinkSync('busybox', join(rootfs, 'bin', applet));
  }
  writeFileSync(join(rootfs, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  writeFileSync(join(rootfs, 'etc', 'group'), 'root:x:0:\n');
  const tar = join(dir, 'rootfs.tar');
  const r = spawnSync('tar', ['-C', rootfs, '-cf', tar, '.'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tar failed: ${r.stderr}`);
  rmSync(rootfs, { recursive: true, force: true });
  return tar;
}

/** Creates the lab: its temp dir and mount namespace; sites come with site(). */
export async function createPodmanLab(tag: string): Promise<PodmanLab> {
  const dir = mkdtempSync(join(tmpdir(), `${tag}-`));
  // podman's mounts (overlay, shm, the bind mounts of its network namespaces) are made in a mount
  // namespace of the lab's own, a slave of the machine's: nothing it mounts shows outside, and a
  // mount namespace that someone else creates meanwhile (ip netns exec, unshare) cannot hold a
  // copy of a container's shm mount, which would make podman rm fail with EBUSY. The namespace is
  // kept by a bind mount of its file, on a private mount point (required for that bind).
  const nsDir = join(dir, 'ns');
  const mntns = join(nsDir, 'mnt');
  mkdirSync(nsDir);
  let tar: string;
  try {
    must('mount', ['--bind', nsDir, nsDir]);
    must('mount', ['--make-private', nsDir]);
    writeFileSync(mntns, '');
    must('unshare', [`--mount=${mntns}`, '--propagation', 'slave', 'true']);
    tar = buildRootfsTar(dir);
  } catch (e) {
    spawnSync('umount', [mntns]);
    spawnSync('umount', [nsDir]);
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const mntnsId = `mnt:[${statSync(mntns).ino}]`;
  const mountinfo = (): string => {
    const r = spawnSync('nsenter', [`--mount=${mntns}`, 'cat', '/proc/self/mountinfo'], { encoding: 'utf8' });
    return r.status === 0 ? r.stdout : '';
  };
  // runc keeps its state in /run/runc (podman passes it no other root); the entries go with the
  // containers, the directory itself goes at the end if the lab made it.
  const hadRuncRoot = existsSync(RUNC_ROOT);
  const hadLibpodParent = new Set(
    cgroupHierarchies().filter((c) => existsSync(join(CGROUP_ROOT, c, 'libpod_parent'))),
  );
  const sites: PodmanSite[] = [];
  const netnses: string[] = [];
  const containerIds = new Set<string>();
  const sandboxes = new Set<string>();
  const networkNames: string[] = [];
  const image = `localhost/${tag}-busybox:latest`;

  const newNetns = (suffix: string): string => {
    const netns = `${tag}-${suffix}`;
    spawnSync('ip', ['netns', 'del', netns]);
    const add = spawnSync('ip', ['netns', 'add', netns], { encoding: 'utf8' });
    if (add.status !== 0) throw new Error(`ip netns add ${netns}: ${add.stderr}`);
    netnses.push(netns);
    spawnSync('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
    return `/run/netns/${netns}`;
  };

  // Each site is a podman installation of its own (storage, state, network configs), so that
  // nothing one site does (podman rm -a, say) reaches the other's containers.
  const site = async (suffix: string, givenDirs: readonly string[]): Promise<PodmanSite> => {
    const netnsPath = newNetns(suffix);
    // Daemon mode: podman execs shims bound to a daemon in this site's node netns and the lab's
    // mount namespace, where podman makes its network namespaces.
    const pluginDirs = givenDirs.map((d) =>
      DAEMON_MODE && d.replace(/\/$/, '') === BIN_DIR.replace(/\/$/, '')
        ? pluginDir(netnsPath, { mountNs: mntns })
        : d,
    );
    const netns = `${tag}-${suffix}`;
    const home = join(dir, suffix);
    const p = {
      storageConf: join(home, 'storage.conf'),
      conf: join(home, 'containers.conf'),
      graphroot: join(home, 'root'),
      runroot: join(home, 'run'),
      tmp: join(home, 'tmp'),
      imgTmp: join(home, 'imgtmp'),
      netDir: join(home, 'net.d'),
      state: join(home, 'state'),
    };
    for (const d of [p.graphroot, p.runroot, p.tmp, p.imgTmp, p.netDir, p.state])
      mkdirSync(d, { recursive: true });
    writeFileSync(
      p.storageConf,
      `[storage]\ndriver = "overlay"\nrunroot = "${p.runroot}"\ngraphroot = "${p.graphroot}"\n`,
    );
    const list = (xs: readonly string[]) => `[${xs.map((x) => JSON.stringify(x)).join(', ')}]`;
    writeFileSync(
      p.conf,
      [
        '[containers]',
        // podman's default ulimits are refused in this kind of sandbox.
        'default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]',
        '[network]',
        'network_backend = "cni"',
        `cni_plugin_dirs = ${list(pluginDirs)}`,
        `network_config_dir = "${p.netDir}"`,
        '[engine]',
        // crun fails on hybrid cgroup hierarchies; runc works on both.
        'runtime = "runc"',
        'cgroup_manager = "cgroupfs"',
        'events_logger = "file"',
        `events_logfile_path = "${join(home, 'events.log')}"`,
        `tmp_dir = "${p.tmp}"`,
        `image_copy_tmp_dir = "${p.imgTmp}"`,
        '',
      ].join('\n'),
    );
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      CONTAINERS_CONF: p.conf,
      CONTAINERS_STORAGE_CONF: p.storageConf,
    };
    const networks: PodmanNetwork[] = [];
    let bridges = 0;
    const s: PodmanSite = {
      netns,
      netnsPath,
      pluginDirs,
      networks,
      podman: (args, timeoutMs = 300_000) =>
        runProc('nsenter', [`--mount=${mntns}`, `--net=${netnsPath}`, 'podman', ...args], { env, timeoutMs }),
      async podmanOk(args, timeoutMs) {
        const r = await s.podman(args, timeoutMs);
        if (r.status !== 0)
          throw new Error(`podman ${args.join(' ')} exited ${r.status}: ${r.stderr.trim()}`);
        return r.stdout.trim();
      },
      inNode(cmd, args, timeoutMs = 20_000) {
        const start = performance.now();
        const r = spawnSync('nsenter', [`--net=${netnsPath}`, cmd, ...args], {
          encoding: 'utf8',
          timeout: timeoutMs,
          killSignal: 'SIGKILL',
        });
        const ms = Math.round(performance.now() - start);
        return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '', ms };
      },
      async createNetwork(name, subnets, options = {}) {
        const args = ['network', 'create'];
        if (subnets.some((n) => n.includes(':'))) args.push('--ipv6');
        for (const n of subnets) args.push('--subnet', n);
        for (const [k, v] of Object.entries(options)) args.push('--opt', `${k}=${v}`);
        await s.podmanOk([...args, name]);
        const file = join(p.netDir, `${name}.conflist`);
        const conflist = JSON.parse(readFileSync(file, 'utf8')) as {
          plugins: Array<Record<string, unknown>>;
        };
        // The bridge lives in the site's own node namespace, so a short fixed pattern is unique.
        const bridge = `br-${suffix}${bridges++}`.slice(0, 15);
        const ipamDir = join(p.state, 'ipam');
        const tuningDir = join(p.state, 'tuning');
        const firewallDir = join(p.state, 'firewall');
        const gateways: string[] = [];
        const types: string[] = [];
        for (const plugin of conflist.plugins) {
          types.push(String(plugin.type));
          const ipamType = (plugin.ipam as { type?: string } | undefined)?.type;
          if (ipamType) types.push(ipamType);
          if (plugin.type === 'bridge') {
            plugin.bridge = bridge;
            const ipam = plugin.ipam as { dataDir?: string; ranges?: Array<Array<{ gateway?: string }>> };
            ipam.dataDir = ipamDir;
            for (const set of ipam.ranges ?? []) for (const r of set) if (r.gateway) gateways.push(r.gateway);
          }
          if (plugin.type === 'tuning') plugin.dataDir = tuningDir;
          if (plugin.type === 'firewall') plugin.dataDir = firewallDir;
        }
        writeFileSync(file, JSON.stringify(conflist, null, 2));
        const net = { name, bridge, ipamDir: join(ipamDir, name), tuningDir, firewallDir, gateways, types };
        networks.push(net);
        networkNames.push(name);
        return net;
      },
      conflist: (name) =>
        JSON.parse(readFileSync(join(p.netDir, `${name}.conflist`), 'utf8')) as {
          plugins: Array<Record<string, unknown>>;
        },
      async runDetached(name, runArgs, cmd) {
        const r = await s.podman(['run', '-d', '--name', name, ...runArgs, image, ...cmd]);
        const inspect = await s.podman([
          'inspect',
          '--format',
          '{{.Id}} {{.NetworkSettings.SandboxKey}}',
          name,
        ]);
        const [id, sandbox] = inspect.stdout.trim().split(' ');
        if (id) containerIds.add(id);
        if (sandbox) sandboxes.add(sandbox);
        return r;
      },
      async removeNetworks() {
        const failed: string[] = [];
        for (const n of networks.splice(0)) {
          const r = await s.podman(['network', 'rm', '-f', n.name], 60_000);
          if (r.status !== 0) failed.push(`${n.name}: ${r.stderr.trim()}`);
        }
        if (failed.length > 0) throw new Error(`podman network rm failed: ${failed.join('; ')}`);
      },
      iptables() {
        return [
          ...normalizeIptablesSave('ip4', s.inNode('iptables-save', []).stdout),
          ...normalizeIptablesSave('ip6', s.inNode('ip6tables-save', []).stdout),
        ];
      },
    };
    sites.push(s);
    // The image. containers/image keeps a blob-info cache in /var/lib/containers/cache for root
    // whatever graphroot says, so the import runs in a private mount namespace with a tmpfs over
    // /var/lib: nothing of it lands on the machine (the layers go to the site's graphroot).
    const imported = await runProc(
      'unshare',
      [
        '--mount',
        '--propagation',
        'private',
        'sh',
        '-c',
        'mount -t tmpfs -o mode=0755 cni-kit-import /var/lib && exec podman import "$1" "$2"',
        'sh',
        tar,
        image,
      ],
      { env, timeoutMs: 60_000 },
    );
    if (imported.status !== 0)
      throw new Error(`podman import failed (${imported.status}): ${imported.stderr.trim()}`);
    return s;
  };

  const lab: PodmanLab = {
    dir,
    image,
    mountNs: mntns,
    site,
    netns: newNetns,
    containerIds,
    sites,
    sandboxes,
    mounts: () => mountsBelow(dir, mountinfo()).filter((m) => m !== nsDir && !m.startsWith(`${nsDir}/`)),
    mountedSandboxes: () => {
      const text = mountinfo();
      return [...sandboxes].filter((sb) => mountsBelow(sb, text).length > 0);
    },
    async cleanup() {
      const forced: string[] = [];
      for (const s of sites) {
        await s.podman(['rm', '-af', '-t', '0'], 60_000);
        await s.removeNetworks().catch(() => {});
      }
      // Daemon mode: the sites' daemons live in the lab's mount namespace; they stop first, by design.
      await stopPluginDaemons(mntns);
      for (const pid of pidsMentioning(dir)) {
        forced.push(`process ${pid}`);
        kill(pid);
      }
      for (const pid of pidsIn(mntnsId)) {
        forced.push(`process ${pid} in the lab's mount namespace`);
        kill(pid);
      }
      for (const c of cgroupHierarchies()) {
        const parent = join(CGROUP_ROOT, c, 'libpod_parent');
        for (const id of containerIds) {
          const cg = join(parent, `libpod-${id}`);
          if (!existsSync(cg)) continue;
          forced.push(`cgroup ${cg}`);
          killCgroup(cg);
          tryRmdir(cg);
        }
        if (!hadLibpodParent.has(c) && existsSync(parent)) {
          tryRmdir(join(parent, 'conmon'));
          tryRmdir(parent);
        }
      }
      for (const m of lab.mounts()) forced.push(`mount ${m}`);
      for (const m of lab.mountedSandboxes()) forced.push(`podman netns mount ${m}`);
      // Dropping the namespace's last reference unmounts everything in it.
      spawnSync('umount', [mntns]);
      spawnSync('umount', [nsDir]);
      for (const sb of sandboxes) {
        if (!existsSync(sb)) continue;
        forced.push(`netns file ${sb}`);
        rmSync(sb, { force: true });
      }
      for (const f of libcniCacheFiles(networkNames)) {
        forced.push(`libcni cache ${f}`);
        rmSync(f, { force: true });
      }
      for (const n of netnses) spawnSync('ip', ['netns', 'del', n]);
      if (!hadRuncRoot) tryRmdir(RUNC_ROOT);
      rmSync(dir, { recursive: true, force: true });
      return forced;
    },
  };
  return lab;
}

function must(cmd: string, args: readonly string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr || r.error}`);
}

function kill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {}
}

/** Pids whose mount namespace is `id` (`mnt:[inode]`). */
function pidsIn(id: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readlinkSync(`/proc/${e}/ns/mnt`) === id) out.push(Number(e));
    } catch {}
  }
  return out;
}

function tryRmdir(d: string): void {
  try {
    rmdirSync(d);
  } catch {}
}

function killCgroup(cg: string): void {
  try {
    for (const pid of readFileSync(join(cg, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean))
      kill(Number(pid));
  } catch {}
}

/** libcni cache files of these networks (podman names them `<network>-<container id>-<ifname>`). */
export function libcniCacheFiles(networks: readonly string[]): string[] {
  let files: string[] = [];
  try {
    files = readdirSync(LIBCNI_CACHE);
  } catch {
    return [];
  }
  return files.filter((f) => networks.some((n) => f.startsWith(`${n}-`))).map((f) => join(LIBCNI_CACHE, f));
}

/** Files below `dir` (recursively; directories themselves are not listed), relative to it. */
export function filesBelow(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    let entries: string[] = [];
    try {
      entries = readdirSync(d);
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e);
      if (lstatSync(p).isDirectory()) walk(p, join(rel, e));
      else out.push(join(rel, e));
    }
  };
  walk(dir, '');
  return out.sort();
}

/**
 * The by-design leftovers of a network with no container left, in one place: the bridge itself
 * (with the gateway addresses), host-local's `last_reserved_ip.*` and `lock` files, and the shared
 * chains of the portmap and firewall plugins (cni-kit's, like the reference's, never remove them)
 * with the jumps to them: CNI-HOSTPORT-*, CNI-FORWARD, CNI-ADMIN, and for networks created with
 * `--opt isolate=true` (firewall `ingressPolicy: same-bridge`) CNI-ISOLATION-STAGE-1/-2 with the
 * per-bridge rules in them (they name a bridge, which other containers may still use). A rule
 * naming an address or a container is never one of them.
 */
export const LEFTOVERS = {
  ipamFile: /^(?:last_reserved_ip\.\d+|lock)$/,
  iptablesChain:
    /^ip[46] (?:filter|nat) :(?:CNI-ADMIN|CNI-FORWARD|CNI-HOSTPORT-DNAT|CNI-HOSTPORT-MASQ|CNI-HOSTPORT-SETMARK|CNI-ISOLATION-STAGE-1|CNI-ISOLATION-STAGE-2) -$/,
  iptablesRule: [
    /^ip[46] filter -A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD$/,
    /^ip[46] filter -A CNI-FORWARD -m comment --comment "CNI firewall plugin admin overrides" -j CNI-ADMIN$/,
    /^ip[46] nat -A (?:PREROUTING|OUTPUT) -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT$/,
    /^ip[46] nat -A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ$/,
    /^ip[46] nat -A CNI-HOSTPORT-MASQ -m mark --mark 0x2000\/0x2000 -j MASQUERADE$/,
    /^ip[46] nat -A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark 0x2000\/0x2000$/,
    /^ip[46] filter -A FORWARD -m comment --comment "CNI firewall plugin rules \(ingressPolicy: same-bridge(?:\|isolated)?\)" -j CNI-ISOLATION-STAGE-1$/,
    /^ip[46] filter -A CNI-ISOLATION-STAGE-1 -i (br-[\w-]+) ! -o \1 -m comment --comment "CNI firewall plugin rules \(ingressPolicy: same-bridge\)" -j CNI-ISOLATION-STAGE-2$/,
    /^ip[46] filter -A CNI-ISOLATION-STAGE-2 -o br-[\w-]+ -m comment --comment "CNI firewall plugin rules \(ingressPolicy: same-bridge(?:\|isolated)?\)" -j DROP$/,
    /^ip[46] filter -A CNI-ISOLATION-STAGE-[12] -m comment --comment "CNI firewall plugin rules \(ingressPolicy: same-bridge(?:\|isolated)?\)" -j RETURN$/,
  ],
};

/** The iptables lines that are not by-design leftovers. */
export function unexpectedRules(lines: readonly string[]): string[] {
  return lines.filter(
    (l) => !LEFTOVERS.iptablesChain.test(l) && !LEFTOVERS.iptablesRule.some((r) => r.test(l)),
  );
}
