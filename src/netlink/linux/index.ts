// The real backend. Two engines behind one interface: native (rtnetlink over a netlink socket
// in-process, through the FFI package; no child process) and iproute2 (`ip -json`, `ip -batch`
// and nsenter, one spawn per flush), the fallback where the FFI package cannot load. The choice is
// made on the first flush, logged once (NODE_DEBUG=cni-kit), and can be forced with the
// `kernelPath` option or CNI_KIT_NETLINK; see docs/netlink.md.

import { CniError, ErrorCode } from '../../spec/errors.js';
import { type KernelPath, kernelPathFromEnv, type Libc, libcFor } from '../../sys/libc.js';
import { NetlinkError } from '../errors.js';
import type * as Core from '../native/core.js';
import { NativeEngine } from '../native/engine.js';
import { createNetnsSync, removeNetnsSync } from '../native/netns.js';
import {
  currentNetnsPath,
  isNetnsPath,
  NETNS_RUN_DIR,
  netnsName,
  sameNetns,
  tempNetnsName,
} from '../netns.js';
import type { Engine, Op, Read, ReadResult } from '../ops.js';
import { NetnsHandle } from '../ops.js';
import {
  LINK_KINDS,
  type LinkKind,
  type LinkSpec,
  type Netlink,
  type NetnsOps,
  type TempNetns,
} from '../types.js';
import { checkNetnsName, checkNetnsPath } from '../validate.js';
import { LinuxEngine, runProcess, type SpawnTrace } from './engine.js';

/** Options for the Linux backend. */
export interface LinuxNetlinkOptions {
  /** Path treated as the host netns; default this process's own. */
  hostNetns?: string | undefined;
  /** Called after every process the backend runs (command, stdin, duration): for debugging and benches. */
  onSpawn?: ((trace: SpawnTrace) => void) | undefined;
  /**
   * `native` (rtnetlink in-process; fails when the FFI package cannot load), `iproute2` (child
   * processes), or `auto` (native when it loads, else iproute2). Default: CNI_KIT_NETLINK, else auto.
   */
  kernelPath?: KernelPath | undefined;
}

let announced = false;

/** Picks the engine on first use: the FFI package loads only when a flush or read needs the kernel. */
class ChoosingEngine implements Engine {
  private chosen: Promise<Engine> | undefined;
  constructor(
    private readonly path: KernelPath,
    private readonly iproute2: LinuxEngine,
    private readonly own: string,
  ) {}
  private libcP: Promise<Libc | undefined> | undefined;
  /** The libc binding when the native engine serves this instance, else undefined. */
  libc(): Promise<Libc | undefined> {
    this.libcP ??= libcFor(this.path);
    return this.libcP;
  }
  engine(): Promise<Engine> {
    this.chosen ??= this.choose();
    return this.chosen;
  }
  async run(netns: string, ops: readonly Op[], reads: readonly Read[]): Promise<ReadResult[]> {
    return (await this.engine()).run(netns, ops, reads);
  }
  private async choose(): Promise<Engine> {
    const libc = await this.libc();
    let core: typeof Core | undefined;
    let why = 'the FFI package did not load';
    if (libc) {
      // The rtnetlink codecs load here, not at import: a call that never reaches the kernel never
      // parses them (`cni-kit build` puts them in lib/cni-kit/ beside the binary).
      try {
        core = await import('../native/core.js');
      } catch (err) {
        why = `the native engine's code did not load (${(err as Error).message})`;
        if (this.path === 'native')
          throw new CniError(
            ErrorCode.Internal,
            `the native netlink backend cannot load: ${why}`,
            'a plugin built with cni-kit build needs the lib/ folder written beside its binary; or use the iproute2 backend (CNI_KIT_NETLINK=iproute2)',
            { cause: err },
          );
      }
    }
    if (!announced) {
      announced = true;
      // node:util loads here, once, rather than at start-up.
      process.getBuiltinModule('node:util').debuglog('cni-kit')(
        'netlink: %s engine (%s)',
        core ? 'native' : 'iproute2',
        this.path === 'auto' ? (core ? 'auto' : `auto: ${why}`) : `forced: ${this.path}`,
      );
    }
    return libc && core ? new NativeEngine(libc, this.own, core) : this.iproute2;
  }
}

/** The Linux backend plus its spawn counter (for benchmarks and tests). */
export interface LinuxNetlink extends Netlink {
  readonly backend: 'linux';
  /** Processes spawned so far by this instance. */
  spawnCount(): number;
  /** Which engine serves this instance (decided on the first call that needs the kernel). */
  engine(): Promise<'native' | 'iproute2'>;
}

/** Creates the real backend (needs root / CAP_NET_ADMIN; the iproute2 engine also iproute2 and util-linux nsenter). */
export function linuxNetlink(opts: LinuxNetlinkOptions = {}): LinuxNetlink {
  const own = currentNetnsPath();
  const hostNetns = opts.hostNetns ?? own;
  const iproute2 = new LinuxEngine(own, opts.onSpawn);
  const chooser = new ChoosingEngine(opts.kernelPath ?? kernelPathFromEnv(), iproute2, own);
  let probe: Promise<KernelProbe> | undefined;

  const resolve = (path: string | undefined): string => {
    if (path === undefined) return hostNetns;
    checkNetnsPath(path);
    if (sameNetns(path, own)) return own;
    return sameNetns(path, hostNetns) ? hostNetns : path;
  };

  const self: LinuxNetlink = {
    backend: 'linux',
    hostNetns,
    spawnCount: () => iproute2.spawns,
    engine: async () => ((await chooser.engine()) === iproute2 ? 'iproute2' : 'native'),
    open(path?: string): NetnsOps {
      return new NetnsHandle(resolve(path), chooser);
    },
    async inNetns(path, fn) {
      const ns = resolve(path);
      if (ns !== own && !isNetnsPath(ns)) throw new NetlinkError('ENOENT', `open netns ${ns}`, ns);
      const h = new NetnsHandle(ns, chooser);
      const out = await fn(h);
      await h.flush();
      return out;
    },
    async netnsExists(path) {
      return isNetnsPath(checkNetnsPath(path));
    },
    async createNetns(name?: string): Promise<TempNetns> {
      const n = checkNetnsName(name ?? tempNetnsName());
      const libc = await chooser.libc();
      if (libc) {
        const path = createNetnsSync(libc, NETNS_RUN_DIR, n);
        return { name: n, path, remove: () => self.removeNetns(path) };
      }
      iproute2.spawns++;
      const p = await runProcess(iproute2.bin('ip'), ['netns', 'add', n]);
      const path = `${NETNS_RUN_DIR}/${n}`;
      if (p.code !== 0)
        throw new NetlinkError(
          p.stderr.includes('exists') ? 'EEXIST' : 'EIO',
          `create netns ${n}`,
          path,
          p.stderr.trim(),
        );
      return { name: n, path, remove: () => self.removeNetns(path) };
    },
    async removeNetns(path: string) {
      const n = netnsName(checkNetnsPath(path));
      if (!n)
        throw new NetlinkError(
          'EINVAL',
          `remove netns ${path} (only /var/run/netns/<name> can be removed)`,
          path,
        );
      const libc = await chooser.libc();
      if (libc) return removeNetnsSync(libc, path);
      iproute2.spawns++;
      const p = await runProcess(iproute2.bin('ip'), ['netns', 'del', n]);
      if (p.code !== 0 && !/No such file/.test(p.stderr))
        throw new NetlinkError('EIO', `remove netns ${n}`, path, p.stderr.trim());
    },
    async supportedLinkKinds() {
      probe ??= probeFor(self, chooser, iproute2.bin('ip'));
      return (await probe).kinds;
    },
    async supportsBridgeVlans() {
      probe ??= probeFor(self, chooser, iproute2.bin('ip'));
      return (await probe).bridgeVlans;
    },
  };
  return self;
}

/** The probe through the engine in use: natively in a throwaway netns, else with one `ip -batch`. */
async function probeFor(nl: Netlink, chooser: ChoosingEngine, ip: string): Promise<KernelProbe> {
  if (!(await chooser.libc())) return probeKernel(ip);
  const tmp = await nl.createNetns(tempNetnsName('cnikit-probe'));
  try {
    const ns = nl.open(tmp.path);
    ns.createLink({ kind: 'veth', name: 'pp0', peerName: 'pp1' });
    await ns.flush();
    const specs: Record<LinkKind, LinkSpec> = {
      bridge: { kind: 'bridge', name: 'kbr' },
      veth: { kind: 'veth', name: 'kve0', peerName: 'kve1' },
      macvlan: { kind: 'macvlan', name: 'kmv', parent: 'pp0', mode: 'bridge' },
      ipvlan: { kind: 'ipvlan', name: 'kiv', parent: 'pp1', mode: 'l2' },
      vlan: { kind: 'vlan', name: 'kvl', parent: 'pp0', vlanId: 10 },
      vxlan: { kind: 'vxlan', name: 'kvx', vni: 42, port: 4789 },
      ifb: { kind: 'ifb', name: 'kifb' },
      dummy: { kind: 'dummy', name: 'kdm' },
      tap: { kind: 'tap', name: 'ktp' },
      tun: { kind: 'tun', name: 'ktn' },
      vrf: { kind: 'vrf', name: 'kvrf', table: 77 },
    };
    const works = async (spec: LinkSpec): Promise<boolean> => {
      ns.createLink(spec);
      return ns.flush().then(
        () => true,
        () => false,
      );
    };
    const kinds = new Set<LinkKind>();
    for (const k of LINK_KINDS) if (await works(specs[k])) kinds.add(k);
    const bridgeVlans = await works({ kind: 'bridge', name: 'kbv', vlanFiltering: true });
    return { kinds, bridgeVlans };
  } finally {
    await tmp.remove();
  }
}

/** What the running kernel supports, as found by `probeKernel`. */
export interface KernelProbe {
  kinds: ReadonlySet<LinkKind>;
  /** Bridge VLAN filtering (the bridge plugin's `vlan` / `vlanTrunk`). */
  bridgeVlans: boolean;
}

/**
 * Which link kinds (and bridge VLAN filtering) this kernel has: tries each in a throwaway netns with
 * one `ip -force -batch` and reads which lines failed. Uncached; `Netlink.supportedLinkKinds()` caches.
 */
export async function probeKernel(ip = 'ip'): Promise<KernelProbe> {
  const n = tempNetnsName('cnikit-probe');
  const add = await runProcess(ip, ['netns', 'add', n]);
  if (add.code !== 0) throw new NetlinkError('EIO', `create probe netns ${n}`, n, add.stderr.trim());
  try {
    const lines: Record<LinkKind, string> = {
      bridge: 'link add kbr type bridge',
      veth: 'link add kve0 type veth peer name kve1',
      macvlan: 'link add link pp0 name kmv type macvlan mode bridge',
      ipvlan: 'link add link pp1 name kiv type ipvlan mode l2',
      vlan: 'link add link pp0 name kvl type vlan id 10',
      vxlan: 'link add kvx type vxlan id 42 dstport 4789',
      ifb: 'link add kifb type ifb',
      dummy: 'link add kdm type dummy',
      tap: 'tuntap add mode tap name ktp',
      tun: 'tuntap add mode tun name ktn',
      vrf: 'link add kvrf type vrf table 77',
    };
    const batch = [
      'link add pp0 type veth peer name pp1',
      ...LINK_KINDS.map((k) => lines[k]),
      'link add kbv type bridge vlan_filtering 1',
    ];
    const p = await runProcess(ip, ['-n', n, '-force', '-batch', '-'], `${batch.join('\n')}\n`);
    const failed = new Set([...p.stderr.matchAll(/Command failed -:(\d+)/g)].map((m) => Number(m[1]) - 2));
    if (failed.has(-1))
      throw new NetlinkError('EOPNOTSUPP', 'create veth for the link-kind probe', n, p.stderr);
    return {
      kinds: new Set(LINK_KINDS.filter((_, i) => !failed.has(i))),
      bridgeVlans: !failed.has(LINK_KINDS.length),
    };
  } finally {
    await runProcess(ip, ['netns', 'del', n]);
  }
}

/** The link kinds this kernel can create (see `probeKernel`). */
export async function probeLinkKinds(ip = 'ip'): Promise<ReadonlySet<LinkKind>> {
  return (await probeKernel(ip)).kinds;
}
