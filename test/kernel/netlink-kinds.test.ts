// The link kinds only the kernel lane's kernel has, through our netlink layer:
//  - the probe (`supportedLinkKinds()`) reports exactly the kinds `ip link add` can create here, on
//    both engines (it once tried ipvlan on a device that already had a macvlan port, which the
//    kernel refuses with EBUSY, and so reported a kernel with ipvlan as one without);
//  - a differential property for dummy, vlan, ipvlan and macvlan: random sequences of creations,
//    deletions and changes give the same per-op errno and the same visible links on the in-memory
//    model as on the kernel.
import { execFileSync, spawnSync } from 'node:child_process';
import {
  LINK_KINDS,
  type LinkKind,
  linuxNetlink,
  memoryNetlink,
  type Netlink,
  NetlinkError,
  type NetnsOps,
} from 'cni-kit/netlink';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { needKernel } from './lane.js';

const PID = process.pid;
const isRoot = process.getuid?.() === 0;

let creatableKinds: Set<LinkKind> | undefined;
/** What `ip link add` creates in a fresh namespace, each kind on a parent of its own (found once). */
function creatable(): Set<LinkKind> {
  creatableKinds ??= tryEach();
  return creatableKinds;
}
function tryEach(): Set<LinkKind> {
  const lines: Record<LinkKind, string> = {
    bridge: 'link add x0 type bridge',
    veth: 'link add x0 type veth peer name x1',
    macvlan: 'link add x0 link p0 type macvlan mode bridge',
    ipvlan: 'link add x0 link p0 type ipvlan mode l2',
    vlan: 'link add x0 link p0 type vlan id 10',
    vxlan: 'link add x0 type vxlan id 42 dstport 4789',
    ifb: 'link add x0 type ifb',
    dummy: 'link add x0 type dummy',
    tap: 'tuntap add mode tap name x0',
    tun: 'tuntap add mode tun name x0',
    vrf: 'link add x0 type vrf table 77',
  };
  const found = new Set<LinkKind>();
  for (const k of LINK_KINDS) {
    const ns = `nlkc${PID}${k}`;
    execFileSync('ip', ['netns', 'add', ns]);
    try {
      execFileSync('ip', ['-n', ns, 'link', 'add', 'p0', 'type', 'veth', 'peer', 'name', 'p1']);
      const add = spawnSync('ip', ['-n', ns, ...lines[k].split(' ')]);
      if (add.status === 0) found.add(k);
    } finally {
      execFileSync('ip', ['netns', 'del', ns]);
    }
  }
  return found;
}

describe('link kinds on the real kernel', () => {
  for (const kernelPath of ['native', 'iproute2'] as const) {
    it(`the probe (${kernelPath}) reports exactly the kinds ip link add can create`, async (ctx) => {
      if (!isRoot) ctx.skip('needs root for network namespaces');
      const want = [...creatable()].sort();
      const got = [...(await linuxNetlink({ kernelPath }).supportedLinkKinds())].sort();
      expect(got).toEqual(want);
    });
  }

  it('dummy, vlan, ipvlan and macvlan: same per-op errno and links on the memory model as on the kernel', async (ctx) => {
    await needKernel(ctx, ['dummy', 'vlan', 'ipvlan', 'macvlan']);
    const NAMES = ['d0', 'd1', 'v0', 'i0', 'm0'] as const;
    type Step =
      | { t: 'dummy'; name: string }
      | { t: 'vlan'; name: string; parent: string; id: number }
      | { t: 'ipvlan'; name: string; parent: string; mode: 'l2' | 'l3' | 'l3s' }
      | { t: 'macvlan'; name: string; parent: string }
      | { t: 'del'; name: string }
      | { t: 'mtu'; name: string; mtu: number }
      | { t: 'up'; name: string; up: boolean };
    const name = fc.constantFrom(...NAMES);
    const parent = fc.constantFrom('p0', ...NAMES);
    const step: fc.Arbitrary<Step> = fc.oneof(
      fc.record({ t: fc.constant('dummy' as const), name }),
      fc.record({ t: fc.constant('vlan' as const), name, parent, id: fc.constantFrom(10, 20) }),
      fc.record({
        t: fc.constant('ipvlan' as const),
        name,
        parent,
        mode: fc.constantFrom('l2', 'l3', 'l3s'),
      }),
      fc.record({ t: fc.constant('macvlan' as const), name, parent }),
      fc.record({ t: fc.constant('del' as const), name }),
      fc.record({ t: fc.constant('mtu' as const), name, mtu: fc.constantFrom(1280, 1500, 9000) }),
      fc.record({ t: fc.constant('up' as const), name, up: fc.boolean() }),
    );
    const apply = (ns: NetnsOps, s: Step): unknown => {
      switch (s.t) {
        case 'dummy':
          return ns.createLink({ kind: 'dummy', name: s.name });
        case 'vlan':
          return ns.createLink({ kind: 'vlan', name: s.name, parent: s.parent, vlanId: s.id });
        case 'ipvlan':
          return ns.createLink({ kind: 'ipvlan', name: s.name, parent: s.parent, mode: s.mode });
        case 'macvlan':
          return ns.createLink({ kind: 'macvlan', name: s.name, parent: s.parent, mode: 'bridge' });
        case 'del':
          return ns.deleteLink(s.name);
        case 'mtu':
          return ns.setLink(s.name, { mtu: s.mtu });
        case 'up':
          return ns.setLink(s.name, { up: s.up });
      }
    };
    const run = async (nl: Netlink, path: string, steps: Step[]) => {
      const ns = nl.open(path);
      ns.createLink({ kind: 'veth', name: 'p0', peerName: 'p1' });
      await ns.flush();
      const outcomes: string[] = [];
      for (const s of steps) {
        apply(ns, s);
        try {
          await ns.flush();
          outcomes.push('ok');
        } catch (e) {
          if (!(e instanceof NetlinkError)) throw e;
          outcomes.push(e.errno);
        }
      }
      const links = await ns.links();
      const byIndex = new Map(links.map((l) => [l.index, l.name]));
      const state = links
        .filter((l) => l.name !== 'lo')
        .map((l) => ({
          name: l.name,
          kind: l.kind,
          mtu: l.mtu,
          up: l.up,
          parent: l.parentIndex === undefined ? undefined : byIndex.get(l.parentIndex),
          vlanId: l.vlanId,
          ipvlanMode: l.ipvlanMode,
        }))
        .sort((a, b) => a.name.localeCompare(b.name));
      return { outcomes, state };
    };
    const real = linuxNetlink();
    let k = 0;
    const t0 = Date.now();
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 2, maxLength: 8 }), async (steps) => {
        const mem = memoryNetlink({ hostLinks: [] });
        const m = await mem.createNetns('a');
        const r = await real.createNetns(`nlkd${PID}-${++k}`);
        try {
          expect(await run(mem, m.path, steps)).toEqual(await run(real, r.path, steps));
          runs++;
        } finally {
          await r.remove();
        }
      }),
      {
        numRuns: Number(process.env.NETLINK_KINDS_RUNS ?? 40),
        plugins: [fc.interruptAfterTimeLimit(Number(process.env.NETLINK_KINDS_BUDGET_MS ?? 20_000))],
      },
    );
    expect(runs, `${runs} runs in ${Date.now() - t0} ms`).toBeGreaterThanOrEqual(5);
  });
});
