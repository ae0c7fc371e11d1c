// The node-slice controller: keeps one NodeSlicePool per network whose whereabouts config sets
// `node_slice_size`, with every node holding one slice. Like whereabouts' nodeslicecontroller it
// works from the NetworkAttachmentDefinitions and the Nodes; here both are passed in (the daemon
// has informers for them), and the API access is the store's `KubeAccess`, so this layer loads no
// Kubernetes code. Each pass is idempotent: it writes only what differs, with resourceVersion-
// guarded PUTs, so two controllers running at once never lose each other's assignments (one of
// them re-reads and finds nothing left to do).
import { formatSubnet, parseCIDR } from '../../spec/addr.js';
import { CniError, ErrorCode } from '../../spec/errors.js';
import { parseWhereaboutsConfig, type WhereaboutsConfigOptions } from './config.js';
import { assignSlices, divideRange, type NodeSliceAllocation, type NodeSlicePool } from './node-slice.js';
import type { CustomResources, KubeAccess } from './stores/kubernetes.js';

/** One network cut into node slices, as the NADs that use it describe it. */
export interface NodeSliceNetwork {
  /** The NodeSlicePool's name: `network_name`, else the network's `name`. */
  name: string;
  /** The whole range (CIDR). */
  range: string;
  /** `/<prefix>` of one slice. */
  sliceSize: string;
  /** NADs that use it (owner references of the pool). */
  owners: Array<{ apiVersion: string; kind: string; name: string; uid: string }>;
}

/** What the controller needs of a NetworkAttachmentDefinition. */
export interface NadLike {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; uid?: string };
  spec?: { config?: string };
}

/** What one pass did. */
export interface NodeSliceReport {
  /** NodeSlicePools created or rewritten, by name. */
  written: string[];
  /** Networks skipped, with why (a NAD that does not parse, two NADs disagreeing). */
  problems: string[];
}

/** The whereabouts `ipam` blocks of a NAD's config (one plugin or a list). */
function ipamBlocks(config: unknown): Array<{ name: string; ipam: Record<string, unknown> }> {
  const c = config as { name?: unknown; ipam?: unknown; plugins?: unknown };
  const name = typeof c?.name === 'string' ? c.name : '';
  const plugins = Array.isArray(c?.plugins) ? (c.plugins as Array<{ ipam?: unknown }>) : [c];
  return plugins
    .map((p) => p?.ipam as Record<string, unknown> | undefined)
    .filter((i): i is Record<string, unknown> => !!i && i.type === 'whereabouts')
    .map((ipam) => ({ name, ipam }));
}

/**
 * The networks cut into node slices among `nads`, their whereabouts configs completed from the
 * flat file as the allocator completes them. NADs that share a pool name must agree on range and
 * slice size (as whereabouts requires); when they do not, the network is left alone and reported.
 */
export function nodeSliceNetworks(
  nads: readonly NadLike[],
  opts: WhereaboutsConfigOptions = {},
): { networks: NodeSliceNetwork[]; problems: string[] } {
  const byName = new Map<string, NodeSliceNetwork>();
  const bad = new Set<string>();
  const problems: string[] = [];
  for (const nad of nads) {
    const where = `NetworkAttachmentDefinition ${nad.metadata.namespace ?? ''}/${nad.metadata.name}`;
    let blocks: ReturnType<typeof ipamBlocks>;
    try {
      blocks = ipamBlocks(JSON.parse(nad.spec?.config ?? '{}'));
    } catch {
      continue; // not JSON: not ours to judge (multus reports it)
    }
    for (const { name, ipam } of blocks) {
      let cfg: ReturnType<typeof parseWhereaboutsConfig>;
      try {
        cfg = parseWhereaboutsConfig(ipam, opts);
      } catch (err) {
        if (ipam.node_slice_size !== undefined) problems.push(`${where}: ${CniError.from(err).message}`);
        continue;
      }
      if (cfg.nodeSliceSize === undefined) continue;
      const net: NodeSliceNetwork = {
        name: cfg.networkName || name,
        range: formatSubnet(cfg.ranges[0]!.subnet),
        sliceSize: `/${cfg.nodeSliceSize}`,
        owners: [],
      };
      if (!net.name) {
        problems.push(
          `${where}: the network has neither "network_name" nor "name" to name its NodeSlicePool`,
        );
        continue;
      }
      const prev = byName.get(net.name);
      if (prev && (prev.range !== net.range || prev.sliceSize !== net.sliceSize)) {
        problems.push(
          `${where}: NodeSlicePool ${JSON.stringify(net.name)} is ${prev.range} by ${prev.sliceSize} in another NAD, ${net.range} by ${net.sliceSize} here; make the NADs of one network agree`,
        );
        bad.add(net.name);
        continue;
      }
      const entry = prev ?? net;
      byName.set(net.name, entry);
      if (nad.metadata.uid && !entry.owners.some((o) => o.uid === nad.metadata.uid)) {
        entry.owners.push({
          apiVersion: nad.apiVersion ?? 'k8s.cni.cncf.io/v1',
          kind: nad.kind ?? 'NetworkAttachmentDefinition',
          name: nad.metadata.name,
          uid: nad.metadata.uid,
        });
      }
    }
  }
  return { networks: [...byName.values()].filter((n) => !bad.has(n.name)), problems };
}

const status = (err: unknown): number => {
  const s = (err as { status?: unknown } | undefined)?.status;
  return typeof s === 'number' ? s : -1;
};

const sameAllocations = (a: readonly NodeSliceAllocation[], b: readonly NodeSliceAllocation[]) =>
  a.length === b.length &&
  a.every((x, i) => x.nodeName === b[i]!.nodeName && x.sliceRange === b[i]!.sliceRange);

/** Lost races with another writer of one NodeSlicePool before a pass gives up on it. */
const RETRIES = 10;

/** Brings one network's NodeSlicePool in line with the nodes; true when it wrote. */
async function reconcileOne(
  pools: CustomResources<NodeSlicePool>,
  ns: string,
  net: NodeSliceNetwork,
  nodes: readonly string[],
): Promise<boolean> {
  const slices = (size: string) =>
    divideRange(parseCIDR(net.range).subnet, Number(size.slice(1))).map((sliceRange) => ({
      nodeName: '',
      sliceRange,
    }));
  for (let i = 0; i < RETRIES; i++) {
    let cur: NodeSlicePool | undefined;
    try {
      cur = await pools.get(ns, net.name);
    } catch (err) {
      if (status(err) !== 404) throw err;
    }
    if (!cur) {
      const fresh: NodeSlicePool = {
        apiVersion: 'whereabouts.cni.cncf.io/v1alpha1',
        kind: 'NodeSlicePool',
        metadata: { name: net.name, ...(net.owners.length > 0 ? { ownerReferences: net.owners } : {}) },
        spec: { range: net.range, sliceSize: net.sliceSize },
        status: { allocations: assignSlices(slices(net.sliceSize), nodes) },
      };
      try {
        await pools.create(ns, fresh);
        return true;
      } catch (err) {
        if (status(err) !== 409) throw err;
        continue; // created meanwhile: reconcile theirs
      }
    }
    // A changed range or slice size re-cuts every slice, as whereabouts does (nodes get new ones).
    const respec = cur.spec?.range !== net.range || cur.spec?.sliceSize !== net.sliceSize;
    const before = respec ? slices(net.sliceSize) : (cur.status?.allocations ?? slices(net.sliceSize));
    const after = assignSlices(before, nodes);
    const owners = [...(cur.metadata.ownerReferences ?? [])];
    for (const o of net.owners) if (!owners.some((x) => x.uid === o.uid)) owners.push(o);
    const ownersChanged = owners.length !== (cur.metadata.ownerReferences ?? []).length;
    if (!respec && !ownersChanged && sameAllocations(cur.status?.allocations ?? [], after)) return false;
    const next: NodeSlicePool = {
      ...cur,
      metadata: { ...cur.metadata, ...(owners.length > 0 ? { ownerReferences: owners } : {}) },
      spec: { range: net.range, sliceSize: net.sliceSize },
      status: { allocations: after },
    };
    try {
      await pools.replace(ns, net.name, next);
      return true;
    } catch (err) {
      if (status(err) !== 409) throw err;
    }
  }
  throw new CniError(
    ErrorCode.TryAgainLater,
    `NodeSlicePool ${ns}/${net.name}: lost ${RETRIES} writes in a row to another writer; the next pass retries`,
  );
}

/** Options of one controller pass. */
export interface ReconcileNodeSlicesOptions extends WhereaboutsConfigOptions {
  /** API access (cni-kit/k8s openKubeApi, or the store's connection). */
  kube: KubeAccess;
  /** Namespace of the pools; default the kubeconfig context's, else kube-system (as the stores). */
  namespace?: string | undefined;
  /** The NADs to read `node_slice_size` networks from. */
  nads: readonly NadLike[];
  /** The cluster's node names. */
  nodes: readonly string[];
}

/**
 * One pass of the node-slice controller: for every network with `node_slice_size`, creates its
 * NodeSlicePool or brings it up to date (every node one slice, departed nodes' slices free, a new
 * range or slice size re-cut). Pools of networks no NAD uses any more are left in place.
 */
export async function reconcileNodeSlices(opts: ReconcileNodeSlicesOptions): Promise<NodeSliceReport> {
  const ns = opts.namespace ?? opts.kube.namespace ?? 'kube-system';
  const pools = opts.kube.customResources<NodeSlicePool>(
    'whereabouts.cni.cncf.io',
    'v1alpha1',
    'nodeslicepools',
  );
  const { networks, problems } = nodeSliceNetworks(opts.nads, opts);
  const written: string[] = [];
  for (const net of networks) {
    try {
      if (await reconcileOne(pools, ns, net, opts.nodes)) written.push(net.name);
    } catch (err) {
      problems.push(`NodeSlicePool ${ns}/${net.name}: ${CniError.from(err).message}`);
    }
  }
  return { written, problems };
}

/** Options of a running node-slice controller. */
export interface NodeSliceControllerOptions extends Omit<ReconcileNodeSlicesOptions, 'nads' | 'nodes'> {
  /** Lists the NADs (an informer's cache, or the API). */
  listNads(): Promise<readonly NadLike[]>;
  /** Lists the node names (an informer's cache, or the API). */
  listNodes(): Promise<readonly string[]>;
  /** Time between passes when nothing triggers one; default 30 s. */
  resyncMs?: number | undefined;
  /** Called with each pass's report (logging, metrics). */
  onPass?: ((r: NodeSliceReport) => void) | undefined;
  /** Called when a pass fails as a whole (listing failed). */
  onError?: ((err: unknown) => void) | undefined;
}

/** A running node-slice controller. */
export interface NodeSliceController {
  /** Runs a pass now (a Node or NAD changed); passes never overlap, requests during one coalesce. */
  trigger(): Promise<void>;
  /** Stops the periodic passes; resolves when the pass in flight has ended. */
  stop(): Promise<void>;
}

/**
 * Starts the node-slice controller: a pass now, one whenever `trigger()` is called (wire it to the
 * Node and NAD informers' events), and one every `resyncMs`. Run it where one copy runs (a leader-
 * elected daemon, or its own Deployment); two copies are safe, only wasteful.
 */
export function startNodeSliceController(opts: NodeSliceControllerOptions): NodeSliceController {
  let running: Promise<void> | undefined;
  let again = false;
  let stopped = false;
  const pass = async (): Promise<void> => {
    try {
      const [nads, nodes] = await Promise.all([opts.listNads(), opts.listNodes()]);
      opts.onPass?.(await reconcileNodeSlices({ ...opts, nads, nodes }));
    } catch (err) {
      opts.onError?.(err);
    }
  };
  const trigger = (): Promise<void> => {
    if (stopped) return Promise.resolve();
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      do {
        again = false;
        await pass();
      } while (again && !stopped);
      running = undefined;
    })();
    return running;
  };
  const timer = setInterval(() => void trigger(), opts.resyncMs ?? 30_000);
  timer.unref();
  void trigger();
  return {
    trigger,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
