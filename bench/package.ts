// bench/package: what a user outside this repository gets. The packed tarball's size; the install
// weight of a hello-world plugin project (packages and MB of node_modules) with the package's
// dependencies today against the dependency set it had before the optional peers (Kubernetes
// client and etcd3 as dependencies, plus netmask); and the README plugin built with `cni-kit build`
// from the installed package against the same plugin built from this checkout: size, and start-up
// (VERSION and ADD), interleaved, wall (median) and CPU (user+sys, mean: GNU time counts 10 ms
// ticks). Build first (npm run build). Usage: npx tsx bench/package.ts [runs]
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildPlugin } from '../src/cli/build.js';
import { measure, median, type Sample, table } from './lib.js';

const runs = Number(process.argv[2] ?? 30);
const root = fileURLToPath(new URL('..', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'ck-bench-pkg-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

function dirSize(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) n += dirSize(p);
    else if (e.isFile()) n += statSync(p).size;
  }
  return n;
}

/** Installed packages: every folder under node_modules (nested too) holding a package.json. */
function countPackages(nm: string): number {
  let n = 0;
  for (const e of readdirSync(nm, { withFileTypes: true })) {
    if (!e.isDirectory() || e.name.startsWith('.')) continue;
    const p = join(nm, e.name);
    if (e.name.startsWith('@')) {
      n += countPackages(p);
      continue;
    }
    n += 1;
    try {
      n += countPackages(join(p, 'node_modules'));
    } catch {}
  }
  return n;
}

function project(
  name: string,
  installs: string[],
): { dir: string; packages: number; bytes: number; warnings: number } {
  const dir = join(work, name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name, private: true, type: 'module' }));
  const r = spawnSync('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', ...installs], {
    cwd: dir,
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`npm install in ${name} failed: ${r.stderr}`);
  const warnings = (r.stderr.match(/install-scripts\s+\S+@/g) ?? []).length;
  const nm = join(dir, 'node_modules');
  return { dir, packages: countPackages(nm), bytes: dirSize(nm), warnings };
}

const pack = JSON.parse(
  execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], {
    cwd: root,
    encoding: 'utf8',
  }),
)[0] as { filename: string; size: number; unpackedSize: number; entryCount: number };
const tgz = join(work, pack.filename);
const esbuild = JSON.parse(readFileSync(join(root, 'node_modules/esbuild/package.json'), 'utf8'))
  .version as string;

console.log(`package: ${new Date().toISOString()}\n`);
table(
  ['tarball', 'packed', 'unpacked', 'files'],
  [[pack.filename, mb(pack.size), mb(pack.unpackedSize), pack.entryCount]],
);

const hello = project('hello', [tgz]);
const helloBuild = project('hello-build', [tgz, `esbuild@${esbuild}`]);
// The dependency set of package.json before the lean-package change, on top of the same tarball.
const before = project('hello-before', [
  tgz,
  '@kubernetes/client-node@^1.4.0',
  'etcd3@^1.1.2',
  'netmask@^2.1.1',
]);
console.log('');
table(
  ['hello-world plugin project', 'packages', 'node_modules', 'install-script warnings'],
  [
    [
      'before: client-node, etcd3, netmask as dependencies',
      before.packages,
      mb(before.bytes),
      before.warnings,
    ],
    ['now: npm i cni-kit', hello.packages, mb(hello.bytes), hello.warnings],
    [
      'now: npm i cni-kit esbuild (to run cni-kit build)',
      helloBuild.packages,
      mb(helloBuild.bytes),
      helloBuild.warnings,
    ],
  ],
);

// The README plugin, built both ways.
const readme = /```ts\n([\s\S]*?)```/.exec(readFileSync(join(root, 'README.md'), 'utf8'))?.[1] ?? '';
writeFileSync(join(helloBuild.dir, 'hello.ts'), readme);
execFileSync('npx', ['cni-kit', 'build', 'hello.ts', '-o', 'bin/hello'], { cwd: helloBuild.dir });
const outside = join(helloBuild.dir, 'bin/hello');
const inRepo = join(work, 'repo-bin/hello');
await buildPlugin({
  entry: join(helloBuild.dir, 'hello.ts'),
  outfile: inRepo,
  cniKitSource: join(root, 'src'),
  resolveDir: root,
});

const base = { PATH: process.env.PATH ?? '' };
const add = {
  ...base,
  CNI_COMMAND: 'ADD',
  CNI_CONTAINERID: 'bench',
  CNI_NETNS: '/proc/self/ns/net',
  CNI_IFNAME: 'eth0',
  CNI_PATH: '/opt/cni/bin',
};
const conf = JSON.stringify({ cniVersion: '1.0.0', name: 'bench', type: 'hello' });
const cases: Array<[string, () => Sample]> = [
  ['node -e 0', () => measure(process.execPath, ['-e', '0'], base)],
  ['repo-built VERSION', () => measure(inRepo, [], { ...base, CNI_COMMAND: 'VERSION' })],
  ['cni-kit build VERSION', () => measure(outside, [], { ...base, CNI_COMMAND: 'VERSION' })],
  ['repo-built ADD', () => measure(inRepo, [], add, conf)],
  ['cni-kit build ADD', () => measure(outside, [], add, conf)],
];
const samples = new Map<string, Sample[]>(cases.map(([n]) => [n, []]));
for (const [, f] of cases) f();
for (let i = 0; i < runs; i++) for (const [n, f] of cases) samples.get(n)!.push(f());
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const ms = (n: string) => median(samples.get(n)!.map((s) => s.ms));
const cpu = (n: string) => mean(samples.get(n)!.map((s) => s.cpuMs));
console.log(`\nthe README plugin, ${runs} interleaved runs each`);
const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
table(
  ['command', 'bytes', 'wall ms (median)', 'CPU ms (mean)', 'outside / repo (wall, CPU)'],
  cases.map(([n]) => {
    const file = n.startsWith('repo') ? inRepo : n.startsWith('cni-kit') ? outside : undefined;
    const peer = n.startsWith('cni-kit') ? n.replace('cni-kit build', 'repo-built') : undefined;
    return [
      n,
      file ? statSync(file).size : '',
      ms(n).toFixed(1),
      cpu(n).toFixed(1),
      peer ? `${ratio(ms(n), ms(peer))}, ${ratio(cpu(n), cpu(peer))}` : '',
    ];
  }),
);
