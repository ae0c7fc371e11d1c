// The delegator's overhead: ADD+DEL of a pod with eth0 (Go bridge + host-local) and two macvlan
// attachments (Go macvlan + host-local), once through dist/bin/multus (delegates mode, and
// Kubernetes mode against the in-process API server) and once with the same three delegates
// called directly the way a runtime would (cnitool-like: one exec chain per network). A second table
// shows what Kubernetes mode pays to load @kubernetes/client-node from the binaries' sidecar.
// Run as root after a build: npx tsx bench/multus.ts [rounds=15]
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CniRuntime, type RuntimeConf } from 'cni-kit/runtime';
import { startFakeK8s } from '../test/helpers/fake-k8s.js';
import { median, multusBenchNetworks, table } from './lib.js';

const GO = '/usr/lib/cni';
const BIN = join(import.meta.dirname, '..', 'dist', 'bin', 'multus');
if (process.getuid?.() !== 0 || !existsSync(join(GO, 'macvlan')) || !existsSync(BIN)) {
  console.error('skipped: needs root, the Go plugins in /usr/lib/cni and a built dist/bin/multus');
  process.exit(0);
}
const N = Number(process.argv[2] ?? 15);
const tag = `mbn${process.pid % 10000}`;
const work = mkdtempSync(join(tmpdir(), `${tag}-`));
const ns = `${tag}-pod`;
const nsPath = `/var/run/netns/${ns}`;
const master = `${tag}m0`;

const { cluster, mv } = multusBenchNetworks(tag, work, master, '10.251');

function cleanup(): void {
  spawnSync('ip', ['netns', 'del', ns]);
  spawnSync('ip', ['link', 'del', master]);
  spawnSync('ip', ['link', 'del', `${tag}br`]);
  rmSync(work, { recursive: true, force: true });
}
process.on('exit', cleanup);
spawnSync('ip', ['netns', 'del', ns]);
execFileSync('ip', ['netns', 'add', ns]);
execFileSync('ip', ['link', 'add', master, 'type', 'veth', 'peer', 'name', `${tag}m1`]);
execFileSync('ip', ['link', 'set', master, 'up']);

function runMultus(command: string, conf: unknown, cid: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn(BIN, [], {
      env: {
        PATH: process.env.PATH ?? '',
        CNI_COMMAND: command,
        CNI_CONTAINERID: cid,
        CNI_NETNS: nsPath,
        CNI_IFNAME: 'eth0',
        CNI_PATH: GO,
        CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=bench`,
      },
    });
    let out = '';
    c.stdout.on('data', (b: Buffer) => {
      out += b;
    });
    c.on('error', reject);
    c.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`multus ${command}: ${out}`))));
    c.stdin.end(JSON.stringify(conf));
  });
}

const rt = new CniRuntime({ pluginDirs: [GO], cacheDir: join(work, 'direct-cache'), stderr: null });
async function direct(cid: string): Promise<void> {
  const r = (ifname: string): RuntimeConf => ({ containerId: cid, netns: nsPath, ifname });
  await rt.addNetworkList(JSON.stringify(cluster), r('eth0'));
  await rt.addNetwork(JSON.stringify(mv(1)), r('net1'));
  await rt.addNetwork(JSON.stringify(mv(2)), r('net2'));
  await rt.delNetwork(JSON.stringify(mv(2)), r('net2'));
  await rt.delNetwork(JSON.stringify(mv(1)), r('net1'));
  await rt.delNetworkList(JSON.stringify(cluster), r('eth0'));
}

const base = {
  cniVersion: '1.0.0',
  name: 'multus-cni-network',
  type: 'multus',
  cniDir: join(work, 'multus'),
  binDir: GO,
};
const delegatesConf = { ...base, delegates: [cluster, mv(1), mv(2)] };
const api = await startFakeK8s();
api.putNad('default', 'mv1', mv(1));
api.putNad('default', 'mv2', mv(2));
api.putPod({
  metadata: {
    name: 'bench',
    namespace: 'default',
    annotations: { 'k8s.v1.cni.cncf.io/networks': 'mv1,mv2' },
  },
});
const k8sConf = {
  ...base,
  kubeconfig: api.writeKubeconfig(join(work, 'kubeconfig')),
  delegates: [cluster],
};

const SIDECAR = join(BIN, '..', 'lib', 'kubernetes-client-node', 'index.cjs');

function nodeStart(script = '0'): Promise<void> {
  return new Promise((resolve, reject) => {
    // a clean env, as multus gets above: an inherited NODE_EXTRA_CA_CERTS would add ~100 ms
    const c = spawn(process.execPath, ['-e', script], { env: { PATH: process.env.PATH ?? '' } });
    c.on('error', reject);
    c.on('close', () => resolve());
  });
}

const rows: Record<string, number[]> = {
  direct: [],
  delegates: [],
  kubernetes: [],
  floor: [],
  client: [],
  bare: [],
};
for (let i = 0; i < N; i++) {
  for (const [key, fn] of [
    ['direct', () => direct(`d${i}`)],
    [
      'delegates',
      async () => {
        await runMultus('ADD', delegatesConf, `m${i}`);
        await runMultus('DEL', delegatesConf, `m${i}`);
      },
    ],
    [
      'kubernetes',
      async () => {
        await runMultus('ADD', k8sConf, `k${i}`);
        await runMultus('DEL', k8sConf, `k${i}`);
      },
    ],
    [
      'floor',
      async () => {
        await nodeStart();
        await nodeStart();
      },
    ],
    ['bare', () => nodeStart()],
    ['client', () => nodeStart(`require(${JSON.stringify(SIDECAR)})`)],
  ] as const) {
    const t0 = process.hrtime.bigint();
    await fn();
    rows[key]?.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
}
await api.close();

const d = median(rows.direct ?? []);
console.log(`ADD+DEL of a pod with eth0 + 2 attachments (Go delegates), median of ${N} rounds\n`);
table(
  ['path', 'median ms', 'vs direct', 'overhead ms'],
  [
    ['delegates called directly (CniRuntime, 3 networks)', d.toFixed(1), '1.00x', '0'],
    ...(['delegates', 'kubernetes'] as const).map((k) => {
      const m = median(rows[k] ?? []);
      return [`dist/bin/multus, ${k} mode`, m.toFixed(1), `${(m / d).toFixed(2)}x`, (m - d).toFixed(1)];
    }),
    ['(floor: starting node twice, nothing else)', median(rows.floor ?? []).toFixed(1), '', ''],
  ],
);
console.log(
  '\nThe overhead is two Node process starts (the floor row), loading the multus bundle, and its\n' +
    'bookkeeping (delegate and result caches, written with fsync); Kubernetes mode adds the client below.',
);
const bare = median(rows.bare ?? []);
const client = median(rows.client ?? []);
console.log(`\nLoading @kubernetes/client-node from dist/bin/lib in a fresh process, median of ${N}\n`);
table(
  ['process', 'median ms', 'over node -e 0'],
  [
    ['node -e 0', bare.toFixed(1), ''],
    ['node -e "require(<client-node sidecar>)"', client.toFixed(1), (client - bare).toFixed(1)],
  ],
);
