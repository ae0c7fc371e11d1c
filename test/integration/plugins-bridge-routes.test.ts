// A container on two bridge networks, both with a default route (podman `--network a,b`): the
// second ADD must install its routes beside the first (the reference's RouteAddEcmp), and the
// container's route table after both ADDs must equal what the Go bridge + host-local produce.
// Everything runs under a node netns of the test's own, never on the machine's interfaces.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, type TestContext } from 'vitest';
import { pluginDir } from '../helpers/mode.js';

const tag = `pbe${process.pid % 100000}`;
const GO_DIR = '/usr/lib/cni';
const netnses: string[] = [];
const dirs: string[] = [];

afterAll(() => {
  for (const n of netnses) spawnSync('ip', ['netns', 'del', n]);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function need(ctx: TestContext, go = false): void {
  if (process.getuid?.() !== 0) ctx.skip('needs root for network namespaces');
  if (go && !existsSync(join(GO_DIR, 'bridge'))) ctx.skip('Go reference plugins not installed');
}

function netns(name: string): string {
  spawnSync('ip', ['netns', 'del', name]);
  execFileSync('ip', ['netns', 'add', name]);
  netnses.push(name);
  return `/var/run/netns/${name}`;
}

/** Runs a plugin binary inside the node netns, as a runtime on that node would. */
function run(node: string, bin: string, env: Record<string, string>, stdin: string) {
  const r = spawnSync('nsenter', [`--net=/run/netns/${node}`, bin], {
    env: { PATH: process.env.PATH ?? '', ...env },
    input: stdin,
    encoding: 'utf8',
    timeout: 20_000,
  });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/** The main routing table of a netns as `ip -j` prints it, both families, in kernel order. */
function routeTable(ns: string): unknown[] {
  const get = (fam: string) =>
    JSON.parse(
      execFileSync('ip', ['-n', ns, '-j', fam, 'route', 'show', 'table', 'main'], { encoding: 'utf8' }),
    );
  return [...get('-4'), ...get('-6')];
}

interface Impl {
  name: string;
  dir: string;
}
const IMPLS: Impl[] = [
  { name: 'cni-kit', dir: '' },
  { name: 'go', dir: GO_DIR },
];

/** ADD of two dual-stack bridge networks with default routes into one container; returns its routes. */
function twoNetworks(given: Impl, i: number) {
  const node = `${tag}n${i}`;
  netns(node);
  // Ours: dist/bin, or (daemon mode) shims bound to a daemon in this node's netns.
  const impl = given.dir === '' ? { ...given, dir: pluginDir(node).replace(/\/$/, '') } : given;
  const ctr = `${tag}c${i}`;
  const ctrPath = netns(ctr);
  const work = mkdtempSync(join(tmpdir(), `${tag}-`));
  dirs.push(work);
  const conf = (n: number) =>
    JSON.stringify({
      cniVersion: '1.0.0',
      name: `${tag}net${n}`,
      type: 'bridge',
      bridge: `${tag}b${n}`,
      isDefaultGateway: true,
      ipam: {
        type: 'host-local',
        ranges: [[{ subnet: `10.${60 + n}.0.0/24` }], [{ subnet: `fd${60 + n}::/64` }]],
        dataDir: join(work, 'ipam'),
      },
    });
  const env = (cmd: string, ifname: string) => ({
    CNI_COMMAND: cmd,
    CNI_CONTAINERID: `${tag}ctr`,
    CNI_NETNS: ctrPath,
    CNI_IFNAME: ifname,
    CNI_PATH: impl.dir,
  });
  const add1 = run(node, join(impl.dir, 'bridge'), env('ADD', 'eth0'), conf(1));
  const add2 = run(node, join(impl.dir, 'bridge'), env('ADD', 'net1'), conf(2));
  const routes = routeTable(ctr);
  const del2 = run(node, join(impl.dir, 'bridge'), env('DEL', 'net1'), conf(2));
  const del1 = run(node, join(impl.dir, 'bridge'), env('DEL', 'eth0'), conf(1));
  const left = JSON.parse(
    execFileSync('ip', ['-n', ctr, '-j', 'link', 'show'], { encoding: 'utf8' }),
  ) as Array<{
    ifname: string;
  }>;
  return { add1, add2, del1, del2, routes, left: left.map((l) => l.ifname) };
}

describe('bridge: a container on two networks with default routes (real netns)', () => {
  it('our second ADD succeeds and the route table equals the Go plugins', (ctx) => {
    need(ctx, true);
    const [ours, go] = IMPLS.map((impl, i) => twoNetworks(impl, i)) as [
      ReturnType<typeof twoNetworks>,
      ReturnType<typeof twoNetworks>,
    ];
    for (const [who, r] of [
      ['go', go],
      ['cni-kit', ours],
    ] as const) {
      expect(r.add1.status, `${who} ADD 1: ${r.add1.out}`).toBe(0);
      expect(r.add2.status, `${who} ADD 2: ${r.add2.out}`).toBe(0);
      expect(r.del2.status, `${who} DEL 2: ${r.del2.out}`).toBe(0);
      expect(r.del1.status, `${who} DEL 1: ${r.del1.out}`).toBe(0);
      expect(r.left, `${who} leaves only lo`).toEqual(['lo']);
    }
    // Both default routes are there: IPv4 as two entries (the newest first), IPv6 as one multipath.
    const v4def = ours.routes.filter((r) => (r as { dst: string }).dst === 'default');
    expect(v4def.length).toBeGreaterThanOrEqual(2);
    expect(ours.routes).toEqual(go.routes);
  });
});
