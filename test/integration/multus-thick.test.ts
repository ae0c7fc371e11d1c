// multus thick mode: the cni-kit daemon started from upstream's daemon config (--multus-config),
// serving multus-shim's wire on <socketDir>/multus.sock, with the pods of its node and the NADs in
// informer caches. Checked against the fake API server: a cached pod and NAD cost no GET, a pod
// the cache does not hold costs one, /readyz waits for the caches and the readiness-indicator file,
// the node's multus config is generated from the cluster network's, and a daemon over its memory
// limit refuses with code 11 instead of dropping calls. Delegates are a small script (no links).
import { execFileSync, spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostedPlugin, runPlugin } from 'cni-kit';
import {
  generateMultusConfig,
  jsonLogger,
  parseThickConfig,
  startDaemon as startDaemonInProcess,
  startThickMultus,
} from 'cni-kit/daemon';
import { NETWORK_STATUS_ANNOTATION } from 'cni-kit/k8s';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { multusPlugin } from '../../examples/multus/plugin.js';
import { getStatus, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { type FakeK8s, startFakeK8s } from '../helpers/fake-k8s.js';

const tag = `mth${process.pid % 100000}`;
let work = '';
let api: FakeK8s;
let kubeconfig = '';
let netnsPath = '';
const cleanups: Array<() => unknown> = [];

/** A delegate that reports one interface and address and creates nothing. */
const FAKE_DELEGATE = `#!/bin/sh
cat >/dev/null
case "$CNI_COMMAND" in
ADD) printf '{"cniVersion":"1.0.0","interfaces":[{"name":"%s","sandbox":"%s"}],"ips":[{"address":"10.77.0.9/24","interface":0}]}' "$CNI_IFNAME" "$CNI_NETNS" ;;
VERSION) printf '{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}' ;;
esac
`;

function daemonConfig(dir: string, extra: Record<string, unknown> = {}): string {
  const file = join(dir, 'daemon-config.json');
  writeFileSync(
    file,
    JSON.stringify({
      chrootDir: '',
      socketDir: join(dir, 'run'),
      multusConfigFile: 'auto',
      cniConfigDir: join(work, 'net.d'),
      kubeconfig,
      nodeName: 'node-a',
      binDir: join(work, 'bin'),
      cniDir: join(dir, 'cache'),
      confDir: join(work, 'confdir'),
      readinessindicatorfile: join(work, 'net.d', '10-fakenet.conf'),
      ...extra,
    }),
  );
  return file;
}

/** One multus-shim request: POST /cni over the socket; status and parsed body. */
function shimCall(
  socket: string,
  command: string,
  pod: string,
  config: unknown,
  containerId = `${tag}-${pod}`,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const env = {
    CNI_COMMAND: command,
    CNI_CONTAINERID: containerId,
    CNI_NETNS: netnsPath,
    CNI_IFNAME: 'eth0',
    CNI_PATH: join(work, 'bin'),
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=${pod};K8S_POD_INFRA_CONTAINER_ID=${containerId}`,
  };
  const payload = JSON.stringify({ env, config: Buffer.from(JSON.stringify(config)).toString('base64') });
  return new Promise((resolve, reject) => {
    const req = request(
      { socketPath: socket, path: '/cni', method: 'POST', headers: { 'Content-Type': 'application/json' } },
      (res) => {
        let text = '';
        res.on('data', (c) => {
          text += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text || '{}') }));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** What the runtime hands multus-shim: the node's generated 00-multus.conf. */
const nodeConf = () => JSON.parse(readFileSync(join(work, 'net.d', '00-multus.conf'), 'utf8'));

/** GETs of single objects (not LIST/WATCH, not PATCH/POST) since `from`. */
const objectGets = (from: number) =>
  api.requests
    .slice(from)
    .filter((r) => r.method === 'GET' && /\/(pods|network-attachment-definitions)\/[^/]+$/.test(r.path))
    .map((r) => r.path);

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), `${tag}-`));
  for (const d of ['bin', 'net.d', 'confdir']) mkdirSync(join(work, d));
  writeFileSync(join(work, 'bin', 'fakenet'), FAKE_DELEGATE);
  chmodSync(join(work, 'bin', 'fakenet'), 0o755);
  writeFileSync(
    join(work, 'net.d', '10-fakenet.conf'),
    JSON.stringify({
      cniVersion: '1.0.0',
      name: 'cluster',
      type: 'fakenet',
      capabilities: { portMappings: true },
    }),
  );
  api = await startFakeK8s();
  kubeconfig = api.writeKubeconfig(join(work, 'kubeconfig'));
  api.putNad('default', 'net-a', { cniVersion: '1.0.0', type: 'fakenet' });
  if (process.getuid?.() === 0) {
    const name = `${tag}-ns`;
    spawnSync('ip', ['netns', 'del', name]);
    execFileSync('ip', ['netns', 'add', name]);
    netnsPath = `/var/run/netns/${name}`;
    cleanups.push(() => spawnSync('ip', ['netns', 'del', name]));
  }
});

afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await api?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('daemon config (upstream keys)', () => {
  it('parses the keys and names the field, value and fix of a bad one', () => {
    const c = parseThickConfig(
      JSON.stringify({ socketDir: '/s', metricsPort: 9091, chrootDir: '/hostroot', nodeName: 'n' }),
    );
    expect(c).toMatchObject({ socketDir: '/s', metricsPort: 9091, chrootDir: '/hostroot', nodeName: 'n' });
    expect(() => parseThickConfig('{"metricsPort": "x"}')).toThrow(/metricsPort: "x" is not a TCP port/);
    expect(() => parseThickConfig('{"forceCNIVersion": true}')).toThrow(
      /forceCNIVersion.*needs "cniVersion"/,
    );
    expect(() => parseThickConfig('[1]')).toThrow(/not a JSON object/);
    expect(parseThickConfig('{}', { NODE_NAME: 'from-env' }).nodeName).toBe('from-env');
  });

  it('multusConfigFile auto: the cluster network wrapped in a multus-shim config', () => {
    const file = join(work, 'net.d', '10-fakenet.conf');
    const plain = generateMultusConfig(
      parseThickConfig(JSON.stringify({ kubeconfig: '/k', socketDir: '/s' })),
      file,
    );
    expect(plain).toMatchObject({
      name: 'multus-cni-network',
      type: 'multus-shim',
      cniVersion: '1.0.0',
      kubeconfig: '/k',
      daemonSocketDir: '/s',
      capabilities: { portMappings: true },
      delegates: [{ name: 'cluster', type: 'fakenet', cniVersion: '1.0.0' }],
    });
    const over = generateMultusConfig(
      parseThickConfig(
        JSON.stringify({ overrideNetworkName: true, cniVersion: '0.3.1', forceCNIVersion: true }),
      ),
      file,
    );
    expect(over).toMatchObject({
      name: 'cluster',
      cniVersion: '0.3.1',
      delegates: [{ cniVersion: '0.3.1' }],
    });
    const old = join(work, 'old.conf');
    writeFileSync(old, JSON.stringify({ cniVersion: '0.3.1', name: 'o', type: 'fakenet' }));
    expect(() => generateMultusConfig(parseThickConfig('{"cniVersion": "1.0.0"}'), old)).toThrow(
      /0\.3\.1.*older than 0\.4\.0.*forceCNIVersion/,
    );
  });
});

describe('the generated multus config', () => {
  it('follows the cluster network config: written once it appears, rewritten when it changes', async () => {
    const dir = mkdtempSync(join(work, 'gen-'));
    const netd = join(dir, 'net.d');
    mkdirSync(netd);
    const thick = await startThickMultus(
      parseThickConfig(
        JSON.stringify({ multusConfigFile: 'auto', cniConfigDir: netd, overrideNetworkName: true }),
      ),
      { pollMs: 20 },
    );
    cleanups.push(() => thick.close());
    expect(thick.notReady()).toMatch(/no cluster network config .* yet/);
    writeFileSync(
      join(netd, '20-late.conf'),
      JSON.stringify({ cniVersion: '1.0.0', name: 'late', type: 'fakenet' }),
    );
    const generated = () => {
      try {
        return JSON.parse(readFileSync(join(netd, '00-multus.conf'), 'utf8')).name;
      } catch {
        return undefined;
      }
    };
    const until = async (want: string) => {
      const end = Date.now() + 15_000;
      while (generated() !== want && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
      expect(generated()).toBe(want);
    };
    await until('late');
    expect(thick.notReady()).toBeUndefined();
    // A config sorting first takes over, as on upstream.
    writeFileSync(
      join(netd, '10-early.conflist'),
      JSON.stringify({ cniVersion: '1.0.0', name: 'early', plugins: [{ type: 'fakenet' }] }),
    );
    await until('early');
  });
});

describe('readiness', () => {
  it('/readyz is 500 until the caches have synced and the indicator file exists', async () => {
    const dir = mkdtempSync(join(work, 'ready-'));
    const indicator = join(dir, 'indicator');
    const thick = await startThickMultus(
      parseThickConfig(readFileSync(daemonConfig(dir, { readinessindicatorfile: indicator }), 'utf8')),
      { backoff: { initialMs: 5, maxMs: 50 } },
    );
    cleanups.push(() => thick.close());
    const daemon = await startDaemonInProcess({
      plugins: { multus: hostedPlugin(multusPlugin()) },
      aliases: { 'multus-shim': 'multus' },
      socket: join(dir, 'daemon.sock'),
      extraSockets: [thick.socket],
      configOverrides: { multus: thick.overrides },
      notReady: () => thick.notReady(),
      logger: jsonLogger('error'),
    });
    cleanups.push(() => daemon.close());
    expect(await thick.caches?.waitForSync(5000)).toBe(true);
    expect(await getStatus(thick.socket, '/readyz')).toBe(500);
    expect(thick.notReady()).toMatch(/indicator file .* is missing/);
    writeFileSync(indicator, '');
    expect(await getStatus(thick.socket, '/readyz')).toBe(200);
    expect(await getStatus(thick.socket, '/healthz')).toBe(200);
    expect(existsSync(join(work, 'net.d', '00-multus.conf'))).toBe(true);
    daemon.metrics.extra.push(() => thick.metricsText());
    expect(daemon.metrics.render()).toContain('cni_kit_informer_synced{resource="pods"} 1');
    expect(daemon.metrics.render()).toContain(
      'cni_kit_multus_cache_lookups_total{kind="pod",result="hit"} 0',
    );
  });

  it('stays not ready while the caches cannot sync (no RBAC to list pods)', async () => {
    const rbac = readFileSync(new URL('../../deploy/rbac.yaml', import.meta.url), 'utf8').replace(
      'verbs: ["get", "list", "watch"]\n  # network-status',
      'verbs: ["get"]\n  # network-status',
    );
    const denied = await startFakeK8s({ rbac });
    cleanups.push(() => denied.close());
    const dir = mkdtempSync(join(work, 'denied-'));
    const kc = denied.writeKubeconfig(join(dir, 'kubeconfig'));
    const thick = await startThickMultus(
      parseThickConfig(readFileSync(daemonConfig(dir, { kubeconfig: kc, multusConfigFile: '' }), 'utf8')),
      { backoff: { initialMs: 5, maxMs: 50 } },
    );
    cleanups.push(() => thick.close());
    // Wait for the refused LISTs themselves (a fixed wait may see none on a loaded machine).
    const end = Date.now() + 15_000;
    const refused = () => denied.requests.filter((r) => r.path === '/api/v1/pods' && r.code === 403).length;
    while (refused() < 2 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    expect(
      refused(),
      JSON.stringify(denied.requests.map((r) => `${r.method} ${r.path} ${r.code}`)),
    ).toBeGreaterThanOrEqual(2);
    expect(thick.caches?.pods.synced()).toBe(false);
    expect(thick.notReady()).toMatch(/caches to sync/);
    expect(denied.requests.some((r) => r.path === '/api/v1/pods' && r.code === 403)).toBe(true);
  });
});

describe('multus served by the daemon from informer caches', () => {
  let daemon: TestDaemon;
  let socket = '';

  beforeAll(async () => {
    const dir = mkdtempSync(join(work, 'cli-'));
    // In the cache before the daemon starts: its first LIST holds it, and the daemon is ready only
    // once the caches have synced. (Waiting a fixed time for a watch event to reach another process
    // is a race on a loaded machine; the informer tests cover delivery by watch.)
    api.putPod({
      metadata: {
        name: 'cached',
        namespace: 'default',
        annotations: { 'k8s.v1.cni.cncf.io/networks': 'net-a' },
      },
      spec: { nodeName: 'node-a' },
    });
    daemon = await startDaemon({ extraArgs: ['--multus-config', daemonConfig(dir)] });
    cleanups.push(() => daemon.stop());
    socket = join(dir, 'run', 'multus.sock');
  }, 30_000);

  it('a cached pod and NAD cost no GET; network-status is written', async (ctx) => {
    if (!netnsPath) ctx.skip();
    const from = api.requests.length;
    const r = await shimCall(socket, 'ADD', 'cached', nodeConf());
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(objectGets(from)).toEqual([]);
    const status = JSON.parse(
      api.getPod('default', 'cached')?.metadata.annotations?.[NETWORK_STATUS_ANNOTATION] ?? '[]',
    );
    expect(status.map((s: { name: string }) => s.name)).toEqual(['cluster', 'default/net-a']);
    const del = await shimCall(socket, 'DEL', 'cached', nodeConf());
    expect(del.status).toBe(200);
  });

  it('a pod the cache does not hold yet is one GET', async (ctx) => {
    if (!netnsPath) ctx.skip();
    // Scheduled elsewhere as far as the cache knows: not in this node's cache.
    api.putPod({ metadata: { name: 'fresh', namespace: 'default' }, spec: { nodeName: 'node-z' } });
    const from = api.requests.length;
    const r = await shimCall(socket, 'ADD', 'fresh', nodeConf());
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(objectGets(from)).toEqual(['/api/v1/namespaces/default/pods/fresh']);
    await shimCall(socket, 'DEL', 'fresh', nodeConf());
    // Later calls reuse the daemon's keep-alive connection: no new connection per call.
    const conns = api.connections();
    for (let i = 0; i < 3; i++) {
      expect((await shimCall(socket, 'ADD', 'fresh', nodeConf(), `${tag}-again${i}`)).status).toBe(200);
      await shimCall(socket, 'DEL', 'fresh', nodeConf(), `${tag}-again${i}`);
    }
    expect(api.connections()).toBe(conns);
  });
});

describe('chrootDir', () => {
  it('finds and execs delegates inside the chroot (the host root of the daemon container)', async (ctx) => {
    if (!netnsPath || !existsSync('/usr/bin/busybox') || !existsSync('/usr/sbin/chroot')) ctx.skip();
    const root = mkdtempSync(join(work, 'hostroot-'));
    for (const d of ['bin', 'opt/cni/bin']) mkdirSync(join(root, d), { recursive: true });
    copyFileSync('/usr/bin/busybox', join(root, 'bin', 'busybox'));
    chmodSync(join(root, 'bin', 'busybox'), 0o755);
    // /marker exists only inside the chroot: the MAC the delegate reports proves where it ran.
    writeFileSync(join(root, 'marker'), '02:00:00:00:00:42\n');
    writeFileSync(
      join(root, 'opt/cni/bin/rootnet'),
      `#!/bin/busybox sh
while read -r l; do :; done
read -r mac < /marker
[ "$CNI_COMMAND" = ADD ] && printf '{"cniVersion":"1.0.0","interfaces":[{"name":"%s","mac":"%s","sandbox":"%s"}],"ips":[]}' "$CNI_IFNAME" "$mac" "$CNI_NETNS"
exit 0
`,
    );
    chmodSync(join(root, 'opt/cni/bin/rootnet'), 0o755);
    const config = {
      cniVersion: '1.0.0',
      name: 'multus-cni-network',
      type: 'multus',
      chrootDir: root,
      binDir: '/opt/cni/bin',
      cniDir: join(root, 'cache'),
      delegates: [{ cniVersion: '1.0.0', name: 'chrooted', type: 'rootnet' }],
    };
    const env = {
      PATH: process.env.PATH ?? '',
      CNI_CONTAINERID: `${tag}-chroot`,
      CNI_NETNS: netnsPath,
      CNI_IFNAME: 'eth0',
      CNI_PATH: '/opt/cni/bin',
    };
    const out = await runPlugin(multusPlugin(), {
      env: { ...env, CNI_COMMAND: 'ADD' },
      stdin: JSON.stringify(config),
    });
    expect(out.exitCode, out.stdout + out.stderr).toBe(0);
    expect(JSON.parse(out.stdout).interfaces[0].mac).toBe('02:00:00:00:00:42');
    const del = await runPlugin(multusPlugin(), {
      env: { ...env, CNI_COMMAND: 'DEL' },
      stdin: JSON.stringify(config),
    });
    expect(del.exitCode, del.stdout).toBe(0);
  });
});

describe('memory bound', () => {
  it('over the limit a call is refused with code 11 naming the limit; none is dropped', async () => {
    const dir = mkdtempSync(join(work, 'mem-'));
    // Near the limit (above 15/16 of it) every call measures: the crossing is seen at once.
    let rss = 61 * 1048576;
    const trivial = hostedPlugin({
      async add() {
        await new Promise((r) => setTimeout(r, 20));
        return { cniVersion: '1.0.0', interfaces: [], ips: [] };
      },
      async del() {},
    });
    const daemon = await startDaemonInProcess({
      plugins: { trivial },
      socket: join(dir, 'daemon.sock'),
      memoryLimitBytes: 64 * 1048576,
      maxConcurrentCalls: 8,
      rss: () => rss,
      logger: jsonLogger('error'),
    });
    cleanups.push(() => daemon.close());
    const conf = { cniVersion: '1.0.0', name: 'n', type: 'trivial' };
    // 200 at once, the limit crossed half-way: every call answers, with a result or code 11.
    const calls = Array.from({ length: 200 }, (_, i) => {
      if (i === 100) rss = 65 * 1048576;
      return shimCall(join(dir, 'daemon.sock'), 'ADD', `p${i}`, conf, `c${i}`);
    });
    const replies = await Promise.all(calls);
    const ok = replies.filter((r) => r.status === 200).length;
    const refused = replies.filter((r) => r.status !== 200);
    expect(ok + refused.length).toBe(200);
    expect(refused.length).toBeGreaterThan(0);
    for (const r of refused) {
      expect(r.body.code).toBe(11);
      expect(String(r.body.msg)).toMatch(/over its memory limit: 65 MiB resident, limit 64 MiB/);
    }
    expect(daemon.metrics.render()).toMatch(/reason="memory"/);
  });

  it('far below the limit the resident set is measured at most once per sample time, and a jump past the limit is seen after it', async () => {
    const dir = mkdtempSync(join(work, 'mem-'));
    let rss = 10 * 1048576;
    let measured = 0;
    const trivial = hostedPlugin({
      async add() {
        return { cniVersion: '1.0.0', interfaces: [], ips: [] };
      },
      async del() {},
    });
    const daemon = await startDaemonInProcess({
      plugins: { trivial },
      socket: join(dir, 'daemon.sock'),
      memoryLimitBytes: 64 * 1048576,
      rssSampleMs: 60_000,
      rss: () => {
        measured++;
        return rss;
      },
      logger: jsonLogger('error'),
    });
    cleanups.push(() => daemon.close());
    const conf = { cniVersion: '1.0.0', name: 'n', type: 'trivial' };
    const sock = join(dir, 'daemon.sock');
    const first = await Promise.all(
      Array.from({ length: 100 }, (_, i) => shimCall(sock, 'ADD', `p${i}`, conf, `c${i}`)),
    );
    for (const r of first) expect(r.status).toBe(200);
    for (let i = 100; i < 150; i++)
      expect((await shimCall(sock, 'ADD', `p${i}`, conf, `c${i}`)).status).toBe(200);
    // 150 calls, one measurement: the sample stands for a minute here.
    expect(measured).toBe(1);
    await daemon.close();

    // With the default sample time (50 ms), a jump from far below to past the limit is refused
    // once the sample has aged, and from then on every call measures (it is near the limit).
    measured = 0;
    rss = 10 * 1048576;
    const dir2 = mkdtempSync(join(work, 'mem-'));
    const d2 = await startDaemonInProcess({
      plugins: { trivial },
      socket: join(dir2, 'daemon.sock'),
      memoryLimitBytes: 64 * 1048576,
      rss: () => {
        measured++;
        return rss;
      },
      logger: jsonLogger('error'),
    });
    cleanups.push(() => d2.close());
    const sock2 = join(dir2, 'daemon.sock');
    expect((await shimCall(sock2, 'ADD', 'q0', conf, 'd0')).status).toBe(200);
    rss = 65 * 1048576;
    await new Promise((r) => setTimeout(r, 60));
    const after = await Promise.all(
      Array.from({ length: 20 }, (_, i) => shimCall(sock2, 'ADD', `q${i + 1}`, conf, `d${i + 1}`)),
    );
    for (const r of after) {
      expect(r.body.code).toBe(11);
      expect(String(r.body.msg)).toMatch(/over its memory limit: 65 MiB resident, limit 64 MiB/);
    }
    expect(measured).toBe(21);
  });
});
