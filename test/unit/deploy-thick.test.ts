// Daemon-mode deployment: every document of deploy/*.yaml and deploy/examples/*.yaml against the
// Kubernetes schemas offline (kubernetes-models, unknown fields included; custom resources against
// the CRDs in deploy/); the thick DaemonSet's shape (privileged, host network and PID, /run/netns
// with HostToContainer, the socket's hostPath, the daemon command, probes that really talk HTTP over
// the socket); the image; the systemd unit (systemd-analyze verify). The installer's thick mode is
// in install-thick.test.ts.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadAll } from 'js-yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_MEMORY_LIMIT } from '../../src/daemon/server.js';
import { rbacAllows, rbacPolicyFrom } from '../helpers/fake-k8s.js';
import { manifestProblems } from '../helpers/k8s-manifests.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const work = mkdtempSync(join(tmpdir(), `ckdeploy-${process.pid}-`));
afterAll(() => rmSync(work, { recursive: true, force: true }));

// biome-ignore lint/suspicious/noExplicitAny: manifests are untyped YAML; the schema checks type them.
type Any = any;
const yamlFiles = [
  ...readdirSync(join(root, 'deploy'))
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => `deploy/${f}`),
  ...readdirSync(join(root, 'deploy/examples'))
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => `deploy/examples/${f}`),
];
const docs = yamlFiles.flatMap((file) =>
  (loadAll(readFileSync(join(root, file), 'utf8')) as Any[])
    .filter((d) => d != null)
    .map((doc, i) => ({ file, i, doc })),
);
const crds = docs.filter((d) => d.doc.kind === 'CustomResourceDefinition').map((d) => d.doc);
const thick = docs.find((d) => d.file === 'deploy/daemonset-thick.yaml' && d.doc.kind === 'DaemonSet')!.doc;
const thickConfigMaps = docs
  .filter((d) => d.file === 'deploy/daemonset-thick.yaml' && d.doc.kind === 'ConfigMap')
  .map((d) => d.doc);
const pod = thick.spec.template.spec;
const daemon = pod.containers.find((c: Any) => c.name === 'daemon');
const volume = (name: string) => pod.volumes.find((v: Any) => v.name === name);
const mount = (c: Any, path: string) => c.volumeMounts.find((m: Any) => m.mountPath === path);
const unit = readFileSync(join(root, 'deploy/cni-kit-daemon.service'), 'utf8');
const directive = (key: string) =>
  unit
    .split('\n')
    .filter((l) => l.startsWith(`${key}=`))
    .map((l) => l.slice(key.length + 1));

describe('manifests validate offline', () => {
  it('finds every manifest, the thick DaemonSet and both CRD files among them', () => {
    expect(yamlFiles).toEqual(
      expect.arrayContaining([
        'deploy/daemonset.yaml',
        'deploy/daemonset-thick.yaml',
        'deploy/rbac.yaml',
        'deploy/crd-whereabouts.yaml',
        'deploy/crd-network-attachment-definition.yaml',
      ]),
    );
    expect(crds).toHaveLength(4);
  });

  it.each(docs.map((d) => [`${d.file} #${d.i} ${d.doc.kind}`, d.doc]))('%s', (_name, doc) => {
    expect(manifestProblems(doc, crds)).toEqual([]);
  });

  it('the checks catch a wrong type, an unknown enum value, a misspelt field and a broken custom resource', () => {
    const bad = structuredClone(thick);
    bad.spec.template.spec.hostNetwork = 'yes';
    expect(manifestProblems(bad).join('\n')).toContain('hostNetwork must be boolean');
    const badType = structuredClone(thick);
    badType.spec.template.spec.volumes[0].hostPath.type = 'Dir';
    expect(manifestProblems(badType).join('\n')).toContain('volumes/0/hostPath/type');
    const typo = structuredClone(thick);
    const m = typo.spec.template.spec.containers[0].volumeMounts.find((x: Any) => x.mountPropagation);
    m.mountPropogation = m.mountPropagation;
    delete m.mountPropagation;
    expect(manifestProblems(typo).join('\n')).toMatch(/volumeMounts\/\d+\/mountPropogation/);
    const nad = structuredClone(docs.find((d) => d.doc.kind === 'NetworkAttachmentDefinition')!.doc);
    nad.spec.config = { cniVersion: '1.0.0' };
    expect(manifestProblems(nad, crds)).toEqual(['/spec/config must be a string']);
    expect(manifestProblems({ apiVersion: 'example.com/v1', kind: 'Thing' }, crds)[0]).toContain('no schema');
  });
});

describe('the thick DaemonSet', () => {
  it('runs the daemon privileged in the host network and PID namespaces, in kube-system with the RBAC names', () => {
    expect(thick.metadata.namespace).toBe('kube-system');
    const rbac = docs.filter((d) => d.file === 'deploy/rbac.yaml').map((d) => d.doc);
    expect(rbac.find((d) => d.kind === 'ServiceAccount').metadata.name).toBe(pod.serviceAccountName);
    expect(pod.hostNetwork).toBe(true);
    expect(pod.hostPID).toBe(true);
    expect(daemon.securityContext.privileged).toBe(true);
    expect(thick.spec.updateStrategy.type).toBe('RollingUpdate');
    expect(thick.spec.selector.matchLabels).toEqual(thick.spec.template.metadata.labels);
    // Not the exec-mode DaemonSet's name: both may exist during a switch, never with one name.
    const exec = docs.find((d) => d.file === 'deploy/daemonset.yaml')!.doc;
    expect(thick.metadata.name).not.toBe(exec.metadata.name);
  });

  it('the image runs `daemon` on the socket with the bundles the init container installs, and a metrics port', () => {
    expect(daemon.command).toEqual([
      'node',
      '--max-semi-space-size=2',
      '/cni-kit/cli.cjs',
      'daemon',
      '--plugins',
      '/host/opt/cni/bin/cni-kit',
      '--socket',
      '/run/cni-kit/daemon.sock',
      '--metrics-port',
      '9464',
      '--metrics-address',
      '0.0.0.0',
      '--multus-config',
      '/etc/cni-kit/daemon-config.json',
      '--whereabouts-reconciler',
      'in-cluster',
      '--whereabouts-node-slices',
      'in-cluster',
    ]);
    expect(daemon.ports).toEqual([{ name: 'metrics', containerPort: 9464, protocol: 'TCP' }]);
    const init = pod.initContainers;
    expect(init).toHaveLength(1);
    expect(init[0].command).toEqual(['node', '/cni-kit/install.mjs', '--mode=thick', '--once']);
    expect(mount(init[0], '/host/opt/cni/bin').name).toBe('cni-bin');
    expect(mount(daemon, '/host/opt/cni/bin').name).toBe('cni-bin');
    expect(volume('cni-bin').hostPath.path).toBe('/opt/cni/bin');
    // Every container runs the same image.
    const images = new Set([...pod.initContainers, ...pod.containers].map((c: Any) => c.image));
    expect(images.size).toBe(1);
  });

  it('mounts /run/netns with HostToContainer and the socket dir, CNI dirs, IPAM state and the xtables lock from the host', () => {
    const netns = mount(daemon, '/run/netns');
    expect(netns.mountPropagation).toBe('HostToContainer');
    expect(volume(netns.name).hostPath).toEqual({ path: '/run/netns', type: 'DirectoryOrCreate' });
    expect(volume(mount(daemon, '/run/cni-kit').name).hostPath).toEqual({
      path: '/run/cni-kit',
      type: 'DirectoryOrCreate',
    });
    for (const p of ['/opt/cni/bin', '/etc/cni/net.d', '/var/lib/cni']) {
      expect(volume(mount(daemon, p).name).hostPath.path, p).toBe(p);
    }
    expect(volume(mount(daemon, '/run/xtables.lock').name).hostPath).toEqual({
      path: '/run/xtables.lock',
      type: 'FileOrCreate',
    });
    // No mount under /proc: hostPID already gives the host's /proc/<pid>/ns/net.
    expect(daemon.volumeMounts.filter((m: Any) => m.mountPath.startsWith('/proc'))).toEqual([]);
  });

  it('gives in-flight calls the call timeout to finish, and caps memory at 384Mi', () => {
    expect(pod.terminationGracePeriodSeconds).toBe(130);
    expect(Number(directive('TimeoutStopSec')[0])).toBe(pod.terminationGracePeriodSeconds);
    expect(daemon.resources.limits.memory).toBe('384Mi');
    expect(daemon.resources.requests.memory).toBeDefined();
  });

  it('keeps the exec-mode DaemonSet as it was: the installer as entrypoint, no daemon, no privileges', () => {
    const exec = docs.find((d) => d.file === 'deploy/daemonset.yaml')!.doc.spec.template.spec;
    expect(exec.containers).toHaveLength(1);
    expect(exec.containers[0].command).toBeUndefined();
    expect(exec.containers[0].securityContext.privileged).toBe(false);
    expect(exec.hostPID).toBeUndefined();
  });
});

/** Mebibytes of a Kubernetes quantity (Mi, Gi, M, G, plain bytes) or a systemd size (M, G). */
function mib(q: string): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|K|M|G)?$/.exec(q);
  if (!m) throw new Error(`not a quantity: ${q}`);
  const unit: Record<string, number> = { Ki: 1 / 1024, Mi: 1, Gi: 1024, K: 1 / 1024, M: 1, G: 1024 };
  return Number(m[1]) * (m[2] ? (unit[m[2]] as number) : 1 / 1048576);
}

/** The value after `flag` in the daemon's command, if present. */
const arg = (flag: string): string | undefined => {
  const i = daemon.command.indexOf(flag);
  return i < 0 ? undefined : daemon.command[i + 1];
};

describe('the thick DaemonSet is consistent in itself', () => {
  it('every mount names a volume of the pod, and every volume is mounted', () => {
    const names = new Set<string>(pod.volumes.map((v: Any) => v.name));
    expect(names.size).toBe(pod.volumes.length);
    const mounted = new Set<string>();
    for (const c of [...pod.initContainers, ...pod.containers]) {
      for (const m of c.volumeMounts ?? []) {
        expect(names.has(m.name), `${c.name} mounts ${m.name}`).toBe(true);
        mounted.add(m.name);
      }
      // No two mounts of one container at the same path.
      const paths = (c.volumeMounts ?? []).map((m: Any) => m.mountPath);
      expect(new Set(paths).size, c.name).toBe(paths.length);
    }
    expect([...names].filter((n) => !mounted.has(n))).toEqual([]);
  });

  it('the memory limit is above the daemon’s refusal threshold, with room for admitted calls and both probes', () => {
    const threshold = Number(arg('--memory-limit-mib') ?? DEFAULT_MEMORY_LIMIT / 1048576);
    const limit = mib(daemon.resources.limits.memory);
    // A probe is a Node process of about 45 MiB in this container; calls admitted just under the
    // threshold still allocate (about 20 MiB over a burst of 200 ADDs, docs/benchmarks.md).
    expect(limit - threshold).toBeGreaterThanOrEqual(2 * 45);
    expect(mib(daemon.resources.requests.memory)).toBeLessThanOrEqual(limit);
    // The same on a host without Kubernetes (systemd).
    expect(mib(String(directive('MemoryMax')[0])) - threshold).toBeGreaterThanOrEqual(2 * 45);
  });

  it('the daemon config comes from the ConfigMap the manifest defines, its chrootDir and socketDir from the host', () => {
    const file = arg('--multus-config') as string;
    expect(file).toBeDefined();
    const m = daemon.volumeMounts.find((x: Any) => file.startsWith(`${x.mountPath}/`));
    expect(m, `a mount holding ${file}`).toBeDefined();
    const vol = volume(m.name);
    expect(vol.configMap).toBeDefined();
    const cm = thickConfigMaps.find((c: Any) => c.metadata.name === vol.configMap.name);
    expect(cm, `ConfigMap ${vol.configMap.name}`).toBeDefined();
    expect(cm.metadata.namespace).toBe(thick.metadata.namespace);
    const key = file.slice(m.mountPath.length + 1);
    expect(Object.keys(cm.data)).toContain(key);
    const cfg = JSON.parse(cm.data[key]);
    // chrootDir: the host's root, with new host mounts (netns files) propagated.
    const root = mount(daemon, cfg.chrootDir);
    expect(volume(root.name).hostPath.path).toBe('/');
    expect(root.mountPropagation).toBe('HostToContainer');
    // socketDir: the host's /run/multus, where multus-shim looks (daemonSocketDir default).
    const sock = mount(daemon, cfg.socketDir.replace(/\/$/, ''));
    expect(volume(sock.name).hostPath.path).toBe('/run/multus');
    // No kubeconfig: the pod's service account; no multusConfigFile: the config container writes it.
    expect(cfg.kubeconfig).toBeUndefined();
    expect(cfg.multusConfigFile).toBeUndefined();
    expect(pod.automountServiceAccountToken).not.toBe(false);
  });

  it('NODE_NAME comes from the downward API (the pod cache, the Lease identities)', () => {
    expect(daemon.env.find((e: Any) => e.name === 'NODE_NAME')).toEqual({
      name: 'NODE_NAME',
      valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } },
    });
  });

  it('the service account may do what the daemon’s flags need (RBAC as the API server reads it)', () => {
    const policy = rbacPolicyFrom(readFileSync(join(root, 'deploy/rbac.yaml'), 'utf8'));
    const may = (verb: string, group: string, resource: string, namespace = '', subresource = '') =>
      rbacAllows(policy, { verb, group, resource, subresource, name: '', namespace });
    const needs: Array<[string, string, string, string?, string?]> = [
      // thick multus: the node's pods and the NADs (informers), network-status, events.
      ['list', '', 'pods'],
      ['watch', '', 'pods'],
      ['get', '', 'pods', 'default'],
      ['patch', '', 'pods', 'default', 'status'],
      ['list', 'k8s.cni.cncf.io', 'network-attachment-definitions'],
      ['watch', 'k8s.cni.cncf.io', 'network-attachment-definitions'],
      ['create', '', 'events', 'default'],
      // Leases of the reconciler and the node-slice controller.
      ['get', 'coordination.k8s.io', 'leases', 'kube-system'],
      ['create', 'coordination.k8s.io', 'leases', 'kube-system'],
      ['update', 'coordination.k8s.io', 'leases', 'kube-system'],
      // Node slices: Nodes watched, NodeSlicePools written.
      ['list', '', 'nodes'],
      ['watch', '', 'nodes'],
      ['get', 'whereabouts.cni.cncf.io', 'nodeslicepools', 'kube-system'],
      ['create', 'whereabouts.cni.cncf.io', 'nodeslicepools', 'kube-system'],
      ['update', 'whereabouts.cni.cncf.io', 'nodeslicepools', 'kube-system'],
      // The reconciler: pools and reservations.
      ['list', 'whereabouts.cni.cncf.io', 'ippools', 'kube-system'],
      ['update', 'whereabouts.cni.cncf.io', 'ippools', 'kube-system'],
      ['delete', 'whereabouts.cni.cncf.io', 'overlappingrangeipreservations', 'kube-system'],
    ];
    expect(needs.filter(([v, g, r, ns, sub]) => !may(v, g, r, ns, sub))).toEqual([]);
    // And no more than it needs on Nodes.
    expect(may('update', '', 'nodes')).toBe(false);
  });
});

/** Runs a probe's exec command (the socket argument pointed at `socket`); resolves its exit code. */
function runProbe(command: string[], socket: string): Promise<number | null> {
  const args = command.slice(1).map((a) => (a === '/run/cni-kit/daemon.sock' ? socket : a));
  return new Promise((res) => {
    const child = spawn(process.execPath, args, { stdio: 'ignore' });
    child.on('exit', (code) => res(code));
  });
}

describe('the probes talk HTTP over the daemon socket', () => {
  const probes = { liveness: daemon.livenessProbe, readiness: daemon.readinessProbe };

  it('are exec probes of `node -e` against /healthz and /readyz on /run/cni-kit/daemon.sock', () => {
    for (const [name, p] of Object.entries(probes)) {
      expect(p.exec.command[0], name).toBe('node');
      expect(p.exec.command).toContain('/run/cni-kit/daemon.sock');
      expect(p.timeoutSeconds).toBeGreaterThanOrEqual(5);
    }
    expect(probes.liveness.exec.command.at(-1)).toBe('/healthz');
    expect(probes.readiness.exec.command.at(-1)).toBe('/readyz');
  });

  it('succeed on 200 only, fail on 500 (draining) and when nothing listens', async () => {
    const socket = join(work, 'probe.sock');
    const seen: string[] = [];
    let status = 200;
    const server: Server = createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      res.writeHead(status, { 'Content-Length': 2 }).end('ok');
    });
    await new Promise<void>((res) => server.listen(socket, res));
    try {
      expect(await runProbe(probes.liveness.exec.command, socket)).toBe(0);
      expect(await runProbe(probes.readiness.exec.command, socket)).toBe(0);
      status = 500;
      expect(await runProbe(probes.readiness.exec.command, socket)).toBe(1);
      expect(seen).toEqual(['GET /healthz', 'GET /readyz', 'GET /readyz']);
    } finally {
      await new Promise((res) => server.close(res));
    }
    expect(await runProbe(probes.liveness.exec.command, socket)).toBe(1);
    expect(await runProbe(probes.readiness.exec.command, join(work, 'absent.sock'))).toBe(1);
  });
});

describe('the image', () => {
  const dockerfile = readFileSync(join(root, 'deploy/Dockerfile'), 'utf8');

  it('carries the shims and the cni-kit command with its chunks and dependencies; the installer stays the entrypoint', () => {
    expect(dockerfile).toMatch(/^COPY dist\/bin\/ \/cni-kit\/bin\/$/m);
    expect(dockerfile).toMatch(/^COPY dist\/shim\/ \/cni-kit\/shim\/$/m);
    // dist/cli.cjs requires ./chunk-*.cjs: all of dist/*.cjs beside it.
    expect(dockerfile).toMatch(/^COPY dist\/\*\.cjs \/cni-kit\/$/m);
    expect(dockerfile).toMatch(/^COPY --from=deps \/cni-kit\/node_modules\/ \/cni-kit\/node_modules\/$/m);
    expect(dockerfile).toMatch(/^ENTRYPOINT \["node", "\/cni-kit\/install.mjs"\]$/m);
  });
});

describe('the systemd unit', () => {
  it('starts the daemon as the DaemonSet does, restarts it always, and drains on SIGTERM', () => {
    expect(directive('ExecStart')).toEqual([
      '/usr/bin/node --max-semi-space-size=2 /usr/lib/cni-kit/cli.cjs daemon --plugins /opt/cni/bin/cni-kit --socket /run/cni-kit/daemon.sock',
    ]);
    expect(directive('Type')).toEqual(['simple']);
    expect(directive('Restart')).toEqual(['always']);
    expect(directive('RestartSec')).toEqual(['1']);
    expect(directive('StartLimitIntervalSec')).toEqual(['0']);
    expect(directive('KillSignal')).toEqual(['SIGTERM']);
    expect(directive('KillMode')).toEqual(['mixed']);
    expect(directive('RuntimeDirectory')).toEqual(['cni-kit']);
    expect(directive('RuntimeDirectoryMode')).toEqual(['0700']);
    expect(directive('MemoryMax')).toEqual(['384M']);
  });

  it('keeps the daemon in the host mount namespace and /proc/sys writable (netns files, sysctls)', () => {
    for (const key of [
      'ProtectSystem',
      'ProtectHome',
      'PrivateTmp',
      'PrivateDevices',
      'PrivateNetwork',
      'ProtectKernelTunables',
      'ProtectKernelModules',
      'ProtectControlGroups',
      'ProtectClock',
      'RestrictNamespaces',
      'MemoryDenyWriteExecute',
      'ReadOnlyPaths',
      'User',
      'DynamicUser',
    ]) {
      expect(directive(key), key).toEqual([]);
    }
    expect(directive('RestrictAddressFamilies')[0]?.split(' ')).toEqual(
      expect.arrayContaining(['AF_UNIX', 'AF_NETLINK', 'AF_INET', 'AF_INET6', 'AF_PACKET']),
    );
  });

  const analyze = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((p) => existsSync(p));

  /** `systemd-analyze verify` on a copy of the unit, with its node pointed at one that exists here. */
  function verify(text: string, name: string): Promise<{ code: number | null; out: string }> {
    const file = join(work, name);
    writeFileSync(file, text.replace('ExecStart=/usr/bin/node ', `ExecStart=${process.execPath} `));
    return new Promise((res) => {
      const child = spawn(analyze!, ['verify', '--man=no', file], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d;
      });
      child.stderr.on('data', (d: Buffer) => {
        out += d;
      });
      child.on('exit', (code) => res({ code, out }));
    });
  }

  it('passes systemd-analyze verify with no warning, which a broken copy does not', async (ctx) => {
    if (!analyze)
      ctx.skip('systemd-analyze is not installed (Debian package systemd; see scripts/debian-packages)');
    const good = await verify(unit, 'cni-kit-daemon.service');
    expect(good, good.out).toEqual({ code: 0, out: '' });
    // verify reports a bad value as a warning: an empty output is the test.
    const bad = await verify(unit.replace('KillMode=mixed', 'KillMode=gentle'), 'cni-kit-daemon-bad.service');
    expect(bad.out).toContain('kill mode');
  });
});
