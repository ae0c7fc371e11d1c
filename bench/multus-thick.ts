// multus thick mode: the cni-kit daemon started from a multus daemon config (--multus-config), with
// informer caches of its node's pods and of the NADs, serving multus-shim's wire on multus.sock.
// ADD+DEL of a pod with eth0 (Go bridge + host-local) and two macvlan attachments (Go macvlan +
// host-local): the delegates called directly (CniRuntime, the floor multus adds to), multus in the
// daemon with the pod in the cache (hit), and with a pod the cache does not hold (miss: one GET).
// Requests reach the socket from this process (as multus-shim sends them), interleaved A/B/C,
// medians. Then a burst of 200 concurrent pod ADDs (cluster network only, one pod netns each)
// against the daemon's default 256 MiB limit: its peak RSS, and every call answered (a result or a
// code-11 refusal, none dropped).
// Everything runs inside a node network namespace of its own (the bench re-execs itself there).
// Run as root after a build (npm run build): npx tsx bench/multus-thick.ts [rounds=15]
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CniRuntime, type RuntimeConf } from 'cni-kit/runtime';
import { startFakeK8s } from '../test/helpers/fake-k8s.js';
import {
  inNodeNetns,
  median,
  multusBenchNetworks,
  pairedRatio,
  procCpuTicksMs,
  procMemKiB,
  procTreeCpuTicksMs,
  startBenchDaemon,
  table,
} from './lib.js';

const GO = '/usr/lib/cni';
const ROOT = join(import.meta.dirname, '..');
if (
  process.getuid?.() !== 0 ||
  !existsSync(join(GO, 'macvlan')) ||
  !existsSync(join(ROOT, 'dist', 'cli.cjs')) ||
  !existsSync(join(ROOT, 'dist', 'bin', 'multus'))
) {
  console.error('skipped: needs root, the Go plugins in /usr/lib/cni and a build (dist/cli.cjs, dist/bin)');
  process.exit(0);
}
const N = Number(process.argv[2] ?? 15);
const tag = `mtk${process.pid % 10000}`;

// The node: its own loopback (the API server and the daemon's socket clients) and its own links.
const nodeNetns = await inNodeNetns(tag);
const work = mkdtempSync(join(tmpdir(), `${tag}-`));
const master = `${tag}m0`;
const pods: string[] = [];
const podNetns = (name: string) => {
  const n = `${tag}-${name}`;
  spawnSync('ip', ['netns', 'del', n]);
  execFileSync('ip', ['netns', 'add', n]);
  pods.push(n);
  return `/var/run/netns/${n}`;
};
let stopDaemon: (() => void) | undefined;
process.on('exit', () => {
  stopDaemon?.();
  for (const p of pods) spawnSync('ip', ['netns', 'del', p]);
  rmSync(work, { recursive: true, force: true });
});
execFileSync('ip', ['link', 'add', master, 'type', 'veth', 'peer', 'name', `${tag}m1`]);
execFileSync('ip', ['link', 'set', master, 'up']);

const { cluster, mv } = multusBenchNetworks(tag, work, master, '10.252');

const api = await startFakeK8s();
const kubeconfig = api.writeKubeconfig(join(work, 'kubeconfig'));
api.putNad('default', 'mv1', mv(1));
api.putNad('default', 'mv2', mv(2));
const networks = { 'k8s.v1.cni.cncf.io/networks': 'mv1,mv2' };
api.putPod({
  metadata: { name: 'hit', namespace: 'default', annotations: networks },
  spec: { nodeName: 'bench-node' },
});
api.putPod({
  metadata: { name: 'miss', namespace: 'default', annotations: networks },
  spec: { nodeName: 'elsewhere' },
});
for (let i = 0; i < 200; i++)
  api.putPod({ metadata: { name: `burst${i}`, namespace: 'default' }, spec: { nodeName: 'bench-node' } });

mkdirSync(join(work, 'net.d'));
writeFileSync(join(work, 'net.d', '10-cluster.conflist'), JSON.stringify(cluster));
const daemonConfig = join(work, 'daemon-config.json');
writeFileSync(
  daemonConfig,
  JSON.stringify({
    socketDir: join(work, 'multus-run'),
    multusConfigFile: 'auto',
    cniConfigDir: join(work, 'net.d'),
    kubeconfig,
    nodeName: 'bench-node',
    binDir: GO,
    cniDir: join(work, 'multus'),
  }),
);
const daemon = await startBenchDaemon({
  dir: join(work, 'daemon'),
  netns: nodeNetns,
  root: ROOT,
  extraArgs: ['--multus-config', daemonConfig, '--log-level', 'warn'],
});
stopDaemon = daemon.killNow;
const socket = join(work, 'multus-run', 'multus.sock');
const nodeConf = JSON.parse(readFileSync(join(work, 'net.d', '00-multus.conf'), 'utf8')) as Record<
  string,
  unknown
>;

function shim(
  command: string,
  pod: string,
  cid: string,
  netns: string,
): Promise<{ status: number; body: string }> {
  const env = {
    CNI_COMMAND: command,
    CNI_CONTAINERID: cid,
    CNI_NETNS: netns,
    CNI_IFNAME: 'eth0',
    CNI_PATH: GO,
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=${pod};K8S_POD_INFRA_CONTAINER_ID=${cid}`,
  };
  const payload = JSON.stringify({ env, config: Buffer.from(JSON.stringify(nodeConf)).toString('base64') });
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, path: '/cni', method: 'POST' }, (res) => {
      let body = '';
      res.on('data', (c) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end(payload);
  });
}

async function thick(pod: string, cid: string, netns: string): Promise<void> {
  for (const cmd of ['ADD', 'DEL']) {
    const r = await shim(cmd, pod, cid, netns);
    if (r.status !== 200) throw new Error(`multus ${cmd} ${pod}: ${r.status} ${r.body}`);
  }
}

const rt = new CniRuntime({ pluginDirs: [GO], cacheDir: join(work, 'direct-cache'), stderr: null });
async function direct(cid: string, netns: string): Promise<void> {
  const r = (ifname: string): RuntimeConf => ({ containerId: cid, netns, ifname });
  await rt.addNetworkList(JSON.stringify(cluster), r('eth0'));
  await rt.addNetwork(JSON.stringify(mv(1)), r('net1'));
  await rt.addNetwork(JSON.stringify(mv(2)), r('net2'));
  await rt.delNetwork(JSON.stringify(mv(2)), r('net2'));
  await rt.delNetwork(JSON.stringify(mv(1)), r('net1'));
  await rt.delNetworkList(JSON.stringify(cluster), r('eth0'));
}

const podGets = () => api.requests.filter((r) => r.method === 'GET' && /\/pods\/[^/]+$/.test(r.path)).length;
const ns = podNetns('pod');
const wall: Record<string, number[]> = { direct: [], hit: [], miss: [] };
const cpu: Record<string, number[]> = { direct: [], hit: [], miss: [] };
// The daemon's own figures alone (user+sys and its reaped children): what this bench counted before
// the delegates moved under the process helper, printed to show what that missed.
const cpuDaemonOnly: Record<string, number[]> = { hit: [], miss: [] };
const gets: Record<string, number> = { hit: 0, miss: 0 };
// One untimed round each first: the daemon's first call loads the multus bundle's client.
await direct('warm-d', ns);
await thick('hit', 'warm-h', ns);
await thick('miss', 'warm-m', ns);
const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const loadBefore = loadavg();
const order = ['direct', 'hit', 'miss'] as const;
for (let i = 0; i < N; i++) {
  // Rotated each round: a path never always follows the same one (a DEL's kernel work lingers).
  for (const key of [...order.slice(i % 3), ...order.slice(0, i % 3)]) {
    const me0 = procCpuTicksMs(process.pid).children;
    const c0 = procTreeCpuTicksMs(daemon.pid);
    const o0 = procCpuTicksMs(daemon.pid);
    const g0 = podGets();
    const t0 = process.hrtime.bigint();
    if (key === 'direct') await direct(`d${i}`, ns);
    else await thick(key, `${key}${i}`, ns);
    wall[key]?.push(Number(process.hrtime.bigint() - t0) / 1e6);
    const c1 = procTreeCpuTicksMs(daemon.pid);
    const o1 = procCpuTicksMs(daemon.pid);
    if (key === 'direct') cpu.direct?.push(procCpuTicksMs(process.pid).children - me0);
    else {
      cpu[key]?.push(c1.own + c1.children - c0.own - c0.children);
      cpuDaemonOnly[key]?.push(o1.own + o1.children - o0.own - o0.children);
      gets[key] = (gets[key] ?? 0) + podGets() - g0;
    }
  }
}

const d = median(wall.direct ?? []);
console.log(`ADD+DEL of a pod with eth0 + 2 attachments (Go delegates), median of ${N} rounds\n`);
table(
  [
    'path',
    'median ms',
    'vs direct',
    'per round vs direct: median (IQR)',
    'CPU ms (10 ms ticks)',
    'CPU vs direct',
    'pod GETs per ADD+DEL',
  ],
  [
    [
      'delegates called directly (CniRuntime, 3 networks; CPU: the Go children)',
      d.toFixed(1),
      '1.00x',
      '',
      median(cpu.direct ?? []).toFixed(1),
      '1.00x',
      '',
    ],
    ...(['hit', 'miss'] as const).map((k) => {
      const m = median(wall[k] ?? []);
      const p = pairedRatio(wall[k] ?? [], wall.direct ?? []);
      return [
        `multus in the daemon, cache ${k} (CPU: the daemon's process tree: it, its process helper, the delegates)`,
        m.toFixed(1),
        `${(m / d).toFixed(2)}x`,
        `${p.median.toFixed(2)}x (${p.q1.toFixed(2)}–${p.q3.toFixed(2)})`,
        median(cpu[k] ?? []).toFixed(1),
        `${(median(cpu[k] ?? []) / median(cpu.direct ?? [])).toFixed(2)}x`,
        ((gets[k] ?? 0) / N).toFixed(1),
      ];
    }),
  ],
);
console.log(`load average before / after: ${loadBefore} / ${loadavg()}`);

console.log(
  `\nCPU of the daemon process alone (its own user+sys and reaped children, without its process helper and the delegates it ran): hit ${median(cpuDaemonOnly.hit ?? []).toFixed(1)} ms, miss ${median(cpuDaemonOnly.miss ?? []).toFixed(1)} ms\n`,
);

// The burst: 200 pods at once, each in its own netns, cluster network only.
const burstNs = Array.from({ length: 200 }, (_, i) => podNetns(`b${i}`));
const before = procMemKiB(daemon.pid);
let peak = 0;
const sampler = setInterval(() => {
  peak = Math.max(peak, procMemKiB(daemon.pid).rss);
}, 5);
const t0 = Date.now();
const replies = await Promise.all(burstNs.map((n, i) => shim('ADD', `burst${i}`, `burst${i}`, n)));
const burstMs = Date.now() - t0;
clearInterval(sampler);
const after = procMemKiB(daemon.pid);
const ok = replies.filter((r) => r.status === 200).length;
const refused = replies.filter((r) => r.status !== 200 && JSON.parse(r.body).code === 11).length;
const other = replies.length - ok - refused;
const reasons = new Map<string, number>();
for (const r of replies.filter((x) => x.status !== 200)) {
  const msg = String(JSON.parse(r.body).msg ?? r.body)
    .replace(/\d+/g, 'N')
    .slice(0, 600);
  reasons.set(msg, (reasons.get(msg) ?? 0) + 1);
}
await Promise.all(burstNs.map((n, i) => shim('DEL', `burst${i}`, `burst${i}`, n)));
for (const [msg, n] of reasons) console.log(`refused ${n}x: ${msg}`);
console.log(
  '\nA burst of 200 concurrent pod ADDs (cluster network: Go bridge + host-local), limit 256 MiB\n',
);
table(
  [
    'answered with a result',
    'refused (code 11)',
    'other',
    'wall s',
    'RSS before MiB',
    'peak RSS MiB (5 ms samples, VmHWM)',
  ],
  [
    [
      ok,
      refused,
      other,
      (burstMs / 1000).toFixed(1),
      (before.rss / 1024).toFixed(0),
      `${(peak / 1024).toFixed(0)} (${(after.hwm / 1024).toFixed(0)})`,
    ],
  ],
);
await daemon.stop();
stopDaemon = undefined;
await api.close();
