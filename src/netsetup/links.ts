// Link helpers several plugins share: a veth pair with a random host-side name, the interface of
// the default route, and "delete this interface in a netns that may already be gone".
import { isExists, isNotFound } from '../netlink/errors.js';
import type { Link, LinkSpec, Netlink, NetnsOps } from '../netlink/types.js';
import { CniError, ErrorCode } from '../spec/errors.js';

// node:crypto costs ~2 ms to load: only calls that hash or draw a random name pay for it.
const crypto = () => process.getBuiltinModule('node:crypto');

/** A random host-side veth name in the reference's format: "veth" + 8 hex digits. */
export function randomVethName(): string {
  return `veth${crypto().randomBytes(4).toString('hex')}`;
}

/** What createVethPair makes. */
export interface VethOptions {
  /** Container netns path. */
  netns: string;
  /** Container-side interface name. */
  ifname: string;
  mtu?: number | undefined;
  /** Container-side MAC. */
  mac?: string | undefined;
  /** Host-side name; default a random "vethXXXXXXXX" (retried on collision). */
  hostName?: string | undefined;
  /** Queues host-side work to run before the veth in the same batch (e.g. creating the bridge). */
  before?: ((ns: NetnsOps) => void) | undefined;
  /** Queues host-side work to run after the veth in the same batch (e.g. enslaving and setting it up). */
  after?: ((ns: NetnsOps, hostName: string) => void) | undefined;
}

/** The host end of a new veth pair plus the host's links as read right after the batch. */
export interface VethPair {
  host: Link;
  /** Every host link after the batch (callers find their bridge here without another read). */
  hostLinks: Link[];
}

/**
 * Creates a veth pair from the host side with its peer directly in the container netns, so the
 * container name never collides with a host link. The caller's `before`/`after` work and the
 * read-back share one batch (one process spawn on Linux). The container end is not read back:
 * callers read it after configuring it, again in one batch.
 */
export async function createVethPair(netlink: Netlink, opts: VethOptions): Promise<VethPair> {
  const host = netlink.open();
  for (let attempt = 0; ; attempt++) {
    const hostName = opts.hostName ?? randomVethName();
    opts.before?.(host);
    host.createLink({
      kind: 'veth',
      name: hostName,
      peerName: opts.ifname,
      peerNetns: opts.netns,
      ...(opts.mtu ? { mtu: opts.mtu, peerMtu: opts.mtu } : {}),
      ...(opts.mac ? { peerMac: opts.mac } : {}),
    });
    opts.after?.(host, hostName);
    let hostLinks: Link[];
    try {
      hostLinks = await host.links();
    } catch (e) {
      if (!isExists(e)) {
        // The caller's `after` work failed with the pair already made: take it down again (deleting
        // the host end removes the container end too) so a failed ADD leaves nothing behind.
        await netlink
          .inNetns(undefined, (ns) => ns.deleteLink(hostName, { missingOk: true }))
          .catch(() => {});
        throw e;
      }
      if (await host.findLink(hostName)) {
        if (opts.hostName || attempt >= 9) throw e;
        continue;
      }
      throw new CniError(
        ErrorCode.Internal,
        `container veth name "${opts.ifname}" already exists in ${opts.netns}`,
        'pick another CNI_IFNAME or delete the existing interface',
      );
    }
    const hostLink = hostLinks.find((l) => l.name === hostName);
    if (!hostLink)
      throw new CniError(ErrorCode.Internal, `veth ${hostName} vanished right after it was created`);
    return { host: hostLink, hostLinks };
  }
}

/**
 * Runs `fn` in `netns` when that netns still exists and resolves to its value; resolves to
 * undefined when there is no netns (not given, or the container is already gone), which DEL must
 * treat as success.
 */
export async function inNetnsIfExists<T>(
  netlink: Netlink,
  netns: string,
  fn: (ns: NetnsOps) => Promise<T> | T,
): Promise<T | undefined> {
  if (!netns || !(await netlink.netnsExists(netns))) return undefined;
  try {
    return await netlink.inNetns(netns, fn);
  } catch (e) {
    // The netns vanished between the check and the call: nothing left to do there.
    if (isNotFound(e) && !(await netlink.netnsExists(netns))) return undefined;
    throw e;
  }
}

/** What `deleteLinkInNetns` may delete. */
export interface DeleteLinkOptions {
  /**
   * The link kind the plugin creates ('veth', 'macvlan', …): a link of any other kind (one the
   * container had before, e.g. a CNI_IFNAME that an ADD refused because it existed) is left alone.
   */
  kind?: string | undefined;
  /** Logs why a link was left alone. */
  log?: ((msg: string) => void) | undefined;
}

/**
 * Deletes `ifname` in `netns`; a missing netns or link is success, as DEL requires. Never deletes
 * `lo`, nor, with `kind`, a link of another kind. Returns false when the netns was already gone.
 */
export async function deleteLinkInNetns(
  netlink: Netlink,
  netns: string,
  ifname: string,
  opts: DeleteLinkOptions = {},
): Promise<boolean> {
  const done = await inNetnsIfExists(netlink, netns, async (ns) => {
    if (ifname === 'lo' || opts.kind !== undefined) {
      const link = await ns.findLink(ifname);
      if (!link) return true;
      if (ifname === 'lo' || link.kind !== opts.kind) {
        opts.log?.(
          `left ${ifname} in ${netns} alone: it is ${link.kind ? `a ${link.kind}` : 'a physical or loopback'} link, which this plugin does not create`,
        );
        return true;
      }
    }
    ns.deleteLink(ifname, { missingOk: true });
    return true;
  });
  return done ?? false;
}

/** The interface the default route leaves through (IPv4 first, then IPv6), as the reference picks a master. */
export async function defaultRouteInterface(ns: NetnsOps): Promise<string> {
  for (const family of [4, 6] as const) {
    const routes = await ns.routes({ family });
    const def = routes.find((r) => (r.dst === '0.0.0.0/0' || r.dst === '::/0') && r.dev);
    if (def?.dev) return def.dev;
  }
  throw new CniError(
    ErrorCode.InvalidNetworkConfig,
    `master: not set and ${ns.netns} has no default route to take it from`,
    'set "master" to the parent interface, e.g. "eth0"',
  );
}

/** The link named `name` in `ns`, or a code 7 error naming the config field that referred to it. */
export async function requireLink(ns: NetnsOps, name: string, field: string): Promise<Link> {
  const link = await ns.findLink(name);
  if (!link) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `${field}: link ${JSON.stringify(name)} not found in ${ns.netns}`,
      `create it first or set ${field} to an existing interface`,
    );
  }
  return link;
}

/** Where and how to create a container interface that hangs off a master (macvlan, ipvlan, vlan). */
export interface SubLinkOptions {
  netns: string;
  ifname: string;
  /** The master lives in the container netns (`linkInContainer`), not in the host. */
  linkInContainer?: boolean | undefined;
}

/**
 * Creates a macvlan/ipvlan/vlan link for the container directly inside its netns under its final
 * name `ifname` (IFLA_NET_NS_FD on the create request: recent kernels check the name there, so a
 * host link of that name cannot clash). One request, no temporary name: a process killed at any
 * point leaves either nothing or CNI_IFNAME, which DEL removes. Kernels before 6.13 (Debian 12's
 * 6.1 among them) check the name in the caller's netns too and refuse with EEXIST when the host has
 * a link of that name (a master "eth0" and CNI_IFNAME "eth0"): then the link is created in the
 * container under a random temporary name and renamed there (a kill between the two leaves that
 * name in the container, which goes with its netns). Returns the link as read back.
 */
export async function createSubLink(
  netlink: Netlink,
  spec: Extract<LinkSpec, { kind: 'macvlan' | 'ipvlan' | 'vlan' }>,
  opts: SubLinkOptions,
): Promise<Link> {
  const want = { ...spec, name: opts.ifname };
  try {
    if (opts.linkInContainer) {
      await netlink.inNetns(opts.netns, (ns) => ns.createLink(want));
    } else {
      await netlink.inNetns(undefined, (ns) => ns.createLink({ ...want, netns: opts.netns }));
    }
  } catch (e) {
    // EEXIST may also be the master's (a VLAN id already taken): name the interface only if it is that.
    const taken =
      isExists(e) &&
      (await netlink.inNetns(opts.netns, (ns) => ns.findLink(opts.ifname)).catch(() => undefined));
    if (taken) {
      throw new CniError(
        ErrorCode.Internal,
        `interface "${opts.ifname}" already exists in ${opts.netns}`,
        'pick another CNI_IFNAME or delete the existing interface',
      );
    }
    const hostHasName =
      isExists(e) &&
      !opts.linkInContainer &&
      (await netlink.inNetns(undefined, (ns) => ns.findLink(opts.ifname)).catch(() => undefined));
    if (!hostHasName) throw e;
    await createRenamed(netlink, want, opts);
  }
  return netlink.inNetns(opts.netns, (ns) => ns.getLink(opts.ifname));
}

/** createSubLink's way on kernels that check a new link's name in the caller's netns too. */
async function createRenamed(
  netlink: Netlink,
  want: Extract<LinkSpec, { kind: 'macvlan' | 'ipvlan' | 'vlan' }>,
  opts: SubLinkOptions,
): Promise<void> {
  const tmp = `cnk${crypto().randomBytes(5).toString('hex')}`;
  await netlink.inNetns(undefined, (ns) => ns.createLink({ ...want, name: tmp, netns: opts.netns }));
  try {
    await netlink.inNetns(opts.netns, (ns) => ns.renameLink(tmp, opts.ifname));
  } catch (e) {
    await netlink.inNetns(opts.netns, (ns) => ns.deleteLink(tmp, { missingOk: true })).catch(() => {});
    throw e;
  }
}
