// Differential property: random sequences of link/address/route operations give the same outcome
// (each op's errno, then the visible state of both namespaces) on the in-memory model and on the
// real kernel. This is what keeps the memory backend honest.
import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { isDeepStrictEqual } from 'node:util';
import {
  linuxNetlink,
  memoryNetlink,
  type Netlink,
  NetlinkError,
  type NetnsOps,
  type TempNetns,
} from 'cni-kit/netlink';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { type RunFence, runFence } from '../helpers/bounded-runs.js';

const PID = process.pid;
const NAMES = ['a0', 'a1', 'b0', 'br0', 'br1'] as const;
const ADDRS = ['10.1.0.2/24', '10.1.0.3/24', '10.2.0.2/16', '10.1.0.9/32'] as const;

type Step =
  | { t: 'veth'; name: string; peer: string; other: boolean }
  | { t: 'bridge'; name: string }
  | { t: 'del'; name: string }
  | { t: 'up'; name: string; up: boolean }
  | { t: 'master'; name: string; master: string | null }
  | { t: 'mtu'; name: string; mtu: number }
  | { t: 'rename'; name: string; to: string }
  | { t: 'move'; name: string }
  | { t: 'addr'; name: string; cidr: string; add: boolean }
  | {
      t: 'route';
      dst: string;
      gw?: string | undefined;
      dev?: string | undefined;
      how: 'add' | 'append' | 'ecmp';
    }
  | { t: 'sysctl'; name: string }
  | { t: 'hairpin'; name: string; on: boolean }
  | { t: 'macvlan'; name: string; parent: string; other: boolean; mtu?: number | undefined }
  | { t: 'tap'; name: string; multiQueue: boolean; owner?: number | undefined };

const name = fc.constantFrom(...NAMES);
const step: fc.Arbitrary<Step> = fc.oneof(
  {
    arbitrary: fc.record({ t: fc.constant('veth' as const), name, peer: name, other: fc.boolean() }),
    weight: 4,
  },
  { arbitrary: fc.record({ t: fc.constant('bridge' as const), name }), weight: 2 },
  fc.record({ t: fc.constant('del' as const), name }),
  { arbitrary: fc.record({ t: fc.constant('up' as const), name, up: fc.boolean() }), weight: 3 },
  {
    arbitrary: fc.record({ t: fc.constant('master' as const), name, master: fc.option(name, { nil: null }) }),
    weight: 2,
  },
  fc.record({ t: fc.constant('mtu' as const), name, mtu: fc.constantFrom(1280, 1400, 1500, 9000) }),
  fc.record({ t: fc.constant('rename' as const), name, to: name }),
  fc.record({ t: fc.constant('move' as const), name }),
  {
    arbitrary: fc.record({
      t: fc.constant('addr' as const),
      name,
      cidr: fc.constantFrom(...ADDRS),
      add: fc.boolean(),
    }),
    weight: 3,
  },
  fc.record({
    t: fc.constant('route' as const),
    dst: fc.constantFrom('10.50.0.0/16', 'default'),
    gw: fc.option(fc.constantFrom('10.1.0.1', '10.2.0.1', '10.9.0.1'), { nil: undefined }),
    dev: fc.option(name, { nil: undefined }),
    how: fc.constantFrom('add' as const, 'append' as const, 'ecmp' as const),
  }),
  fc.record({ t: fc.constant('sysctl' as const), name }),
  fc.record({ t: fc.constant('hairpin' as const), name, on: fc.boolean() }),
  fc.record({
    t: fc.constant('macvlan' as const),
    name,
    parent: name,
    other: fc.boolean(),
    mtu: fc.option(fc.constantFrom(1400, 1500, 9000), { nil: undefined }),
  }),
  fc.record({
    t: fc.constant('tap' as const),
    name,
    multiQueue: fc.boolean(),
    owner: fc.option(fc.constantFrom(0, 1000), { nil: undefined }),
  }),
);

function apply(ns: NetnsOps, s: Step, other: string): unknown {
  switch (s.t) {
    case 'veth':
      return ns.createLink({
        kind: 'veth',
        name: s.name,
        peerName: s.peer,
        peerNetns: s.other ? other : undefined,
      });
    case 'bridge':
      return ns.createLink({ kind: 'bridge', name: s.name });
    case 'del':
      return ns.deleteLink(s.name);
    case 'up':
      return ns.setLink(s.name, { up: s.up });
    case 'master':
      return ns.setLink(s.name, { master: s.master });
    case 'mtu':
      return ns.setLink(s.name, { mtu: s.mtu });
    case 'rename':
      return ns.renameLink(s.name, s.to);
    case 'move':
      return ns.moveLink(s.name, other);
    case 'addr':
      return s.add ? ns.addAddress(s.name, s.cidr) : ns.deleteAddress(s.name, s.cidr);
    case 'route':
      if (!s.gw && !s.dev) return ns.addRoute({ dst: s.dst, dev: 'lo' });
      if (s.how === 'append') return ns.appendRoute({ dst: s.dst, gw: s.gw, dev: s.dev });
      if (s.how === 'ecmp') return ns.addRouteEcmp({ dst: s.dst, gw: s.gw, dev: s.dev });
      return ns.addRoute({ dst: s.dst, gw: s.gw, dev: s.dev });
    case 'sysctl':
      return ns.setSysctl(`net/ipv4/conf/${s.name}/arp_notify`, 1);
    case 'hairpin':
      return ns.setLink(s.name, { hairpin: s.on });
    case 'tap':
      return ns.createLink({ kind: 'tap', name: s.name, multiQueue: s.multiQueue, owner: s.owner });
    case 'macvlan':
      return ns.createLink({
        kind: 'macvlan',
        name: s.name,
        parent: s.parent,
        netns: s.other ? other : undefined,
        mtu: s.mtu,
      });
  }
}

async function snapshot(ns: NetnsOps) {
  const links = (await ns.links())
    .map((l) => ({
      index: l.index,
      name: l.name,
      kind: l.kind,
      up: l.up,
      master: l.master,
      mtu: l.mtu,
      hairpin: l.hairpin,
      multiQueue: l.multiQueue,
      owner: l.owner,
      parent: l.parentNetnsId === undefined ? l.parentIndex : 'other-netns',
    }))
    .sort((a, b) => a.index - b.index);
  const addrs = (await ns.addresses({ family: 4 })).map((a) => `${a.link} ${a.cidr}`).sort();
  const routes = (await ns.routes({ family: 4 }))
    .map((r) => `${r.dst} ${r.gw ?? '-'} ${r.dev ?? '-'} ${r.scope} ${r.protocol}`)
    .sort();
  return { links, addrs, routes };
}

/** Everything both real engines can read back, for the native-vs-iproute2 comparison. */
async function fullSnapshot(ns: NetnsOps) {
  const links = (await ns.links()).map(({ mac: _mac, ...l }) => l).sort((a, b) => a.index - b.index);
  // Link-local IPv6 addresses derive from random MACs; everything else must match exactly.
  const addrs = (await ns.addresses())
    .filter((a) => !a.ip.startsWith('fe80:'))
    .map((a) => JSON.stringify(a))
    .sort();
  const routes = [...(await ns.routes({ family: 4 })), ...(await ns.routes({ family: 6 }))]
    .map((r) => JSON.stringify(r))
    .sort();
  const rules = [...(await ns.rules(4)), ...(await ns.rules(6))].map((r) => JSON.stringify(r));
  const sysctl = await ns.getSysctl('net/ipv4/conf/all/arp_notify');
  return { links, addrs, routes, rules, sysctl };
}

/** Applies the steps in namespace `a` (`b` is "the other netns"); each step's outcome: 'ok' or its errno. */
async function outcomesOf(nl: Netlink, a: string, b: string, steps: Step[]): Promise<string[]> {
  const ns = nl.open(a);
  const outcomes: string[] = [];
  for (const s of steps) {
    apply(ns, s, b);
    try {
      await ns.flush();
      outcomes.push('ok');
    } catch (e) {
      if (!(e instanceof NetlinkError)) throw e;
      outcomes.push(e.errno);
    }
  }
  return outcomes;
}

async function run(nl: Netlink, a: string, b: string, steps: Step[]) {
  const outcomes = await outcomesOf(nl, a, b, steps);
  return { outcomes, a: await snapshot(nl.open(a)), b: await snapshot(nl.open(b)) };
}

/**
 * The kernel publishes some state from its link-watch worker, up to a second after the op that
 * caused it: operstate, a bridge's carrier (it follows its ports' carrier events), and the IPv6
 * link-local routes that wait for the link to be operationally up. Right after a fast batch of
 * native ops that state still lags; after a run of iproute2 execs it usually has caught up. So the
 * two sides are read again until they agree, for up to SETTLE_MS, and the last reads are compared.
 */
const SETTLE_MS = 5_000;
async function agreeOnceSettled(read: () => Promise<[unknown, unknown]>) {
  const deadline = performance.now() + SETTLE_MS;
  let [want, got] = await read();
  while (!isDeepStrictEqual(got, want) && performance.now() < deadline) {
    await sleep(100);
    [want, got] = await read();
  }
  expect(got).toEqual(want);
}

const isRoot = process.getuid?.() === 0;

// Each run makes two real namespaces and execs iproute2 for every step: about 0.15 s on an idle
// machine, several times that on a loaded one. The runs stop at a time budget well inside the
// test timeout (shrinking a failure included), and the test still demands a minimum that a loaded
// 2-core machine reaches with room to spare. NETLINK_DIFF_RUNS / NETLINK_DIFF_BUDGET_MS raise both
// for a longer local soak (pass a test timeout to match).
const RUNS = Number(process.env.NETLINK_DIFF_RUNS ?? 25);
const BUDGET_MS = Number(process.env.NETLINK_DIFF_BUDGET_MS ?? 12_000);
const MIN_RUNS = Math.min(RUNS, 8);

/**
 * Always run first: a bridge with an up veth port, brought up last. Its carrier, every operstate and
 * the IPv6 link-local routes all come from the kernel's link-watch worker after the ops return.
 */
const LINK_WATCH_CASE: Step[] = [
  { t: 'bridge', name: 'br0' },
  { t: 'veth', name: 'a0', peer: 'b0', other: false },
  { t: 'master', name: 'a0', master: 'br0' },
  { t: 'up', name: 'b0', up: true },
  { t: 'up', name: 'a0', up: true },
  { t: 'up', name: 'br0', up: true },
];

/** Random step sequences through `runOnce` until RUNS or the time budget; demands MIN_RUNS. */
async function budgeted(fence: RunFence, label: string, runOnce: (steps: Step[]) => Promise<void>) {
  const t0 = performance.now();
  await fc.assert(
    fc.asyncProperty(fc.array(step, { minLength: 3, maxLength: 10 }), (steps) =>
      fence.run(() => runOnce(steps)),
    ),
    { numRuns: RUNS, examples: [[LINK_WATCH_CASE]], plugins: [fc.interruptAfterTimeLimit(BUDGET_MS)] },
  );
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  const ran = `${fence.passed} of ${RUNS} runs fit in the ${BUDGET_MS} ms budget (${secs} s)`;
  if (fence.passed < RUNS) console.info(`netlink differential ${label}: ${ran}`);
  expect(fence.passed, ran).toBeGreaterThanOrEqual(MIN_RUNS);
}

describe('netlink differential', () => {
  const made = new Set<string>();
  afterAll(() => {
    // Each run removes its own namespaces, and the test's fence waits for a run in flight; this
    // catches a run whose removal failed.
    for (const n of made) {
      try {
        execFileSync('ip', ['netns', 'del', n], { stdio: 'ignore' });
      } catch {}
    }
  });

  it('gives the same per-op errors and final state for random op sequences', async (ctx) => {
    if (!isRoot) ctx.skip('needs root for real network namespaces');
    const fence = runFence(ctx);
    const real = linuxNetlink();
    let k = 0;
    const runOnce = async (steps: Step[]) => {
      const mem = memoryNetlink({ hostLinks: [] });
      const [ma, mb] = [(await mem.createNetns('a')).path, (await mem.createNetns('b')).path];
      const [na, nb] = [`nldf${PID}-${++k}a`, `nldf${PID}-${k}b`];
      made.add(na).add(nb);
      const created: TempNetns[] = [];
      try {
        const ra = await real.createNetns(na);
        created.push(ra);
        const rb = await real.createNetns(nb);
        created.push(rb);
        const want = await run(real, ra.path, rb.path, steps);
        const got = await run(mem, ma, mb, steps);
        expect(got).toEqual(want);
      } finally {
        for (const ns of created) await ns.remove();
        made.delete(na);
        made.delete(nb);
      }
    };
    await budgeted(fence, 'memory/kernel', runOnce);
  });

  it('native and iproute2 engines agree on the real kernel: per-op errors and everything read back', async (ctx) => {
    if (!isRoot) ctx.skip('needs root for real network namespaces');
    const fence = runFence(ctx);
    const native = linuxNetlink({ kernelPath: 'native' });
    const iproute2 = linuxNetlink({ kernelPath: 'iproute2' });
    let k = 0;
    const runOnce = async (steps: Step[]) => {
      const names = [`nldn${PID}-${++k}a`, `nldn${PID}-${k}b`, `nldi${PID}-${k}a`, `nldi${PID}-${k}b`];
      for (const n of names) made.add(n);
      const created: TempNetns[] = [];
      try {
        for (const n of names) created.push(await iproute2.createNetns(n));
        const [na, nb, ia, ib] = created.map((c) => c.path) as [string, string, string, string];
        const want = await outcomesOf(iproute2, ia, ib, steps);
        expect(await outcomesOf(native, na, nb, steps)).toEqual(want);
        // Each engine reads back its own namespaces, so the read paths are compared too.
        const both = async (nl: Netlink, a: string, b: string) => ({
          a: await fullSnapshot(nl.open(a)),
          b: await fullSnapshot(nl.open(b)),
        });
        await agreeOnceSettled(async () => [await both(iproute2, ia, ib), await both(native, na, nb)]);
      } finally {
        for (const ns of created) await ns.remove();
        for (const n of names) made.delete(n);
      }
    };
    await budgeted(fence, 'native/iproute2', runOnce);
  });
});
