// `default-route` in the selection annotation: the pod's default route(s) move to the attachment
// that asks for them; every other attachment loses its default routes (and they leave its result).
// The libcni cache records of the attachments that changed are rewritten to match (through the
// runtime, never by hand), because CHECK compares the netns with the cached result and DEL hands
// it to the plugins as prevResult.
import { CniError, ErrorCode, type Result } from 'cni-kit';
import { type Netlink, NetlinkError } from 'cni-kit/netlink';
import type { CniRuntime, RuntimeConf } from 'cni-kit/runtime';
import { ipFamily } from 'cni-kit/spec';
import type { Delegate } from './delegates.js';

const isDefault = (dst: string) => dst === '0.0.0.0/0' || dst === '::/0';

/**
 * Rewrites default routes inside `netns` and in `results` (index-aligned with `delegates`);
 * returns the indices whose result changed. A gateway the kernel refuses is a CniError naming
 * the network, the interface and the gateway (code 7 when it is unreachable from that link).
 */
export async function applyDefaultRoutes(
  nl: Netlink,
  netns: string,
  delegates: Delegate[],
  results: Result[],
): Promise<number[]> {
  const before = results.map((r) => JSON.stringify(r?.routes ?? []));
  await nl.inNetns(netns, async (ns) => {
    const routes = await ns.routes();
    delegates.forEach((d, i) => {
      for (const r of routes) {
        if (r.dev !== d.ifname || !isDefault(r.dst)) continue;
        ns.deleteRoute(
          {
            dst: 'default',
            dev: d.ifname,
            family: r.family,
            ...(r.gw ? { gw: r.gw } : {}),
            ...(r.metric !== undefined ? { metric: r.metric } : {}),
          },
          { missingOk: true },
        );
      }
      const res = results[i];
      if (res?.routes) res.routes = res.routes.filter((r) => !isDefault(r.dst));
    });
    await ns.flush();
    for (const [i, d] of delegates.entries()) {
      for (const gw of d.defaultRoute ?? []) {
        ns.addRoute({ dst: 'default', gw, dev: d.ifname }, { existsOk: true });
        // One flush per gateway, so a refusal names the gateway that caused it.
        try {
          await ns.flush();
        } catch (err) {
          const e = CniError.from(err);
          const unreachable = err instanceof NetlinkError && err.errno === 'ENETUNREACH';
          throw new CniError(
            unreachable ? ErrorCode.InvalidNetworkConfig : e.code,
            `default-route: cannot route the pod's default traffic via ${gw} on ${d.ifname}: ${e.message}; the gateway must be an address in a subnet of ${d.ifname}`,
            e.details,
            { cause: err },
          );
        }
        const res = results[i];
        const dst = ipFamily(gw) === 6 ? '::/0' : '0.0.0.0/0';
        if (res) res.routes = [...(res.routes ?? []), { dst, gw }];
      }
    }
  });
  return results.flatMap((r, i) => (JSON.stringify(r?.routes ?? []) === before[i] ? [] : [i]));
}

/**
 * Writes the moved routes into the libcni cache record of each changed attachment (the runtime
 * converts to the network's own version and renames atomically), so a later CHECK compares the
 * netns with what multus configured and DEL's prevResult is the truth.
 */
export async function recordDefaultRoutes(
  rt: CniRuntime,
  rtConf: (d: Delegate) => RuntimeConf,
  delegates: Delegate[],
  results: Result[],
  changed: number[],
): Promise<void> {
  for (const i of changed) {
    const d = delegates[i] as Delegate;
    const json = JSON.stringify(d.conf);
    const input = Array.isArray(d.conf.plugins) ? { list: json } : { conf: json };
    try {
      await rt.updateCachedResult(input, rtConf(d), () => results[i] as Result);
    } catch (err) {
      const e = CniError.from(err);
      throw new CniError(
        ErrorCode.IOFailure,
        `default-route: ${e.message} (right after the ADD of network ${d.name}); check that nothing else writes to the cache`,
        e.details,
        { cause: err },
      );
    }
  }
}
