// The queue both backends share: `NetnsHandle` validates and records writes as plain `Op` data and asks
// an `Engine` to run them (plus reads) in one go. Backends differ only in how an Engine executes.
import { type Errno, MISSING_ERRNOS, NetlinkError } from './errors.js';
import {
  checkEnumError,
  checkSettings,
  checkSpec,
  type NormRoute,
  normRoute,
  normRule,
} from './normalize.js';

export type { NormRoute } from './normalize.js';

import type {
  Address,
  AddressOptions,
  BridgeVlan,
  DadWaitOptions,
  Family,
  Link,
  LinkSettings,
  LinkSpec,
  NetnsOps,
  Qdisc,
  RouteEntry,
  RouteFilter,
  RouteSpec,
  RuleEntry,
  RuleSpec,
  TbfSpec,
} from './types.js';
import { checkIfName, checkInt, checkNetnsPath, parseCidr, sysctlPath, sysctlValue } from './validate.js';

/** One queued write, as data. `ok` names errnos that count as success for this op. */
export type Op = (
  | { t: 'link-add'; spec: LinkSpec }
  | { t: 'link-del'; name: string }
  | { t: 'link-set'; name: string; set: LinkSettings }
  | { t: 'link-rename'; name: string; newName: string }
  | { t: 'link-move'; name: string; netns: string }
  | { t: 'addr-add'; link: string; cidr: string; family: Family; noDad: boolean }
  | { t: 'addr-del'; link: string; cidr: string; family: Family }
  | { t: 'route-add' | 'route-replace' | 'route-append' | 'route-ecmp' | 'route-del'; route: NormRoute }
  | { t: 'rule-add' | 'rule-del'; rule: RuleSpec }
  | { t: 'sysctl-set'; key: string; value: string }
  | { t: 'tbf'; link: string; spec: TbfSpec }
  | { t: 'ingress-add'; link: string }
  | { t: 'redirect'; link: string; to: string }
  | { t: 'qdisc-del'; link: string; which: 'root' | 'ingress' }
  | { t: 'vlan-add'; link: string; vid: number; pvid: boolean; untagged: boolean; self: boolean }
  | { t: 'vlan-del'; link: string; vid: number; self: boolean }
) & { ok?: 'exists' | 'missing' | undefined };

/** One read. */
export type Read =
  | { t: 'links' }
  | { t: 'addrs' }
  | { t: 'routes'; family: Family; table: number }
  | { t: 'rules'; family: Family }
  | { t: 'sysctl'; key: string }
  | { t: 'qdiscs' }
  | { t: 'redirects'; link: string }
  | { t: 'vlans'; link: string };

/** What each read returns. */
export type ReadResult =
  | Link[]
  | Address[]
  | RouteEntry[]
  | RuleEntry[]
  | Qdisc[]
  | BridgeVlan[]
  | string[]
  | string;

/** Executes a queue of ops then reads in one netns; stops at the first failing op (honouring `ok`). */
export interface Engine {
  run(netns: string, ops: readonly Op[], reads: readonly Read[]): Promise<ReadResult[]>;
}

/** A failure inside an engine's run: op `index` of the slice it was given, or read -index-1 when negative. */
export interface QueueFailure {
  index: number;
  errno: Errno;
  detail: string;
}

/**
 * The queue's rules, shared by the engines: `once` runs a slice of ops then the reads and stops at
 * the first failure, which `failureOf` recognises. An op the caller tolerates (existsOk on
 * EEXIST, missingOk on a "missing" errno) is stepped over and the rest runs again; any other
 * failure becomes a NetlinkError naming the op (or read), the object and the netns.
 */
export async function runQueue(
  netns: string,
  ops: readonly Op[],
  reads: readonly Read[],
  once: (slice: readonly Op[]) => ReadResult[] | Promise<ReadResult[]>,
  failureOf: (e: unknown) => QueueFailure | undefined,
): Promise<ReadResult[]> {
  let start = 0;
  for (;;) {
    const slice = ops.slice(start);
    try {
      return await once(slice);
    } catch (e) {
      const f = failureOf(e);
      if (!f) throw e;
      if (f.index < 0) throw new NetlinkError(f.errno, describeRead(reads[-f.index - 1]!), netns, f.detail);
      const op = slice[f.index]!;
      const tolerated =
        (op.ok === 'exists' && f.errno === 'EEXIST') || (op.ok === 'missing' && MISSING_ERRNOS.has(f.errno));
      if (!tolerated) throw new NetlinkError(f.errno, describeOp(op), netns, f.detail);
      start += f.index + 1;
    }
  }
}

/** Human description of a read for error messages ("list links", "read /proc/sys/…"). */
export function describeRead(r: Read): string {
  return r.t === 'sysctl' ? `read /proc/sys/${r.key}` : `list ${r.t}`;
}

/** Human description of an op for error messages ("add address 10.0.0.2/24 to eth0"). */
export function describeOp(op: Op): string {
  switch (op.t) {
    case 'link-add': {
      const s = op.spec;
      const extra =
        s.kind === 'veth' ? ` with peer ${s.peerName}${s.peerNetns ? ` in ${s.peerNetns}` : ''}` : '';
      const parent = 'parent' in s && s.parent ? ` on ${s.parent}` : '';
      return `create ${s.kind} link ${s.name}${parent}${extra}${s.netns ? ` in ${s.netns}` : ''}`;
    }
    case 'link-del':
      return `delete link ${op.name}`;
    case 'link-set':
      return `set ${JSON.stringify(op.set)} on link ${op.name}`;
    case 'link-rename':
      return `rename link ${op.name} to ${op.newName}`;
    case 'link-move':
      return `move link ${op.name} to netns ${op.netns}`;
    case 'addr-add':
      return `add address ${op.cidr} to ${op.link}`;
    case 'addr-del':
      return `delete address ${op.cidr} from ${op.link}`;
    case 'route-add':
    case 'route-replace':
    case 'route-append':
    case 'route-del':
      return `${op.t.slice(6)} route ${routeText(op.route)}`;
    case 'route-ecmp':
      return `add (ecmp) route ${routeText(op.route)}`;
    case 'rule-add':
    case 'rule-del':
      return `${op.t.slice(5)} rule from ${op.rule.src ?? 'all'} table ${op.rule.table}`;
    case 'sysctl-set':
      return `write ${op.value} to /proc/sys/${op.key}`;
    case 'tbf':
      return `set tbf qdisc (${op.spec.rateBits} bit/s, burst ${op.spec.burstBytes} B) on ${op.link}`;
    case 'ingress-add':
      return `add ingress qdisc to ${op.link}`;
    case 'redirect':
      return `redirect ingress of ${op.link} to ${op.to}`;
    case 'qdisc-del':
      return `delete ${op.which} qdisc of ${op.link}`;
    case 'vlan-add':
      return `add bridge vlan ${op.vid}${op.pvid ? ' pvid' : ''}${op.untagged ? ' untagged' : ''} to ${op.link}`;
    case 'vlan-del':
      return `delete bridge vlan ${op.vid} from ${op.link}`;
  }
}

function routeText(r: NormRoute): string {
  const parts = [r.dst];
  if (r.gw) parts.push(`via ${r.gw}`);
  if (r.dev) parts.push(`dev ${r.dev}`);
  if (r.table) parts.push(`table ${r.table}`);
  if (r.metric !== undefined) parts.push(`metric ${r.metric}`);
  return parts.join(' ');
}

const MAIN_TABLE = 254;

/** The NetnsOps implementation both backends hand out. */
export class NetnsHandle implements NetnsOps {
  private queue: Op[] = [];
  constructor(
    readonly netns: string,
    private readonly engine: Engine,
  ) {}

  private push(op: Op): void {
    this.queue.push(op);
  }
  createLink(spec: LinkSpec, opts?: { existsOk?: boolean }): void {
    this.push({ t: 'link-add', spec: checkSpec(spec), ok: opts?.existsOk ? 'exists' : undefined });
  }
  deleteLink(name: string, opts?: { missingOk?: boolean }): void {
    this.push({ t: 'link-del', name: checkIfName(name), ok: opts?.missingOk ? 'missing' : undefined });
  }
  setLink(name: string, settings: LinkSettings): void {
    this.push({ t: 'link-set', name: checkIfName(name), set: checkSettings(name, settings) });
  }
  renameLink(name: string, newName: string): void {
    this.push({
      t: 'link-rename',
      name: checkIfName(name),
      newName: checkIfName(newName, 'new interface name'),
    });
  }
  moveLink(name: string, netns: string): void {
    this.push({ t: 'link-move', name: checkIfName(name), netns: checkNetnsPath(netns) });
  }
  addAddress(link: string, cidr: string, opts?: AddressOptions & { existsOk?: boolean }): void {
    const c = parseCidr(cidr, `address for ${link}`);
    this.push({
      t: 'addr-add',
      link: checkIfName(link),
      cidr: c.cidr,
      family: c.family,
      noDad: !!opts?.noDad,
      ok: opts?.existsOk ? 'exists' : undefined,
    });
  }
  deleteAddress(link: string, cidr: string, opts?: { missingOk?: boolean }): void {
    const c = parseCidr(cidr, `address for ${link}`);
    this.push({
      t: 'addr-del',
      link: checkIfName(link),
      cidr: c.cidr,
      family: c.family,
      ok: opts?.missingOk ? 'missing' : undefined,
    });
  }
  addRoute(route: RouteSpec, opts?: { existsOk?: boolean }): void {
    this.push({ t: 'route-add', route: normRoute(route), ok: opts?.existsOk ? 'exists' : undefined });
  }
  replaceRoute(route: RouteSpec): void {
    this.push({ t: 'route-replace', route: normRoute(route) });
  }
  appendRoute(route: RouteSpec): void {
    this.push({ t: 'route-append', route: normRoute(route) });
  }
  addRouteEcmp(route: RouteSpec): void {
    this.push({ t: 'route-ecmp', route: normRoute(route) });
  }
  deleteRoute(route: RouteSpec, opts?: { missingOk?: boolean }): void {
    this.push({ t: 'route-del', route: normRoute(route, true), ok: opts?.missingOk ? 'missing' : undefined });
  }
  addRule(rule: RuleSpec, opts?: { existsOk?: boolean }): void {
    this.push({ t: 'rule-add', rule: normRule(rule), ok: opts?.existsOk ? 'exists' : undefined });
  }
  deleteRule(rule: RuleSpec, opts?: { missingOk?: boolean }): void {
    this.push({ t: 'rule-del', rule: normRule(rule), ok: opts?.missingOk ? 'missing' : undefined });
  }
  setTbf(link: string, spec: TbfSpec): void {
    const s: TbfSpec = {
      rateBits: checkInt(spec.rateBits, `${link} tbf rateBits`, 8, Number.MAX_SAFE_INTEGER),
      burstBytes: checkInt(spec.burstBytes, `${link} tbf burstBytes`, 1, 0xffffffff),
      latencyMs: checkInt(spec.latencyMs, `${link} tbf latencyMs`, 1, 1_000_000),
    };
    this.push({ t: 'tbf', link: checkIfName(link), spec: s });
  }
  addIngressQdisc(link: string, opts?: { existsOk?: boolean }): void {
    this.push({ t: 'ingress-add', link: checkIfName(link), ok: opts?.existsOk ? 'exists' : undefined });
  }
  redirectIngress(link: string, to: string): void {
    this.push({ t: 'redirect', link: checkIfName(link), to: checkIfName(to, 'redirect target') });
  }
  deleteQdisc(link: string, which: 'root' | 'ingress', opts?: { missingOk?: boolean }): void {
    if (which !== 'root' && which !== 'ingress') throw checkEnumError('qdisc', which, "'root' or 'ingress'");
    this.push({
      t: 'qdisc-del',
      link: checkIfName(link),
      which,
      ok: opts?.missingOk ? 'missing' : undefined,
    });
  }
  addBridgeVlan(
    link: string,
    vid: number,
    opts?: { pvid?: boolean; untagged?: boolean; self?: boolean },
  ): void {
    this.push({
      t: 'vlan-add',
      link: checkIfName(link),
      vid: checkInt(vid, `${link} vlan`, 1, 4094),
      pvid: !!opts?.pvid,
      untagged: !!opts?.untagged,
      self: !!opts?.self,
    });
  }
  deleteBridgeVlan(link: string, vid: number, opts?: { self?: boolean; missingOk?: boolean }): void {
    this.push({
      t: 'vlan-del',
      link: checkIfName(link),
      vid: checkInt(vid, `${link} vlan`, 1, 4094),
      self: !!opts?.self,
      ok: opts?.missingOk ? 'missing' : undefined,
    });
  }
  setSysctl(key: string, value: string | number): void {
    this.push({ t: 'sysctl-set', key: sysctlPath(key), value: sysctlValue(value) });
  }

  private async exec(reads: Read[]): Promise<ReadResult[]> {
    const ops = this.queue;
    this.queue = [];
    if (ops.length === 0 && reads.length === 0) return [];
    return this.engine.run(this.netns, ops, reads);
  }
  async flush(): Promise<void> {
    await this.exec([]);
  }
  async links(): Promise<Link[]> {
    return (await this.exec([{ t: 'links' }]))[0] as Link[];
  }
  async findLink(nameOrIndex: string | number): Promise<Link | undefined> {
    const all = await this.links();
    return all.find((l) =>
      typeof nameOrIndex === 'number' ? l.index === nameOrIndex : l.name === nameOrIndex,
    );
  }
  async getLink(nameOrIndex: string | number): Promise<Link> {
    const l = await this.findLink(nameOrIndex);
    if (!l) throw new NetlinkError('ENODEV', `get link ${nameOrIndex}`, this.netns);
    return l;
  }
  async addresses(filter?: { link?: string; family?: Family }): Promise<Address[]> {
    const all = (await this.exec([{ t: 'addrs' }]))[0] as Address[];
    return all.filter(
      (a) => (!filter?.link || a.link === filter.link) && (!filter?.family || a.family === filter.family),
    );
  }
  async routes(filter?: RouteFilter): Promise<RouteEntry[]> {
    const table = filter?.table ?? MAIN_TABLE;
    const fams: Family[] = filter?.family ? [filter.family] : [4, 6];
    const res = await this.exec(fams.map((family) => ({ t: 'routes', family, table }) as Read));
    return (res as RouteEntry[][]).flat().filter((r) => !filter?.dev || r.dev === filter.dev);
  }
  async rules(family: Family): Promise<RuleEntry[]> {
    return (await this.exec([{ t: 'rules', family }]))[0] as RuleEntry[];
  }
  async qdiscs(link?: string): Promise<Qdisc[]> {
    const all = (await this.exec([{ t: 'qdiscs' }]))[0] as Qdisc[];
    return all.filter((q) => !link || q.link === link);
  }
  async ingressRedirects(link: string): Promise<string[]> {
    return (await this.exec([{ t: 'redirects', link: checkIfName(link) }]))[0] as string[];
  }
  async bridgeVlans(link: string): Promise<BridgeVlan[]> {
    return (await this.exec([{ t: 'vlans', link: checkIfName(link) }]))[0] as BridgeVlan[];
  }
  async getSysctl(key: string): Promise<string> {
    return ((await this.exec([{ t: 'sysctl', key: sysctlPath(key) }]))[0] as string).trim();
  }
  async waitDad(link: string, opts?: DadWaitOptions): Promise<void> {
    const timeout = opts?.timeoutMs ?? 5000;
    const interval = opts?.intervalMs ?? 50;
    const deadline = Date.now() + timeout;
    for (;;) {
      const addrs = await this.addresses({ link, family: 6 });
      const failed = addrs.find((a) => a.dadFailed);
      if (failed) throw new NetlinkError('EADDRINUSE', `DAD for ${failed.cidr} on ${link}`, this.netns);
      if (!addrs.some((a) => a.tentative)) return;
      if (Date.now() >= deadline)
        throw new NetlinkError('ETIMEDOUT', `wait ${timeout} ms for IPv6 DAD on ${link}`, this.netns);
      await new Promise((r) => setTimeout(r, interval));
    }
  }
}
