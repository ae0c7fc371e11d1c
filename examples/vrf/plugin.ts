// vrf: chained after a plugin that made the container interface, puts that interface into a VRF
// (an L3 master device whose routes live in a table of their own) inside the container, creating
// the VRF when it is missing. Enslaving cycles the interface, so, as the reference does, global
// IPv6 addresses the kernel dropped are added back and the interface's routes from the main table
// are re-created in the VRF's table. DEL releases the interface and removes the VRF once no
// interface uses it.
import {
  CniError,
  conf,
  ErrorCode,
  type Infer,
  type PluginContext,
  type PluginSpec,
  type Result,
  versionsFrom,
} from 'cni-kit';
import {
  type Address,
  type Link,
  type Netlink,
  NetlinkError,
  type NetnsOps,
  type RouteEntry,
  type RouteSpec,
} from 'cni-kit/netlink';
import { addWithRollback, inNetnsIfExists } from 'cni-kit/netsetup';
import { formatSubnet, parseCIDR } from 'cni-kit/spec';

/** The vrf plugin's own config fields. */
export const vrfConfig = conf.object({
  /** Name of the VRF device in the container; created when missing. */
  vrfname: conf.ifname().fix('set it to the VRF device name, e.g. "blue"'),
  /** Routing table of a VRF this call creates; 0 or unset: the lowest table no VRF in the netns uses. */
  table: conf.int(0, 0xffffffff).default(0),
});

/** The vrf plugin's config, parsed. */
export type VrfConf = Infer<typeof vrfConfig>;

/** What the plugin needs from the outside world. */
export interface VrfDeps {
  netlink: Netlink;
  /** Waits between polls for re-added IPv6 addresses to settle (default: a timer). */
  sleep?: ((ms: number) => Promise<void>) | undefined;
}

const MAIN_TABLE = 254;

function requirePrev(ctx: PluginContext<VrfConf>): Result {
  const prev = ctx.config.prevResult;
  if (prev) return prev;
  throw new CniError(
    ErrorCode.InvalidNetworkConfig,
    'prevResult: missing; vrf must run chained after a plugin that creates the interface',
    'list vrf after the interface plugin (e.g. bridge or macvlan) in a conflist',
  );
}

/** The lowest table id, from 1, that no VRF in `links` uses (the reference's choice). */
export function freeTable(links: readonly Link[]): number {
  const taken = new Set(links.filter((l) => l.kind === 'vrf').map((l) => l.vrfTable));
  let t = 1;
  while (taken.has(t)) t++;
  return t;
}

/** The VRF named `name`: undefined when missing, code 7 when the name belongs to another kind of link. */
function vrfOf(links: readonly Link[], name: string, field = 'vrfname'): Link | undefined {
  const l = links.find((x) => x.name === name);
  if (!l) return undefined;
  if (l.kind !== 'vrf')
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `${field}: ${JSON.stringify(name)} is ${l.kind ? `a ${l.kind}` : 'a physical'} link in the container, not a VRF`,
      'pick a vrfname no other interface in the container uses',
    );
  return l;
}

/** A route read back, as a spec for the same route in `table` (what `ip route replace ... table N` keeps). */
function inTable(r: RouteEntry, table: number): RouteSpec {
  const spec: RouteSpec = { dst: r.dst, family: r.family };
  if (table !== MAIN_TABLE) spec.table = table;
  if (r.gw) spec.gw = r.gw;
  if (r.dev) spec.dev = r.dev;
  if (r.metric !== undefined) spec.metric = r.metric;
  if (r.src) spec.src = r.src;
  if (r.mtu !== undefined) spec.mtu = r.mtu;
  if (r.family === 4 && (r.scope === 'link' || r.scope === 'host')) spec.scope = r.scope;
  return spec;
}

/** The routes enslaving takes away: main-table routes through `ifname` that the kernel does not re-create. */
function movableRoutes(routes: readonly RouteEntry[], ifname: string): RouteEntry[] {
  // Connected (proto kernel) routes come back by themselves in the VRF's table; multipath routes
  // have no single output interface and, as in the reference, stay where they are.
  return routes.filter(
    (r) =>
      r.dev === ifname &&
      !r.nexthops &&
      r.protocol !== 'kernel' &&
      r.type === 'unicast' &&
      r.scope !== 'host',
  );
}

const globalV6 = (addrs: readonly Address[]): Address[] =>
  addrs.filter((a) => a.family === 6 && a.scope === 'global');

/** What enslaving takes from an interface: its global IPv6 addresses and its main-table routes. */
interface Saved {
  v6: Address[];
  routes: RouteEntry[];
}

async function save(ns: NetnsOps, ifname: string): Promise<Saved> {
  return {
    v6: globalV6(await ns.addresses({ link: ifname })),
    routes: movableRoutes(await ns.routes({ table: MAIN_TABLE, dev: ifname }), ifname),
  };
}

/**
 * Puts back, in `table`, what the kernel's down/up cycle of `ifname` took: global IPv6 addresses
 * (lost unless keep_addr_on_down) and the saved routes.
 */
async function restore(
  ns: NetnsOps,
  ifname: string,
  table: number,
  saved: Saved,
  sleep: (ms: number) => Promise<void>,
): Promise<void> {
  const after = globalV6(await ns.addresses({ link: ifname }));
  const missing = saved.v6.filter((a) => !after.some((b) => b.ip === a.ip));
  for (const a of missing) ns.addAddress(ifname, a.cidr);
  if (missing.length) {
    // Gateways of the moved routes must be on-link in the table: wait (10 ms, doubling, about
    // 2.5 s in all, as the reference) for the re-added prefixes to have their routes there.
    const want = missing.filter((a) => a.prefixLength < 128);
    for (let i = 0; ; i++) {
      const have = await ns.routes({ family: 6, table, dev: ifname });
      if (want.every((a) => have.some((r) => r.protocol === 'kernel' && sameNet(r.dst, a)))) break;
      if (i === 8)
        throw new CniError(
          ErrorCode.Internal,
          `IPv6 addresses ${want.map((a) => a.cidr).join(', ')} re-added to ${ifname} have no route in table ${table} after 2.5 s`,
        );
      await sleep(10 * 2 ** i);
    }
  }
  for (const r of saved.routes) ns.replaceRoute(inTable(r, table));
  await ns.flush();
}

/** True when route destination `dst` is the prefix of address `a`. */
function sameNet(dst: string, a: Address): boolean {
  return formatSubnet(parseCIDR(a.cidr).subnet) === dst;
}

/** Builds the vrf plugin over a netlink backend. */
export function createVrfPlugin(deps: VrfDeps): PluginSpec<VrfConf> {
  const { netlink } = deps;
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));

  return {
    about: 'vrf (cni-kit): puts the container interface into a VRF',
    config: vrfConfig,
    supportedVersions: versionsFrom('0.3.1'),
    async add(ctx) {
      const prev = requirePrev(ctx);
      const { vrfname, table } = ctx.conf;
      return addWithRollback(ctx, 'vrf', async (tx) => {
        const links = await netlink.inNetns(ctx.netns, (ns) => ns.links());
        let vrf = vrfOf(links, vrfname);
        if (vrf && table !== 0 && vrf.vrfTable !== undefined && vrf.vrfTable !== table)
          throw new CniError(
            ErrorCode.InvalidNetworkConfig,
            `table: ${table} differs from table ${vrf.vrfTable} of the existing VRF ${vrfname}`,
            `omit table or set it to ${vrf.vrfTable}`,
          );
        const iface = links.find((l) => l.name === ctx.ifname);
        if (!iface)
          throw new CniError(
            ErrorCode.Internal,
            `interface "${ctx.ifname}" is not in ${ctx.netns}`,
            'run vrf after the plugin that creates the interface',
          );
        if (iface.master && iface.master !== vrfname)
          throw new CniError(
            ErrorCode.Internal,
            `interface ${ctx.ifname} already has a master: ${iface.master}`,
            'a link has one master: take it out of the bridge or VRF it is in, or use another interface',
          );
        if (!vrf) {
          const id = table || freeTable(links);
          await netlink
            .inNetns(ctx.netns, (ns) => ns.createLink({ kind: 'vrf', name: vrfname, table: id }))
            .catch((e: unknown) => {
              if (e instanceof NetlinkError && e.errno === 'EOPNOTSUPP')
                throw new CniError(
                  ErrorCode.Internal,
                  `this kernel cannot create VRF devices (${e.message})`,
                  'load the vrf module (CONFIG_NET_VRF) on the node',
                );
              throw e;
            });
          // Only a VRF this ADD created goes on rollback, and only while no port is in it.
          tx.onRollback(() =>
            netlink.inNetns(ctx.netns, async (ns) => {
              if (!(await ns.links()).some((l) => l.master === vrfname))
                ns.deleteLink(vrfname, { missingOk: true });
            }),
          );
          vrf = await netlink.inNetns(ctx.netns, async (ns) => {
            ns.setLink(vrfname, { up: true });
            return ns.getLink(vrfname);
          });
        }
        const vrfTable = vrf.vrfTable ?? table;
        if (iface.master !== vrfname) {
          const saved = await netlink.inNetns(ctx.netns, (ns) => save(ns, ctx.ifname));
          // Undo: release the interface, and put its addresses and routes back in the main table.
          tx.onRollback(() =>
            netlink.inNetns(ctx.netns, async (ns) => {
              ns.setLink(ctx.ifname, { master: null });
              await restore(ns, ctx.ifname, MAIN_TABLE, saved, sleep);
            }),
          );
          await netlink.inNetns(ctx.netns, async (ns) => {
            ns.setLink(ctx.ifname, { master: vrfname });
            await restore(ns, ctx.ifname, vrfTable, saved, sleep);
          });
        }
        return prev;
      });
    },
    async check(ctx) {
      requirePrev(ctx);
      const { vrfname, table } = ctx.conf;
      const links = await netlink.inNetns(ctx.netns, (ns) => ns.links());
      const vrf = vrfOf(links, vrfname);
      const fail = (what: string) => new CniError(ErrorCode.Internal, `CHECK: ${what}`);
      if (!vrf) throw fail(`VRF ${vrfname} is missing in ${ctx.netns}`);
      if (table !== 0 && vrf.vrfTable !== undefined && vrf.vrfTable !== table)
        throw fail(`VRF ${vrfname} uses table ${vrf.vrfTable}, config says ${table}`);
      const iface = links.find((l) => l.name === ctx.ifname);
      if (iface?.master !== vrfname)
        throw fail(`${ctx.ifname} is not enslaved to VRF ${vrfname} in ${ctx.netns}`);
    },
    async del(ctx) {
      const { vrfname } = ctx.conf;
      await inNetnsIfExists(netlink, ctx.netns, async (ns) => {
        const links = await ns.links();
        const vrf = links.find((l) => l.name === vrfname);
        if (vrf?.kind !== 'vrf') {
          if (vrf) ctx.log(`vrf: left ${vrfname} alone: it is not a VRF, so not one this plugin made`);
          return;
        }
        const iface = links.find((l) => l.name === ctx.ifname);
        if (iface?.master === vrfname) ns.setLink(ctx.ifname, { master: null });
        const others = links.filter((l) => l.master === vrfname && l.name !== ctx.ifname);
        if (others.length === 0) ns.deleteLink(vrfname, { missingOk: true });
      });
    },
  };
}
