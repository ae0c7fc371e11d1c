// sbr (source-based routing): replies leave through the interface the request came in on. Chained
// after the plugin that made CNI_IFNAME (macvlan, ipvlan, bridge...), it gives each of the
// interface's addresses a rule `from <ip> lookup <table>` and moves the interface's routes from the
// main table into that table, with a default route through the gateway, as the reference does.
// Every change in the container netns runs under a flock(2) of the netns file, the reference's lock.
import {
  CniError,
  conf,
  ErrorCode,
  type Infer,
  type IPConfig,
  type PluginContext,
  type PluginSpec,
  type Result,
} from 'cni-kit';
import { withFileLock } from 'cni-kit/ipam';
import type { Family, Netlink, NetnsOps, RouteEntry, RouteSpec, RuleEntry } from 'cni-kit/netlink';
import { type AddRollback, addWithRollback, inNetnsIfExists } from 'cni-kit/netsetup';
import { formatSubnet, parseCIDR, subnetContains, tryParseIP } from 'cni-kit/spec';

/** The first table sbr picks when the config names none (the reference's). */
export const FIRST_TABLE = 100;
const MAIN_TABLE = 254;

/** The sbr plugin's own config fields. */
export const sbrConfig = conf.object({
  /** Use this routing table for every address and only add the rules (routes are left as they are). */
  table: conf.int(1, 0xffffffff).optional(),
  /** At most one IPv4 and one IPv6 gateway that replace prevResult's in the per-address tables. */
  gateways: conf
    .array(conf.ip())
    .max(2)
    .optional()
    .refine((g) => {
      const fams = (g ?? []).map((x) => tryParseIP(x.trim())?.family);
      return new Set(fams).size === fams.length ? undefined : 'has two gateways of one family';
    }, 'give at most one IPv4 and one IPv6 gateway, e.g. ["192.168.1.1", "2001:db8::1"]'),
  /** Keep the subnet routes in the main table with the address as source hint; drop only the others. */
  addSourceHints: conf.bool().default(false),
});

/** The sbr plugin's config, parsed. */
export type SbrConf = Infer<typeof sbrConfig>;

/** What the plugin needs from the outside world. */
export interface SbrDeps {
  netlink: Netlink;
  /** How to serialise work in one netns; default flock(2) of the netns file, as the reference. */
  lock?: <T>(netns: string, fn: () => Promise<T>) => Promise<T>;
}

const flockNetns = <T>(netns: string, fn: () => Promise<T>): Promise<T> =>
  withFileLock(netns, fn, { create: false });

/**
 * prevResult's addresses that belong to `ifname`, as the reference picks them: an address without
 * an interface index counts as the interface's; one whose index names another interface does not.
 */
export function addressesOf(prev: Result, ifname: string): IPConfig[] {
  const ips = prev.ips ?? [];
  if (!ips.length)
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `prevResult: has no IP addresses for interface ${ifname}; sbr routes by source address, so chain it after a plugin with IPAM`,
    );
  const ifaces = prev.interfaces ?? [];
  return ips.filter((c) => {
    const i = c.interface;
    return i === undefined || i < 0 || i >= ifaces.length || ifaces[i]?.name === ifname;
  });
}

const hostPrefix = (ip: string): string => {
  const p = tryParseIP(ip);
  return `${ip}/${p?.family === 6 ? 128 : 32}`;
};
const familyOf = (ip: string): Family => (tryParseIP(ip)?.family === 6 ? 6 : 4);

const isDefault = (r: RouteEntry): boolean => r.dst === '0.0.0.0/0' || r.dst === '::/0';

/** A route read back, as a spec that adds it again (in `table`). */
export function routeSpecOf(r: RouteEntry, table: number): RouteSpec {
  const s: RouteSpec = { dst: r.dst, table, family: r.family };
  if (r.gw) s.gw = r.gw;
  if (r.dev) s.dev = r.dev;
  if (r.metric !== undefined) s.metric = r.metric;
  if (r.scope === 'global' || r.scope === 'link' || r.scope === 'host') s.scope = r.scope;
  if (r.src) s.src = r.src;
  if (r.mtu !== undefined) s.mtu = r.mtu;
  if (r.protocol === 'kernel' || r.protocol === 'boot' || r.protocol === 'static') s.protocol = r.protocol;
  return s;
}

/** True when the reference moves route `r` into the table of address `cidr`. */
export function routeBelongs(r: RouteEntry, cidr: string): boolean {
  const { subnet } = parseCIDR(cidr);
  const inside = (ip: string | undefined) => {
    const p = ip ? tryParseIP(ip) : undefined;
    return p !== undefined && subnetContains(subnet, p);
  };
  // A route with neither source nor gateway (a prefix route, fe80::/64) goes to every table.
  return inside(r.src) || inside(r.gw) || (!r.src && !r.gw);
}

/** The first table from `from` on that no rule points to and that holds no route. */
async function freeTable(ns: NetnsOps, rules: readonly RuleEntry[], from: number): Promise<number> {
  for (let t = from; ; t++) {
    if (rules.some((r) => r.table === t)) continue;
    if ((await ns.routes({ table: t })).length === 0) return t;
  }
}

async function allRules(ns: NetnsOps): Promise<RuleEntry[]> {
  return [...(await ns.rules(4)), ...(await ns.rules(6))];
}

/** Builds the sbr plugin over a netlink backend. */
export function createSbrPlugin(deps: SbrDeps): PluginSpec<SbrConf> {
  const { netlink } = deps;
  const lock = deps.lock ?? flockNetns;

  function requirePrev(ctx: PluginContext<SbrConf>): Result {
    const prev = ctx.config.prevResult;
    if (!prev)
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        'prevResult: missing; sbr must run chained after the plugin that creates the interface (macvlan, ipvlan, bridge)',
      );
    return prev;
  }

  /** Rules only, into the configured table (the reference leaves the routes to whoever filled it). */
  async function rulesOnly(ns: NetnsOps, tx: AddRollback, ips: IPConfig[], table: number): Promise<void> {
    for (const c of ips) {
      const ip = c.address.split('/')[0] ?? '';
      const rule = { family: familyOf(ip), src: hostPrefix(ip), table };
      ns.addRule(rule);
      await ns.flush();
      tx.onRollback(() => netlink.inNetns(ns.netns, (n) => n.deleteRule(rule, { missingOk: true })));
    }
  }

  async function moveRoutes(
    ns: NetnsOps,
    tx: AddRollback,
    ctx: PluginContext<SbrConf>,
    ips: IPConfig[],
  ): Promise<void> {
    const { ifname } = ctx;
    const rules = await allRules(ns);
    await ns.getLink(ifname).catch(() => {
      throw new CniError(ErrorCode.Internal, `cannot find network interface ${ifname} in ${ctx.netns}`);
    });
    const mainRoutes = (await ns.routes({ table: MAIN_TABLE, dev: ifname })).filter(
      (r) => r.type === 'unicast' && !r.nexthops,
    );
    const statics = new Map((ctx.conf.gateways ?? []).map((g) => [familyOf(g), g.trim()] as const));
    let table = await freeTable(ns, rules, FIRST_TABLE);
    for (const c of ips) {
      const ip = c.address.split('/')[0] ?? '';
      const family = familyOf(ip);
      const rule = { family, src: hostPrefix(ip), table };
      ns.addRule(rule);
      await ns.flush();
      tx.onRollback(() => netlink.inNetns(ns.netns, (n) => n.deleteRule(rule, { missingOk: true })));
      const gw = statics.get(family) ?? c.gateway;
      const t = table;
      if (gw) {
        // Marked 'static' so DEL can tell it from the routes moved out of main (a copy of main's own
        // default route replaces it below, and keeps main's protocol).
        const def: RouteSpec = { dst: 'default', family, gw, dev: ifname, table: t, protocol: 'static' };
        ns.addRoute(def);
        await ns.flush();
        tx.onRollback(() => netlink.inNetns(ns.netns, (n) => n.deleteRoute(def, { missingOk: true })));
      }
      for (const r of mainRoutes) {
        if (!routeBelongs(r, c.address)) continue;
        // The reference copies main's default route over the configured gateway's; the gateway
        // the config names is the one meant (see docs/plugins.md).
        if (statics.has(family) && r.family === family && isDefault(r)) continue;
        const copy = routeSpecOf(r, t);
        ns.replaceRoute(copy);
        await ns.flush();
        tx.onRollback(() => netlink.inNetns(ns.netns, (n) => n.deleteRoute(copy, { missingOk: true })));
      }
      table = await freeTable(ns, rules, table + 1);
    }
    const removeMain = async (r: RouteEntry, warnOnly: boolean) => {
      const spec = routeSpecOf(r, MAIN_TABLE);
      try {
        ns.deleteRoute(spec, { missingOk: true });
        await ns.flush();
      } catch (e) {
        if (!warnOnly) throw e;
        ctx.log(`sbr: could not delete route ${r.dst} from the main table: ${String(e)}`);
        return;
      }
      tx.onRollback(() => netlink.inNetns(ns.netns, (n) => n.addRoute(spec, { existsOk: true })));
    };
    if (ctx.conf.addSourceHints) {
      // Destination routing keeps working for sockets that bind no address: the subnet routes stay
      // in main with the address as preferred source; only the gateway routes leave main.
      for (const c of ips) {
        const { ip, subnet } = parseCIDR(c.address);
        const hint: RouteSpec = {
          dst: formatSubnet(subnet),
          dev: ifname,
          src: c.address.split('/')[0] ?? '',
          scope: 'link',
          table: MAIN_TABLE,
          family: ip.family,
        };
        try {
          ns.replaceRoute(hint);
          await ns.flush();
        } catch (e) {
          ctx.log(`sbr: could not add the source hint route ${hint.dst} src ${hint.src}: ${String(e)}`);
        }
      }
      for (const r of mainRoutes) if (r.scope !== 'link') await removeMain(r, true);
    } else {
      for (const r of mainRoutes) await removeMain(r, false);
    }
  }

  async function add(ctx: PluginContext<SbrConf>): Promise<Result> {
    const prev = requirePrev(ctx);
    const ips = addressesOf(prev, ctx.ifname);
    await lock(ctx.netns, () =>
      addWithRollback(ctx, 'sbr', (tx) =>
        netlink.inNetns(ctx.netns, async (ns) => {
          if (ctx.conf.table !== undefined) await rulesOnly(ns, tx, ips, ctx.conf.table);
          else await moveRoutes(ns, tx, ctx, ips);
        }),
      ),
    );
    return { ...prev, cniVersion: '1.1.0' };
  }

  async function check(ctx: PluginContext<SbrConf>): Promise<void> {
    const prev = requirePrev(ctx);
    const ips = addressesOf(prev, ctx.ifname);
    const missing = await netlink.inNetns(ctx.netns, async (ns) => {
      const rules = await allRules(ns);
      return ips
        .map((c) => hostPrefix(c.address.split('/')[0] ?? ''))
        .filter(
          (src) =>
            !rules.some(
              (r) =>
                r.src === src &&
                (ctx.conf.table === undefined ? r.table >= FIRST_TABLE : r.table === ctx.conf.table),
            ),
        );
    });
    if (missing.length)
      throw new CniError(
        ErrorCode.Internal,
        `CHECK: no source rule for ${missing.join(', ')} on ${ctx.ifname}${ctx.conf.table === undefined ? '' : ` into table ${ctx.conf.table}`}`,
      );
  }

  async function del(ctx: PluginContext<SbrConf>): Promise<void> {
    if (!ctx.netns || !(await netlink.netnsExists(ctx.netns))) return;
    const locked = <T>(fn: () => Promise<T>) =>
      lock(ctx.netns, fn).catch((e: unknown) => {
        // The netns went away between the check and the lock: nothing left to tidy.
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw e;
      });
    const failed = await locked(async () =>
      inNetnsIfExists(netlink, ctx.netns, async (ns) => {
        if (!(await ns.findLink(ctx.ifname))) return [];
        const addrs = new Set((await ns.addresses({ link: ctx.ifname })).map((a) => a.ip));
        const rules = (await allRules(ns)).filter(
          (r) =>
            r.src !== undefined &&
            addrs.has(r.src.split('/')[0] ?? '') &&
            (ctx.conf.table === undefined || r.table === ctx.conf.table),
        );
        const errors: string[] = [];
        for (const r of rules) {
          try {
            ns.deleteRule(r, { missingOk: true });
            await ns.flush();
          } catch (e) {
            errors.push(`rule from ${r.src} table ${r.table}: ${String(e)}`);
          }
        }
        // The tables sbr picked itself hold only this interface's routes: put them back into main
        // (but the default routes ADD added itself) and empty the tables, so an interface that
        // outlives this DEL routes as it did before ADD.
        if (ctx.conf.table === undefined) {
          const left = await allRules(ns);
          for (const t of new Set(rules.map((r) => r.table))) {
            if (t < FIRST_TABLE || left.some((r) => r.table === t)) continue;
            // Gateway routes after the prefix routes that make their gateways reachable.
            const routes = (await ns.routes({ table: t, dev: ctx.ifname })).sort((a, b) => +!!a.gw - +!!b.gw);
            for (const r of routes) {
              if (!(isDefault(r) && r.protocol === 'static'))
                ns.addRoute(routeSpecOf(r, MAIN_TABLE), { existsOk: true });
              ns.deleteRoute(routeSpecOf(r, t), { missingOk: true });
              await ns.flush().catch((e) => errors.push(`route ${r.dst} table ${t}: ${String(e)}`));
            }
          }
        }
        return errors;
      }),
    );
    if (failed?.length)
      throw new CniError(ErrorCode.Internal, `sbr DEL: could not remove ${failed.join('; ')}`);
  }

  return {
    about: 'sbr (cni-kit): source-based routing tables for a container interface',
    config: sbrConfig,
    add,
    check,
    del,
  };
}
