// `cni-kit daemon --whereabouts-reconciler <kubeconfig>`: runs the whereabouts reconciler in the
// daemon. One kubeconfig gives the API access, the Lease that elects the instance doing full
// passes, and the watch of this node's pods whose deletions trigger targeted passes.
import { hostname } from 'node:os';
import { startWhereaboutsReconciler, type WhereaboutsReconciler } from '../ipam/index.js';
import {
  daemonSetLeaseTiming,
  Informer,
  isKubeNotFound,
  type LeaseTimingMs,
  openKubeApi,
  openKubeTransport,
  startLeaderElection,
} from '../k8s/index.js';

/** Settings of the daemon's reconciler. */
export interface DaemonReconcilerOptions {
  kubeconfig: string;
  /** Five-field cron (UTC); default `30 4 * * *`. */
  cronExpression?: string | undefined;
  /** This node (pods watched, Lease identity); default $NODE_NAME, $NODENAME, else the host name. */
  nodeName?: string | undefined;
  /** Lease timing (ms); defaults as client-go's 15 s / 10 s / 2 s, followers every 10 s. */
  lease?: LeaseTimingMs | undefined;
  /** Pod-cache poll period (ms). */
  pollMs?: number | undefined;
  log: (level: 'info' | 'warn' | 'error', fields: { msg: string; [k: string]: unknown }) => void;
}

/** The running reconciler, its Lease and its pod watch. */
export interface DaemonReconciler {
  reconciler: WhereaboutsReconciler;
  isLeader(): boolean;
  close(): Promise<void>;
}

/** Starts the reconciler with its Lease and pod watch; throws a code-7 CniError for a bad cron. */
export async function startDaemonReconciler(opts: DaemonReconcilerOptions): Promise<DaemonReconciler> {
  const node = opts.nodeName || process.env.NODE_NAME || process.env.NODENAME || hostname();
  const api = await openKubeApi(opts.kubeconfig, { userAgent: 'cni-kit-whereabouts-reconciler' });
  const ns = api.namespace ?? 'kube-system';
  const getPod = async (namespace: string, name: string) => {
    try {
      return await api.client.getPod(namespace, name);
    } catch (err) {
      if (isKubeNotFound(err)) return undefined;
      throw err;
    }
  };
  const leader = startLeaderElection({
    leases: api.customResources('coordination.k8s.io', 'v1', 'leases'),
    namespace: ns,
    name: 'whereabouts-reconciler',
    identity: node,
    ...daemonSetLeaseTiming(opts.lease),
    onStartedLeading: () => opts.log('info', { msg: 'whereabouts reconciler: leading', node }),
    onStoppedLeading: () => opts.log('info', { msg: 'whereabouts reconciler: not leading', node }),
    onError: (err) => opts.log('warn', { msg: 'whereabouts reconciler: lease', error: err.message }),
  });
  let transport: Awaited<ReturnType<typeof openKubeTransport>> | undefined;
  let pods: Informer | undefined;
  let reconciler: WhereaboutsReconciler | undefined;
  try {
    transport = await openKubeTransport(opts.kubeconfig);
    pods = new Informer(transport, { path: '/api/v1/pods', fieldSelector: `spec.nodeName=${node}` }).start();
    reconciler = startWhereaboutsReconciler({
      kube: api,
      namespace: ns,
      getPod,
      leader,
      podCache: pods,
      cronExpression: opts.cronExpression,
      pollMs: opts.pollMs,
      onReport: (r, why) =>
        opts.log(r.errors.length ? 'warn' : 'info', {
          msg: 'whereabouts reconciler: pass',
          why,
          freed: r.freed.map((f) => `${f.pool}/${f.offset} ${f.podRef} ${f.ifname}`),
          reservations: r.reservations,
          errors: r.errors,
        }),
      onError: (err) => opts.log('error', { msg: 'whereabouts reconciler: pass failed', error: err.message }),
    });
  } catch (err) {
    await pods?.close();
    transport?.close();
    await leader.stop();
    throw err;
  }
  const [r, p, t] = [reconciler, pods, transport];
  return {
    reconciler: r,
    isLeader: () => leader.isLeader(),
    async close() {
      await r.close();
      await leader.stop();
      await p.close();
      t.close();
    },
  };
}
