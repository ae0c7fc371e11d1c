// Time and CPU to build and tear down a typical bridge attachment (bridge, veth pair into a netns,
// rename, address, routes, sysctls, up) with each netlink strategy — the native engine (rtnetlink
// in-process through koffi), the iproute2 engine (`ip -batch` + nsenter), one `ip` per operation,
// the in-memory backend — next to the Go bridge plugin doing the same job; then the cost of single
// operations with the native and iproute2 engines, in the own netns and in another one.
//
// Everything runs inside private namespaces: the script re-runs itself under
// `nsenter --net=<fresh netns>`, so that netns stands in for the node (the native engine keeps its
// socket there, as in a plugin) and the machine's own interfaces are never touched. Every netns the
// run makes is named `nlb<pid>-…` and deleted at the end, on failure too.
//   npx tsx bench/netlink.ts [iterations]     (root)
import { ChildProcess, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { linuxNetlink, memoryNetlink, type Netlink, withNetns } from '../src/netlink/index.js';
import { childCpuMs, childCpuPrecise, countChildren, median, Namespaces, spread, table } from './lib.js';

const N = Number(process.argv[2] ?? 15);
const TAG_ENV = 'CK_NLBENCH_TAG';
const BR = 'cnibr0';

// ---------------------------------------------------------------------------------------------
// Counting: children spawned through node:child_process (every async spawn goes through
// ChildProcess.prototype.spawn; spawnSync does not, and only the bench's own helpers use it), and
// CPU of this process plus its reaped children (childCpuMs).

let wrapped = 0;
{
  const proto = ChildProcess.prototype as unknown as { spawn: (...a: unknown[]) => unknown };
  const orig = proto.spawn;
  proto.spawn = function (this: unknown, ...a: unknown[]) {
    wrapped++;
    return orig.apply(this, a);
  };
}

interface Obs {
  ms: number;
  cpuMs: number;
  /** Delta of the engine's own spawn counter (undefined: it has none). */
  counter: number | undefined;
  /** Delta of the ChildProcess.prototype.spawn wrap. */
  wrap: number;
}

async function observe(fn: () => unknown, counter?: () => number): Promise<Obs> {
  const c0 = counter?.();
  const w0 = wrapped;
  const k0 = childCpuMs();
  const u0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await fn();
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const u = process.cpuUsage(u0);
  const cpuMs = (u.user + u.system) / 1000 + childCpuMs() - k0;
  return { ms, cpuMs, counter: c0 === undefined ? undefined : counter!() - c0, wrap: wrapped - w0 };
}

// ---------------------------------------------------------------------------------------------
// The attachment.

/**
 * The attachment through the Netlink interface, written the way the docs recommend: everything on
 * the host side in one flush (the veth is created from the host with its peer placed straight into
 * the container under a temporary name), everything inside the container in another, and sysctls
 * grouped so they split the `ip -batch` stream as little as possible.
 */
async function attachViaNetlink(nl: Netlink, ctr: string, i: number): Promise<void> {
  const peer = `veth${i.toString(16).padStart(8, '0')}`;
  const tmp = `tmp${i.toString(16).padStart(8, '0')}`;
  const h = nl.open();
  h.createLink({ kind: 'bridge', name: BR }, { existsOk: true });
  h.setSysctl(`net/ipv6/conf/${BR}/accept_ra`, 0);
  h.setSysctl('net/ipv4/ip_forward', 1);
  h.setLink(BR, { up: true });
  h.addAddress(BR, '10.244.0.1/24', { existsOk: true });
  h.createLink({ kind: 'veth', name: peer, peerName: tmp, peerNetns: ctr });
  h.setLink(peer, { up: true, master: BR, hairpin: false });
  h.setSysctl(`net/ipv6/conf/${peer}/accept_ra`, 0);
  await h.flush();
  await nl.inNetns(ctr, async (c) => {
    c.setSysctl(`net/ipv4/conf/${tmp}/arp_notify`, 1); // conf follows the device through the rename
    c.renameLink(tmp, 'eth0');
    c.addAddress('eth0', `10.244.0.${10 + (i % 200)}/24`);
    c.setLink('eth0', { up: true });
    c.addRoute({ dst: 'default', gw: '10.244.0.1' });
    c.addRoute({ dst: '10.96.0.0/12', gw: '10.244.0.1', metric: 100 });
    await c.getLink('eth0'); // the MAC goes into the result
  });
}

async function detachViaNetlink(nl: Netlink, ctr: string): Promise<void> {
  await nl.inNetns(ctr, (c) => c.deleteLink('eth0', { missingOk: true }));
}

/** The same steps as one `ip`/`sh` process each: the naive iproute2 approach. */
const naiveCmds = (hostNs: string, ctr: string, i: number): string[][] => {
  const peer = `veth${i.toString(16).padStart(8, '0')}`;
  const tmp = `tmp${i.toString(16).padStart(8, '0')}`;
  const hn = hostNs.split('/').pop()!;
  const cn = ctr.split('/').pop()!;
  return [
    ['ip', '-n', hn, 'link', 'add', BR, 'type', 'bridge'],
    ['nsenter', `--net=${hostNs}`, 'sh', '-c', `echo 0 > /proc/sys/net/ipv6/conf/${BR}/accept_ra`],
    ['ip', '-n', hn, 'link', 'set', BR, 'up'],
    ['ip', '-n', hn, 'addr', 'add', '10.244.0.1/24', 'dev', BR],
    ['nsenter', `--net=${hostNs}`, 'sh', '-c', 'echo 1 > /proc/sys/net/ipv4/ip_forward'],
    ['ip', '-n', hn, 'link', 'add', peer, 'type', 'veth', 'peer', 'name', tmp, 'netns', ctr],
    ['ip', '-n', hn, 'link', 'set', peer, 'up', 'master', BR],
    ['nsenter', `--net=${hostNs}`, 'sh', '-c', `echo 0 > /proc/sys/net/ipv6/conf/${peer}/accept_ra`],
    ['ip', '-n', cn, 'link', 'set', tmp, 'name', 'eth0'],
    ['nsenter', `--net=${ctr}`, 'sh', '-c', 'echo 1 > /proc/sys/net/ipv4/conf/eth0/arp_notify'],
    ['ip', '-n', cn, 'addr', 'add', `10.244.0.${10 + (i % 200)}/24`, 'dev', 'eth0'],
    ['ip', '-n', cn, 'link', 'set', 'eth0', 'up'],
    ['ip', '-n', cn, 'route', 'add', 'default', 'via', '10.244.0.1'],
    ['ip', '-n', cn, 'route', 'add', '10.96.0.0/12', 'via', '10.244.0.1', 'metric', '100'],
    ['ip', '-n', cn, '-j', 'link', 'show', 'eth0'],
  ];
};

interface Strategy {
  name: string;
  /** False for the memory backend (its containers are names, not netns). */
  kernel: boolean;
  attach(ctr: string, i: number): unknown;
  detach(ctr: string, i: number): unknown;
  /** The engine's own spawn counter, for in-process engines. */
  counter?: () => number;
  /** Children per build / teardown, for strategies that spawn with spawnSync (the wrap misses it). */
  fixed?: { add: string; del: string };
  add: Obs[];
  del: Obs[];
}

const f2 = (x: number) => x.toFixed(2);
const f3 = (x: number) => x.toFixed(3);
const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;

function spawnText(s: Strategy, obs: Obs[], which: 'add' | 'del'): string {
  if (s.fixed) return s.fixed[which];
  const wrap = spread(obs.map((o) => o.wrap));
  if (!s.counter) return `wrap ${wrap}`;
  return `${spread(obs.map((o) => o.counter ?? 0))} / wrap ${wrap}`;
}

async function attachment(ns: Namespaces, dataDir: string): Promise<void> {
  const native = linuxNetlink({ kernelPath: 'native' }); // host = the own (node) netns
  const iproute2 = linuxNetlink({ kernelPath: 'iproute2', hostNetns: ns.add('h-ip') });
  const mem = memoryNetlink();
  const naiveHost = ns.add('h-naive');
  const goHost = ns.add('h-go');
  const goConf = JSON.stringify({
    cniVersion: '1.0.0',
    name: `${ns.tag}-go`,
    type: 'bridge',
    bridge: BR,
    isGateway: true,
    ipam: {
      type: 'host-local',
      dataDir,
      ranges: [[{ subnet: '10.244.0.0/24' }]],
      routes: [{ dst: '0.0.0.0/0' }],
    },
  });
  const goEnv = (cmd: string, ctr: string) => ({
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    CNI_COMMAND: cmd,
    CNI_CONTAINERID: ctr.split('/').pop()!,
    CNI_NETNS: ctr,
    CNI_IFNAME: 'eth0',
    CNI_PATH: '/usr/lib/cni',
  });
  const goArgs = [`--net=${goHost}`, '/usr/lib/cni/bridge'];
  const goRun = (cmd: string, ctr: string): void => {
    // Under nsenter so the plugin's "host" is the private netns too (adds one exec, ~1 ms).
    const r = spawnSync('nsenter', goArgs, { env: goEnv(cmd, ctr), input: goConf });
    if (r.status !== 0) throw new Error(`Go bridge ${cmd} failed: ${r.stdout}${r.stderr}`);
  };

  // The Go plugin's children, counted once outside the timed runs.
  const goText = (cmd: string): string => {
    const ctr = ns.add('c-count');
    try {
      if (cmd === 'DEL') goRun('ADD', ctr);
      const c = countChildren('nsenter', goArgs, goEnv(cmd, ctr), goConf);
      if (cmd === 'ADD') goRun('DEL', ctr);
      return c ? `${1 + c.procs} (plugin + ${c.programs.join(', ')}; strace)` : '2 (plugin + host-local)';
    } finally {
      ns.remove(ctr);
    }
  };
  const goSpawns = { add: goText('ADD'), del: goText('DEL') };

  let naiveCount = 0;
  const strategies: Strategy[] = [
    {
      name: 'cni-kit native: rtnetlink in-process (koffi)',
      kernel: true,
      attach: (c, i) => attachViaNetlink(native, c, i),
      detach: (c) => detachViaNetlink(native, c),
      counter: () => native.spawnCount(),
      add: [],
      del: [],
    },
    {
      name: 'cni-kit iproute2: ip -batch, one spawn per netns flush',
      kernel: true,
      attach: (c, i) => attachViaNetlink(iproute2, c, i),
      detach: (c) => detachViaNetlink(iproute2, c),
      counter: () => iproute2.spawnCount(),
      add: [],
      del: [],
    },
    {
      name: 'iproute2/nsenter, one spawn per operation',
      kernel: true,
      attach(c, i) {
        const cmds = naiveCmds(naiveHost, c, i);
        for (const [cmd, ...args] of cmds) spawnSync(cmd!, args, { stdio: 'ignore' }); // EEXIST on the bridge is fine
        naiveCount = cmds.length;
      },
      detach: (c) => spawnSync('ip', ['-n', c.split('/').pop()!, 'link', 'del', 'eth0']),
      get fixed() {
        return { add: `${naiveCount} (3 of them nsenter → sh)`, del: '1' };
      },
      add: [],
      del: [],
    },
    {
      name: 'Go bridge plugin v1.1.1: whole ADD/DEL incl. host-local',
      kernel: true,
      attach: (c) => goRun('ADD', c),
      detach: (c) => goRun('DEL', c),
      fixed: goSpawns,
      add: [],
      del: [],
    },
    {
      name: 'cni-kit memory backend (unit tests; no kernel)',
      kernel: false,
      attach: (c, i) => {
        mem.addNetns(c);
        return attachViaNetlink(mem, c, i);
      },
      detach: (c) => detachViaNetlink(mem, c),
      add: [],
      del: [],
    },
  ];
  // Interleave strategies per iteration (rotating the order) so load from other processes on this
  // shared machine hits every strategy alike. Iteration 0 is an untimed warm-up (it creates the
  // bridges, so every timed build measures the steady state).
  for (let i = 0; i <= N; i++) {
    const order = strategies.map((_, k) => strategies[(k + i) % strategies.length]!);
    for (const s of order) {
      const k = strategies.indexOf(s);
      const ctr = s.kernel ? ns.add(`c${k}-${i}`) : `/mem/c${i}`;
      try {
        const a = await observe(() => s.attach(ctr, i), s.counter);
        const d = await observe(() => s.detach(ctr, i), s.counter);
        if (i > 0) {
          s.add.push(a);
          s.del.push(d);
        }
      } finally {
        if (s.kernel) ns.remove(ctr);
      }
    }
  }
  const go = strategies[3]!;
  const goAdd = median(go.add.map((o) => o.ms));
  const goDel = median(go.del.map((o) => o.ms));
  const goAddCpu = median(go.add.map((o) => o.cpuMs));
  const goDelCpu = median(go.del.map((o) => o.cpuMs));
  console.log(
    `bridge attachment: ${N} iterations per strategy, interleaved; medians. CPU = user+sys of this`,
    '\nprocess and its reaped children. Spawns: engine counter / ChildProcess.prototype.spawn wrap.\n',
  );
  table(
    [
      'strategy',
      'build ms',
      'build CPU',
      'teardown ms',
      'teardown CPU',
      'spawns build',
      'spawns teardown',
      'build/Go wall, CPU',
      'teardown/Go wall, CPU',
    ],
    strategies.map((s) => {
      const am = median(s.add.map((o) => o.ms));
      const ac = median(s.add.map((o) => o.cpuMs));
      const dm = median(s.del.map((o) => o.ms));
      const dc = median(s.del.map((o) => o.cpuMs));
      return [
        s.name,
        f2(am),
        f2(ac),
        f2(dm),
        f2(dc),
        spawnText(s, s.add, 'add'),
        spawnText(s, s.del, 'del'),
        `${ratio(am, goAdd)}, ${ratio(ac, goAddCpu)}`,
        `${ratio(dm, goDel)}, ${ratio(dc, goDelCpu)}`,
      ];
    }),
  );
  console.log(
    '\nThe Go rows measure a whole plugin run (process start, host-local exec, JSON); the cni-kit rows',
    '\nthe netlink work alone inside an already running process. The Go CPU includes this process forking it.',
  );
}

// ---------------------------------------------------------------------------------------------
// Single operations.

interface MicroCase {
  op: string;
  where: 'own' | 'other';
  /** Only the native engine has it. */
  nativeOnly?: boolean;
  run(nl: Netlink, path: string | undefined, n: number, engine: number): Promise<unknown>;
}

async function micro(ns: Namespaces): Promise<void> {
  const M = Math.max(3 * N, 30);
  const other = ns.add('m-other');
  const native = linuxNetlink({ kernelPath: 'native' });
  const iproute2 = linuxNetlink({ kernelPath: 'iproute2' });
  const dummy = 'ckm0';
  for (const path of [undefined, other]) {
    const h = native.open(path);
    h.createLink({ kind: 'veth', name: dummy, peerName: `${dummy}p` }, { existsOk: true }); // no dummy module here
    await h.flush();
  }
  const one = (nl: Netlink, path: string | undefined, f: (h: ReturnType<Netlink['open']>) => void) => {
    const h = nl.open(path);
    f(h);
    return h.flush();
  };
  const cases: MicroCase[] = [];
  for (const where of ['own', 'other'] as const) {
    cases.push(
      { op: 'setLink up', where, run: (nl, p) => one(nl, p, (h) => h.setLink(dummy, { up: true })) },
      {
        op: 'addAddress /32',
        where,
        run: (nl, p, n, e) => one(nl, p, (h) => h.addAddress(dummy, `10.8${e}.${n >> 8}.${n & 255}/32`)),
      },
      { op: 'links() read', where, run: (nl, p) => nl.open(p).links() },
      {
        op: 'sysctl write',
        where,
        run: (nl, p) => one(nl, p, (h) => h.setSysctl(`net/ipv4/conf/${dummy}/arp_notify`, 1)),
      },
    );
  }
  cases.push({
    op: 'withNetns(() => 0): setns there and back',
    where: 'other',
    nativeOnly: true,
    run: (_nl, p) => withNetns(p!, () => 0),
  });
  const engines = [
    { nl: native, obs: new Map<MicroCase, Obs[]>() },
    { nl: iproute2, obs: new Map<MicroCase, Obs[]>() },
  ];
  for (let n = 0; n <= M; n++) {
    for (const c of cases) {
      const order = n % 2 ? [engines[1]!, engines[0]!] : [engines[0]!, engines[1]!];
      for (const e of order) {
        if (c.nativeOnly && e.nl !== native) continue;
        const path = c.where === 'own' ? undefined : other;
        const o = await observe(
          () => c.run(e.nl, path, n, engines.indexOf(e) + 1),
          () => e.nl.spawnCount(),
        );
        if (n > 0) e.obs.set(c, [...(e.obs.get(c) ?? []), o]);
      }
    }
  }
  console.log(
    `\nsingle operations: one op per flush (or one read), ${M} interleaved runs per engine; medians in ms.`,
    '\nown = the process netns (node stand-in; native keeps one socket open there); other = a named netns',
    '\n(native: open + setns + fresh socket + setns back per flush; iproute2: ip -n, or nsenter sh for sysctls).',
    '\nNo Go column: the Go plugins have no per-operation entry point to time.\n',
  );
  const sp = (obs: Obs[]) =>
    `${spread(obs.map((o) => o.counter ?? 0))} / wrap ${spread(obs.map((o) => o.wrap))}`;
  table(
    [
      'operation',
      'netns',
      'native ms',
      'native CPU',
      'native spawns',
      'iproute2 ms',
      'iproute2 CPU',
      'iproute2 spawns',
      'iproute2/native wall',
    ],
    cases.map((c) => {
      const a = engines[0]!.obs.get(c)!;
      const b = engines[1]!.obs.get(c);
      const am = median(a.map((o) => o.ms));
      const bm = b ? median(b.map((o) => o.ms)) : undefined;
      return [
        c.op,
        c.where,
        f3(am),
        f3(median(a.map((o) => o.cpuMs))),
        sp(a),
        bm === undefined ? '' : f3(bm),
        b ? f3(median(b.map((o) => o.cpuMs))) : '',
        b ? sp(b) : '',
        bm === undefined ? '' : `${(bm / am).toFixed(0)}x`,
      ];
    }),
  );
}

// ---------------------------------------------------------------------------------------------

/** Inside the private node netns: the actual bench. */
async function inner(tag: string): Promise<void> {
  const ns = new Namespaces(`${tag}-i`);
  const dataDir = mkdtempSync(join(tmpdir(), 'nlbench-'));
  try {
    // The first native call loads koffi: time it once, before lib's childCpuMs() loads it too.
    const t0 = process.hrtime.bigint();
    const engine = await linuxNetlink({ kernelPath: 'native' }).engine();
    const loadMs = Number(process.hrtime.bigint() - t0) / 1e6;
    const how = childCpuPrecise()
      ? 'getrusage(RUSAGE_CHILDREN) through koffi, µs'
      : '/proc/self/stat cutime+cstime, 10 ms ticks: per-op child CPU is rough';
    console.log(
      `netlink bench, ${new Date().toISOString()}, load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`,
      `\nnative engine: ${engine}, first call loaded koffi in ${loadMs.toFixed(1)} ms (one sample, tsx process);`,
      `child CPU from ${how}\n`,
    );
    await attachment(ns, dataDir);
    await micro(ns);
  } finally {
    ns.removeAll();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** Outside: make the node netns, run `inner` in it, clean up whatever is left. */
function outer(): void {
  if (process.getuid?.() !== 0) {
    console.log('bench/netlink.ts needs root (network namespaces)');
    return;
  }
  const ns = new Namespaces(`nlb${process.pid}`);
  // Ctrl-C reaches the inner process too; this one stays to clean up after it.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => {});
  try {
    const node = ns.add('node');
    const r = spawnSync(
      'nsenter',
      [`--net=${node}`, process.execPath, ...process.execArgv, process.argv[1]!, ...process.argv.slice(2)],
      { stdio: 'inherit', env: { ...process.env, [TAG_ENV]: ns.tag } },
    );
    process.exitCode = r.status ?? 1;
  } finally {
    ns.removeAll();
  }
}

const tag = process.env[TAG_ENV];
if (tag) await inner(tag);
else outer();
