// `cni-kit daemon --whereabouts-node-slices <kubeconfig>`: runs whereabouts' node-slice controller
// (node_slice_size) in the daemon. Every daemon campaigns for one Lease; only the holder watches
// the Nodes and NetworkAttachmentDefinitions and writes NodeSlicePools, so a cluster of N nodes
// keeps one copy of the Node list (not N: every daemon listing every Node is how the upstream
// reconciler ran out of memory, wa#386), and two daemons never both assign. A daemon that loses
// the Lease stops its watches; every write is also refused the moment this daemon is not the
// holder, so a pass that was running when the Lease went cannot write after it.
import { hostname } from 'node:os';
import {
  type NadLike,
  type NodeSliceController,
  type NodeSliceReport,
  startNodeSliceController,
} from '../ipam/index.js';
import type { CustomResources, KubeApi } from '../k8s/client.js';
import { KubeApiError } from '../k8s/client.js';
import {
  daemonSetLeaseTiming,
  Informer,
  type KubeTransport,
  type LeaseTimingMs,
  openKubeApi,
  openKubeTransport,
  startLeaderElection,
} from '../k8s/index.js';

/** The Lease the daemons' node-slice controllers campaign for. */
export const NODE_SLICE_LEASE = 'whereabouts-node-slice-controller';

/** Settings of the daemon's node-slice controller. */
export interface DaemonNodeSlicesOptions {
  kubeconfig: string;
  /** This daemon (Lease identity); default $NODE_NAME, $NODENAME, else the host name. */
  nodeName?: string | undefined;
  /** Lease timing (ms); defaults as client-go's 15 s / 10 s / 2 s, followers every 10 s. */
  lease?: LeaseTimingMs | undefined;
  /** A full pass this often even when nothing changed (ms; default 5 min). */
  resyncMs?: number | undefined;
  /** How often the watched Nodes and NADs are looked at for a change (ms; default 500). */
  pollMs?: number | undefined;
  /** Flat file locations for the NADs' whereabouts configs (default whereabouts'). */
  flatFilePaths?: readonly string[] | undefined;
  log: (level: 'info' | 'warn' | 'error', fields: { msg: string; [k: string]: unknown }) => void;
}

/** The running controller. */
export interface DaemonNodeSlices {
  isLeader(): boolean;
  /** Resolves after the pass in flight (if any) and one more; only while leading (tests). */
  passNow(): Promise<void>;
  /** Stops, releasing the Lease when held. */
  close(): Promise<void>;
  /** Stops without releasing the Lease, as a crashed daemon would (tests). */
  abandon(): Promise<void>;
}

/** `resources` whose writes fail unless `leading()` says this process holds the Lease. */
function fenced<T extends object>(resources: CustomResources<T>, leading: () => boolean): CustomResources<T> {
  const check = (what: string) => {
    if (!leading())
      throw new KubeApiError(
        409,
        `${what}: not written: this daemon no longer holds the ${NODE_SLICE_LEASE} Lease (another daemon assigns the slices)`,
      );
  };
  return {
    get: (ns, name) => resources.get(ns, name),
    list: (ns) => resources.list(ns),
    async create(ns, obj) {
      check('CREATE NodeSlicePool');
      return resources.create(ns, obj);
    },
    async replace(ns, name, obj) {
      check(`UPDATE NodeSlicePool ${name}`);
      return resources.replace(ns, name, obj);
    },
    async delete(ns, name) {
      check(`DELETE NodeSlicePool ${name}`);
      return resources.delete(ns, name);
    },
  };
}

/** Starts campaigning; the controller runs only while this daemon holds the Lease. */
export async function startDaemonNodeSlices(opts: DaemonNodeSlicesOptions): Promise<DaemonNodeSlices> {
  const node = opts.nodeName || process.env.NODE_NAME || process.env.NODENAME || hostname();
  const userAgent = `cni-kit-node-slices/${node}`;
  const api: KubeApi = await openKubeApi(opts.kubeconfig, { userAgent });
  const ns = api.namespace ?? 'kube-system';
  const transport: KubeTransport = await openKubeTransport(opts.kubeconfig, { userAgent });

  type Running = {
    nodes: Informer;
    nads: Informer;
    controller: NodeSliceController | undefined;
    timer: NodeJS.Timeout | undefined;
    /** Settles once the controller runs, or once stopped before that. */
    started: Promise<void>;
  };
  let running: Running | undefined;
  // Leadership changes are applied one after the other, in the order they happened.
  let chain: Promise<void> = Promise.resolve();
  let closed = false;

  const stopRunning = async () => {
    const r = running;
    running = undefined;
    if (!r) return;
    // Closing the informers also wakes a wait for their sync.
    await Promise.all([r.nodes.close(), r.nads.close()]);
    await r.started;
    clearInterval(r.timer);
    await r.controller?.stop();
  };

  const leader = startLeaderElection({
    leases: api.customResources('coordination.k8s.io', 'v1', 'leases'),
    namespace: ns,
    name: NODE_SLICE_LEASE,
    identity: node,
    ...daemonSetLeaseTiming(opts.lease),
    onStartedLeading: () => {
      opts.log('info', { msg: 'whereabouts node slices: leading', node });
      chain = chain.then(() => {
        if (!closed) startRunning();
      });
    },
    onStoppedLeading: () => {
      opts.log('info', { msg: 'whereabouts node slices: not leading', node });
      chain = chain.then(stopRunning, stopRunning);
    },
    onError: (err) => opts.log('warn', { msg: 'whereabouts node slices: lease', error: err.message }),
  });

  const kube = {
    namespace: ns,
    customResources: <T extends object>(group: string, version: string, plural: string) =>
      fenced(api.customResources<T>(group, version, plural), () => leader.isLeader()),
  };

  function startRunning(): void {
    if (running) return;
    const onError = (e: Error) =>
      opts.log('warn', { msg: 'whereabouts node slices: watch', error: e.message });
    const nodes = new Informer(transport, { path: '/api/v1/nodes', onError }).start();
    const nads = new Informer(transport, {
      path: '/apis/k8s.cni.cncf.io/v1/network-attachment-definitions',
      onError,
    }).start();
    const r: Running = { nodes, nads, controller: undefined, timer: undefined, started: Promise.resolve() };
    running = r;
    r.started = (async () => {
      // A pass on half a list would free the slices of nodes not listed yet: wait for both.
      while (running === r && !(nodes.synced() && nads.synced())) {
        await Promise.all([nodes.waitForSync(1000), nads.waitForSync(1000)]);
      }
      if (running !== r) return;
      r.controller = startNodeSliceController({
        kube,
        namespace: ns,
        ...(opts.flatFilePaths ? { flatFilePaths: opts.flatFilePaths } : {}),
        listNads: async () => nads.list() as NadLike[],
        listNodes: async () => nodes.list().map((n) => n.metadata.name),
        resyncMs: opts.resyncMs ?? 300_000,
        onPass: (rep: NodeSliceReport) => {
          if (rep.written.length || rep.problems.length)
            opts.log(rep.problems.length ? 'warn' : 'info', {
              msg: 'whereabouts node slices: pass',
              written: rep.written,
              problems: rep.problems,
            });
        },
        onError: (err) =>
          opts.log('error', { msg: 'whereabouts node slices: pass failed', error: String(err) }),
      });
      // The informers say that something changed, not what: a change of either starts a pass.
      let seen = `${nodes.version()}:${nads.version()}`;
      r.timer = setInterval(() => {
        const now = `${nodes.version()}:${nads.version()}`;
        if (now !== seen) {
          seen = now;
          void r.controller?.trigger();
        }
      }, opts.pollMs ?? 500);
      r.timer.unref();
    })();
  }

  const shutdown = async (release: boolean) => {
    closed = true;
    if (release) await leader.stop();
    else await leader.abandon();
    await chain;
    await stopRunning();
    transport.close();
  };
  return {
    isLeader: () => leader.isLeader(),
    async passNow() {
      await chain;
      await running?.started;
      await running?.controller?.trigger();
    },
    close: () => shutdown(true),
    abandon: () => shutdown(false),
  };
}
