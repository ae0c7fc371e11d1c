// The native engine's core: runs a queue of ops and reads against a netns over one NETLINK_ROUTE
// socket, in-process and synchronously. One flush costs one setns round trip (none for the
// process's own netns, whose socket is kept open) and one request per op; sysctls are file writes
// made while the thread is inside the netns. Requests go one at a time rather than as one
// multi-message send: the kernel carries on with the rest of a batch after a failed message, and
// the queue's contract is to stop at the first failure.
//
// Loaded on the first flush only (engine.ts imports it dynamically; `cni-kit build` puts it in a
// file of its own), so a plugin call that never touches the kernel does not even parse it. It
// defines no class a caller could test with instanceof: failures leave as plain data and the
// NetlinkError is made by engine.ts.
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { ERRNO_NAMES } from '../../sys/errno.js';
import type { Libc } from '../../sys/libc.js';
import { ERRNOS, type Errno, errnoFromText, fsErrno } from '../errno.js';
import type { Op, Read, ReadResult } from '../ops.js';
import type { Link } from '../types.js';
import { type BridgeVlanOpts, parseVlans, vlanAdd, vlanDel, vlanDump } from './bridge-vlan.js';
import {
  linkAdd,
  linkDel,
  linkDump,
  linkGetByName,
  linkIdentity,
  linkMove,
  linkRename,
  linkSet,
  parseLinks,
} from './link.js';
import type { NlWriter } from './nlmsg.js';
import {
  addrAdd,
  addrDel,
  addrDump,
  parseAddrs,
  parseRoutes,
  parseRules,
  routeDump,
  routeMsg,
  ruleDump,
  ruleMsg,
} from './route.js';
import { KernelError, RtnlSocket } from './socket.js';
import {
  filterDump,
  ingressAdd,
  parseQdiscs,
  parseRedirects,
  qdiscDel,
  qdiscDelMissing,
  qdiscDump,
  redirectAdd,
  tbfReplace,
} from './tc.js';
import { createTuntap } from './tuntap.js';

const KNOWN: ReadonlySet<string> = new Set<string>(ERRNOS);

function errnoName(e: KernelError): Errno {
  // tc answers EINVAL for a parent qdisc that is not there; its message says what it means, and
  // callers (and the iproute2 engine, which reads the same message) treat it as missing.
  if (e.errno === 22 && e.extack && /doesn'?t exists?|does not exist|cannot find/i.test(e.extack))
    return 'ENOENT';
  const name = ERRNO_NAMES[e.errno];
  if (name && KNOWN.has(name)) return name as Errno;
  // An errno outside the SDK's set (ELOOP for a bridge enslaved to a bridge, …): classify the
  // kernel's message the way the iproute2 engine classifies the same text.
  return errnoFromText(e.extack ?? '');
}

/** Text for the error's detail: the kernel's own message when it sent one, and the errno. */
function detailOf(e: KernelError): string {
  const name = ERRNO_NAMES[e.errno] ?? `errno ${e.errno}`;
  return e.extack ? `kernel: ${e.extack} (${name})` : `kernel: ${name}`;
}

/** A failure of op `index` of the slice, or of a read (index < 0: read -index-1). */
export interface CoreFailure {
  readonly coreFailure: true;
  readonly index: number;
  readonly errno: Errno;
  readonly detail: string;
}

function failure(index: number, errno: Errno, detail: string): CoreFailure {
  return { coreFailure: true, index, errno, detail };
}

/** True for what `NativeCore.flush` throws when an op or read fails. */
export function isCoreFailure(e: unknown): e is CoreFailure {
  return typeof e === 'object' && e !== null && (e as { coreFailure?: unknown }).coreFailure === true;
}

/** Runs `fn` inside the netns at `path` (synchronously) and back; supplied by engine.ts. */
export type Enter = <T>(path: string, fn: () => T) => T;

function fsFailure(index: number, e: unknown, sysctlWrite: boolean): CoreFailure {
  return failure(index, fsErrno(e, sysctlWrite), (e as Error).message);
}

/**
 * Per-flush state: the socket, descriptors of the other namespaces the ops name (opened before the
 * thread enters the target netns: there, `/proc/<own pid>/ns/net` would name the target itself),
 * and a name → ifindex cache dropped whenever links change.
 */
class Session {
  private names = new Map<string, number>();
  constructor(
    readonly sock: RtnlSocket,
    readonly netns: string,
    private readonly fds: ReadonlyMap<string, number>,
    readonly libc: Libc,
  ) {}

  /** The descriptor opened for netns `path` (IFLA_NET_NS_FD). */
  fd(path: string): number {
    const fd = this.fds.get(path);
    if (fd === undefined) throw new KernelError(2, `cannot open netns ${path}`);
    return fd;
  }

  index(name: string): number {
    const hit = this.names.get(name);
    if (hit !== undefined) return hit;
    const [m] = this.sock.dump(linkGetByName(name));
    if (!m) throw new KernelError(19, `no link named ${name}`);
    const { index } = linkIdentity(m);
    this.names.set(name, index);
    return index;
  }
  forget(): void {
    this.names.clear();
  }
  req(w: NlWriter): void {
    this.sock.request(w);
  }
}

/** The other namespaces the ops name (link-add netns / peer netns, link-move target). */
function netnsPaths(ops: readonly Op[]): string[] {
  const out = new Set<string>();
  for (const op of ops) {
    if (op.t === 'link-move') out.add(op.netns);
    if (op.t === 'link-add') {
      if (op.spec.netns !== undefined) out.add(op.spec.netns);
      if (op.spec.kind === 'veth' && op.spec.peerNetns !== undefined) out.add(op.spec.peerNetns);
    }
  }
  return [...out];
}

function runOp(s: Session, op: Op): void {
  switch (op.t) {
    case 'link-add': {
      const spec = op.spec;
      if (spec.kind === 'tap' || spec.kind === 'tun') {
        addTuntap(s, spec);
        return;
      }
      const netnsFd = spec.netns !== undefined ? s.fd(spec.netns) : undefined;
      const peerNetnsFd =
        spec.kind === 'veth' && spec.peerNetns !== undefined ? s.fd(spec.peerNetns) : undefined;
      const parentIndex = 'parent' in spec && spec.parent ? s.index(spec.parent) : undefined;
      try {
        s.req(linkAdd(spec, { parentIndex, netnsFd, peerNetnsFd }));
      } finally {
        s.forget();
      }
      return;
    }
    case 'link-del':
      s.req(linkDel(s.index(op.name)));
      s.forget();
      return;
    case 'link-set': {
      const index = s.index(op.name);
      const master = op.set.master ? s.index(op.set.master) : undefined;
      for (const w of linkSet(index, op.set, master)) s.req(w);
      return;
    }
    case 'link-rename':
      s.req(linkRename(s.index(op.name), op.newName));
      s.forget();
      return;
    case 'link-move':
      try {
        s.req(linkMove(s.index(op.name), s.fd(op.netns)));
      } finally {
        s.forget();
      }
      return;
    case 'addr-add':
      s.req(addrAdd(s.index(op.link), op.cidr, op.family, { noDad: op.noDad, replace: op.ok === 'exists' }));
      return;
    case 'addr-del':
      s.req(addrDel(s.index(op.link), op.cidr, op.family));
      return;
    case 'route-add':
    case 'route-replace':
    case 'route-append':
    case 'route-ecmp':
    case 'route-del': {
      const oif = op.route.dev ? s.index(op.route.dev) : undefined;
      const verb = op.t.slice(6) as 'add' | 'replace' | 'append' | 'ecmp' | 'del';
      s.req(routeMsg(verb, op.route, oif));
      return;
    }
    case 'rule-add':
    case 'rule-del':
      s.req(ruleMsg(op.t === 'rule-add', op.rule));
      return;
    case 'sysctl-set':
      writeFileSync(`/proc/sys/${op.key}`, op.value);
      return;
    case 'tbf':
      s.req(tbfReplace(s.index(op.link), op.spec));
      return;
    case 'ingress-add':
      s.req(ingressAdd(s.index(op.link)));
      return;
    case 'redirect':
      s.req(redirectAdd(s.index(op.link), s.index(op.to)));
      return;
    case 'qdisc-del':
      try {
        s.req(qdiscDel(s.index(op.link), op.which));
      } catch (e) {
        // An ingress qdisc deleted twice answers EINVAL "Invalid handle": it is not there.
        if (e instanceof KernelError && qdiscDelMissing(op.which, e)) throw new KernelError(2, e.extack);
        throw e;
      }
      return;
    case 'vlan-add': {
      const o: BridgeVlanOpts = { pvid: op.pvid, untagged: op.untagged, self: op.self };
      s.req(vlanAdd(s.index(op.link), op.vid, o));
      return;
    }
    case 'vlan-del':
      s.req(vlanDel(s.index(op.link), op.vid, { self: op.self }));
      return;
  }
}

/** A tun/tap through /dev/net/tun, then its MTU and MAC; a failure there deletes it again. */
function addTuntap(s: Session, spec: Extract<Op, { t: 'link-add' }>['spec'] & { kind: 'tap' | 'tun' }): void {
  s.forget();
  createTuntap(s.libc, spec);
  if (spec.mtu === undefined && spec.mac === undefined) return;
  const index = s.index(spec.name);
  try {
    for (const w of linkSet(index, { mtu: spec.mtu, mac: spec.mac }, undefined)) s.req(w);
  } catch (e) {
    // `ip link add` with a bad MTU creates nothing; keep that all-or-nothing here too.
    try {
      s.req(linkDel(index));
    } finally {
      s.forget();
    }
    throw e;
  }
}

function runRead(s: Session, r: Read, links: () => Link[]): ReadResult {
  const nameOf = (i: number) => links().find((l) => l.index === i)?.name;
  switch (r.t) {
    case 'links':
      return links();
    case 'addrs':
      return parseAddrs(s.sock.dump(addrDump()), (i) => nameOf(i) ?? `if${i}`);
    case 'routes':
      return parseRoutes(s.sock.dump(routeDump(r.family)), r.family, r.table, nameOf);
    case 'rules':
      return parseRules(s.sock.dump(ruleDump(r.family)), r.family);
    case 'qdiscs':
      return parseQdiscs(s.sock.dump(qdiscDump()), nameOf);
    case 'redirects':
      return parseRedirects(s.sock.dump(filterDump(s.index(r.link))), nameOf);
    case 'vlans':
      return parseVlans(s.sock.dump(vlanDump()), s.index(r.link));
    case 'sysctl':
      return readFileSync(`/proc/sys/${r.key}`, 'utf8');
  }
}

/** The in-process engine over rtnetlink; spawns nothing. */
export class NativeCore {
  private ownSocket: RtnlSocket | undefined;

  constructor(
    private readonly libc: Libc,
    readonly ownNetns: string,
    private readonly enter: Enter,
  ) {}

  /** Runs ops then reads; throws a CoreFailure (plain data) at the first failure. */
  flush(netns: string, ops: readonly Op[], reads: readonly Read[]): ReadResult[] {
    if (ops.length === 0 && reads.length === 0) return [];
    const fds = new Map<string, number>();
    try {
      for (const path of netnsPaths(ops)) {
        try {
          fds.set(path, openSync(path, 'r'));
        } catch {
          // Left out: the op that names it fails with ENOENT in its turn, after the ops before it.
        }
      }
      if (netns === this.ownNetns) {
        this.ownSocket ??= new RtnlSocket(this.libc);
        return this.work(this.ownSocket, netns, fds, ops, reads);
      }
      return this.enter(netns, () => {
        const sock = new RtnlSocket(this.libc);
        try {
          return this.work(sock, netns, fds, ops, reads);
        } finally {
          sock.close();
        }
      });
    } finally {
      for (const fd of fds.values()) closeSync(fd);
    }
  }

  private work(
    sock: RtnlSocket,
    netns: string,
    fds: ReadonlyMap<string, number>,
    ops: readonly Op[],
    reads: readonly Read[],
  ): ReadResult[] {
    const s = new Session(sock, netns, fds, this.libc);
    ops.forEach((op, i) => {
      try {
        runOp(s, op);
      } catch (e) {
        if (e instanceof KernelError) throw failure(i, errnoName(e), detailOf(e));
        if (op.t === 'sysctl-set' && (e as { code?: string }).code) throw fsFailure(i, e, true);
        throw e;
      }
    });
    let cached: Link[] | undefined;
    const links = () => {
      cached ??= parseLinks(sock.dump(linkDump()));
      return cached;
    };
    return reads.map((r, i) => {
      try {
        return runRead(s, r, links);
      } catch (e) {
        if (e instanceof KernelError) throw failure(-i - 1, errnoName(e), detailOf(e));
        if (r.t === 'sysctl' && (e as { code?: string }).code) throw fsFailure(-i - 1, e, false);
        throw e;
      }
    });
  }
}
