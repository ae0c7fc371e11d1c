// bench/startup: wall time, CPU and peak RSS of plugin processes that do (almost) nothing, next to
// bare `node -e 0`, interleaved in the same run, plus instructions executed (valgrind callgrind,
// when installed): wall time on a shared 2-core machine moves by several ms from run to run, the
// instruction count does not.
//  - the debug plugin, VERSION and ADD (the SDK's own start-up budget);
//  - the real plugins in dist/bin on VERSION (no netlink: they must not load koffi; the last
//    column checks that with strace when installed);
//  - the FFI load: `require()` of the bundled koffi vs `node -e 0`, and (as root) a bridge DEL with
//    nothing to delete with the native engine vs CNI_KIT_NETLINK=iproute2, each under
//    `nsenter --net=<fresh netns>` with an empty container netns (netns named sub<pid>-…, deleted
//    at the end).
// Uses dist/bin as built (npm run build first); does not rebuild.
// Usage: npx tsx bench/startup.ts [runs]
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { measure, median, Namespaces, type Sample, STRACE, table } from './lib.js';

const runs = Number(process.argv[2] ?? 40);
const bin = fileURLToPath(new URL('../dist/bin/', import.meta.url));
const debug = join(bin, 'debug');
const koffi = join(bin, 'lib', 'koffi', 'index.cjs');
if (!existsSync(debug)) throw new Error('dist/bin/debug is missing: run npm run build first');

const base = { PATH: process.env.PATH ?? '' };
const addEnv = {
  ...base,
  CNI_COMMAND: 'ADD',
  CNI_CONTAINERID: 'bench',
  CNI_NETNS: '/var/run/netns/bench',
  CNI_IFNAME: 'eth0',
  CNI_PATH: '/opt/cni/bin',
};
const conf = JSON.stringify({
  cniVersion: '1.1.0',
  name: 'bench',
  type: 'debug',
  ips: ['10.1.0.5/24'],
  gateway: '10.1.0.1',
});

interface Command {
  name: string;
  /** Put before `node …` (nsenter into the node stand-in); empty for most rows. */
  prefix: string[];
  args: string[];
  env: Record<string, string>;
  input: string;
}

const commands: Command[] = [
  { name: 'node -e 0', prefix: [], args: ['-e', '0'], env: base, input: '' },
  { name: 'debug VERSION', prefix: [], args: [debug], env: { ...base, CNI_COMMAND: 'VERSION' }, input: '' },
  { name: 'debug ADD (1.1.0)', prefix: [], args: [debug], env: addEnv, input: conf },
];
for (const p of ['bridge', 'host-local', 'macvlan', 'ptp', 'tuning']) {
  if (existsSync(join(bin, p)))
    commands.push({
      name: `${p} VERSION`,
      prefix: [],
      args: [join(bin, p)],
      env: { ...base, CNI_COMMAND: 'VERSION' },
      input: '',
    });
}
if (existsSync(koffi))
  commands.push({
    name: 'node -e require(koffi)',
    prefix: [],
    args: ['-e', `require(${JSON.stringify(koffi)})`],
    env: base,
    input: '',
  });

const ns = new Namespaces(`sub${process.pid % 100000}`);
const work = mkdtempSync(join(tmpdir(), `${ns.tag}-`));
const root = process.getuid?.() === 0;
try {
  if (root && existsSync(join(bin, 'bridge'))) {
    const node = ns.add('node');
    const ctr = ns.add('ctr');
    const delConf = JSON.stringify({
      cniVersion: '1.0.0',
      name: 'sub',
      type: 'bridge',
      bridge: 'cni0',
      ipam: { type: 'host-local', subnet: '172.31.0.0/24', dataDir: join(work, 'ipam') },
    });
    for (const kp of ['native', 'iproute2'])
      commands.push({
        name: `bridge DEL, nothing to delete, ${kp}`,
        prefix: ['nsenter', `--net=${node}`],
        args: [join(bin, 'bridge')],
        env: {
          ...base,
          CNI_COMMAND: 'DEL',
          CNI_CONTAINERID: 'sub',
          CNI_NETNS: ctr,
          CNI_IFNAME: 'eth0',
          CNI_PATH: bin,
          CNI_KIT_NETLINK: kp,
        },
        input: delConf,
      });
  }

  const run = (c: Command): Sample =>
    c.prefix.length
      ? measure(c.prefix[0]!, [...c.prefix.slice(1), process.execPath, ...c.args], c.env, c.input)
      : measure(process.execPath, c.args, c.env, c.input);

  /** Instructions one run executes (node process only), from callgrind; undefined without valgrind. */
  function instructions(c: Command): number | undefined {
    const vg = [
      'valgrind',
      '--tool=callgrind',
      '--callgrind-out-file=/dev/null',
      process.execPath,
      ...c.args,
    ];
    const [cmd, ...args] = [...c.prefix, ...vg];
    const r = spawnSync(cmd!, args, { env: c.env, input: c.input, encoding: 'utf8' });
    const m = /Collected : (\d+)/.exec(r.stderr ?? '');
    return m ? Number(m[1]) : undefined;
  }

  /** Whether a run opens a koffi file (the module or its .node binary); undefined without strace. */
  function loadsKoffi(c: Command): boolean | undefined {
    if (!STRACE) return undefined;
    const out = join(work, 'openat');
    const [cmd, ...args] = [
      STRACE,
      '-f',
      '-qq',
      '-e',
      'trace=open,openat',
      '-o',
      out,
      ...c.prefix,
      process.execPath,
      ...c.args,
    ];
    spawnSync(cmd!, args, { env: c.env, input: c.input });
    return readFileSync(out, 'utf8')
      .split('\n')
      .some((l) => /koffi/.test(l) && !/= -1 /.test(l));
  }

  /** koffi's require() alone, timed inside a node process (ms). */
  const requireMs = (): number => {
    const code = `const t=process.hrtime.bigint();require(${JSON.stringify(koffi)});process.stdout.write(String(Number(process.hrtime.bigint()-t)/1e6))`;
    return Number(spawnSync(process.execPath, ['-e', code], { env: base, encoding: 'utf8' }).stdout);
  };

  const samples = new Map<string, Sample[]>(commands.map((c) => [c.name, []]));
  const inProcess: number[] = [];
  for (const c of commands) run(c); // warm the page cache
  for (let i = 0; i < runs; i++) {
    // Rotate the order each run so no command always follows the same neighbour.
    for (let k = 0; k < commands.length; k++) {
      const c = commands[(k + i) % commands.length]!;
      samples.get(c.name)!.push(run(c));
    }
    if (existsSync(koffi)) inProcess.push(requireMs());
  }

  const cpu = (s: Sample) => s.cpuFineMs ?? s.cpuMs;
  const med = (n: string, f: (s: Sample) => number) => median(samples.get(n)!.map(f));
  const baseMs = med('node -e 0', (s) => s.ms);
  const baseCpu = med('node -e 0', cpu);
  const baseRss = med('node -e 0', (s) => s.rssKiB);
  const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  console.log(
    `startup: ${runs} interleaved runs each, medians (${new Date().toISOString()}, load ${load})\n`,
  );
  const ir = commands.map(instructions);
  const koffiSeen = commands.map(loadsKoffi);
  const pct = (x: number, b: number) => `${x >= b ? '+' : ''}${((x / b - 1) * 100).toFixed(1)}%`;
  table(
    [
      'command',
      'wall ms',
      'vs node -e 0',
      'CPU ms',
      'vs node -e 0',
      'peak RSS MiB',
      'vs node -e 0',
      'instructions (M)',
      'vs node -e 0',
      'loads koffi',
    ],
    commands.map((c, i) => {
      const ms = med(c.name, (s) => s.ms);
      const cp = med(c.name, cpu);
      const rss = med(c.name, (s) => s.rssKiB);
      const irs = ir[i];
      const ir0 = ir[0];
      const seen = koffiSeen[i];
      return [
        c.name,
        ms.toFixed(1),
        pct(ms, baseMs),
        cp.toFixed(1),
        pct(cp, baseCpu),
        (rss / 1024).toFixed(1),
        pct(rss, baseRss),
        irs === undefined ? 'n/a (no valgrind)' : (irs / 1e6).toFixed(0),
        irs === undefined || ir0 === undefined ? '' : pct(irs, ir0),
        seen === undefined ? 'n/a (no strace)' : seen ? 'yes' : 'no',
      ];
    }),
  );
  if (inProcess.length)
    console.log(`\nkoffi require() timed inside the process: ${median(inProcess).toFixed(2)} ms (median)`);
  const nat = commands.find((c) => c.name.endsWith('native'));
  const ipr = commands.find((c) => c.name.endsWith('iproute2'));
  if (nat && ipr) {
    const d = (f: (s: Sample) => number) => med(nat.name, f) - med(ipr.name, f);
    console.log(
      `bridge DEL with nothing to delete, native - iproute2: ${d((s) => s.ms).toFixed(1)} ms wall, ${d(cpu).toFixed(1)} ms CPU`,
      '\n(native: koffi load + setns + one netlink request + flock(2); iproute2: flock(1) and one `ip -n` child).',
      '\nInstructions in the DEL rows count the node process only (valgrind does not follow its children).',
    );
  } else if (!root) console.log('\n(bridge DEL rows skipped: they need root for the network namespaces)');
} finally {
  ns.removeAll();
  rmSync(work, { recursive: true, force: true });
}
