// whereabouts allocation rate with many ADDs at once in ONE process (what the daemon does), all
// through one registry factory (shared store connection, shared IPPool writers):
//   1. real etcd on loopback, 16 clients: first try spread over the next free addresses (now) vs
//      every client first trying the cursor's neighbour (before);
//   2. the Kubernetes store against the in-process fake API server, 16 clients: claims batched
//      into shared PUTs (now) vs one store per call, one PUT per claim (before);
//   3. node slices: 8 simulated nodes x 16 clients, each node in its own slice's IPPool, vs the
//      same 8 nodes sharing one IPPool.
// Rounds interleave A/B; medians; CPU is this process's user+sys (the fake API server runs in it
// too, so Kubernetes rows include the server's work). Every row checks 0 duplicates.
// Run: npx tsx bench/ipam-whereabouts-concurrent.ts [--quick]   (env WB_ONLY=etcd,kube,slices, WB_ROUNDS=n)
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createWhereaboutsAllocator, SharedStores, whereaboutsIpam } from '../src/ipam/whereabouts/index.js';
import { reconcileNodeSlices } from '../src/ipam/whereabouts/node-slice-controller.js';
import { cachedKubeConnect, openKubeApi } from '../src/k8s/connect.js';
import { hasEtcd, startEtcd, type TestEtcd } from '../test/helpers/etcd.js';
import { type FakeK8s, startFakeK8s } from '../test/helpers/fake-k8s.js';
import { table } from './lib.js';

const quick = process.argv.includes('--quick');
const rounds = Number(process.env.WB_ROUNDS ?? (quick ? 1 : 3));
/** Only these groups (comma-separated: etcd, kube, slices); default all. */
const only = (process.env.WB_ONLY ?? 'etcd,kube,slices').split(',');
const tmp = mkdtempSync(join(tmpdir(), `wbconc-bench-${process.pid}-`));
const rows: string[][] = [];
const closers: Array<() => Promise<void>> = [];

type Alloc = {
  allocate(r: {
    containerId: string;
    ifname: string;
    podRef?: string;
  }): Promise<{ ips?: Array<{ address: string }> }>;
};
/** Makes the allocator for one call (the daemon makes one per call from its factory). */
type MakeAlloc = (call: { node: string }) => Promise<Alloc>;

interface Run {
  rate: number;
  cpuMsPerAlloc: number;
  failures: number;
  dups: number;
  firstError?: string;
}

/** `clients` concurrent loops of `per` ADDs each (each loop on node `nodes[i % nodes.length]`). */
async function run(make: MakeAlloc, clients: number, per: number, tag: string, nodes = ['n']): Promise<Run> {
  const seen: string[] = [];
  let failures = 0;
  let firstError: string | undefined;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      const node = nodes[c % nodes.length]!;
      for (let i = 0; i < per; i++) {
        const id = `${tag}-c${c}-${i}`;
        try {
          const r = await (await make({ node })).allocate({
            containerId: id,
            ifname: 'net1',
            podRef: `default/${id}`,
          });
          seen.push(r.ips![0]!.address);
        } catch (err) {
          failures++;
          firstError ??= String((err as Error).message).slice(0, 160);
        }
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const out: Run = {
    rate: seen.length / secs,
    cpuMsPerAlloc: (cpu.user + cpu.system) / 1000 / Math.max(1, seen.length),
    failures,
    dups: seen.length - new Set(seen).size,
  };
  if (firstError) out.firstError = firstError;
  return out;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Interleaves the variants for `rounds` rounds; one row per variant with medians. */
async function compare(
  label: string,
  variants: Array<{
    name: string;
    make: (round: number) => MakeAlloc;
    nodes?: string[];
    extra?: () => string;
  }>,
  clients: number,
  per: number,
): Promise<void> {
  const results = variants.map(() => [] as Run[]);
  // Warm-up (client modules, connections, pools created), not counted.
  for (const [i, v] of variants.entries())
    await run(v.make(rounds), clients, 2, `${label.replace(/\W/g, '')}${i}w`, v.nodes);
  for (let r = 0; r < rounds; r++) {
    for (const [i, v] of variants.entries()) {
      results[i]!.push(await run(v.make(r), clients, per, `${label.replace(/\W/g, '')}${i}r${r}`, v.nodes));
    }
  }
  for (const [i, v] of variants.entries()) {
    const rs = results[i]!;
    const fails = rs.reduce((n, x) => n + x.failures, 0);
    const dups = rs.reduce((n, x) => n + x.dups, 0);
    const err = rs.find((x) => x.firstError)?.firstError;
    rows.push([
      `${label}: ${v.name}`,
      `${median(rs.map((x) => x.rate)).toFixed(0)} alloc/s`,
      `${median(rs.map((x) => x.cpuMsPerAlloc)).toFixed(2)} ms CPU/alloc; ${dups} duplicates; ${fails} failed${err ? ` (${err})` : ''}${v.extra ? `; ${v.extra()}` : ''}`,
    ]);
  }
}

async function etcdRows(etcd: TestEtcd, clients: number, per: number): Promise<void> {
  const conf = (round: number, v: string) => ({
    cniVersion: '1.1.0',
    name: 'wbconc',
    ipam: {
      type: 'whereabouts',
      range: '10.110.0.0/16',
      datastore: 'etcd',
      etcd_host: etcd.url,
      etcd_prefix: `/bench/${v}${round}`,
    },
  });
  const shared = new SharedStores();
  closers.push(() => shared.close());
  const factory = whereaboutsIpam({ sharedStores: shared });
  await compare(
    `etcd, ${clients} ADDs at once, one connection`,
    [
      {
        name: 'first try spread (now)',
        make: (r) => async () => factory(conf(r, 'a') as never, {}) as never,
      },
      {
        // Each call has its own in-flight count, so none sees the others: all first try cursor+1.
        name: 'first try at the cursor (before)',
        make: (r) => async () =>
          createWhereaboutsAllocator(conf(r, 'b'), { sharedStores: shared, closeAfterEachCall: true }),
      },
    ],
    clients,
    per,
  );
}

async function kubeRows(api: FakeK8s, clients: number, per: number): Promise<void> {
  const kube = cachedKubeConnect(openKubeApi);
  const kubeconfigs = Object.fromEntries(
    ['ka', 'kb'].map((ns) => [ns, api.writeKubeconfig(join(tmp, `kc-${ns}.json`), 'json', ns)]),
  );
  const conf = (round: number, v: string, ns: string) => ({
    cniVersion: '1.1.0',
    name: 'wbconc',
    ipam: {
      type: 'whereabouts',
      range: `10.${120 + round}.0.0/16`,
      kubernetes: { kubeconfig: kubeconfigs[ns] },
      network_name: v,
    },
  });
  const shared = new SharedStores();
  closers.push(() => shared.close());
  const factory = whereaboutsIpam({ kube, sharedStores: shared });
  const puts = (ns: string) => () => {
    const ps = api.requests.filter(
      (r) => r.method === 'PUT' && r.path.includes(`/namespaces/${ns}/ippools/`),
    );
    return `${ps.filter((p) => p.code === 200).length} PUTs, ${ps.filter((p) => p.code === 409).length} lost (409) over all rounds`;
  };
  await compare(
    `Kubernetes store (fake API server), ${clients} ADDs at once`,
    [
      {
        name: 'claims batched per IPPool (now)',
        make: (r) => async () => factory(conf(r, 'a', 'ka') as never, {}) as never,
        extra: puts('ka'),
      },
      {
        name: 'one store per call, a PUT per claim (before)',
        make: (r) => async () =>
          createWhereaboutsAllocator(conf(r, 'b', 'kb'), { kube, closeAfterEachCall: true }),
        extra: puts('kb'),
      },
    ],
    clients,
    per,
  );
}

async function sliceRows(api: FakeK8s, perNode: number, per: number): Promise<void> {
  const nodes = Array.from({ length: 8 }, (_, i) => `node-${i}`);
  const kubeconfig = api.writeKubeconfig(join(tmp, 'kc-slices.json'), 'json', 'slices');
  const kube = cachedKubeConnect(openKubeApi);
  const ipam = (round: number, sliced: boolean) => ({
    type: 'whereabouts',
    range: `10.${140 + round * 8}.0.0/13`,
    kubernetes: { kubeconfig },
    network_name: `${sliced ? 's' : 'o'}${round}`,
    ...(sliced ? { node_slice_size: '/16' } : {}),
  });
  const access = await openKubeApi(kubeconfig);
  for (let r = 0; r <= rounds; r++) {
    const nad = {
      metadata: { name: `s${r}`, namespace: 'default', uid: `u${r}` },
      spec: {
        config: JSON.stringify({ cniVersion: '1.1.0', name: `s${r}`, type: 'macvlan', ipam: ipam(r, true) }),
      },
    };
    await reconcileNodeSlices({ kube: access, nads: [nad], nodes, flatFilePaths: [] });
  }
  // One daemon per node: its own factory (shared stores, writers), NODENAME in the call's environment.
  const daemons = new Map(
    nodes.map((n) => {
      const shared = new SharedStores();
      closers.push(() => shared.close());
      return [n, whereaboutsIpam({ kube, sharedStores: shared, flatFilePaths: [] })] as const;
    }),
  );
  const make = (sliced: boolean) => (r: number) => async (call: { node: string }) =>
    daemons.get(call.node)!({ cniVersion: '1.1.0', name: 'x', ipam: ipam(r, sliced) } as never, {
      env: { NODENAME: call.node },
    }) as never;
  const puts = (sliced: boolean) => () => {
    const ps = api.requests.filter(
      (x) =>
        x.method === 'PUT' &&
        x.path.includes('/namespaces/slices/ippools/') &&
        x.path.includes(sliced ? '/ippools/s' : '/ippools/o'),
    );
    return `${ps.filter((p) => p.code === 200).length} PUTs, ${ps.filter((p) => p.code === 409).length} lost (409)`;
  };
  await compare(
    `8 nodes x ${perNode} ADDs at once (fake API server)`,
    [
      { name: 'node slices, one IPPool per node (now)', make: make(true), nodes, extra: puts(true) },
      { name: 'one IPPool shared by all nodes', make: make(false), nodes, extra: puts(false) },
    ],
    8 * perNode,
    per,
  );
}

async function main(): Promise<void> {
  const per = quick ? 10 : 40;
  let etcd: TestEtcd | undefined;
  if (hasEtcd()) etcd = await startEtcd('wbconcbench');
  const api = await startFakeK8s({ tls: false });
  try {
    if (only.includes('etcd')) {
      if (etcd) await etcdRows(etcd, 16, per);
      else rows.push(['etcd rows', 'skipped', 'no /usr/bin/etcd']);
    }
    if (only.includes('kube')) await kubeRows(api, 16, quick ? 5 : 15);
    if (only.includes('slices')) await sliceRows(api, 16, quick ? 2 : 5);
  } finally {
    for (const c of closers) await c().catch(() => {});
    await api.close();
    await etcd?.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
  table(['case', 'value', 'note'], rows);
}

main()
  .then(() => process.exit(0))
  .catch((err) => {
    console.error(err);
    process.exit(1);
  });
