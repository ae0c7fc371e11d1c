// bench/startup: wall time and peak RSS of the debug plugin (VERSION and ADD) next to bare
// `node -e 0`, interleaved in the same run, plus instructions executed (valgrind callgrind, when
// installed): wall time on a shared 2-core machine moves by several ms from run to run, the
// instruction count does not. Build first: npm run build.
// Usage: npx tsx bench/startup.ts [runs]
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { measure, median, type Sample, table } from './lib.js';

const runs = Number(process.argv[2] ?? 40);
const debug = fileURLToPath(new URL('../dist/bin/debug', import.meta.url));
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

const commands: Array<[string, string[], Record<string, string>, string]> = [
  ['node -e 0', ['-e', '0'], base, ''],
  ['debug VERSION', [debug], { ...base, CNI_COMMAND: 'VERSION' }, ''],
  ['debug ADD (1.1.0)', [debug], addEnv, conf],
];
const cases: Array<[string, () => Sample]> = commands.map(([n, args, env, input]) => [
  n,
  () => measure(process.execPath, args, env, input),
]);

/** Instructions one run executes, from valgrind's callgrind summary; undefined without valgrind. */
function instructions(args: string[], env: Record<string, string>, input: string): number | undefined {
  const r = spawnSync(
    'valgrind',
    ['--tool=callgrind', '--callgrind-out-file=/dev/null', process.execPath, ...args],
    { env, input, encoding: 'utf8' },
  );
  const m = /Collected : (\d+)/.exec(r.stderr ?? '');
  return m ? Number(m[1]) : undefined;
}
const samples = new Map<string, Sample[]>(cases.map(([n]) => [n, []]));
for (const [, f] of cases) f(); // warm the page cache
for (let i = 0; i < runs; i++) for (const [n, f] of cases) samples.get(n)!.push(f());

const baseMs = median(samples.get('node -e 0')!.map((s) => s.ms));
const baseRss = median(samples.get('node -e 0')!.map((s) => s.rssKiB));
console.log(`startup: ${runs} interleaved runs each, medians (${new Date().toISOString()})\n`);
const ir = commands.map(([, args, env, input]) => instructions(args, env, input));
const pct = (x: number, b: number) => `${((x / b - 1) * 100).toFixed(1)}%`;
table(
  ['command', 'wall ms', 'vs node -e 0', 'peak RSS MiB', 'vs node -e 0', 'instructions (M)', 'vs node -e 0'],
  cases.map(([n], i) => {
    const s = samples.get(n)!;
    const ms = median(s.map((x) => x.ms));
    const rss = median(s.map((x) => x.rssKiB));
    const irs = ir[i];
    const ir0 = ir[0];
    return [
      n,
      ms.toFixed(1),
      pct(ms, baseMs),
      (rss / 1024).toFixed(1),
      pct(rss, baseRss),
      irs === undefined ? 'n/a (no valgrind)' : (irs / 1e6).toFixed(0),
      irs === undefined || ir0 === undefined ? '' : pct(irs, ir0),
    ];
  }),
);
