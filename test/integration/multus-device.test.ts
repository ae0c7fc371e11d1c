// multus with device-plugin resources (SR-IOV style), as the runtime runs it (the binary, or the
// shim and daemon in daemon mode): NADs annotated with k8s.v1.cni.cncf.io/resourceName get the
// pod's devices from a fake kubelet (real gRPC on a Unix socket), one per attachment in order; the
// delegates (the debug plugin, which records what it receives) see deviceID/pciBusID in their
// config and deviceID/CNIDeviceInfoFile in runtimeConfig where declared; the device-info files
// follow the spec and network-status carries device-info. Errors name what is missing.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NETWORK_STATUS_ANNOTATION, type NetworkStatus } from 'cni-kit/k8s';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { type FakeK8s, startFakeK8s } from '../helpers/fake-k8s.js';
import { type FakePodResources, startFakePodResources } from '../helpers/fake-podresources.js';
import { pluginDir } from '../helpers/mode.js';
import { BIN_DIR } from '../helpers/plugin.js';

const tag = `mdv${process.pid % 100000}`;
const SRIOV = 'intel.com/sriov_netdevice';
const VF1 = '0000:03:02.1';
const VF2 = '0000:03:02.2';
let work = '';
let api: FakeK8s;
let kubelet: FakePodResources;
let kubeconfig = '';
const netnses: string[] = [];
let seq = 0;

const need = (ctx: TestContext) => {
  if (process.getuid?.() !== 0) ctx.skip('needs root for network namespaces');
};

function netns(): string {
  const name = `${tag}-${++seq}`;
  spawnSync('ip', ['netns', 'del', name]);
  execFileSync('ip', ['netns', 'add', name]);
  netnses.push(name);
  return `/var/run/netns/${name}`;
}

const devDir = () => join(work, 'devinfo');
const record = () => join(work, 'calls.jsonl');
const conf = (extra: Record<string, unknown> = {}) => ({
  cniVersion: '1.0.0',
  name: 'multus-cni-network',
  type: 'multus',
  kubeconfig,
  clusterNetwork: 'cluster-net',
  cniDir: join(work, 'multus'),
  confDir: join(work, 'confdir'),
  binDir: BIN_DIR,
  kubeletSocket: kubelet.socket,
  deviceInfoDir: devDir(),
  ...extra,
});

function run(command: string, pod: string, ns: string, c: unknown = conf()) {
  return new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
    const child = spawn(join(pluginDir(), 'multus'), [], {
      env: {
        PATH: process.env.PATH ?? '',
        CNI_COMMAND: command,
        CNI_CONTAINERID: `${tag}${pod}`,
        CNI_NETNS: ns,
        CNI_IFNAME: 'eth0',
        CNI_PATH: BIN_DIR,
        CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=${pod}`,
      },
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => {
      out += b;
    });
    child.stderr.on('data', (b: Buffer) => {
      err += b;
    });
    child.on('close', (code) => resolve({ code, out, err }));
    child.stdin.on('error', () => {});
    child.stdin.end(JSON.stringify(c));
  });
}

interface Call {
  command: string;
  env: Record<string, string>;
  config: Record<string, unknown>;
}
const calls = (): Call[] =>
  existsSync(record())
    ? readFileSync(record(), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Call)
    : [];

const status = (pod: string): NetworkStatus[] =>
  JSON.parse(api.getPod('default', pod)?.metadata.annotations?.[NETWORK_STATUS_ANNOTATION] ?? '[]');
const cniFiles = () => (existsSync(join(devDir(), 'cni')) ? readdirSync(join(devDir(), 'cni')) : []);

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), `${tag}-`));
  mkdirSync(join(work, 'confdir'));
  writeFileSync(
    join(work, 'confdir', 'cluster-net.conf'),
    JSON.stringify({ cniVersion: '1.0.0', name: 'cluster-net', type: 'debug', ips: ['10.9.0.2/24'] }),
  );
  // The device plugin wrote extended information for VF1 only.
  mkdirSync(join(work, 'devinfo', 'dp'), { recursive: true });
  writeFileSync(
    join(work, 'devinfo', 'dp', `intel.com-sriov_netdevice-${VF1}-device.json`),
    JSON.stringify({
      type: 'pci',
      version: '1.1.0',
      pci: { 'pci-address': VF1, 'pf-pci-address': '0000:03:00.0' },
    }),
  );
  api = await startFakeK8s();
  kubeconfig = api.writeKubeconfig(join(work, 'kubeconfig.yaml'), 'yaml');
  const sriov = { 'k8s.v1.cni.cncf.io/resourceName': SRIOV };
  api.putNad(
    'default',
    'sriov-a',
    {
      cniVersion: '1.0.0',
      type: 'debug',
      capabilities: { deviceID: true, CNIDeviceInfoFile: true },
      recordFile: record(),
      ips: ['10.10.0.5/24'],
    },
    sriov,
  );
  api.putNad(
    'default',
    'sriov-b',
    {
      cniVersion: '1.0.0',
      plugins: [
        { type: 'debug', recordFile: record(), ips: ['10.11.0.5/24'] },
        { type: 'debug', recordFile: record(), capabilities: { deviceID: true } },
      ],
    },
    sriov,
  );
  api.putNad('default', 'plain', { cniVersion: '1.0.0', type: 'debug', recordFile: record() });
  api.putNad('default', 'failing', {
    cniVersion: '1.0.0',
    type: 'debug',
    fail: { code: 11, msg: 'not now' },
  });
  kubelet = await startFakePodResources({
    pods: [
      {
        name: 'two-vfs',
        namespace: 'default',
        containers: [
          { name: 'app', devices: [{ resource_name: SRIOV, device_ids: [VF1] }] },
          { name: 'helper', devices: [{ resource_name: SRIOV, device_ids: [VF2] }] },
        ],
      },
      {
        name: 'one-vf',
        namespace: 'default',
        containers: [{ name: 'app', devices: [{ resource_name: SRIOV, device_ids: [VF1] }] }],
      },
      { name: 'no-vf', namespace: 'default', containers: [{ name: 'app' }] },
    ],
  });
});

afterAll(async () => {
  for (const n of netnses) spawnSync('ip', ['netns', 'del', n]);
  await kubelet?.close();
  await api?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** A clean record of delegate calls, a pod netns, and the pod asking for `networks`. */
function freshPod(name: string, networks: string): string {
  rmSync(record(), { force: true });
  const ns = netns();
  api.putPod({
    metadata: { name, namespace: 'default', annotations: { 'k8s.v1.cni.cncf.io/networks': networks } },
  });
  return ns;
}

describe('multus with device-plugin resources', () => {
  it('gives each resourceName attachment its own device: config, runtimeConfig, device-info files, network-status', async (ctx) => {
    need(ctx);
    const ns = freshPod('two-vfs', 'sriov-a,plain,sriov-b');
    const add = await run('ADD', 'two-vfs', ns);
    expect(add.code, `${add.out}\n${add.err}`).toBe(0);
    expect(kubelet.calls).toContain('Get default/two-vfs');

    const adds = calls().filter((c) => c.command === 'ADD');
    const byIf = (ifname: string) => adds.filter((c) => c.env.CNI_IFNAME === ifname).map((c) => c.config);
    const cid = `${tag}two-vfs`;
    const fileA = join(devDir(), 'cni', `default-sriov-a-${cid}_net1`);
    const fileB = join(devDir(), 'cni', `default-sriov-b-${cid}_net3`);
    // sriov-a (one plugin declaring both capabilities): VF1 everywhere.
    const [a] = byIf('net1');
    expect(a).toMatchObject({
      deviceID: VF1,
      pciBusID: VF1,
      runtimeConfig: { deviceID: VF1, CNIDeviceInfoFile: fileA },
    });
    // plain: untouched.
    const [p] = byIf('net2');
    expect(p).not.toHaveProperty('deviceID');
    expect(p).not.toHaveProperty('runtimeConfig');
    // sriov-b (a list): VF2 in every plugin; runtimeConfig only where a capability is declared.
    const [b1, b2] = byIf('net3');
    expect(b1).toMatchObject({ deviceID: VF2, pciBusID: VF2 });
    expect(b1).not.toHaveProperty('runtimeConfig');
    expect(b2).toMatchObject({ deviceID: VF2, pciBusID: VF2, runtimeConfig: { deviceID: VF2 } });
    expect(b2?.runtimeConfig).not.toHaveProperty('CNIDeviceInfoFile');

    // The device plugin's document was copied for VF1; for VF2 cni-kit wrote the PCI one.
    expect(JSON.parse(readFileSync(fileA, 'utf8'))).toEqual({
      type: 'pci',
      version: '1.1.0',
      pci: { 'pci-address': VF1, 'pf-pci-address': '0000:03:00.0' },
    });
    expect(JSON.parse(readFileSync(fileB, 'utf8'))).toEqual({
      type: 'pci',
      version: '1.1.0',
      pci: { 'pci-address': VF2 },
    });
    const st = status('two-vfs');
    expect(st.map((s) => [s.name, s.interface, s['device-info']])).toEqual([
      ['cluster-net', 'eth0', undefined],
      [
        'default/sriov-a',
        'net1',
        { type: 'pci', version: '1.1.0', pci: { 'pci-address': VF1, 'pf-pci-address': '0000:03:00.0' } },
      ],
      ['default/plain', 'net2', undefined],
      // The debug list reports its interface once per plugin: one entry each, both with the device.
      ['default/sriov-b', 'net3', { type: 'pci', version: '1.1.0', pci: { 'pci-address': VF2 } }],
      ['default/sriov-b', 'net3', { type: 'pci', version: '1.1.0', pci: { 'pci-address': VF2 } }],
    ]);

    // DEL gives the delegates the same config (from the cache) and removes the attachment files.
    const del = await run('DEL', 'two-vfs', ns);
    expect(del.code, del.out).toBe(0);
    const dels = calls().filter((c) => c.command === 'DEL' && c.env.CNI_IFNAME === 'net1');
    expect(dels[0]?.config).toMatchObject({ deviceID: VF1, runtimeConfig: { deviceID: VF1 } });
    expect(cniFiles()).toEqual([]);
    // The device plugin's own file is not multus's to remove.
    expect(readdirSync(join(devDir(), 'dp'))).toHaveLength(1);
  });

  it('a failed ADD after a device attachment takes its device-info file away with it', async (ctx) => {
    need(ctx);
    const ns = freshPod('two-vfs', 'sriov-a,failing');
    const add = await run('ADD', 'two-vfs', ns);
    expect(JSON.parse(add.out)).toMatchObject({ code: 11, msg: expect.stringContaining('not now') });
    expect(calls().map((c) => `${c.command} ${c.env.CNI_IFNAME}`)).toEqual(['ADD net1', 'DEL net1']);
    expect(cniFiles()).toEqual([]);
  });

  it('more attachments of a resource than devices: code 7 naming pod, resource and fix; nothing attached', async (ctx) => {
    need(ctx);
    const ns = freshPod('one-vf', 'sriov-a,sriov-b');
    const add = await run('ADD', 'one-vf', ns);
    expect(add.code).not.toBe(0);
    const e = JSON.parse(add.out);
    expect(e.code).toBe(7);
    expect(e.msg).toContain(
      `pod default/one-vf has 1 device(s) of resource "${SRIOV}" but 2 of its networks use that resource`,
    );
    expect(e.details).toContain(`"${SRIOV}": "2"`);
    expect(calls()).toEqual([]);
    expect(cniFiles()).toEqual([]);
    expect(add.err).not.toMatch(/\n\s+at /);
  });

  it('a pod without the resource: code 7 naming the network and resource', async (ctx) => {
    need(ctx);
    const ns = netns();
    api.putPod({
      metadata: {
        name: 'no-vf',
        namespace: 'default',
        annotations: { 'k8s.v1.cni.cncf.io/networks': 'sriov-a' },
      },
    });
    const add = await run('ADD', 'no-vf', ns);
    const e = JSON.parse(add.out);
    expect(e.code).toBe(7);
    expect(e.msg).toBe(
      `network default/sriov-a needs a device of resource "${SRIOV}" (k8s.v1.cni.cncf.io/resourceName) but kubelet allocated none to pod default/no-vf`,
    );
    expect(cniFiles()).toEqual([]);
  });

  it('no kubelet socket: code 5 naming the network, the resource, the socket and the fix', async (ctx) => {
    need(ctx);
    const ns = freshPod('two-vfs', 'sriov-a');
    const gone = join(work, 'no-kubelet', 'kubelet.sock');
    const add = await run('ADD', 'two-vfs', ns, conf({ kubeletSocket: gone }));
    const e = JSON.parse(add.out);
    expect(e.code).toBe(5);
    expect(e.msg).toContain(`network default/sriov-a (k8s.v1.cni.cncf.io/resourceName: ${SRIOV})`);
    expect(e.msg).toContain(gone);
    expect(e.details).toMatch(/mount the directory \/var\/lib\/kubelet\/pod-resources/);
    expect(calls()).toEqual([]);
    expect(existsSync(join(work, 'multus', `${tag}two-vfs`))).toBe(false);
  });
});
