// Users' configs from the upstream docs, run unchanged (test/vectors/*.vector: each names its
// source and licence). Each runs ADD, CHECK (>= 0.4.0), DEL and DEL again in real network
// namespaces through cni-kit's binaries (dist/bin), under a node netns and a private mount
// namespace of the test's own (test/helpers/vectors.ts), and where Debian's Go plugins 1.1.1 have
// the plugin, the same run and assertions against them. What may stay behind after DEL is only
// what BY_DESIGN_LEFTOVERS (src/conform/allowlist.ts) lists. Vectors whose link kind this kernel
// lacks run in-process on the memory netlink backend, and their test names say so.
import { spawnSync } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, it, type TestContext } from 'vitest';
import { type FakeK8s, startFakeK8s } from '../helpers/fake-k8s.js';
import { loadVector, type Vector, vectorIds } from '../helpers/vectors.js';
import {
  type Impl,
  type RunOptions,
  removeMemoryRunner,
  runMemoryVector,
  runVector,
  type VectorRun,
} from '../helpers/vectors-run.js';
import type { Sandbox } from '../helpers/vectors-sandbox.js';

const tag = `${process.pid % 100000}`;
/** A run is a handful of plugin calls (each bounded at 20 s); side by side on 2 busy cores they queue. */
const RUN_TIMEOUT = 90_000;
let k8s: FakeK8s | undefined;

function missing(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root for network and mount namespaces';
  for (const [bin, arg] of [
    ['ip', 'netns'],
    ['unshare', '--version'],
    ['nsenter', '--version'],
  ] as const)
    if (spawnSync(bin, [arg]).status !== 0) return `${bin} is not usable`;
  return undefined;
}

beforeAll(async () => {
  if (!missing()) k8s = await startFakeK8s();
});
afterAll(async () => {
  await k8s?.close();
  await removeMemoryRunner();
});

type Json = VectorRun['result'];
type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : {});
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/** The addresses (with prefix) a result of any version lists. */
function addressesOf(r: Json): string[] {
  const o = obj(r);
  const legacy = ['ip4', 'ip6'].map((k) => obj(o[k]).ip).filter((a): a is string => typeof a === 'string');
  return [...list(o.ips).map((i) => String(obj(i).address)), ...legacy];
}

function ipText(netns: string, ...args: string[]): string {
  return spawnSync('ip', ['-n', netns, ...args], { encoding: 'utf8' }).stdout;
}
function linkJson(netns: string, name: string): Obj {
  return obj((JSON.parse(ipText(netns, '-d', '-j', 'link', 'show', name) || '[]') as unknown[])[0]);
}
function sysctlIn(s: Sandbox, key: string): string {
  const path = `/proc/sys/${key.replaceAll('.', '/')}`;
  return spawnSync('nsenter', [`--net=${s.podPath}`, '--', 'cat', path], { encoding: 'utf8' }).stdout.trim();
}
const inRange = (addr: string, lo: number, hi: number, prefix: string) => {
  const ip = addr.split('/')[0] ?? '';
  if (!ip.startsWith(prefix)) return false;
  const last = Number(ip.slice(prefix.length));
  return last >= lo && last <= hi;
};

/** IPPools of the fake API server that mention the container. */
function poolsHolding(containerId: string): string[] {
  if (!k8s) return [];
  return [...k8s.objects('ippools').entries()]
    .filter(([, p]) => JSON.stringify(p.spec ?? {}).includes(containerId))
    .map(([k]) => k);
}

interface Extra {
  /** Which implementations the assertion holds for (Go 1.1.1 lacks some fields). */
  impls: Impl[];
  afterAdd?: (s: Sandbox, r: Json) => string[];
  afterDel?: (s: Sandbox) => string[];
}
const both: Impl[] = ['cni-kit', 'go'];
const ours: Impl[] = ['cni-kit'];
const expectThat = (ok: boolean, what: string): string[] => (ok ? [] : [what]);

const whereaboutsInK8s: Extra = {
  impls: ours,
  afterAdd: (s) =>
    expectThat(
      poolsHolding(s.containerId).length > 0,
      'no IPPool in the Kubernetes API holds the allocation (the flat file names the kubernetes datastore)',
    ),
  afterDel: (s) => poolsHolding(s.containerId).map((p) => `IPPool ${p} still holds the allocation after DEL`),
};

/** Per-vector assertions beyond the common ones: what the config asks for is what ADD did. */
const EXTRA: Record<string, Extra> = {
  'cnidev-bridge-gateway': {
    impls: both,
    afterAdd: (s, r) => {
      const [addr = ''] = addressesOf(r);
      const nat = spawnSync('nsenter', [`--net=${s.nodePath}`, '--', 'iptables-save', '-t', 'nat'], {
        encoding: 'utf8',
      }).stdout;
      return [
        ...expectThat(
          ipText(s.node, 'addr', 'show', 'mynet0').includes('10.10.0.1/16'),
          'mynet0 lacks 10.10.0.1/16',
        ),
        ...expectThat(
          ipText(s.pod, 'route', 'show', 'default').includes('via 10.10.0.1'),
          'no default route via 10.10.0.1 in the pod (isDefaultGateway)',
        ),
        ...expectThat(nat.includes(addr.split('/')[0] ?? '?'), `no masquerade rule for ${addr} (ipMasq)`),
      ];
    },
  },
  'cnidev-bridge-disable-container-interface': {
    impls: ours,
    afterAdd: (s) =>
      expectThat(
        !list(linkJson(s.pod, 'eth0').flags).includes('UP'),
        'the pod eth0 is UP although disableContainerInterface is true',
      ),
  },
  'cnidev-bridge-port-isolation': {
    impls: ours,
    afterAdd: (s, r) => {
      const host = list(obj(r).interfaces)
        .map(obj)
        .find((i) => !i.sandbox && i.name !== 'mynet0');
      const slave = obj(obj(linkJson(s.node, String(host?.name)).linkinfo).info_slave_data);
      return expectThat(slave.isolated === true, `the bridge port ${String(host?.name)} is not isolated`);
    },
  },
  'cnidev-host-local-ranges-in-bridge': {
    impls: both,
    afterAdd: (s, r) => {
      const routes = ipText(s.pod, 'route', 'show');
      return [
        ...expectThat(
          JSON.stringify(addressesOf(r).sort()) === '["10.10.1.20/16","3ffe:ffff:0:1ff::10/64"]',
          `addresses ${addressesOf(r)}: not the first of each range set (rangeStart)`,
        ),
        ...expectThat(routes.includes('default via 10.10.0.254'), 'no default route via the range gateway'),
        ...expectThat(
          routes.includes('192.168.0.0/16 via 10.10.5.1'),
          'no route 192.168.0.0/16 via 10.10.5.1',
        ),
      ];
    },
  },
  'cnidev-ptp': {
    impls: both,
    afterAdd: (_s, r) =>
      expectThat(
        JSON.stringify(obj(obj(r).dns).nameservers) === '["10.1.1.1","8.8.8.8"]',
        `result dns ${JSON.stringify(obj(r).dns)} lacks the configured nameservers`,
      ),
  },
  'cnidev-tuning-interface': {
    impls: both,
    afterAdd: (s) => {
      const l = linkJson(s.pod, 'eth0');
      const flags = list(l.flags);
      return [
        ...expectThat(l.address === 'c2:b0:57:49:47:f1', `eth0 mac ${String(l.address)}`),
        ...expectThat(l.mtu === 1454, `eth0 mtu ${String(l.mtu)}`),
        ...expectThat(flags.includes('PROMISC'), 'eth0 is not promiscuous'),
        ...expectThat(flags.includes('ALLMULTI'), 'eth0 has no allmulti'),
      ];
    },
  },
  'cnidev-tuning-sysctl': {
    impls: both,
    afterAdd: (s) => [
      ...expectThat(sysctlIn(s, 'net.core.somaxconn') === '500', 'net.core.somaxconn is not 500 in the pod'),
      ...expectThat(sysctlIn(s, 'net.ipv4.conf.eth0.arp_filter') === '1', 'arp_filter of eth0 is not 1'),
    ],
  },
  'multus-macvlan2-conf': {
    impls: both,
    afterAdd: (s, r) => {
      const info = obj(obj(linkJson(s.pod, 'eth0').linkinfo).info_data);
      const [addr = ''] = addressesOf(r);
      return [
        ...expectThat(info.mode === 'bridge', `pod eth0 macvlan mode ${String(info.mode)}`),
        ...expectThat(
          /^11\.10\.(1\.([2-9]\d|1\d\d|2[0-4]\d|25[0-5])|2\.\d+|3\.([0-4]?\d|50))\/16$/.test(addr),
          `${addr} is not in 11.10.1.20-11.10.3.50`,
        ),
      ];
    },
  },
  'flannel-classic-conflist': {
    impls: ours,
    afterAdd: (_s, r) =>
      expectThat(
        addressesOf(r).some((a) => a.startsWith('10.244.9.')),
        'no 10.244.9.x address',
      ),
  },
  'flannel-current-conflist': {
    impls: ours,
    afterAdd: (_s, r) =>
      expectThat(
        addressesOf(r).some((a) => a.startsWith('10.244.9.')),
        'no 10.244.9.x address',
      ),
  },
  'multus-00-multus-conf': {
    impls: ours,
    afterAdd: (s, r) => {
      const status = k8s?.getPod(s.k8sNamespace, s.podName)?.metadata.annotations?.[
        'k8s.v1.cni.cncf.io/network-status'
      ];
      return [
        ...expectThat(
          addressesOf(r).some((a) => a.startsWith('10.244.7.')),
          'no 10.244.7.x address',
        ),
        // No cniVersion: the cluster network answers at 0.1.0, whose result names no interface, and
        // multus (CreateNetworkStatuses) makes a status entry per sandbox interface only: no entry,
        // so no annotation is written at all.
        ...expectThat(status === undefined, `network-status ${status} written for an interface-less result`),
      ];
    },
  },
  'multus-daemonset-configmap': {
    impls: ours,
    afterAdd: (s, r) => {
      const status = k8s?.getPod(s.k8sNamespace, s.podName)?.metadata.annotations?.[
        'k8s.v1.cni.cncf.io/network-status'
      ];
      return [
        ...expectThat(
          addressesOf(r).some((a) => a.startsWith('10.244.7.')),
          'no 10.244.7.x address',
        ),
        ...expectThat(
          status?.includes('10.244.7.') ?? false,
          `network-status ${status} lacks the pod address`,
        ),
      ];
    },
  },
  'multus-how-to-use-pod': {
    impls: ours,
    afterAdd: (s) => {
      const status = k8s?.getPod(s.k8sNamespace, s.podName)?.metadata.annotations?.[
        'k8s.v1.cni.cncf.io/network-status'
      ];
      const entries = status ? (JSON.parse(status) as Obj[]) : [];
      return [
        ...expectThat(
          ipText(s.pod, 'addr', 'show', 'net1').includes('10.10.1.20/16'),
          'net1 lacks 10.10.1.20/16',
        ),
        ...expectThat(
          ipText(s.pod, 'addr', 'show', 'net2').includes('11.10.1.20/16'),
          'net2 lacks 11.10.1.20/16',
        ),
        // net1 and net2; the cluster network has no cniVersion, so its 0.1.0 result names no
        // interface and multus makes no status entry for it (CreateNetworkStatuses).
        ...expectThat(
          entries.map((e) => e.interface).join(',') === 'net1,net2',
          `network-status entries ${JSON.stringify(entries.map((e) => e.interface))}, not net1,net2`,
        ),
      ];
    },
  },
  'multus-whereabouts-nad': {
    ...whereaboutsInK8s,
    afterAdd: (s, r) => [
      ...(whereaboutsInK8s.afterAdd?.(s, r) ?? []),
      ...expectThat(
        addressesOf(r).some((a) => a.startsWith('10.244.8.')),
        'no 10.244.8.x address (flannel)',
      ),
      ...expectThat(
        /inet 192\.168\.2\.(22[5-9]|23[0-8])\/28/.test(ipText(s.pod, 'addr', 'show', 'net1')),
        'net1 has no address of 192.168.2.225/28',
      ),
    ],
  },
  'whereabouts-readme-exclude': {
    ...whereaboutsInK8s,
    afterAdd: (s, r) => [
      ...(whereaboutsInK8s.afterAdd?.(s, r) ?? []),
      ...expectThat(
        addressesOf(r).some(
          (a) =>
            inRange(a, 225, 238, '192.168.2.') &&
            !inRange(a, 229, 231, '192.168.2.') &&
            !a.startsWith('192.168.2.236/'),
        ),
        `${addressesOf(r)} is not in 192.168.2.225/28 outside the excluded addresses`,
      ),
    ],
  },
  'whereabouts-readme-range-end': {
    ...whereaboutsInK8s,
    afterAdd: (s, r) => [
      ...(whereaboutsInK8s.afterAdd?.(s, r) ?? []),
      ...expectThat(
        addressesOf(r).some((a) => inRange(a, 225, 228, '192.168.2.')),
        `${addressesOf(r)} is not in .225-.228`,
      ),
    ],
  },
  'whereabouts-readme-ipv6': {
    ...whereaboutsInK8s,
    afterAdd: (s, r) => [
      ...(whereaboutsInK8s.afterAdd?.(s, r) ?? []),
      ...expectThat(
        addressesOf(r).some((a) => /^2001::[0-9a-f]{1,3}\/116$/.test(a)),
        `${addressesOf(r)} is not in 2001::/116`,
      ),
    ],
  },
  'whereabouts-readme-ipranges': {
    ...whereaboutsInK8s,
    afterAdd: (s, r) => [
      ...(whereaboutsInK8s.afterAdd?.(s, r) ?? []),
      ...expectThat(addressesOf(r).length === 2, `${addressesOf(r)}: not one address per range`),
    ],
  },
  'whereabouts-readme-ipranges-and-range': {
    ...whereaboutsInK8s,
    afterAdd: (s, r) => [
      ...(whereaboutsInK8s.afterAdd?.(s, r) ?? []),
      ...expectThat(addressesOf(r).length === 3, `${addressesOf(r)}: not one address per range (3)`),
    ],
  },
  'whereabouts-readme-dual-stack': {
    ...whereaboutsInK8s,
    afterAdd: (s, r) => [
      ...(whereaboutsInK8s.afterAdd?.(s, r) ?? []),
      ...expectThat(
        addressesOf(r).some((a) => a.includes('.')) && addressesOf(r).some((a) => a.includes(':')),
        `${addressesOf(r)}: not one IPv4 and one IPv6 address`,
      ),
    ],
  },
};

function options(v: Vector, impl: Impl): RunOptions {
  const x = EXTRA[v.id];
  const applies = x?.impls.includes(impl);
  return {
    tag,
    k8s,
    ...(applies && x?.afterAdd ? { afterAdd: (s: Sandbox, r: Json) => x.afterAdd?.(s, r) ?? [] } : {}),
    ...(applies && x?.afterDel ? { afterDel: (s: Sandbox) => x.afterDel?.(s) ?? [] } : {}),
  };
}

/** What the Go plugins are known to get wrong on a vector (`go-known`, ` | `-separated). */
const goKnown = (v: Vector) => (v.header['go-known'] ?? '').split(' | ').filter(Boolean);

/** CNI_KIT_VECTORS_REPORT=<file>: one JSON line per run (vector, implementation, problems, log). */
function record(id: string, impl: Impl, r: VectorRun): void {
  const file = process.env.CNI_KIT_VECTORS_REPORT;
  if (file) appendFileSync(file, `${JSON.stringify({ id, impl, problems: r.problems, log: r.log })}\n`);
}

function need(ctx: TestContext): void {
  const why = missing();
  if (why) ctx.skip(why);
}

// Every run has namespaces, directories and names of its own, so the runs go side by side (most
// of a run is waiting on processes); vitest's maxConcurrency (5) bounds them.
describe.concurrent('upstream doc vectors', () => {
  for (const id of vectorIds()) {
    const v = loadVector(id);
    const where = v.backend === 'memory' ? ` [memory netlink backend: ${v.header.backend}]` : '';
    it(
      `${id}: cni-kit${where}`,
      async (ctx) => {
        need(ctx);
        const r =
          v.backend === 'memory'
            ? await runMemoryVector(v, options(v, 'cni-kit'))
            : await runVector(v, 'cni-kit', options(v, 'cni-kit'));
        record(id, 'cni-kit', r);
        // A failure the Go reference shows too may be tolerated (`kit-tolerated`), never required.
        const tolerated = v.header['kit-tolerated'];
        const problems = tolerated ? r.problems.filter((p) => !p.includes(tolerated)) : r.problems;
        ctx.expect(problems, r.log.join('\n')).toEqual([]);
      },
      RUN_TIMEOUT,
    );
    if (!v.go) continue;
    it(
      `${id}: Go plugins 1.1.1`,
      async (ctx) => {
        need(ctx);
        const r = await runVector(v, 'go', options(v, 'go'));
        record(id, 'go', r);
        // The known deviations are part of the assertion: each must still happen, and nothing else.
        const flat = (t: string) => t.replace(/\s+/g, ' ');
        const known = goKnown(v).map(flat);
        const problems = r.problems.map(flat);
        ctx
          .expect(
            problems.filter((p) => !known.some((k) => p.includes(k))),
            r.log.join('\n'),
          )
          .toEqual([]);
        for (const k of known)
          ctx
            .expect(
              problems.some((p) => p.includes(k)),
              `Go no longer shows: ${k}`,
            )
            .toBe(true);
      },
      RUN_TIMEOUT,
    );
  }
});
