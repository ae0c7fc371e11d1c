// Every public result shape survives JSON.stringify: what the SDK's functions return to a caller
// (results of every version, parsed configs, IPAM status/GC reports, cache records, version info,
// netlink reads, Kubernetes annotations) holds only JSON values: no bigint, no Uint8Array, no Map,
// no class instance. A daemon answers with them, tools log them, users persist them.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ALL_VERSIONS,
  CniError,
  conf,
  convertResult,
  parseResult,
  podRef,
  type Result,
  runPlugin,
  toCurrentResult,
} from 'cni-kit';
import { createWhereaboutsAllocator, HostLocalAllocator, StaticAllocator } from 'cni-kit/ipam';
import { buildNetworkStatuses, parseNetworkSelection, parseNetworkStatus } from 'cni-kit/k8s';
import { memoryNetlink } from 'cni-kit/netlink';
import { CniRuntime } from 'cni-kit/runtime';
import { parseCniArgs, parseNetConf, parseNetConfList, validAttachments } from 'cni-kit/spec';
import { afterAll, describe, expect, it } from 'vitest';
import { bridgeConfig } from '../../examples/bridge/plugin.js';
import { multusConfig } from '../../examples/multus/config.js';
import { tuningConfig } from '../../examples/tuning/plugin.js';
import { makePluginDir, recorder } from '../fixtures/delegate/plugins.js';

const work = mkdtempSync(join(tmpdir(), `ckjson-${process.pid}-`));
const plugins = makePluginDir('ckjson');
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
  plugins.cleanup();
});

/** Paths inside `v` that JSON cannot carry faithfully. */
function nonJson(v: unknown, path = '$'): string[] {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return [];
  if (typeof v === 'number') return Number.isFinite(v) ? [] : [`${path}: ${v}`];
  if (typeof v === 'undefined') return [];
  if (typeof v !== 'object') return [`${path}: ${typeof v}`];
  if (Array.isArray(v)) return v.flatMap((x, i) => nonJson(x, `${path}[${i}]`));
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null)
    return [`${path}: ${proto?.constructor?.name ?? 'object'}`];
  return Object.entries(v).flatMap(([k, x]) => nonJson(x, `${path}.${k}`));
}

function serialises(what: string, v: unknown): void {
  expect(nonJson(v), what).toEqual([]);
  expect(JSON.parse(JSON.stringify(v)), what).toEqual(v);
}

const full: Result = {
  cniVersion: '1.1.0',
  interfaces: [{ name: 'eth0', mac: '0a:58:0a:01:00:02', mtu: 1500, sandbox: '/var/run/netns/x' }],
  ips: [
    { interface: 0, address: '10.1.0.2/24', gateway: '10.1.0.1' },
    { interface: 0, address: 'fd00::2/64' },
  ],
  routes: [{ dst: '0.0.0.0/0', gw: '10.1.0.1', priority: 100 }],
  dns: { nameservers: ['10.1.0.10'], search: ['svc'] },
};

describe('public values serialise with JSON.stringify', () => {
  it('the checker itself refuses bigint, bytes, maps and class instances', () => {
    expect(nonJson({ a: 1n, b: new Uint8Array(1), c: new Map(), d: [new CniError(7, 'x')] })).toEqual([
      '$.a: bigint',
      '$.b: Uint8Array',
      '$.c: Map',
      '$.d[0]: CniError',
    ]);
  });

  it('results of every version, parsed and converted', () => {
    for (const v of ALL_VERSIONS) {
      const r = convertResult(full, v);
      serialises(`convertResult ${v}`, r);
      serialises(`parseResult ${v}`, parseResult(JSON.stringify(r)));
      serialises(`toCurrentResult ${v}`, toCurrentResult(r));
    }
    serialises('CniError.toJSON', new CniError(7, 'bad', 'fix it').toJSON('1.1.0'));
  });

  it('parsed configs, CNI_ARGS, pod references and GC attachments', () => {
    const text = JSON.stringify({
      cniVersion: '1.0.0',
      name: 'n',
      type: 'bridge',
      bridge: 'br0',
      vlanTrunk: [{ id: 5 }, { minID: 7, maxID: 8 }],
      ipam: { type: 'host-local', subnet: '10.2.0.0/24' },
      prevResult: convertResult(full, '1.0.0'),
      'cni.dev/valid-attachments': [{ containerID: 'c', ifname: 'eth0' }],
    });
    const nc = parseNetConf(text);
    serialises('parseNetConf', nc);
    serialises('bridge conf', bridgeConfig.parse(nc));
    serialises(
      'tuning conf',
      tuningConfig.parse({ ...nc, sysctl: { 'net.ipv4.conf.IFNAME.arp_filter': 1 } }),
    );
    serialises('multus conf', multusConfig.parse({ ...nc, clusterNetwork: 'x' }));
    serialises('a schema with defaults', conf.object({ a: conf.int().default(1) }).parse({ b: [1] }));
    serialises(
      'parseNetConfList',
      parseNetConfList(JSON.stringify({ cniVersion: '1.0.0', name: 'l', plugins: [{ type: 'a' }] })),
    );
    serialises('validAttachments', validAttachments(nc));
    const args = parseCniArgs('K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_UID=u');
    serialises('parseCniArgs', args);
    serialises('podRef', podRef(args));
  });

  it('IPAM results, STATUS and GC reports of every allocator (IPv6 /64 counts included)', async () => {
    const netconf = (ipam: { type: string; [k: string]: unknown }) => ({
      cniVersion: '1.1.0',
      name: 'js',
      ipam,
    });
    const req = { containerId: 'c1', ifname: 'eth0' };
    const hl = new HostLocalAllocator(
      netconf({
        type: 'host-local',
        dataDir: work,
        ranges: [[{ subnet: '10.3.0.0/24' }], [{ subnet: 'fd03::/64' }]],
      }),
    );
    serialises('host-local ADD', await hl.allocate(req));
    serialises('host-local STATUS', await hl.status());
    serialises('host-local GC', await hl.gc([]));
    const st = new StaticAllocator(netconf({ type: 'static', addresses: [{ address: '10.4.0.2/24' }] }));
    serialises('static ADD', await st.allocate(req));
    serialises('static STATUS', await st.status());
    const wb = createWhereaboutsAllocator(
      netconf({ type: 'whereabouts', range: 'fd05::/64', datastore: 'file', data_dir: join(work, 'wb') }),
      { fsync: false },
    );
    serialises('whereabouts ADD', await wb.allocate(req));
    serialises('whereabouts STATUS', await wb.status());
    serialises('whereabouts GC', await wb.gc([]));
    await wb.close();
  });

  it('the runtime: ADD result, cached attachments and config, version info', async () => {
    recorder(plugins, 'ckjs-a');
    const rt = new CniRuntime({ pluginDirs: [plugins.dir], cacheDir: join(work, 'cache'), stderr: null });
    const list = JSON.stringify({ cniVersion: '1.1.0', name: 'jsnet', plugins: [{ type: 'ckjs-a' }] });
    const att = { containerId: 'cjs', ifname: 'eth0', args: [['K', 'V']] as Array<[string, string]> };
    serialises('addNetworkList', await rt.addNetworkList(list, att));
    serialises('getCachedAttachments', await rt.getCachedAttachments());
    serialises('getNetworkListCachedConfig', await rt.getNetworkListCachedConfig(list, att));
    serialises('getNetworkListCachedResult', await rt.getNetworkListCachedResult(list, att));
    serialises('getVersionInfo', await rt.getVersionInfo('ckjs-a'));
  });

  it('netlink reads and the memory model state', async () => {
    const nl = memoryNetlink();
    const ns = await nl.createNetns();
    await nl.inNetns(ns.path, (n) => {
      n.createLink({ kind: 'bridge', name: 'br0' });
      n.setLink('br0', { up: true });
      n.addAddress('br0', '10.6.0.1/24');
      n.addRoute({ dst: '10.7.0.0/16', gw: '10.6.0.9', dev: 'br0' });
    });
    const [links, addrs, routes] = await nl.inNetns(ns.path, async (n) => [
      await n.links(),
      await n.addresses(),
      await n.routes(),
    ]);
    serialises('links', links);
    serialises('addresses', addrs);
    serialises('routes', routes);
    serialises('inspect', nl.inspect(ns.path));
  });

  it('Kubernetes annotations and network-status', () => {
    const els = parseNetworkSelection(
      '[{"name":"a","ips":["10.8.0.2/24"],"portMappings":[{"hostPort":80,"containerPort":8080}],"bandwidth":{"ingressRate":1000}}]',
      'ns',
    );
    serialises('parseNetworkSelection', els);
    const statuses = buildNetworkStatuses('ns/a', full, { isDefault: true });
    serialises('buildNetworkStatuses', statuses);
    serialises('parseNetworkStatus', parseNetworkStatus(JSON.stringify(statuses)));
  });

  it('a plugin call outcome', async () => {
    const out = await runPlugin(
      { add: () => full },
      {
        env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c', CNI_NETNS: '/x', CNI_IFNAME: 'eth0' },
        stdin: '{"cniVersion":"0.4.0","name":"n","type":"t"}',
      },
    );
    serialises('runPlugin', out);
    serialises('ADD stdout', JSON.parse(out.stdout));
  });
});
