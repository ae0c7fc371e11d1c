// bench/startup: wall time and peak RSS of the debug plugin (VERSION and ADD) next to bare
// `node -e 0`, interleaved in the same run. Build first: npm run build.
// Usage: npx tsx bench/startup.ts [runs]
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

const cases: Array<[string, () => Sample]> = [
  ['node -e 0', () => measure(process.execPath, ['-e', '0'], base)],
  ['debug VERSION', () => measure(debug, [], { ...base, CNI_COMMAND: 'VERSION' })],
  ['debug ADD (1.1.0)', () => measure(debug, [], addEnv, conf)],
];
const samples = new Map<string, Sample[]>(cases.map(([n]) => [n, []]));
for (const [, f] of cases) f(); // warm the page cache
for (let i = 0; i < runs; i++) for (const [n, f] of cases) samples.get(n)!.push(f());

const baseMs = median(samples.get('node -e 0')!.map((s) => s.ms));
const baseRss = median(samples.get('node -e 0')!.map((s) => s.rssKiB));
console.log(`startup: ${runs} interleaved runs each, medians (${new Date().toISOString()})\n`);
table(
  ['command', 'wall ms', 'vs node -e 0', 'peak RSS MiB', 'vs node -e 0'],
  cases.map(([n]) => {
    const s = samples.get(n)!;
    const ms = median(s.map((x) => x.ms));
    const rss = median(s.map((x) => x.rssKiB));
    return [
      n,
      ms.toFixed(1),
      `${((ms / baseMs - 1) * 100).toFixed(1)}%`,
      (rss / 1024).toFixed(1),
      `${((rss / baseRss - 1) * 100).toFixed(1)}%`,
    ];
  }),
);
