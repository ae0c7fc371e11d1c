// cni-kit's plugins under a real container runtime: Debian's podman 4.x with its CNI backend.
// podman's generated conflists chain bridge (host-local IPAM), portmap, firewall and tuning; all
// five are cni-kit's: the site's cni_plugin_dirs is dist/bin alone (daemon mode: the shims of a
// daemon in the node namespace), so no Go plugin can stand in for a missing one. The Go reference
// plugins run only in a comparison site of their own (the two-network case), which skips where
// they are not installed. The image is imported from Debian's static busybox, so no registry is
// involved. Everything runs in network namespaces and storage of the file's own
// (test/helpers/podman.ts); each case removes its containers and then checks that nothing is left:
// links, addresses, host-local records, tuning backups, firewall records, iptables rules in the
// node namespace (but the shared chains the reference leaves too: LEFTOVERS), libcni cache
// entries, podman's network namespaces, mounts, conmon processes and cgroups.
// The file is skipped, with a message naming what is missing, where podman cannot run.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { BIN_DIR } from '../helpers/plugin.js';
import {
  cgroupHierarchies,
  createPodmanLab,
  filesBelow,
  GO_CNI_DIR,
  goPluginsMissing,
  LEFTOVERS,
  libcniCacheFiles,
  PODMAN_PLUGINS,
  type PodmanLab,
  type PodmanNetwork,
  type PodmanSite,
  type Proc,
  pidsMentioning,
  podmanMissing,
  unexpectedRules,
} from '../helpers/podman.js';

const tag = `ckpm${process.pid % 100000}`;
const missing = podmanMissing();
if (missing) console.warn(`podman suite skipped: ${missing}`);
let lab: PodmanLab | undefined;
let ours: PodmanSite;
let ready = false;
const timings: Array<[string, number]> = [];

function need(ctx: TestContext): PodmanLab {
  if (missing) ctx.skip(missing);
  if (!lab || !ready) throw new Error('the podman lab was not set up (see the error of beforeAll)');
  return lab;
}

/** Runs `body` and records how long it took. */
async function timed<T>(what: string, body: () => Promise<T>): Promise<T> {
  const start = performance.now();
  try {
    return await body();
  } finally {
    timings.push([what, Math.round(performance.now() - start)]);
  }
}

beforeAll(async () => {
  if (missing) return;
  const l = await createPodmanLab(tag);
  lab = l;
  ours = await timed('set-up (rootfs tarball, podman import)', () => l.site('n', [BIN_DIR]));
  ready = true;
}, 120_000);

// podman 4.3 runs VERSION on every plugin of every network it knows before each ADD and DEL (four
// plugin starts per network and command): each case's networks go with it, or every later start
// and removal would pay for them (20 parallel starts took three times as long behind 7 networks).
afterEach(async () => {
  if (lab && ready) for (const s of lab.sites) await s.removeNetworks();
}, 120_000);

afterAll(async () => {
  if (!lab) return;
  const forced = await lab.cleanup();
  console.log(
    `podman suite timings (ms):\n${timings.map(([w, ms]) => `  ${String(ms).padStart(6)}  ${w}`).join('\n')}`,
  );
  // A case that failed half-way leaves its containers to this clean-up, which podman removes
  // normally; anything that had to be forced is a leak of podman or of the plugins.
  expect(forced).toEqual([]);
}, 180_000);

interface Attachment {
  IPAddress: string;
  IPPrefixLen: number;
  Gateway: string;
  GlobalIPv6Address: string;
  GlobalIPv6PrefixLen: number;
  IPv6Gateway: string;
  MacAddress: string;
}

/** The container's attachments as podman reports them, by network name. */
async function attachments(site: PodmanSite, name: string): Promise<Record<string, Attachment>> {
  return JSON.parse(
    await site.podmanOk(['inspect', '--format', '{{json .NetworkSettings.Networks}}', name]),
  ) as Record<string, Attachment>;
}

async function exec(site: PodmanSite, name: string, ...cmd: string[]): Promise<string> {
  return site.podmanOk(['exec', name, ...cmd]);
}

/** busybox ping: one echo request, five seconds for the answer. */
async function expectPing(site: PodmanSite, from: string, to: string): Promise<void> {
  const out = await exec(site, from, 'ping', '-c', '1', '-W', '5', to);
  expect(out, `${from} -> ${to}`).toMatch(/1 packets transmitted, 1 packets received/);
}

/** The container's IPv4 and IPv6 routes, one per line (busybox `ip route`). */
async function routes(site: PodmanSite, name: string): Promise<string[]> {
  const v4 = await exec(site, name, 'ip', 'route');
  const v6 = await exec(site, name, 'ip', '-6', 'route');
  return [...v4.split('\n'), ...v6.split('\n')].map((l) => l.trim().replace(/\s+/g, ' ')).filter(Boolean);
}

/**
 * The container's routes with each interface named by the network it is on (by its gateway, as
 * the same subnets are used for both plugin sets): podman numbers the interfaces of a container
 * on several networks in no fixed order.
 */
async function routesByNetwork(
  site: PodmanSite,
  name: string,
  nets: readonly PodmanNetwork[],
): Promise<string[]> {
  const label = new Map<string, string>();
  let ifname = '';
  for (const line of (await exec(site, name, 'ip', '-4', 'addr')).split('\n')) {
    const head = /^\d+: ([^:@\s]+)/.exec(line);
    if (head) ifname = head[1]!;
    const inet = /inet (\d+\.\d+\.\d+)\.\d+\//.exec(line);
    const net = inet && nets.find((n) => n.gateways.some((g) => g.startsWith(`${inet[1]}.`)));
    if (net) label.set(ifname, `<net of ${net.gateways[0]}>`);
  }
  return (await routes(site, name))
    .map((r) => r.replace(/\bdev (\S+)/, (m, dev: string) => (label.has(dev) ? `dev ${label.get(dev)}` : m)))
    .sort();
}

function linkNames(site: PodmanSite): Array<{ name: string; kind: string | undefined }> {
  const links = JSON.parse(site.inNode('ip', ['-d', '-j', 'link', 'show']).stdout) as Array<{
    ifname: string;
    linkinfo?: { info_kind?: string };
  }>;
  return links.map((l) => ({ name: l.ifname, kind: l.linkinfo?.info_kind }));
}

/**
 * Once every container of the case is removed: nothing of them may be left, only the by-design
 * leftovers (test/helpers/podman.ts, LEFTOVERS).
 */
async function expectNothingLeft(site: PodmanSite, extraLinks: readonly string[] = []): Promise<void> {
  const l = lab!;
  expect(await site.podmanOk(['ps', '-a', '--format', '{{.Names}}'])).toBe('');
  const allowed = new Set(['lo', ...site.networks.map((n) => n.bridge), ...extraLinks]);
  expect(linkNames(site).filter((k) => !allowed.has(k.name))).toEqual([]);
  for (const n of site.networks) {
    const show = site.inNode('ip', ['-j', 'addr', 'show', 'dev', n.bridge]);
    if (show.status !== 0) continue; // no container ever ran on it: podman makes the bridge lazily
    const info = JSON.parse(show.stdout) as Array<{ addr_info: Array<{ local: string }> }>;
    const addrs = info.flatMap((i) => i.addr_info.map((a) => a.local)).filter((a) => !a.startsWith('fe80:'));
    // The gateway addresses may stay (a rollback may also have taken them away).
    expect(
      addrs.filter((a) => !n.gateways.includes(a)),
      `addresses of ${n.bridge}`,
    ).toEqual([]);
    expect(
      filesBelow(n.ipamDir).filter((f) => !LEFTOVERS.ipamFile.test(f)),
      `host-local records of ${n.name}`,
    ).toEqual([]);
    expect(filesBelow(n.tuningDir), `tuning backups of ${n.name}`).toEqual([]);
    expect(filesBelow(n.firewallDir), `firewall records of ${n.name}`).toEqual([]);
  }
  expect(unexpectedRules(site.iptables()), `iptables rules in ${site.netns}`).toEqual([]);
  expect(libcniCacheFiles(site.networks.map((n) => n.name))).toEqual([]);
  expect(
    [...l.sandboxes].filter((p) => existsSync(p)),
    'podman network namespace files',
  ).toEqual([]);
  expect(l.mountedSandboxes(), 'podman network namespace mounts').toEqual([]);
  expect(l.mounts(), 'mounts under the lab dir').toEqual([]);
  // conmon starts `podman container cleanup` as a container exits; podman rm does not wait for it.
  let pids = pidsMentioning(l.dir);
  for (let i = 0; i < 100 && pids.length > 0; i++) {
    await new Promise((res) => setTimeout(res, 100));
    pids = pidsMentioning(l.dir);
  }
  expect(pids, 'conmon or podman processes').toEqual([]);
  const cgroups = cgroupHierarchies().flatMap((c) =>
    [...l.containerIds].map((id) => join('/sys/fs/cgroup', c, 'libpod_parent', `libpod-${id}`)),
  );
  expect(
    cgroups.filter((p) => existsSync(p)),
    'container cgroups',
  ).toEqual([]);
}

const SLEEP = ['sleep', '600'];

/** The bridge's ports (the host ends of the containers' veths). */
function ports(site: PodmanSite, bridge: string): string[] {
  const r = site.inNode('ip', ['-j', 'link', 'show', 'master', bridge]);
  return r.status === 0 ? (JSON.parse(r.stdout) as Array<{ ifname: string }>).map((l) => l.ifname) : [];
}

/**
 * Runs a case's body, then removes its containers whatever happened (so that one failing case
 * leaves nothing to the next); the removal itself must succeed.
 */
async function withContainers(site: PodmanSite, names: readonly string[], body: () => Promise<void>) {
  let rm = '';
  try {
    await body();
  } finally {
    const r = await site.podman(['rm', '--force', '--ignore', '--time', '0', ...names]);
    rm = r.status === 0 ? '' : r.stderr;
  }
  expect(rm, 'podman rm').toBe('');
}

describe('podman 4 with the CNI backend, driving cni-kit bridge + host-local + tuning', () => {
  it('two containers on one network get distinct addresses and ping each other', async (ctx) => {
    need(ctx);
    await timed('two containers ping each other', async () => {
      const net = await ours.createNetwork(`${tag}-one`, ['10.89.1.0/24']);
      // Every plugin podman's conflist names is cni-kit's: the site's one plugin dir is ours.
      expect([...new Set(net.types)].sort()).toEqual([...PODMAN_PLUGINS].sort());
      expect(ours.pluginDirs).toHaveLength(1);
      expect(ours.pluginDirs[0]).not.toContain(GO_CNI_DIR);
      for (const t of net.types) expect(existsSync(join(ours.pluginDirs[0]!, t)), t).toBe(true);
      await withContainers(ours, ['one1', 'one2'], async () => {
        for (const c of ['one1', 'one2']) {
          const r = await ours.runDetached(c, ['--network', net.name], SLEEP);
          expect(r.status, r.stderr).toBe(0);
        }
        const a = (await attachments(ours, 'one1'))[net.name]!;
        const b = (await attachments(ours, 'one2'))[net.name]!;
        expect(a.IPAddress).toMatch(/^10\.89\.1\.\d+$/);
        expect(b.IPAddress).toMatch(/^10\.89\.1\.\d+$/);
        expect(a.IPAddress).not.toBe(b.IPAddress);
        expect(a.Gateway).toBe('10.89.1.1');
        // What podman reports is what the container has.
        expect(await exec(ours, 'one1', 'ip', '-4', 'addr', 'show', 'eth0')).toContain(
          `inet ${a.IPAddress}/24`,
        );
        expect(await routes(ours, 'one1')).toContain('default via 10.89.1.1 dev eth0');
        await expectPing(ours, 'one1', b.IPAddress);
        await expectPing(ours, 'one2', a.IPAddress);
        // cni-kit's host-local ran (it keeps an owner index of its own next to the address records),
        // and so did cni-kit's firewall (a record per attachment in the dataDir the Go one lacks).
        expect(filesBelow(net.ipamDir).filter((f) => f.startsWith('.cni-kit/'))).toHaveLength(2);
        expect(filesBelow(net.firewallDir)).toHaveLength(2);
        const forward = ours.iptables().filter((r) => r.startsWith('ip4 filter -A CNI-FORWARD '));
        for (const ip of [a.IPAddress, b.IPAddress])
          expect(forward).toContain(`ip4 filter -A CNI-FORWARD -s ${ip}/32 -j ACCEPT`);
      });
      await expectNothingLeft(ours);
    });
  }, 120_000);

  // Fails until result routes are added with create-without-exclusive semantics, as the Go plugins
  // do: today the second network's default route fails with EEXIST and podman run fails.
  it('a container on two networks (--network a,b, both with a default route) has the routes the Go plugins give it', async (ctx) => {
    const l = need(ctx);
    const goMissing = goPluginsMissing();
    if (goMissing) ctx.skip(`no Go reference to compare with: ${goMissing}`);
    await timed('a container on two networks (Go reference, then ours)', async () => {
      const subnets = ['10.89.2.0/24', '10.89.3.0/24'];
      // The reference: the same networks driven by the Go plugins only, in a node namespace of their own.
      const go = await l.site('g', [GO_CNI_DIR]);
      const ga = await go.createNetwork(`${tag}-ga`, [subnets[0]!]);
      const gb = await go.createNetwork(`${tag}-gb`, [subnets[1]!]);
      let goRoutes: string[] = [];
      await withContainers(go, ['two-go'], async () => {
        const r = await go.runDetached('two-go', ['--network', `${ga.name},${gb.name}`], SLEEP);
        expect(r.status, `the Go reference itself failed: ${r.stderr}`).toBe(0);
        goRoutes = await routesByNetwork(go, 'two-go', [ga, gb]);
      });
      await expectNothingLeft(go);

      const a = await ours.createNetwork(`${tag}-a`, [subnets[0]!]);
      const b = await ours.createNetwork(`${tag}-b`, [subnets[1]!]);
      let run: Proc | undefined;
      await withContainers(ours, ['two'], async () => {
        run = await ours.runDetached('two', ['--network', `${a.name},${b.name}`], SLEEP);
        if (run.status !== 0) return; // asserted below, once the failed start is known to leave nothing
        const att = await attachments(ours, 'two');
        expect(Object.keys(att).sort()).toEqual([a.name, b.name].sort());
        // podman sets the networks up in no fixed order, so the two default routes come in either
        // order; the table must hold the same routes as under the Go plugins.
        expect(await routesByNetwork(ours, 'two', [a, b])).toEqual(goRoutes);
        expect(goRoutes.filter((r) => r.startsWith('default via '))).toHaveLength(2);
        for (const gw of [...a.gateways, ...b.gateways]) await expectPing(ours, 'two', gw);
      });
      await expectNothingLeft(ours);
      expect(run?.status, run?.stderr).toBe(0);
    });
  }, 150_000);

  it('-p HOST:CONTAINER reaches the container through cni-kit portmap from a client and from the node; it reaches out through cni-kit firewall', async (ctx) => {
    const l = need(ctx);
    await timed('-p port mapping, firewall', async () => {
      const net = await ours.createNetwork(`${tag}-pm`, ['10.89.4.0/24']);
      // A client outside the node: a namespace of its own behind a veth (the PREROUTING path).
      const client = l.netns('cl');
      const inClient = (cmd: string, ...args: string[]) =>
        ours.inNode('nsenter', [`--net=${client}`, cmd, ...args]);
      const link = ours.inNode('ip', [
        'link',
        'add',
        'cl0',
        'type',
        'veth',
        'peer',
        'name',
        'eth0',
        'netns',
        client,
      ]);
      expect(link.status, link.stderr).toBe(0);
      try {
        ours.inNode('ip', ['addr', 'add', '192.0.2.1/24', 'dev', 'cl0']);
        ours.inNode('ip', ['link', 'set', 'cl0', 'up']);
        inClient('ip', 'addr', 'add', '192.0.2.2/24', 'dev', 'eth0');
        inClient('ip', 'link', 'set', 'eth0', 'up');
        // The client can route to the containers' subnet too (for the direct, unmapped attempt).
        inClient('ip', 'route', 'add', '10.89.4.0/24', 'via', '192.0.2.1');
        const fetch = (p: { stdout: string }) => p.stdout.trim();
        // The server answers one connection, then its loop starts the next nc: a connection that
        // comes in between (or before the first) is refused, so each path is tried for up to 10 s.
        const fetchOk = async (run: () => Proc): Promise<string> => {
          let got = '';
          for (let i = 0; i < 50 && got !== 'podman-portmap-ok'; i++) {
            got = fetch(run());
            if (got !== 'podman-portmap-ok') await new Promise((res) => setTimeout(res, 200));
          }
          return got;
        };
        await withContainers(ours, ['pm'], async () => {
          const serve = 'while true; do echo podman-portmap-ok | nc -l -p 8080; done';
          const r = await ours.runDetached(
            'pm',
            ['--network', net.name, '-p', '18080:8080'],
            ['sh', '-c', serve],
          );
          expect(r.status, r.stderr).toBe(0);
          const ip = (await attachments(ours, 'pm'))[net.name]!.IPAddress;
          // The rules of cni-kit's portmap (the reference's layout) and firewall are there.
          const rules = ours.iptables();
          expect(rules.join('\n')).toContain(`-j DNAT --to-destination ${ip}:8080`);
          expect(rules).toContain(`ip4 filter -A CNI-FORWARD -s ${ip}/32 -j ACCEPT`);
          expect(filesBelow(net.firewallDir)).toHaveLength(1);
          const viaClient = () => inClient('busybox', 'nc', '-w', '3', '192.0.2.1', '18080');
          expect(await fetchOk(viaClient), 'client -> node:18080').toBe('podman-portmap-ok');
          // From the node itself, to its address on the bridge (the OUTPUT path).
          const viaNode = () => ours.inNode('busybox', ['nc', '-w', '3', net.gateways[0]!, '18080']);
          expect(await fetchOk(viaNode), 'node -> gateway:18080').toBe('podman-portmap-ok');
          // With the node's FORWARD policy at DROP (as on a host with a firewall of its own), what
          // passes is what cni-kit's firewall accepts in CNI-FORWARD: the container reaches out (and
          // its replies come back), while a new connection from outside straight to the container
          // address does not get in.
          const policy = ours.inNode('iptables', ['-P', 'FORWARD', 'DROP']);
          expect(policy.status, policy.stderr).toBe(0);
          try {
            await expectPing(ours, 'pm', '192.0.2.2');
            expect(fetch(inClient('busybox', 'nc', '-w', '2', ip, '8080')), 'client -> container:8080').toBe(
              '',
            );
          } finally {
            ours.inNode('iptables', ['-P', 'FORWARD', 'ACCEPT']);
          }
        });
        // The mapping went with the container.
        expect(fetch(inClient('busybox', 'nc', '-w', '2', '192.0.2.1', '18080'))).toBe('');
        await expectNothingLeft(ours, ['cl0']);
      } finally {
        ours.inNode('ip', ['link', 'del', 'cl0']);
      }
    });
  }, 120_000);

  it('--opt isolate=true: cni-kit firewall (ingressPolicy same-bridge) keeps two isolated networks apart', async (ctx) => {
    need(ctx);
    await timed('isolated networks', async () => {
      const a = await ours.createNetwork(`${tag}-ia`, ['10.89.8.0/24'], { isolate: 'true' });
      const b = await ours.createNetwork(`${tag}-ib`, ['10.89.9.0/24'], { isolate: 'true' });
      for (const n of [a, b])
        expect(ours.conflist(n.name).plugins.find((p) => p.type === 'firewall')?.ingressPolicy).toBe(
          'same-bridge',
        );
      const noPing = async (from: string, to: string) => {
        const r = await ours.podman(['exec', from, 'ping', '-c', '1', '-W', '2', to]);
        expect(r.stdout, `${from} -> ${to} must not get through`).toMatch(
          /1 packets transmitted, 0 packets received/,
        );
      };
      await withContainers(ours, ['ia1', 'ia2', 'ib1'], async () => {
        for (const [c, n] of [
          ['ia1', a],
          ['ia2', a],
          ['ib1', b],
        ] as const) {
          const r = await ours.runDetached(c, ['--network', n.name], SLEEP);
          expect(r.status, r.stderr).toBe(0);
        }
        const ip = async (c: string, n: PodmanNetwork) => (await attachments(ours, c))[n.name]!.IPAddress;
        const [ia1, ia2, ib1] = [await ip('ia1', a), await ip('ia2', a), await ip('ib1', b)];
        await expectPing(ours, 'ia1', ia2);
        await noPing('ia1', ib1);
        await noPing('ib1', ia1);
        // The node itself still reaches every container (its traffic does not cross FORWARD).
        for (const x of [ia1, ib1]) expect(ours.inNode('ping', ['-c', '1', '-W', '5', x]).status, x).toBe(0);
        const rules = ours.iptables();
        expect(rules).toContain('ip4 filter :CNI-ISOLATION-STAGE-1 -');
        for (const br of [a.bridge, b.bridge])
          expect(
            rules.some(
              (r) => r.startsWith(`ip4 filter -A CNI-ISOLATION-STAGE-2 -o ${br} `) && r.endsWith('-j DROP'),
            ),
          ).toBe(true);
      });
      // The isolation chains and their per-bridge rules stay (LEFTOVERS), as with the reference.
      await expectNothingLeft(ours);
      expect(ours.iptables()).toContain('ip4 filter :CNI-ISOLATION-STAGE-2 -');
    });
  }, 120_000);

  it('--ip and --mac-address are applied; an address already taken is refused and leaves nothing', async (ctx) => {
    need(ctx);
    await timed('--ip and --mac-address', async () => {
      const net = await ours.createNetwork(`${tag}-st`, ['10.89.5.0/24']);
      const mac = '02:42:0a:59:05:4d';
      await withContainers(ours, ['st1', 'st2'], async () => {
        const r = await ours.runDetached(
          'st1',
          ['--network', net.name, '--ip', '10.89.5.77', '--mac-address', mac],
          SLEEP,
        );
        expect(r.status, r.stderr).toBe(0);
        const att = (await attachments(ours, 'st1'))[net.name]!;
        expect(att.IPAddress).toBe('10.89.5.77');
        expect(att.MacAddress).toBe(mac);
        const eth0 = await exec(ours, 'st1', 'ip', 'addr', 'show', 'eth0');
        expect(eth0).toContain(`link/ether ${mac}`);
        expect(eth0).toContain('inet 10.89.5.77/24');
        expect(filesBelow(net.ipamDir)).toContain('10.89.5.77');
        // The node reaches it, and learns it under the requested MAC.
        expect(ours.inNode('ping', ['-c', '1', '-W', '5', '10.89.5.77']).status).toBe(0);
        expect(ours.inNode('ip', ['neigh', 'show', '10.89.5.77']).stdout).toContain(mac);

        const taken = await ours.runDetached('st2', ['--network', net.name, '--ip', '10.89.5.77'], SLEEP);
        expect(taken.status).not.toBe(0);
        expect(taken.stderr).toContain('10.89.5.77');
        // The refused container got nothing: one port on the bridge, one address record.
        expect(ports(ours, net.bridge)).toHaveLength(1);
        expect(filesBelow(net.ipamDir).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f))).toEqual(['10.89.5.77']);
      });
      await expectNothingLeft(ours);
    });
  }, 120_000);

  it('dual stack: both families on eth0, both default routes, ping over IPv4 and IPv6', async (ctx) => {
    need(ctx);
    await timed('dual stack', async () => {
      const net = await ours.createNetwork(`${tag}-ds`, ['10.89.6.0/24', 'fd00:89:6::/64']);
      await withContainers(ours, ['ds1', 'ds2'], async () => {
        for (const c of ['ds1', 'ds2']) {
          const r = await ours.runDetached(c, ['--network', net.name], SLEEP);
          expect(r.status, r.stderr).toBe(0);
        }
        const a = (await attachments(ours, 'ds1'))[net.name]!;
        const b = (await attachments(ours, 'ds2'))[net.name]!;
        expect(a.IPAddress).toMatch(/^10\.89\.6\.\d+$/);
        expect(a.GlobalIPv6Address).toMatch(/^fd00:89:6::[0-9a-f]+$/);
        expect(b.GlobalIPv6Address).toMatch(/^fd00:89:6::[0-9a-f]+$/);
        expect(a.GlobalIPv6Address).not.toBe(b.GlobalIPv6Address);
        const eth0 = await exec(ours, 'ds1', 'ip', 'addr', 'show', 'eth0');
        expect(eth0).toContain(`inet ${a.IPAddress}/24`);
        expect(eth0).toContain(`inet6 ${a.GlobalIPv6Address}/64`);
        const rt = await routes(ours, 'ds1');
        expect(rt).toContain('default via 10.89.6.1 dev eth0');
        expect(rt.some((x) => x.startsWith('default via fd00:89:6::1 dev eth0'))).toBe(true);
        await expectPing(ours, 'ds1', b.IPAddress);
        await expectPing(ours, 'ds1', b.GlobalIPv6Address);
        await expectPing(ours, 'ds2', a.GlobalIPv6Address);
        expect(ours.inNode('ping', ['-c', '1', '-W', '5', a.GlobalIPv6Address]).status).toBe(0);
      });
      await expectNothingLeft(ours);
    });
  }, 120_000);

  it('20 parallel starts and removals: no duplicate address or MAC, nothing left', async (ctx) => {
    need(ctx);
    const N = 20;
    const net = await ours.createNetwork(`${tag}-par`, ['10.89.7.0/24']);
    const names = Array.from({ length: N }, (_, i) => `par${i}`);
    await withContainers(ours, names, async () => {
      const started = await timed(`${N} parallel podman run`, () =>
        Promise.all(names.map((n) => ours.runDetached(n, ['--network', net.name], SLEEP))),
      );
      expect(started.filter((r) => r.status !== 0).map((r) => r.stderr)).toEqual([]);
      // One inspect for all (each podman process costs a few hundred ms on a busy machine).
      const att = (
        await ours.podmanOk(['inspect', '--format', '{{json .NetworkSettings.Networks}}', ...names])
      )
        .split('\n')
        .map((l) => (JSON.parse(l) as Record<string, Attachment>)[net.name]!);
      expect(att).toHaveLength(N);
      const ips = att.map((x) => x.IPAddress);
      const macs = att.map((x) => x.MacAddress);
      expect(new Set(ips).size).toBe(N);
      expect(new Set(macs).size).toBe(N);
      for (const ip of ips) expect(ip).toMatch(/^10\.89\.7\.\d+$/);
      // host-local holds exactly these addresses, and the bridge has one port per container.
      expect(
        filesBelow(net.ipamDir)
          .filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f))
          .sort(),
      ).toEqual([...ips].sort());
      expect(ports(ours, net.bridge)).toHaveLength(N);
      const removed = await timed(`${N} parallel podman rm`, () =>
        Promise.all(names.map((n) => ours.podman(['rm', '-f', '-t', '0', n]))),
      );
      expect(removed.filter((r) => r.status !== 0).map((r) => r.stderr)).toEqual([]);
    });
    await expectNothingLeft(ours);
  }, 600_000);
});

describe('the by-design leftovers the podman cases allow', () => {
  it('are only the shared portmap/firewall chains and jumps (isolation included): no rule of a container passes', () => {
    const shared = [
      'ip4 filter :CNI-ADMIN -',
      'ip4 filter :CNI-FORWARD -',
      'ip4 filter -A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD',
      'ip4 filter -A CNI-FORWARD -m comment --comment "CNI firewall plugin admin overrides" -j CNI-ADMIN',
      'ip6 nat :CNI-HOSTPORT-DNAT -',
      'ip4 nat -A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT',
      'ip4 nat -A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT',
      'ip4 nat -A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ',
      'ip4 nat -A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE',
      'ip4 nat -A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark 0x2000/0x2000',
      'ip4 filter :CNI-ISOLATION-STAGE-1 -',
      'ip6 filter :CNI-ISOLATION-STAGE-2 -',
      'ip4 filter -A FORWARD -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge|isolated)" -j CNI-ISOLATION-STAGE-1',
      'ip4 filter -A FORWARD -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge)" -j CNI-ISOLATION-STAGE-1',
      'ip4 filter -A CNI-ISOLATION-STAGE-1 -i br-n3 ! -o br-n3 -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge)" -j CNI-ISOLATION-STAGE-2',
      'ip6 filter -A CNI-ISOLATION-STAGE-1 -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge|isolated)" -j RETURN',
      'ip4 filter -A CNI-ISOLATION-STAGE-2 -o br-n3 -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge|isolated)" -j DROP',
      'ip4 filter -A CNI-ISOLATION-STAGE-2 -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge|isolated)" -j RETURN',
    ];
    const ofContainers = [
      'ip4 nat :CNI-DN-5ccfda63b3fc2bf1f9386 -',
      'ip4 nat :CNI-5ccfda63b3fc2bf1f938675f -',
      'ip4 nat -A CNI-DN-5ccfda63b3fc2bf1f9386 -p tcp -m tcp --dport 18080 -j DNAT --to-destination 10.89.4.2:8080',
      'ip4 nat -A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"n\\" id: \\"3f07\\"" -m multiport --dports 18080 -j CNI-DN-5ccfda63b3fc2bf1f9386',
      'ip4 nat -A POSTROUTING -s 10.89.4.2/32 -m comment --comment "name: \\"n\\" id: \\"3f07\\"" -j CNI-5ccfda63b3fc2bf1f938675f',
      'ip4 filter -A CNI-FORWARD -d 10.89.4.2/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      'ip4 filter -A CNI-FORWARD -s 10.89.4.2/32 -j ACCEPT',
      'ip4 filter -A FORWARD -j CNI-FORWARD',
      'ip4 filter -A CNI-ISOLATION-STAGE-1 -i br-n3 ! -o br-n4 -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge)" -j CNI-ISOLATION-STAGE-2',
      'ip4 filter -A CNI-ISOLATION-STAGE-2 -s 10.89.8.2/32 -j DROP',
      'ip4 filter -A CNI-ISOLATION-STAGE-2 -o br-n3 -j ACCEPT',
      'ip4 filter :CNI-ISOLATION-STAGE-3 -',
    ];
    expect(unexpectedRules(shared)).toEqual([]);
    expect(unexpectedRules(ofContainers)).toEqual(ofContainers);
    expect(LEFTOVERS.ipamFile.test('last_reserved_ip.0')).toBe(true);
    expect(LEFTOVERS.ipamFile.test('lock')).toBe(true);
    for (const f of ['10.89.4.2', 'fd00:89:6::2', '.cni-kit/a/0123abcd', 'last_reserved_ip.0.tmp.1'])
      expect(LEFTOVERS.ipamFile.test(f), f).toBe(false);
  });
});
