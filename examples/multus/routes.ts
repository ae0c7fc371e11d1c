// `default-route` in the selection annotation: the pod's default route(s) move to the attachment
// that asks for them; every other attachment loses its default routes (and they leave its result).
import type { Netlink, Result } from 'cni-kit';
import type { Delegate } from './delegates.js';

const isDefault = (dst: string) => dst === '0.0.0.0/0' || dst === '::/0';

/** Rewrites default routes inside `netns` and in `results` (index-aligned with `delegates`). */
export async function applyDefaultRoutes(
  nl: Netlink,
  netns: string,
  delegates: Delegate[],
  results: Result[],
): Promise<void> {
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
    delegates.forEach((d, i) => {
      for (const gw of d.defaultRoute ?? []) {
        ns.addRoute({ dst: 'default', gw, dev: d.ifname }, { existsOk: true });
        const res = results[i];
        if (res) res.routes = [...(res.routes ?? []), { dst: gw.includes(':') ? '::/0' : '0.0.0.0/0', gw }];
      }
    });
  });
}
