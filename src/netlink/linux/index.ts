// The real backend: iproute2 (`ip -json`, `ip -batch`) and nsenter, one spawn per flush.
// Chosen over the npm `netlink` addon because that cannot enter another netns (addresses, routes and
// sysctls in the container would still need a spawn) and would add a native dependency; see docs/netlink.md.
import { NetlinkError } from '../errors.js';
import { currentNetnsPath, isNetnsPath, netnsName, sameNetns, tempNetnsName } from '../netns.js';
import { NetnsHandle } from '../ops.js';
import { LINK_KINDS, type LinkKind, type Netlink, type NetnsOps, type TempNetns } from '../types.js';
import { checkNetnsName, checkNetnsPath } from '../validate.js';
import { LinuxEngine, runProcess, type SpawnTrace } from './engine.js';

/** Options for the Linux backend. */
export interface LinuxNetlinkOptions {
  /** Path treated as the host netns; default this process's own. */
  hostNetns?: string | undefined;
  /** Called after every process the backend runs (command, stdin, duration): for debugging and benches. */
  onSpawn?: ((trace: SpawnTrace) => void) | undefined;
}

/** The Linux backend plus its spawn counter (for benchmarks and tests). */
export interface LinuxNetlink extends Netlink {
  readonly backend: 'linux';
  /** Processes spawned so far by this instance. */
  spawnCount(): number;
}

/** Creates the real backend (needs root / CAP_NET_ADMIN, iproute2 and util-linux nsenter). */
export function linuxNetlink(opts: LinuxNetlinkOptions = {}): LinuxNetlink {
  const own = currentNetnsPath();
  const hostNetns = opts.hostNetns ?? own;
  const engine = new LinuxEngine(own, opts.onSpawn);
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
    spawnCount: () => engine.spawns,
    open(path?: string): NetnsOps {
      return new NetnsHandle(resolve(path), engine);
    },
    async inNetns(path, fn) {
      const ns = resolve(path);
      if (ns !== own && !isNetnsPath(ns)) throw new NetlinkError('ENOENT', `open netns ${ns}`, ns);
      const h = new NetnsHandle(ns, engine);
      const out = await fn(h);
      await h.flush();
      return out;
    },
    async netnsExists(path) {
      return isNetnsPath(checkNetnsPath(path));
    },
    async createNetns(name?: string): Promise<TempNetns> {
      const n = checkNetnsName(name ?? tempNetnsName());
      engine.spawns++;
      const p = await runProcess(engine.bin('ip'), ['netns', 'add', n]);
      const path = `/var/run/netns/${n}`;
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
      engine.spawns++;
      const p = await runProcess(engine.bin('ip'), ['netns', 'del', n]);
      if (p.code !== 0 && !/No such file/.test(p.stderr))
        throw new NetlinkError('EIO', `remove netns ${n}`, path, p.stderr.trim());
    },
    async supportedLinkKinds() {
      probe ??= probeKernel(engine.bin('ip'));
      return (await probe).kinds;
    },
    async supportsBridgeVlans() {
      probe ??= probeKernel(engine.bin('ip'));
      return (await probe).bridgeVlans;
    },
  };
  return self;
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
      ipvlan: 'link add link pp0 name kiv type ipvlan mode l2',
      vlan: 'link add link pp0 name kvl type vlan id 10',
      vxlan: 'link add kvx type vxlan id 42 dstport 4789',
      ifb: 'link add kifb type ifb',
      dummy: 'link add kdm type dummy',
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
