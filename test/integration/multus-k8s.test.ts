// multus in Kubernetes mode against an in-process API server (test/helpers/fake-k8s.ts), with the
// Go reference plugins attaching real interfaces in real network namespaces.
// Over the 400-line guideline on purpose: every scenario shares one API server, its NADs and the
// macvlan master set up once in beforeAll.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runPlugin } from 'cni-kit';
import { NETWORK_STATUS_ANNOTATION, type NetworkStatus } from 'cni-kit/k8s';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { multusPlugin } from '../../examples/multus/plugin.js';
import { type FakeK8s, startFakeK8s } from '../helpers/fake-k8s.js';
import { pluginDir } from '../helpers/mode.js';

const GO = '/usr/lib/cni';
const tag = `mlk${process.pid % 100000}`;
const o2 = 100 + ((process.pid + 37) % 100);
const bridge = `${tag}br`;
const master = `${tag}m0`;
let work = '';
let api: FakeK8s;
let kubeconfig = '';
const netnses: string[] = [];

function missing(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root for network namespaces';
  for (const p of ['bridge', 'host-local', 'macvlan', 'static'])
    if (!existsSync(join(GO, p))) return `Go plugin ${p} missing`;
  return undefined;
}
const need = (ctx: TestContext) => {
  const why = missing();
  if (why) ctx.skip(why);
};

function netns(suffix: string): string {
  const name = `${tag}-${suffix}`;
  spawnSync('ip', ['netns', 'del', name]);
  execFileSync('ip', ['netns', 'add', name]);
  netnses.push(name);
  return `/var/run/netns/${name}`;
}
const ipIn = (ns: string, ...args: string[]) =>
  execFileSync('ip', ['netns', 'exec', ns.split('/').pop() as string, 'ip', ...args], { encoding: 'utf8' });

const conf = (extra: Record<string, unknown> = {}) => ({
  cniVersion: '1.0.0',
  name: 'multus-cni-network',
  type: 'multus',
  kubeconfig,
  clusterNetwork: 'cluster-net',
  cniDir: join(work, 'multus'),
  confDir: join(work, 'confdir'),
  binDir: GO,
  ...extra,
});

async function call(command: string, c: unknown, ns: string, pod: string, podNs = 'default') {
  return runPlugin(multusPlugin({ podRetry: { delayMs: 20, tries: 3 } }), {
    env: {
      PATH: process.env.PATH,
      CNI_COMMAND: command,
      CNI_CONTAINERID: `${tag}${pod}`,
      CNI_NETNS: ns,
      CNI_IFNAME: 'eth0',
      CNI_PATH: GO,
      CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${podNs};K8S_POD_NAME=${pod};K8S_POD_INFRA_CONTAINER_ID=${tag}${pod}`,
    },
    stdin: JSON.stringify(c),
  });
}

const macvlan = (octet: number, extra: Record<string, unknown> = {}) => ({
  cniVersion: '0.4.0',
  type: 'macvlan',
  master,
  mode: 'bridge',
  ipam: {
    type: 'host-local',
    subnet: `10.${o2}.${octet}.0/24`,
    dataDir: join(work, `ipam-${octet}`),
  },
  ...extra,
});

/** host-local lease files of one subnet that name this container. */
function leasesOf(octet: number, id: string): string[] {
  const dir = join(work, `ipam-${octet}`);
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((net) =>
    readdirSync(join(dir, net))
      .filter((f) => /^\d/.test(f))
      .filter((f) => readFileSync(join(dir, net, f), 'utf8').startsWith(id)),
  );
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), `${tag}-`));
  mkdirSync(join(work, 'confdir'));
  api = await startFakeK8s();
  kubeconfig = api.writeKubeconfig(join(work, 'kubeconfig.yaml'), 'yaml');
  api.putNad('kube-system', 'cluster-net', {
    cniVersion: '1.0.0',
    name: 'cluster-net',
    plugins: [
      {
        type: 'bridge',
        bridge,
        isGateway: true,
        ipam: {
          type: 'host-local',
          subnet: `10.${o2}.1.0/24`,
          routes: [{ dst: '0.0.0.0/0' }],
          dataDir: join(work, 'ipam-1'),
        },
      },
    ],
  });
  api.putNad('default', 'macvlan-conf', macvlan(2));
  api.putNad('default', 'from-disk');
  writeFileSync(
    join(work, 'confdir', 'from-disk.conf'),
    JSON.stringify({ ...macvlan(3), name: 'from-disk' }),
  );
  api.putNad('default', 'static-ip', {
    cniVersion: '1.0.0',
    type: 'macvlan',
    master,
    capabilities: { ips: true },
    ipam: { type: 'static' },
  });
  if (!missing()) {
    spawnSync('ip', ['link', 'del', master]);
    execFileSync('ip', ['link', 'add', master, 'type', 'veth', 'peer', 'name', `${tag}m1`]);
    execFileSync('ip', ['link', 'set', master, 'up']);
  }
});

afterAll(async () => {
  await api?.close();
  for (const n of netnses) spawnSync('ip', ['netns', 'del', n]);
  spawnSync('ip', ['link', 'del', master]);
  spawnSync('ip', ['link', 'del', bridge]);
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('multus Kubernetes mode', () => {
  it('attaches the annotation networks, writes network-status, and DELs from the cache with the API down', async (ctx) => {
    need(ctx);
    const ns = netns('a');
    api.putPod({
      metadata: {
        name: 'pa',
        namespace: 'default',
        annotations: {
          'k8s.v1.cni.cncf.io/networks': JSON.stringify([
            { name: 'macvlan-conf', interface: 'mv7', 'cni-args': { note: 'x' } },
            { name: 'from-disk' },
            { name: 'static-ip', ips: [`10.${o2}.4.9/24`] },
          ]),
        },
      },
    });
    api.conflictNext(2);
    const add = await call('ADD', conf(), ns, 'pa');
    expect(add.exitCode, add.stdout + add.stderr).toBe(0);
    expect(JSON.parse(add.stdout).ips[0].address).toMatch(new RegExp(`^10\\.${o2}\\.1\\.`));
    const addrs = ipIn(ns, '-o', '-4', 'addr', 'show');
    expect(addrs).toMatch(/eth0\s+inet /);
    expect(addrs).toMatch(new RegExp(`mv7\\s+inet 10\\.${o2}\\.2\\.`));
    expect(addrs).toMatch(new RegExp(`net2\\s+inet 10\\.${o2}\\.3\\.`));
    expect(addrs).toMatch(new RegExp(`net3\\s+inet 10\\.${o2}\\.4\\.9/24`));

    const status = JSON.parse(
      api.getPod('default', 'pa')?.metadata.annotations?.[NETWORK_STATUS_ANNOTATION] ?? '[]',
    ) as NetworkStatus[];
    expect(status.map((s) => [s.name, s.interface, s.default])).toEqual([
      ['kube-system/cluster-net', 'eth0', true],
      ['default/macvlan-conf', 'mv7', undefined],
      ['default/from-disk', 'net2', undefined],
      ['default/static-ip', 'net3', undefined],
    ]);
    // multus's shape: "dns" on every entry, "default" only on the cluster network's.
    for (const s of status) expect(s.dns).toEqual({});
    expect(status.filter((s) => 'default' in s)).toHaveLength(1);
    expect(status[3]?.ips).toEqual([`10.${o2}.4.9`]);
    // Two writes lost to concurrent writers (409), the third landed; each is a merge patch of the
    // annotations on the status subresource, which is what multus's RBAC (pods/status) allows.
    const writes = api.requests.filter((r) => r.path.startsWith('/api/v1/namespaces/default/pods/pa/'));
    expect(writes.map((r) => [r.method, r.path, r.contentType])).toEqual(
      Array(3).fill(['PATCH', '/api/v1/namespaces/default/pods/pa/status', 'application/merge-patch+json']),
    );
    expect(status[1]?.mac).toMatch(/^[0-9a-f:]{17}$/);

    // One AddedInterface event per attachment, POSTed as client-go's recorder does for multus.
    const posts = api.requests.filter((r) => r.path === '/api/v1/namespaces/default/events');
    expect(posts.map((r) => [r.method, r.contentType, r.code])).toEqual(
      Array(4).fill(['POST', 'application/json', 201]),
    );
    const events = posts.map((r) => r.body as Record<string, unknown>);
    const messages = events.map((e) => e.message);
    expect(messages).toEqual([
      expect.stringMatching(
        new RegExp(`^Add eth0 \\[10\\.${o2}\\.1\\.\\d+/24\\] from kube-system/cluster-net$`),
      ),
      expect.stringMatching(new RegExp(`^Add mv7 \\[10\\.${o2}\\.2\\.\\d+/24\\] from default/macvlan-conf$`)),
      expect.stringMatching(new RegExp(`^Add net2 \\[10\\.${o2}\\.3\\.\\d+/24\\] from default/from-disk$`)),
      `Add net3 [10.${o2}.4.9/24] from default/static-ip`,
    ]);
    const pod = api.getPod('default', 'pa');
    const first = events[0] as Record<string, unknown> & { metadata: { name: string } };
    expect(first).toEqual({
      kind: 'Event',
      apiVersion: 'v1',
      metadata: { name: expect.stringMatching(/^pa\.[0-9a-f]+$/), namespace: 'default' },
      involvedObject: {
        kind: 'Pod',
        namespace: 'default',
        name: 'pa',
        uid: pod?.metadata.uid,
        apiVersion: 'v1',
        resourceVersion: expect.any(String),
      },
      reason: 'AddedInterface',
      message: messages[0],
      source: { component: 'multus' },
      firstTimestamp: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/),
      lastTimestamp: first.firstTimestamp,
      count: 1,
      type: 'Normal',
      eventTime: null,
      reportingComponent: 'multus',
      reportingInstance: '',
    });
    expect(api.objects('events').size).toBeGreaterThanOrEqual(4);

    // API server gone: DEL reads the delegate cache.
    const down = conf({ kubeconfig: api.writeKubeconfig(join(work, 'dead.json')) });
    const dead = JSON.parse(JSON.stringify(down));
    writeFileSync(
      dead.kubeconfig,
      JSON.stringify({
        clusters: [{ name: 'c', cluster: { server: 'http://127.0.0.1:9' } }],
        users: [{ name: 'u', user: { token: 't' } }],
        contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
        'current-context': 'x',
      }),
    );
    const del = await call('DEL', dead, ns, 'pa');
    expect(del.exitCode, del.stdout + del.stderr).toBe(0);
    expect(ipIn(ns, '-o', 'link', 'show')).not.toMatch(/eth0|mv7|net2|net3/);
  });

  it('rebuilds the delegates from the pod when the cache is gone', async (ctx) => {
    need(ctx);
    const ns = netns('b');
    api.putPod({
      metadata: {
        name: 'pb',
        namespace: 'default',
        annotations: { 'k8s.v1.cni.cncf.io/networks': 'macvlan-conf' },
      },
    });
    expect((await call('ADD', conf(), ns, 'pb')).exitCode).toBe(0);
    unlinkSync(join(work, 'multus', `${tag}pb`));
    const del = await call('DEL', conf(), ns, 'pb');
    expect(del.exitCode, del.stdout).toBe(0);
    expect(ipIn(ns, '-o', 'link', 'show')).not.toMatch(/eth0|net1/);
  });

  it('DEL without the cache and with an unresolvable annotation still releases the cluster network named by a NAD', async (ctx) => {
    need(ctx);
    const ns = netns('g');
    api.putNad('default', 'gone-soon', macvlan(5));
    api.putPod({
      metadata: {
        name: 'pg',
        namespace: 'default',
        annotations: { 'k8s.v1.cni.cncf.io/networks': 'gone-soon' },
      },
    });
    const add = await call('ADD', conf(), ns, 'pg');
    expect(add.exitCode, add.stdout).toBe(0);
    expect(leasesOf(1, `${tag}pg`)).toHaveLength(1);
    // The attachment's NAD is deleted and the delegate cache lost: only the config and the API
    // remain to say what the cluster network ("cluster-net", a NAD in kube-system) was.
    api.objects('network-attachment-definitions').delete('default/gone-soon');
    unlinkSync(join(work, 'multus', `${tag}pg`));
    const del = await call('DEL', conf(), ns, 'pg');
    expect(del.exitCode, del.stdout).toBe(0);
    expect(ipIn(ns, '-o', 'link', 'show')).not.toMatch(/eth0/);
    expect(leasesOf(1, `${tag}pg`)).toEqual([]);
  });

  it('default-route moves the pod default route to the attachment that asks for it', async (ctx) => {
    need(ctx);
    const ns = netns('c');
    api.putPod({
      metadata: {
        name: 'pc',
        namespace: 'default',
        annotations: {
          'k8s.v1.cni.cncf.io/networks': JSON.stringify([
            { name: 'macvlan-conf', 'default-route': [`10.${o2}.2.1`] },
          ]),
        },
      },
    });
    const add = await call('ADD', conf(), ns, 'pc');
    expect(add.exitCode, add.stdout).toBe(0);
    const routes = ipIn(ns, 'route', 'show', 'default');
    expect(routes).toContain(`default via 10.${o2}.2.1 dev net1`);
    expect(routes).not.toContain('dev eth0');
    expect(JSON.parse(add.stdout).routes ?? []).not.toContainEqual(
      expect.objectContaining({ dst: '0.0.0.0/0' }),
    );
    expect((await call('DEL', conf(), ns, 'pc')).exitCode).toBe(0);
  });

  // The Go plugins' CHECK only asks "is there a default route"; ours also compares the gateway,
  // so a stale cached result shows with ours and the blame shows with both.
  for (const [variant, binDir, o3] of [
    ['Go', GO, 7],
    ['cni-kit', pluginDir(), 8],
  ] as const) {
    it(`after a default-route move (${variant} plugins) CHECK passes against what is configured, fails when the moved route is gone, and DEL leaves nothing`, async (ctx) => {
      need(ctx);
      if (!existsSync(join(binDir, 'bridge'))) ctx.skip(`${binDir}/bridge is not built`);
      const pod = `ph${o3}`;
      const ns = netns(pod);
      const gw = `10.${o2}.2.1`;
      const br = `${tag}b${o3}`;
      const net = `cluster-gw${o3}`;
      // A cluster network whose result names its default route with a gateway, as most do.
      api.putNad('kube-system', net, {
        cniVersion: '1.0.0',
        name: net,
        plugins: [
          {
            type: 'bridge',
            bridge: br,
            isDefaultGateway: true,
            ipam: { type: 'host-local', subnet: `10.${o2}.${o3}.0/24`, dataDir: join(work, `ipam-${o3}`) },
          },
        ],
      });
      api.putPod({
        metadata: {
          name: pod,
          namespace: 'default',
          annotations: {
            'k8s.v1.cni.cncf.io/networks': JSON.stringify([{ name: 'macvlan-conf', 'default-route': [gw] }]),
          },
        },
      });
      const c = conf({ clusterNetwork: net, binDir });
      const id = `${tag}${pod}`;
      try {
        const add = await call('ADD', c, ns, pod);
        expect(add.exitCode, add.stdout + add.stderr).toBe(0);
        expect(ipIn(ns, 'route', 'show', 'default').trim()).toMatch(
          new RegExp(`^default via ${gw.replaceAll('.', '\\.')} dev net1( linkdown)?$`),
        );

        // The libcni cache files describe the netns as it is: no default route left on eth0,
        // the moved one on net1, each in its network's own version.
        const results = join(work, 'multus', 'results');
        const cached = (file: string) => JSON.parse(readFileSync(join(results, file), 'utf8')).result;
        const cluster = cached(`${net}-${id}-eth0`);
        const mv = cached(`macvlan-conf-${id}-net1`);
        expect(cluster.cniVersion).toBe('1.0.0');
        expect(mv.cniVersion).toBe('0.4.0');
        expect(cluster.routes ?? []).not.toContainEqual(expect.objectContaining({ dst: '0.0.0.0/0' }));
        expect(mv.routes).toContainEqual({ dst: '0.0.0.0/0', gw });

        const check = await call('CHECK', c, ns, pod);
        expect(check.exitCode, check.stdout + check.stderr).toBe(0);

        // CHECK still compares: without the moved route the attachment that owns it is blamed.
        ipIn(ns, 'route', 'del', 'default', 'via', gw, 'dev', 'net1');
        const broken = await call('CHECK', c, ns, pod);
        expect(broken.exitCode).toBe(1);
        expect(JSON.parse(broken.stdout).msg).toMatch(
          /type="macvlan".*(Expected Route|route to 0\.0\.0\.0\/0)/,
        );
        ipIn(ns, 'route', 'add', 'default', 'via', gw, 'dev', 'net1');

        const del = await call('DEL', c, ns, pod);
        expect(del.exitCode, del.stdout + del.stderr).toBe(0);
        expect(ipIn(ns, '-o', 'link', 'show')).not.toMatch(/eth0|net1/);
        expect(ipIn(ns, 'route', 'show', 'default')).toBe('');
        expect(readdirSync(results).filter((f) => f.includes(id))).toEqual([]);
        expect(existsSync(join(work, 'multus', id))).toBe(false);
        for (const octet of [o3, 2]) expect(leasesOf(octet, id)).toEqual([]);
      } finally {
        spawnSync('ip', ['link', 'del', br]);
      }
    });
  }

  it('a default-route gateway the kernel refuses fails ADD with code 7 naming it, and nothing stays attached', async (ctx) => {
    need(ctx);
    const ns = netns('i');
    const gw = `10.${o2}.99.1`;
    api.putPod({
      metadata: {
        name: 'pi',
        namespace: 'default',
        annotations: {
          'k8s.v1.cni.cncf.io/networks': JSON.stringify([{ name: 'macvlan-conf', 'default-route': [gw] }]),
        },
      },
    });
    const add = await call('ADD', conf(), ns, 'pi');
    expect(add.exitCode).toBe(1);
    const err = JSON.parse(add.stdout);
    expect(err.code).toBe(7);
    expect(err.msg).toContain(`[default/pi/`);
    expect(err.msg).toContain(`default/macvlan-conf`);
    expect(err.msg).toContain(`via ${gw} on net1`);
    expect(ipIn(ns, '-o', 'link', 'show')).not.toMatch(/eth0|net1/);
    const results = join(work, 'multus', 'results');
    expect(readdirSync(results).filter((f) => f.includes(`${tag}pi`))).toEqual([]);
    for (const octet of [1, 2]) expect(leasesOf(octet, `${tag}pi`)).toEqual([]);
  });

  it('refuses bad selections before attaching anything, with clear errors', async (ctx) => {
    need(ctx);
    const ns = netns('d');
    const cases: Array<[string, string, RegExp]> = [
      ['nope', 'default', /cannot find a network-attachment-definition \(nope\) in namespace \(default\)/],
      [
        'other/macvlan-conf',
        'team-a',
        /namespace isolation enabled.*pod is in namespace team-a but refers to target namespace other/,
      ],
      [
        JSON.stringify([{ name: 'macvlan-conf', ips: ['10.9.9.9/24'] }]),
        'default',
        /requests "ips".*declares capabilities \{"ips": true\}/,
      ],
      ['macvlan-conf@eth0', 'default', /interface eth0 is requested by both/],
      ['Bad_Name', 'default', /"Bad_Name" is not a valid name/],
    ];
    for (const [i, [annotation, podNs, re]] of cases.entries()) {
      api.putPod({
        metadata: {
          name: `pd${i}`,
          namespace: podNs,
          annotations: { 'k8s.v1.cni.cncf.io/networks': annotation },
        },
      });
      const r = await call('ADD', conf({ namespaceIsolation: true }), ns, `pd${i}`, podNs);
      expect(r.exitCode, annotation).toBe(1);
      expect(JSON.parse(r.stdout).msg).toMatch(re);
      expect(ipIn(ns, '-o', 'link', 'show')).not.toMatch(/eth0|net1/);
    }
    // The missing NAD is also told to the pod's owner, as multus does: a Warning event on pd0.
    const warnings = [...api.objects('events').values()].filter(
      (e) => (e.involvedObject as { name?: string }).name === 'pd0',
    );
    expect(warnings.map((e) => [e.type, e.reason, e.source])).toEqual([
      ['Warning', 'NoNetworkFound', { component: 'multus' }],
    ]);
    expect(warnings[0]?.message).toMatch(
      /^cannot find a network-attachment-definition \(nope\) in namespace \(default\): /,
    );
  });

  it('a pod the API server does not know gets the empty result and nothing attached', async (ctx) => {
    need(ctx);
    const ns = netns('e');
    const r = await call('ADD', conf(), ns, 'ghost');
    expect(r.exitCode, r.stdout).toBe(0);
    expect(JSON.parse(r.stdout).ips).toEqual([{ address: '0.0.0.0/0', gateway: '0.0.0.0' }]);
    expect(ipIn(ns, '-o', 'link', 'show')).not.toMatch(/eth0/);
  });

  it('honours the pod default-network annotation (looked up in multusNamespace)', async (ctx) => {
    need(ctx);
    const ns = netns('f');
    api.putNad('kube-system', 'alt-cluster', { ...macvlan(5), name: 'alt' });
    api.putPod({
      metadata: {
        name: 'pf',
        namespace: 'default',
        annotations: { 'v1.multus-cni.io/default-network': 'alt-cluster' },
      },
    });
    const r = await call('ADD', conf(), ns, 'pf');
    expect(r.exitCode, r.stdout).toBe(0);
    expect(JSON.parse(r.stdout).ips[0].address).toMatch(new RegExp(`^10\\.${o2}\\.5\\.`));
    const st = JSON.parse(
      api.getPod('default', 'pf')?.metadata.annotations?.[NETWORK_STATUS_ANNOTATION] ?? '[]',
    );
    expect(st[0]).toMatchObject({ name: 'kube-system/alt-cluster', interface: 'eth0', default: true });
    expect((await call('DEL', conf(), ns, 'pf')).exitCode).toBe(0);
  });

  it('the bundled binary works in Kubernetes mode (lazy modules initialised in the single-file bundle)', async (ctx) => {
    need(ctx);
    const ns = netns('g');
    api.putPod({
      metadata: {
        name: 'pg',
        namespace: 'default',
        annotations: { 'k8s.v1.cni.cncf.io/networks': 'macvlan-conf' },
      },
    });
    const run = (command: string) =>
      new Promise<{ code: number | null; out: string }>((resolve) => {
        const child = spawn(join(pluginDir(), 'multus'), [], {
          env: {
            PATH: process.env.PATH ?? '',
            CNI_COMMAND: command,
            CNI_CONTAINERID: `${tag}pg`,
            CNI_NETNS: ns,
            CNI_IFNAME: 'eth0',
            CNI_PATH: GO,
            CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=pg',
          },
        });
        let out = '';
        child.stdout.on('data', (b: Buffer) => {
          out += b;
        });
        child.on('close', (code) => resolve({ code, out }));
        child.stdin.on('error', () => {}); // a plugin killed before it read its config
        child.stdin.end(JSON.stringify(conf()));
      });
    const add = await run('ADD');
    expect(add.code, add.out).toBe(0);
    expect(ipIn(ns, '-o', 'link', 'show')).toMatch(/net1/);
    const st = JSON.parse(
      api.getPod('default', 'pg')?.metadata.annotations?.[NETWORK_STATUS_ANNOTATION] ?? '[]',
    );
    expect(st.map((s: NetworkStatus) => s.interface)).toEqual(['eth0', 'net1']);
    expect((await run('DEL')).code).toBe(0);
    expect(ipIn(ns, '-o', 'link', 'show')).not.toMatch(/eth0|net1/);
  });
});
