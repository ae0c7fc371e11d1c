// The whereabouts reconciler's rule on stores that list no pools (file, etcd): the ranges come
// from the given configs and the pass goes through the allocator's store sessions. See
// reconciler.ts for the rule itself.
import { formatIP } from '../../spec/addr.js';
import { CniError } from '../../spec/errors.js';
import { parseWhereaboutsConfig, type WhereaboutsConfigOptions } from './config.js';
import {
  type Leadership,
  type PodLookup,
  podGoneVerdicts,
  type ReconcileReport,
  wantedRef,
} from './reconciler.js';
import type { Store } from './store.js';

/** Settings of a pass over the pools of a file or etcd store. */
export interface ReconcileStoreOptions {
  /** An open store (openWhereaboutsStore); any backend works, the Kubernetes one included. */
  store: Store;
  /** The whereabouts `ipam` blocks whose ranges to look at (each NAD's, or the flat file's). */
  ipam: readonly unknown[];
  getPod: PodLookup;
  only?: ReadonlySet<string> | undefined;
  leader?: Leadership | undefined;
  configOptions?: WhereaboutsConfigOptions | undefined;
}

/**
 * The same rule on any store, through the allocator's store sessions: the ranges come from the
 * given configs (stores other than Kubernetes have no object listing them). `release` frees an
 * address only while the judged attachment (container ID and interface) still holds it, so an
 * adoption by a re-created pod wins. Node-slice pools are not covered (their ranges depend on
 * the node). Freed entries report the address as their `offset`.
 */
export async function reconcileWhereaboutsStore(opts: ReconcileStoreOptions): Promise<ReconcileReport> {
  const report: ReconcileReport = { freed: [], reservations: [], alive: 0, errors: [], acted: false };
  if (opts.leader && !opts.leader.isLeader()) return report;
  report.acted = true;
  const gone = podGoneVerdicts(opts.getPod, report.errors);
  const seen = new Set<string>();
  for (const ipam of opts.ipam) {
    let ranges: ReturnType<typeof parseWhereaboutsConfig>['ranges'];
    try {
      ranges = parseWhereaboutsConfig(ipam, opts.configOptions).ranges;
    } catch (err) {
      report.errors.push(`config: ${CniError.from(err).message}`);
      continue;
    }
    for (const range of ranges) {
      if (seen.has(range.ref.pool)) continue;
      seen.add(range.ref.pool);
      try {
        await opts.store.session(range.ref, async (s) => {
          for (const a of await s.list()) {
            const podRef = a.podRef;
            if (!wantedRef(podRef, opts.only)) continue;
            if (!(await gone(podRef))) {
              report.alive += 1;
              continue;
            }
            if (opts.leader && !opts.leader.isLeader()) return;
            // Adopted meanwhile by a re-created pod (new container ID): not ours to free.
            if ((await s.byOwner(a.containerId, a.ifname))?.address !== a.address) continue;
            await s.release(a);
            report.freed.push({
              pool: range.ref.pool,
              offset: formatIP({ family: range.ref.family, value: a.address }),
              containerId: a.containerId,
              podRef,
              ifname: a.ifname,
            });
          }
        });
      } catch (err) {
        report.errors.push(`pool ${range.ref.pool}: ${CniError.from(err).message}`);
      }
    }
  }
  return report;
}
