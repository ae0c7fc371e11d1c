// The in-memory backend: the same `Netlink` interface over a model of the kernel, so plugin logic can
// be unit-tested without root. Ops apply in order and stop at the first failure, like `ip -batch`.
import { MISSING_ERRNOS, NetlinkError } from '../errors.js';
import { describeOp, type Engine, NetnsHandle, type Op, type Read, type ReadResult } from '../ops.js';
import {
  LINK_KINDS,
  type Link,
  type LinkKind,
  type Netlink,
  type NetnsOps,
  type TempNetns,
} from '../types.js';
import { checkIfName, checkNetnsName, checkNetnsPath, parseIp } from '../validate.js';
import {
  addIngress,
  addLink,
  addRedirect,
  addVlan,
  delLink,
  delQdisc,
  delVlan,
  moveLink,
  removeNetns,
  renameLink,
  setLink,
  setTbf,
} from './links.js';
import {
  addAddr,
  addRule,
  appendRoute,
  delAddr,
  delRoute,
  delRule,
  ecmpRoute,
  getSysctl,
  linkUp,
  putRoute,
  setSysctl,
  viewRoutes,
} from './routing.js';
import {
  byName,
  fail,
  type MNetns,
  ModelError,
  type MState,
  mustLink,
  newLink,
  newNetns,
  toNetlinkError,
  viewAddrs,
  viewLink,
  viewQdiscs,
} from './state.js';

/** Options for the memory backend. */
export interface MemoryNetlinkOptions {
  /** Link kinds the simulated kernel supports; default all (pass a subset to test skip paths). */
  kinds?: readonly LinkKind[] | undefined;
  /** Physical links present and up in the host netns; default ['eth0']. */
  hostLinks?: readonly string[] | undefined;
  /** Whether the simulated kernel has bridge VLAN filtering; default true. */
  bridgeVlans?: boolean | undefined;
  /** Extra global sysctls (relative path → default value) the model should know. */
  sysctls?: Record<string, string> | undefined;
  /**
   * Awaited before each write the model applies, with the write described ("create veth link …")
   * and the netns path. Tests simulate a process killed at any point of a call by returning a
   * promise that never settles.
   */
  beforeOp?: ((write: string, netns: string) => void | Promise<void>) | undefined;
}

/** A snapshot of one simulated netns, for assertions. */
export interface MemoryNetnsState {
  links: Link[];
  routes: ReturnType<typeof viewRoutes>;
}

/** The memory backend plus helpers to set up and inspect the simulated kernel. */
export interface MemoryNetlink extends Netlink {
  readonly backend: 'memory';
  /** Create a netns at an arbitrary path (as a runtime would before calling a plugin). */
  addNetns(path: string): void;
  /** Add a physical (kind-less) link, up, to a netns (default host). */
  addPhysicalLink(name: string, opts?: { netns?: string; mtu?: number; mac?: string }): void;
  /** Make IPv6 DAD fail for `ip` on whichever link carries it in `netns`. */
  failDad(netns: string, ip: string): void;
  /** Paths of every simulated netns. */
  netnsPaths(): string[];
  /** Links and main-table routes of a netns (both families). */
  inspect(netns?: string): MemoryNetnsState;
}

const HOST = '/proc/1/ns/net';

class MemoryEngine implements Engine {
  constructor(
    private readonly st: MState,
    private readonly beforeOp?: MemoryNetlinkOptions['beforeOp'],
  ) {}

  private ns(path: string): MNetns {
    return this.st.netns.get(path) ?? fail('ENOENT', `Cannot open network namespace "${path}"`);
  }

  async run(path: string, ops: readonly Op[], reads: readonly Read[]): Promise<ReadResult[]> {
    for (const op of ops) {
      if (this.beforeOp) await this.beforeOp(describeOp(op), path);
      try {
        this.apply(this.ns(path), op);
      } catch (e) {
        if (!(e instanceof ModelError)) throw e;
        const tolerated =
          (op.ok === 'exists' && e.errno === 'EEXIST') ||
          (op.ok === 'missing' && MISSING_ERRNOS.has(e.errno));
        if (!tolerated) throw toNetlinkError(e, describeOp(op), path);
      }
    }
    return reads.map((r) => {
      try {
        return this.read(this.ns(path), r);
      } catch (e) {
        if (e instanceof ModelError)
          throw toNetlinkError(e, r.t === 'sysctl' ? `read /proc/sys/${r.key}` : `list ${r.t}`, path);
        throw e;
      }
    });
  }

  private apply(ns: MNetns, op: Op): unknown {
    const st = this.st;
    switch (op.t) {
      case 'link-add':
        return addLink(st, ns, op.spec);
      case 'link-del':
        return delLink(st, ns, op.name);
      case 'link-set':
        return setLink(st, ns, op.name, op.set);
      case 'link-rename':
        return renameLink(ns, op.name, op.newName);
      case 'link-move':
        return moveLink(st, ns, op.name, op.netns);
      case 'addr-add':
        return addAddr(ns, op.link, op.cidr, op.noDad);
      case 'addr-del':
        return delAddr(ns, op.link, op.cidr);
      case 'route-add':
        return putRoute(ns, op.route, false);
      case 'route-replace':
        return putRoute(ns, op.route, true);
      case 'route-append':
        return appendRoute(ns, op.route);
      case 'route-ecmp':
        return ecmpRoute(ns, op.route);
      case 'route-del':
        return delRoute(ns, op.route);
      case 'rule-add':
        return addRule(ns, op.rule);
      case 'rule-del':
        return delRule(ns, op.rule);
      case 'sysctl-set':
        return setSysctl(st, ns, op.key, op.value);
      case 'tbf':
        return setTbf(ns, op.link, op.spec);
      case 'ingress-add':
        return addIngress(ns, op.link);
      case 'redirect':
        return addRedirect(ns, op.link, op.to);
      case 'qdisc-del':
        return delQdisc(ns, op.link, op.which);
      case 'vlan-add':
        return addVlan(st, ns, op.link, op.vid, op);
      case 'vlan-del':
        return delVlan(ns, op.link, op.vid);
    }
  }

  private read(ns: MNetns, r: Read): ReadResult {
    switch (r.t) {
      case 'links':
        return [...ns.links.values()].sort((a, b) => a.index - b.index).map(viewLink);
      case 'addrs':
        return viewAddrs(ns);
      case 'routes':
        return viewRoutes(ns, r.family, r.table);
      case 'rules':
        return ns.rules.filter((x) => x.family === r.family).map((x) => ({ ...x }));
      case 'sysctl':
        return `${getSysctl(this.st, ns, r.key)}\n`;
      case 'qdiscs':
        return viewQdiscs(ns);
      case 'redirects':
        return mustLink(ns, r.link)
          .tc.redirects.filter((t) => t.ns.links.get(t.index) === t)
          .map((t) => t.name);
      case 'vlans':
        return [...mustLink(ns, r.link).vlans.entries()]
          .sort(([a], [b]) => a - b)
          .map(([vid, f]) => ({ vid, pvid: f.pvid, untagged: f.untagged }));
    }
  }
}

/** Creates the in-memory backend; the host netns holds `lo` and the `hostLinks` (default eth0). */
export function memoryNetlink(opts: MemoryNetlinkOptions = {}): MemoryNetlink {
  const st: MState = {
    netns: new Map(),
    hostPath: HOST,
    kinds: new Set(opts.kinds ?? LINK_KINDS),
    bridgeVlans: opts.bridgeVlans ?? true,
    extraSysctls: { ...opts.sysctls },
  };
  const engine = new MemoryEngine(st, opts.beforeOp);
  const host = newNetns(HOST);
  st.netns.set(HOST, host);
  let counter = 0;

  const resolve = (path: string | undefined): string => {
    if (path === undefined || path === '/proc/self/ns/net') return HOST;
    return checkNetnsPath(path);
  };
  // Like the kernel (devconf_inherit_init_net=0), new namespaces inherit IPv4 settings from the host.
  const child = (path: string): MNetns => {
    const ns = newNetns(path);
    for (const [k, v] of host.sysctl) if (k.startsWith('net/ipv4/')) ns.sysctl.set(k, v);
    return ns;
  };
  const mustNs = (path: string | undefined): MNetns => {
    const ns = st.netns.get(resolve(path));
    if (!ns) throw new NetlinkError('ENOENT', 'open netns', path ?? HOST);
    return ns;
  };
  const addPhysical = (name: string, o: { netns?: string; mtu?: number; mac?: string } = {}): void => {
    const ns = mustNs(o.netns);
    checkIfName(name);
    if (byName(ns, name)) throw new NetlinkError('EEXIST', `add physical link ${name}`, ns.path);
    const l = newLink(ns, name, undefined, o.mtu ?? 1500, o.mac);
    ns.links.set(l.index, l);
    linkUp(l);
  };
  for (const n of opts.hostLinks ?? ['eth0']) addPhysical(n);

  const self: MemoryNetlink = {
    backend: 'memory',
    hostNetns: HOST,
    open(path?: string): NetnsOps {
      return new NetnsHandle(resolve(path), engine);
    },
    async inNetns(path, fn) {
      const ns = resolve(path);
      if (!st.netns.has(ns)) throw new NetlinkError('ENOENT', `open netns ${ns}`, ns);
      const h = new NetnsHandle(ns, engine);
      const out = await fn(h);
      await h.flush();
      return out;
    },
    async netnsExists(path) {
      return st.netns.has(resolve(path));
    },
    async createNetns(name?: string): Promise<TempNetns> {
      const n = checkNetnsName(name ?? `cnikit-mem-${++counter}`);
      const path = `/var/run/netns/${n}`;
      if (st.netns.has(path)) throw new NetlinkError('EEXIST', `create netns ${n}`, path);
      st.netns.set(path, child(path));
      return { name: n, path, remove: () => self.removeNetns(path) };
    },
    async removeNetns(path: string) {
      const ns = st.netns.get(resolve(path));
      if (ns === host) throw new NetlinkError('EINVAL', 'remove the host netns', path);
      if (ns) removeNetns(st, ns);
    },
    async supportedLinkKinds() {
      return st.kinds as ReadonlySet<LinkKind>;
    },
    async supportsBridgeVlans() {
      return st.bridgeVlans;
    },
    addNetns(path: string) {
      if (!st.netns.has(resolve(path))) st.netns.set(path, child(path));
    },
    addPhysicalLink: addPhysical,
    failDad(netns: string, ip: string) {
      const want = parseIp(ip).ip;
      const ns = st.netns.get(resolve(netns));
      for (const l of ns?.links.values() ?? [])
        for (const a of l.addrs)
          if (a.ip === want) {
            a.tentative = true;
            a.dadFailed = true;
          }
    },
    netnsPaths: () => [...st.netns.keys()],
    inspect(netns?: string) {
      const ns = mustNs(netns);
      return {
        links: [...ns.links.values()].sort((a, b) => a.index - b.index).map(viewLink),
        routes: [...viewRoutes(ns, 4, 254), ...viewRoutes(ns, 6, 254)],
      };
    },
  };
  return self;
}
