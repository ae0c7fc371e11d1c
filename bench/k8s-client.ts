// What Kubernetes access costs a plugin call: loading @kubernetes/client-node (from node_modules,
// and from the binaries' sidecar bundle by require and by import()), and the multus ADD / DEL in
// Kubernetes mode against the in-process API server, next to the same ADD with inline delegates
// and next to the Go delegates called directly (the reference floor). With BEFORE_BIN=<path to
// another multus binary> (e.g. one built from the previous commit) its ADD / DEL run side by side.
// Run as root after a build: npx tsx bench/k8s-client.ts [rounds=10]
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CniRuntime } from 'cni-kit';
import { startFakeK8s } from '../test/helpers/fake-k8s.js';
import { median, table } from './lib.js';

const GO = '/usr/lib/cni';
const ROOT = join(import.meta.dirname, '..');
const DIST = join(ROOT, 'dist', 'bin');
const BEFORE = process.env.BEFORE_BIN;
if (process.getuid?.() !== 0 || !existsSync(join(GO, 'macvlan')) || !existsSync(join(DIST, 'multus'))) {
  console.error('skipped: needs root, the Go plugins in /usr/lib/cni and a built dist/bin/multus');
  process.exit(0);
}
const N = Number(process.argv[2] ?? 10);
const tag = `kcb${process.pid % 10000}`;
const work = mkdtempSync(join(tmpdir(), `${tag}-`));
const ns = `${tag}-pod`;
const nsPath = `/var/run/netns/${ns}`;
const master = `${tag}m0`;
// A private copy of the binary and its sidecars: parallel builds rewrite dist/bin/lib meanwhile.
for (const f of ['multus', 'package.json', 'lib'])
  cpSync(join(DIST, f), join(work, 'bin', f), { recursive: true });
const BIN = join(work, 'bin', 'multus');
const SIDECAR = join(work, 'bin', 'lib', 'kubernetes-client-node', 'index.cjs');

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

const cluster = {
  cniVersion: '1.0.0',
  name: 'bench-cluster',
  plugins: [
    {
      type: 'bridge',
      bridge: `${tag}br`,
      isGateway: true,
      ipam: { type: 'host-local', subnet: '10.252.0.0/24', dataDir: join(work, 'ipam') },
    },
  ],
};
const mv = {
  cniVersion: '1.0.0',
  name: 'bench-mv',
  type: 'macvlan',
  master,
  ipam: { type: 'host-local', subnet: '10.252.1.0/24', dataDir: join(work, 'ipam') },
};

/** Wall time of one process run, in ms. */
function timed(cmd: string, args: string[], env: Record<string, string>, input = ''): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const c = spawn(cmd, args, { env });
    let out = '';
    c.stdout.on('data', (b: Buffer) => {
      out += b;
    });
    c.on('error', reject);
    c.on('close', (code) => {
      if (code !== 0) reject(new Error(`${cmd} ${args.join(' ')}: exit ${code} ${out}`));
      else resolve(Number(process.hrtime.bigint() - t0) / 1e6);
    });
    c.stdin.end(input);
  });
}

const cniEnv = (command: string, cid: string) => ({
  PATH: process.env.PATH ?? '',
  CNI_COMMAND: command,
  CNI_CONTAINERID: cid,
  CNI_NETNS: nsPath,
  CNI_IFNAME: 'eth0',
  CNI_PATH: GO,
  CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=bench',
});

const api = await startFakeK8s();
api.putNad('default', 'mv', mv);
api.putPod({
  metadata: { name: 'bench', namespace: 'default', annotations: { 'k8s.v1.cni.cncf.io/networks': 'mv' } },
});
const base = { cniVersion: '1.0.0', name: 'multus-cni-network', type: 'multus', binDir: GO };
const k8sConf = (dir: string) =>
  JSON.stringify({
    ...base,
    cniDir: join(work, dir),
    kubeconfig: api.writeKubeconfig(join(work, 'kubeconfig')),
    delegates: [cluster],
  });
const inlineConf = JSON.stringify({ ...base, cniDir: join(work, 'inline'), delegates: [cluster, mv] });
const rt = new CniRuntime({ pluginDirs: [GO], cacheDir: join(work, 'direct-cache'), stderr: null });

const node = process.execPath;
const loads: Array<[string, string[]]> = [
  ['node -e 0 (floor)', ['-e', '0']],
  ['import("@kubernetes/client-node") from node_modules', ['-e', `import('@kubernetes/client-node')`]],
];
if (existsSync(SIDECAR)) {
  loads.push(['require(sidecar) (what the binary does)', ['-e', `require(${JSON.stringify(SIDECAR)})`]]);
  loads.push(['import(sidecar)', ['-e', `import(${JSON.stringify(SIDECAR)})`]]);
}
const rows: Record<string, number[]> = {};
const add = (k: string, v: number) => {
  rows[k] ??= [];
  rows[k].push(v);
};
for (let i = 0; i < N; i++) {
  for (const [label, args] of loads) add(label, await timed(node, args, { PATH: process.env.PATH ?? '' }));
  const r = (ifname: string) => ({ containerId: `d${i}`, netns: nsPath, ifname });
  let t0 = process.hrtime.bigint();
  await rt.addNetworkList(JSON.stringify(cluster), r('eth0'));
  await rt.addNetwork(JSON.stringify(mv), r('net1'));
  add('ADD: Go delegates called directly (CniRuntime)', Number(process.hrtime.bigint() - t0) / 1e6);
  t0 = process.hrtime.bigint();
  await rt.delNetwork(JSON.stringify(mv), r('net1'));
  await rt.delNetworkList(JSON.stringify(cluster), r('eth0'));
  add('DEL: Go delegates called directly (CniRuntime)', Number(process.hrtime.bigint() - t0) / 1e6);
  const bins: Array<[string, string, string]> = [
    ['multus, inline delegates (no API)', BIN, inlineConf],
    ['multus, Kubernetes mode (client-node)', BIN, k8sConf('now')],
  ];
  if (BEFORE && existsSync(BEFORE))
    bins.push(['multus, Kubernetes mode (BEFORE_BIN)', BEFORE, k8sConf('before')]);
  for (const [label, bin, conf] of bins) {
    add(`ADD: ${label}`, await timed(bin, [], cniEnv('ADD', `${tag}${i}`), conf));
    add(`DEL: ${label}`, await timed(bin, [], cniEnv('DEL', `${tag}${i}`), conf));
  }
}
await api.close();

const floor = median(rows['node -e 0 (floor)'] ?? []);
console.log(`Loading @kubernetes/client-node in a fresh process, median of ${N}\n`);
table(
  ['what', 'median ms', 'minus node start'],
  loads.map(([k]) => {
    const m = median(rows[k] ?? []);
    return [k, m.toFixed(0), (m - floor).toFixed(0)];
  }),
);
for (const verb of ['ADD', 'DEL']) {
  const ref = median(rows[`${verb}: Go delegates called directly (CniRuntime)`] ?? []);
  console.log(`\n${verb} of a pod with eth0 (Go bridge) + net1 (Go macvlan), median of ${N}\n`);
  table(
    ['path', 'median ms', 'vs Go direct'],
    Object.keys(rows)
      .filter((k) => k.startsWith(`${verb}: `))
      .map((k) => {
        const m = median(rows[k] ?? []);
        return [k.slice(verb.length + 2), m.toFixed(0), `${(m / ref).toFixed(2)}x`];
      }),
  );
}
