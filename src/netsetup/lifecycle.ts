// The parts of ADD, CHECK, GC and STATUS that every main plugin with a container interface and an
// optional `ipam` block shares: an undo log so a failed ADD leaves nothing behind (IPAM addresses
// included), the result layout, the prevResult comparison, and IPAM pass-through for GC/STATUS.
// A plugin supplies only what is its own: how to make the link, how to undo it, its kind checks.
import type { Link, Netlink } from '../netlink/types.js';
import type { PluginContext, PluginHandlers } from '../plugin/context.js';
import { ipamConfigured } from '../spec/config.js';
import { CniError, ErrorCode } from '../spec/errors.js';
import type { DNS, Interface, Result } from '../spec/result/types.js';
import { CURRENT_VERSION } from '../spec/version.js';
import { checkInterfaceIps, checkRoutes, ipsOfInterface } from './configure.js';
import { deleteLinkInNetns } from './links.js';

/** The undo log of one ADD, handed to the body of `addWithRollback`. */
export interface AddRollback {
  /** Registers how to undo the step just done; it runs (newest first) only if the ADD fails later. */
  onRollback(undo: () => unknown): void;
  /** IPAM ADD when the config has an `ipam` block, else undefined; a later failure releases the addresses. */
  ipamAdd(): Promise<Result | undefined>;
}

/**
 * Runs the body of an ADD. When it throws, every registered undo step runs, newest first; a step
 * that fails is logged as "<plugin>: rollback after failed ADD: …" and the next one still runs.
 * The body's own error is rethrown, because that is what the runtime must see.
 */
export async function addWithRollback<C, T>(
  ctx: PluginContext<C>,
  plugin: string,
  body: (tx: AddRollback) => Promise<T>,
): Promise<T> {
  const undo: Array<() => unknown> = [];
  const tx: AddRollback = {
    onRollback: (step) => {
      undo.push(step);
    },
    async ipamAdd() {
      if (!ipamConfigured(ctx.config)) return undefined;
      const r = await ctx.ipam.add();
      undo.push(() => ctx.ipam.del());
      return r;
    },
  };
  try {
    return await body(tx);
  } catch (e) {
    for (const step of undo.reverse()) {
      try {
        await step();
      } catch (u) {
        ctx.log(`${plugin}: rollback after failed ADD: ${String(u)}`);
      }
    }
    throw e;
  }
}

/**
 * The ADD result of a plugin: its `interfaces`, the IPAM result's IPs pointed at interface `index`,
 * IPAM's routes, and DNS (the config's `dns` replaces IPAM's when it is set). Without an IPAM
 * result the attachment is L2-only: no `ips` key at all.
 */
export function attachmentResult(
  config: { dns?: DNS },
  ipam: Result | undefined,
  interfaces: Interface[],
  index: number,
): Result {
  const { cniVersion: _v, interfaces: _i, ips, ...rest } = ipam ?? { cniVersion: CURRENT_VERSION };
  const result: Result = {
    cniVersion: CURRENT_VERSION,
    interfaces,
    ...(ipam ? { ips: (ips ?? []).map((ip) => ({ ...ip, interface: index })) } : {}),
    ...rest,
  };
  if (config.dns && Object.keys(config.dns).length) result.dns = config.dns;
  return result;
}

/** The prevResult of a CHECK, or code 7 naming the missing field. */
export function requirePrevResult<C>(ctx: PluginContext<C>): Result {
  const prev = ctx.config.prevResult;
  if (!prev) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      'prevResult: missing; CHECK needs the result of ADD',
      'pass the result of ADD as prevResult (the runtime does this for CHECK)',
    );
  }
  return prev;
}

/** What only the plugin knows about its container interface, for `checkAttachment`. */
export interface AttachmentCheck {
  /** The link kind the interface must have ('macvlan', 'veth', …); omitted: any kind. */
  kind?: string | undefined;
  /** Compare the link's MAC with prevResult's; default true (ipvlan and vlan follow the master's MAC). */
  mac?: boolean | undefined;
  /** Link attributes the config fixes (e.g. `{ macvlanMode: 'bridge' }`); one the backend does not report is skipped. */
  expect?: Partial<Pick<Link, 'macvlanMode' | 'bcQueueLen' | 'ipvlanMode' | 'vlanId'>>;
}

const withArticle = (kind: string): string => `${/^[aeiou]/.test(kind) ? 'an' : 'a'} ${kind}`;

/**
 * CHECK of the container interface (CNI_IFNAME in CNI_NETNS) against prevResult: IPAM CHECK when
 * configured, the interface listed in prevResult (code 7 otherwise), and, in the netns, the link
 * present with the expected kind, MAC and attributes and with prevResult's addresses and routes
 * (code 999 naming the difference). Returns the live link for further plugin-specific checks.
 */
export async function checkAttachment<C>(
  ctx: PluginContext<C>,
  netlink: Netlink,
  opts: AttachmentCheck = {},
): Promise<Link> {
  const prev = requirePrevResult(ctx);
  if (ipamConfigured(ctx.config)) await ctx.ipam.check();
  const { ifname, netns } = ctx;
  const idx = (prev.interfaces ?? []).findIndex((i) => i.name === ifname && i.sandbox === netns);
  if (idx < 0) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `prevResult: no interface ${ifname} in ${netns} among ${JSON.stringify((prev.interfaces ?? []).map((i) => i.name))}`,
      'pass the result of the ADD for this CNI_IFNAME and CNI_NETNS',
    );
  }
  const fail = (what: string) => new CniError(ErrorCode.Internal, `CHECK: ${ifname} in ${netns} ${what}`);
  return netlink.inNetns(netns, async (ns) => {
    const link = await ns.findLink(ifname);
    if (!link) throw fail(opts.kind ? `is missing (expected ${withArticle(opts.kind)})` : 'is missing');
    if (opts.kind && link.kind !== opts.kind)
      throw fail(`is ${withArticle(link.kind ?? 'physical')} link, not ${withArticle(opts.kind)}`);
    const want = prev.interfaces?.[idx]?.mac;
    if (opts.mac !== false && want && want !== link.mac)
      throw fail(`has MAC ${link.mac}, prevResult says ${want}`);
    for (const [key, value] of Object.entries(opts.expect ?? {}) as Array<[keyof Link, unknown]>) {
      if (value !== undefined && link[key] !== undefined && link[key] !== value)
        throw fail(`has ${key} ${String(link[key])}, config says ${String(value)}`);
    }
    const ips = ipsOfInterface(prev, idx);
    await checkInterfaceIps(ns, ifname, ips);
    await checkRoutes(ns, prev.routes ?? [], ips, ifname);
    return link;
  });
}

/**
 * DEL of an attachment whose container interface the plugin created: IPAM DEL when configured,
 * then CNI_IFNAME deleted in CNI_NETNS when it is a link of `kind` (never `lo`, never an interface
 * the container had before). Missing addresses, links or netns are success.
 */
export async function delAttachment<C>(
  ctx: PluginContext<C>,
  netlink: Netlink,
  opts: { kind?: string | undefined } = {},
): Promise<void> {
  if (ipamConfigured(ctx.config)) await ctx.ipam.del();
  await deleteLinkInNetns(netlink, ctx.netns, ctx.ifname, { kind: opts.kind, log: (m) => ctx.log(m) });
}

/** GC and STATUS handlers that pass through to the config's IPAM (no-ops without `ipam`); spread them into a PluginSpec. */
export function ipamPassthrough<C>(): Required<Pick<PluginHandlers<C>, 'gc' | 'status'>> {
  return {
    async gc(ctx) {
      if (ipamConfigured(ctx.config)) await ctx.ipam.gc();
    },
    async status(ctx) {
      if (ipamConfigured(ctx.config)) await ctx.ipam.status();
    },
  };
}
