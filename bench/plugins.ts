// ADD+DEL of a bridge + host-local config as plugin binaries: the Go reference bridge (which execs
// the Go host-local) next to cni-kit's bundled bridge (host-local in-process) with the native
// netlink engine and with CNI_KIT_NETLINK=iproute2; same config, same machine, interleaved in one
// run. Then the children each plugin spawns per ADD and per DEL (strace), for bridge, macvlan and
// ptp with host-local.
//
// Every plugin runs under `nsenter --net=<fresh netns>` (one per column, standing in for the node)
// with its container in another fresh netns; nothing touches the machine's own interfaces, and every
// netns (named pbn<pid>-…) is deleted at the end, on failure too.
// Usage: npx tsx bench/plugins.ts [iterations]   (root; uses dist/bin as built, does not rebuild)
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  childCpuPrecise,
  childrenText,
  countChildren,
  measure,
  median,
  Namespaces,
  type Sample,
  STRACE,
  table,
  timeWrapperCpuMs,
} from './lib.js';

const N = Number(process.argv[2] ?? 15);
const GO = '/usr/lib/cni';
const OURS = join(import.meta.dirname, '..', 'dist', 'bin');

if (process.getuid?.() !== 0) {
  console.log('bench/plugins.ts needs root (network namespaces)');
  process.exit(0);
}
for (const p of ['bridge', 'macvlan', 'ptp', 'host-local']) {
  if (!existsSync(join(GO, p))) throw new Error(`Go reference ${p} not found in ${GO}`);
  if (p !== 'host-local' && !existsSync(join(OURS, p)))
    throw new Error(`dist/bin/${p} is missing: build first (npm run build)`);
}

const ns = new Namespaces(`pbn${process.pid % 100000}`);
const work = mkdtempSync(join(tmpdir(), `${ns.tag}-`));

interface Variant {
  label: string;
  name: string;
  dir: string;
  /** CNI_PATH: cni-kit runs host-local in-process only when CNI_PATH resolves to its own binary. */
  extraEnv: Record<string, string>;
  node: string;
  ctr: string;
  adds: Sample[];
  dels: Sample[];
  versions: Sample[];
}

const conf = (v: Variant, type: string): string =>
  JSON.stringify({
    cniVersion: '1.0.0',
    name: `${ns.tag}-${v.label}-${type}`,
    type,
    ...(type === 'bridge' ? { bridge: 'cni0', isGateway: true } : {}),
    ...(type === 'macvlan' ? { master: 'mvm0', mode: 'bridge' } : {}),
    ...(type === 'ptp' ? { ipMasq: false } : {}),
    ipam: {
      type: 'host-local',
      subnet: `172.31.${{ bridge: 1, macvlan: 2, ptp: 3 }[type]}.0/24`,
      dataDir: join(work, v.label),
    },
  });

const env = (v: Variant, cmd: string, ifc = 'eth0'): Record<string, string> => ({
  PATH: process.env.PATH ?? '',
  CNI_COMMAND: cmd,
  CNI_CONTAINERID: `${ns.tag}-c`,
  CNI_NETNS: v.ctr,
  CNI_IFNAME: ifc,
  ...v.extraEnv,
});
const args = (v: Variant, type: string) => [`--net=${v.node}`, join(v.dir, type)];

try {
  const variant = (label: string, name: string, dir: string, extraEnv: Record<string, string>): Variant => ({
    label,
    name,
    dir,
    extraEnv: { CNI_PATH: dir, ...extraEnv },
    node: ns.add(`${label}-node`),
    ctr: ns.add(`${label}-ctr`),
    adds: [],
    dels: [],
    versions: [],
  });
  const variants = [
    variant('go', 'Go reference (bridge execs host-local)', GO, {}),
    variant('nat', 'cni-kit native (host-local in-process)', OURS, { CNI_KIT_NETLINK: 'native' }),
    variant('ipr', 'cni-kit CNI_KIT_NETLINK=iproute2', OURS, { CNI_KIT_NETLINK: 'iproute2' }),
  ];
  const bridgeConf = new Map(variants.map((v) => [v, conf(v, 'bridge')]));
  const run = (v: Variant, cmd: string) =>
    measure('nsenter', args(v, 'bridge'), env(v, cmd), bridgeConf.get(v));
  // One untimed warm-up each creates the bridge, so every timed ADD measures the steady state.
  for (const v of variants) {
    run(v, 'ADD');
    run(v, 'DEL');
  }
  // Interleaved: every iteration runs each column once (rotating the order), ADD then DEL, then
  // VERSION (start-up alone, also under nsenter so the subtraction below is like for like).
  for (let i = 0; i < N; i++) {
    for (let k = 0; k < variants.length; k++) {
      const v = variants[(k + i) % variants.length]!;
      v.adds.push(run(v, 'ADD'));
      v.dels.push(run(v, 'DEL'));
      v.versions.push(
        measure('nsenter', args(v, 'bridge'), { PATH: process.env.PATH ?? '', CNI_COMMAND: 'VERSION' }),
      );
    }
  }

  // Children per ADD and per DEL, one strace'd call each (not timed).
  for (const v of variants) addMacvlanMaster(v, 'mvm0');
  const counts = new Map<string, string>();
  for (const type of ['bridge', 'macvlan', 'ptp']) {
    for (const v of variants) {
      const c = conf(v, type);
      const add = countChildren('nsenter', args(v, type), env(v, 'ADD', 'eth1'), c);
      const del = countChildren('nsenter', args(v, type), env(v, 'DEL', 'eth1'), c);
      counts.set(`${type}/${v.label}/ADD`, childrenText(add));
      counts.set(`${type}/${v.label}/DEL`, childrenText(del));
      if (add && add.execs > 0)
        counts.set(
          `${type}/${v.label}/progs`,
          [...new Set([...add.programs, ...(del?.programs ?? [])])].join(' '),
        );
    }
  }

  const f = (x: number) => x.toFixed(1);
  const cpu = (s: Sample) => s.cpuFineMs ?? s.cpuMs;
  const stats = (v: Variant) => ({
    add: median(v.adds.map((s) => s.ms)),
    del: median(v.dels.map((s) => s.ms)),
    both: median(v.adds.map((s, i) => s.ms + (v.dels[i]?.ms ?? 0))),
    cpu: median(v.adds.map((s, i) => cpu(s) + (v.dels[i] ? cpu(v.dels[i]) : 0))),
    rss: Math.max(...v.adds.map((s) => s.rssKiB), ...v.dels.map((s) => s.rssKiB)),
    start: median(v.versions.map((s) => s.ms)),
    startCpu: median(v.versions.map(cpu)),
  });
  const st = variants.map(stats);
  const go = st[0]!;
  const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  console.log(
    `bridge + host-local, ${N} interleaved ADD+DEL cycles per column (${new Date().toISOString()}, load ${load});`,
    '\nmedian wall ms; CPU ms = user+sys incl. children',
    childCpuPrecise()
      ? `(getrusage, minus the ${timeWrapperCpuMs().toFixed(2)} ms of the GNU time wrapper);`
      : '(GNU time, 10 ms steps);',
    '\npeak RSS (GNU time) over all calls; every call under nsenter (in all three columns).\n',
  );
  table(
    [
      'plugin',
      'ADD ms',
      'DEL ms',
      'ADD+DEL ms',
      'ADD+DEL CPU',
      'peak RSS MiB',
      'children ADD',
      'children DEL',
      'wall / Go',
      'CPU / Go',
    ],
    variants.map((v, i) => {
      const s = st[i]!;
      return [
        v.name,
        f(s.add),
        f(s.del),
        f(s.both),
        f(s.cpu),
        f(s.rss / 1024),
        counts.get(`bridge/${v.label}/ADD`)!,
        counts.get(`bridge/${v.label}/DEL`)!,
        `${(s.both / go.both).toFixed(2)}x`,
        `${(s.cpu / go.cpu).toFixed(2)}x`,
      ];
    }),
  );
  console.log('\nstart-up alone (VERSION under nsenter, median, interleaved with the above):');
  for (const [i, v] of variants.entries()) {
    const s = st[i]!;
    console.log(
      `  ${v.name}: ${f(s.start)} ms wall, ${f(s.startCpu)} ms CPU; ADD+DEL minus two start-ups ${f(s.both - 2 * s.start)} ms`,
    );
  }

  console.log(
    `\nchildren spawned per ADD / DEL (successful execve outside the plugin's own exec chain, ${STRACE ? 'strace -f' : 'strace not installed'}):\n`,
  );
  table(
    ['plugin + host-local', ...variants.map((v) => v.name), 'what cni-kit iproute2 runs'],
    ['bridge', 'macvlan', 'ptp'].map((type) => [
      type,
      ...variants.map(
        (v) => `${counts.get(`${type}/${v.label}/ADD`)} / ${counts.get(`${type}/${v.label}/DEL`)}`,
      ),
      counts.get(`${type}/ipr/progs`) ?? '',
    ]),
  );
} finally {
  ns.removeAll();
  rmSync(work, { recursive: true, force: true });
}

/** macvlan needs a master link in the node netns: a veth pair there, up. */
function addMacvlanMaster(v: Variant, master: string): void {
  const node = v.node.split('/').pop()!;
  execFileSync('ip', ['-n', node, 'link', 'add', master, 'type', 'veth', 'peer', 'name', `${master}p`]);
  execFileSync('ip', ['-n', node, 'link', 'set', master, 'up']);
}
