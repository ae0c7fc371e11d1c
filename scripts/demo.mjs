#!/usr/bin/env node
// `npm run demo`: two pods on a cluster network (eth0: bridge + host-local) and an attachment
// network (net1: macvlan + the whereabouts-style allocator on its file store), wired by multus in
// Kubernetes mode against an in-process API server. Everything lives in network namespaces this
// script creates (a "node" netns runs the plugins, so the machine's own interfaces are never
// touched) and is removed at the end, also on failure. Exit status 0 only if the pods can ping.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setup } from './setup.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = join(root, 'dist', 'bin');
const GO = '/usr/lib/cni';
const inNode = process.argv[2] === '--in-node';
const id = inNode ? process.argv[3] : `cdemo${process.pid % 10000}`;
const node = `${id}-node`;
const pods = [`${id}-pod1`, `${id}-pod2`];
const work = inNode ? process.argv[4] : mkdtempSync(join(tmpdir(), `${id}-`));
let api;

const say = (s = '') => console.log(s);
// Bold headings on a terminal only; piped or logged output stays plain text.
const head = (s) => say(process.stdout.isTTY ? `\n\x1b[1m== ${s}\x1b[0m` : `\n== ${s}`);

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...opts });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0 && !opts.allowFail) {
    // stdio: 'inherit' leaves no captured output: the command has printed its error already.
    const output = (r.stderr || r.stdout || '').trim();
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}${output ? `: ${output}` : ''}`);
  }
  return r;
}
const ipn = (ns, ...args) => run('ip', ['netns', 'exec', ns, ...args]).stdout;

/** Network namespaces this run created: the only ones cleanup removes or mentions. */
const created = [];

function cleanup() {
  for (const ns of created.reverse()) spawnSync('ip', ['netns', 'del', ns]);
  rmSync(work, { recursive: true, force: true });
}

function preflight() {
  if (process.getuid?.() !== 0)
    throw new Error('the demo creates network namespaces: run it as root (sudo npm run demo)');
  if (spawnSync('ip', ['-V']).status !== 0) throw new Error('iproute2 (the ip command) is not installed');
  if (spawnSync('ping', ['-V']).error) throw new Error('ping (iputils-ping) is not installed');
}

function pickPlugins() {
  const ours = ['bridge', 'macvlan', 'host-local', 'whereabouts', 'multus'].every((p) =>
    existsSync(join(bin, p)),
  );
  if (ours) return { path: bin, who: 'cni-kit' };
  // Until our bridge/macvlan exist, the Go reference plugins carry eth0/net1; whereabouts is ours.
  if (['bridge', 'macvlan', 'host-local'].every((p) => existsSync(join(GO, p)))) {
    return { path: `${bin}:${GO}`, who: 'Go reference bridge/macvlan/host-local + cni-kit whereabouts' };
  }
  throw new Error('no bridge/macvlan plugins found in dist/bin or /usr/lib/cni');
}

/** Runs multus as the runtime would. Asynchronous: the API server answers from this same process. */
function multus(command, pod, conf, cniPath) {
  return new Promise((resolve, reject) => {
    const child = spawn(join(bin, 'multus'), [], {
      env: {
        PATH: process.env.PATH,
        CNI_COMMAND: command,
        CNI_CONTAINERID: `${pod}-sandbox`,
        CNI_NETNS: `/var/run/netns/${pod}`,
        CNI_IFNAME: 'eth0',
        CNI_PATH: cniPath,
        CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=${pod};K8S_POD_INFRA_CONTAINER_ID=${pod}-sandbox`,
      },
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => {
      out += c;
    });
    child.stderr.on('data', (c) => {
      err += c;
    });
    child.on('error', reject);
    child.on('close', (status) => {
      if (status !== 0) reject(new Error(`multus ${command} for ${pod} failed: ${out.trim()} ${err.trim()}`));
      else resolve(out ? JSON.parse(out) : undefined);
    });
    child.stdin.end(JSON.stringify(conf));
  });
}

/** Outer process: build, create the namespaces, run the inner part inside the node netns. */
function outer() {
  setup();
  preflight();
  head('build');
  run('node', ['scripts/build-bins.mjs'], { cwd: root, stdio: 'inherit' });
  head('node and pods');
  for (const ns of [node, ...pods]) {
    spawnSync('ip', ['netns', 'del', ns]);
    run('ip', ['netns', 'add', ns]);
    created.push(ns);
    ipn(ns, 'ip', 'link', 'set', 'lo', 'up');
  }
  // The macvlan parent lives in the node netns: a veth pair, both ends up so the parent has carrier.
  ipn(node, 'ip', 'link', 'add', 'uplink0', 'type', 'veth', 'peer', 'name', 'uplink1');
  ipn(node, 'ip', 'link', 'set', 'uplink0', 'up');
  ipn(node, 'ip', 'link', 'set', 'uplink1', 'up');
  say(`netns ${node} runs the API server, multus and its delegates; pods: ${pods.join(', ')}`);
  // The API server and the plugins share the node netns, so 127.0.0.1 reaches the server.
  const r = spawnSync(
    'ip',
    ['netns', 'exec', node, process.execPath, fileURLToPath(import.meta.url), '--in-node', id, work],
    {
      stdio: 'inherit',
    },
  );
  if (r.status !== 0) throw new Error('see above');
}

/** Inner process, inside the node netns: API server, multus ADD, status, ping, DEL. */
async function inner() {
  const plugins = pickPlugins();
  say(`delegates: ${plugins.who}`);
  // The API server: the same small one the tests use, loaded through tsx.
  const { tsImport } = await import('tsx/esm/api');
  const { startFakeK8s } = await tsImport('../test/helpers/fake-k8s.ts', import.meta.url);
  api = await startFakeK8s();
  const kubeconfig = api.writeKubeconfig(join(work, 'kubeconfig'), 'yaml');
  const cluster = {
    cniVersion: '1.0.0',
    name: 'cluster',
    plugins: [
      {
        type: 'bridge',
        bridge: 'cni0',
        isGateway: true,
        ipMasq: false,
        ipam: {
          type: 'host-local',
          subnet: '10.88.0.0/24',
          routes: [{ dst: '0.0.0.0/0' }],
          dataDir: join(work, 'host-local'),
        },
      },
    ],
  };
  writeFileSync(join(work, '10-cluster.conflist'), JSON.stringify(cluster));
  api.putNad('default', 'macvlan-whereabouts', {
    cniVersion: '1.0.0',
    type: 'macvlan',
    master: 'uplink0',
    mode: 'bridge',
    ipam: {
      type: 'whereabouts',
      range: '192.168.77.0/24',
      // One node: the file store, asked for by name (unnamed, whereabouts needs a kubeconfig from
      // the ipam block or its flat file, and fails naming both when there is none).
      datastore: 'file',
      data_dir: join(work, 'whereabouts'),
    },
  });
  for (const pod of pods) {
    api.putPod({
      metadata: {
        name: pod,
        namespace: 'default',
        annotations: { 'k8s.v1.cni.cncf.io/networks': 'macvlan-whereabouts' },
      },
    });
  }
  const conf = {
    cniVersion: '1.0.0',
    name: 'multus-cni-network',
    type: 'multus',
    kubeconfig,
    clusterNetwork: join(work, '10-cluster.conflist'),
    cniDir: join(work, 'multus'),
    confDir: join(work, 'net.d'),
    binDir: bin,
  };
  say(
    `API server ${api.url}; NAD default/macvlan-whereabouts; pods annotated k8s.v1.cni.cncf.io/networks: macvlan-whereabouts`,
  );

  const net1 = {};
  const eth0 = {};
  for (const pod of pods) {
    head(`multus ADD ${pod}`);
    const res = await multus('ADD', pod, conf, plugins.path);
    say(`result (the cluster network's): ${res.ips.map((i) => i.address).join(', ')}`);
    eth0[pod] = res.ips[0].address.split('/')[0];
    say(ipn(pod, 'ip', '-br', 'addr', 'show').trim());
    say(`routes of ${pod}:`);
    say(ipn(pod, 'ip', 'route', 'show').trim());
    const status = api.getPod('default', pod).metadata.annotations['k8s.v1.cni.cncf.io/network-status'];
    say('k8s.v1.cni.cncf.io/network-status:');
    say(status);
    net1[pod] = JSON.parse(status).find((s) => s.interface === 'net1').ips[0];
  }

  for (const [ifname, addrs] of [
    ['eth0', eth0],
    ['net1', net1],
  ]) {
    head(`ping ${pods[0]} -> ${pods[1]} over ${ifname} (${addrs[pods[1]]})`);
    const ping = run(
      'ip',
      ['netns', 'exec', pods[0], 'ping', '-c', '3', '-i', '0.2', '-W', '2', '-I', ifname, addrs[pods[1]]],
      { allowFail: true },
    );
    say(ping.stdout.trim());
    if (ping.status !== 0)
      throw new Error(`ping over ${ifname} failed: ${(ping.stderr || ping.stdout).trim()}`);
  }

  for (const pod of pods) {
    head(`multus DEL ${pod}`);
    await multus('DEL', pod, conf, plugins.path);
    say(ipn(pod, 'ip', '-br', 'link', 'show').trim());
  }
}

let code = 0;
if (process.argv[2] === '--in-node') {
  try {
    await inner();
  } catch (err) {
    console.error(`\ndemo failed: ${err.message}`);
    code = 1;
  } finally {
    await api?.close();
  }
  process.exit(code);
}
const onSignal = () => {
  cleanup();
  process.exit(130);
};
process.once('SIGINT', onSignal);
process.once('SIGTERM', onSignal);
try {
  outer();
  head('demo passed: two pods, eth0 on the cluster network, net1 on macvlan + whereabouts, ping ok on both');
} catch (err) {
  if (err.message !== 'see above') console.error(`\ndemo failed: ${err.message}`);
  code = 1;
} finally {
  const removed = [...created];
  cleanup();
  say(`cleaned up: ${removed.length ? `netns ${removed.join(', ')} and ` : ''}${work} removed`);
}
process.exit(code);
