// ADD+DEL of a bridge + host-local config: our bundled bridge (host-local in-process) next to the Go
// reference bridge (which execs the Go host-local), same config, same machine, same run.
// Usage: npx tsx bench/plugins.ts [iterations]   (root; builds dist/bin/bridge first)
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { measure, median, type Sample, table } from './lib.js';

const N = Number(process.argv[2] ?? 15);
const GO = '/usr/lib/cni';
const tag = `pbn${process.pid % 100000}`;
const ours = join(import.meta.dirname, '..', 'dist', 'bin', 'bridge');

execFileSync('node', [join(import.meta.dirname, '..', 'scripts', 'build-bins.mjs'), 'bridge'], {
  stdio: 'ignore',
});
if (!existsSync(join(GO, 'bridge'))) throw new Error(`Go reference bridge not found in ${GO}`);

const work = mkdtempSync(join(tmpdir(), `${tag}-`));
const netns = `${tag}-ns`;
spawnSync('ip', ['netns', 'del', netns]);
execFileSync('ip', ['netns', 'add', netns]);

function run(label: string, bin: string, bridge: string, octet: number) {
  const conf = JSON.stringify({
    cniVersion: '1.0.0',
    name: `${tag}-${label}`,
    type: 'bridge',
    bridge,
    isGateway: true,
    ipam: { type: 'host-local', subnet: `172.31.${octet}.0/24`, dataDir: join(work, label) },
  });
  const env = (cmd: string) => ({
    PATH: process.env.PATH ?? '',
    CNI_COMMAND: cmd,
    CNI_CONTAINERID: `${tag}-c`,
    CNI_NETNS: `/var/run/netns/${netns}`,
    CNI_IFNAME: 'eth0',
    CNI_PATH: GO,
  });
  const adds: Sample[] = [];
  const dels: Sample[] = [];
  // One untimed warm-up creates the bridge, so every timed ADD measures the steady state.
  measure(bin, [], env('ADD'), conf);
  measure(bin, [], env('DEL'), conf);
  for (let i = 0; i < N; i++) {
    adds.push(measure(bin, [], env('ADD'), conf));
    dels.push(measure(bin, [], env('DEL'), conf));
  }
  spawnSync('ip', ['link', 'del', bridge]);
  const add = median(adds.map((s) => s.ms));
  const del = median(dels.map((s) => s.ms));
  const both = median(adds.map((s, i) => s.ms + (dels[i]?.ms ?? 0)));
  const rss = Math.max(...adds.map((s) => s.rssKiB), ...dels.map((s) => s.rssKiB));
  return { add, del, both, rss };
}

/** Median wall time of VERSION (no stdin read, no netlink): what process start-up alone costs. */
function startup(bin: string): number {
  const env = { PATH: process.env.PATH ?? '', CNI_COMMAND: 'VERSION' };
  return median(Array.from({ length: N }, () => measure(bin, [], env).ms));
}

try {
  const go = run('go', join(GO, 'bridge'), `${tag}g`, 1);
  const ck = run('ours', ours, `${tag}o`, 2);
  const goStart = startup(join(GO, 'bridge'));
  const ckStart = startup(ours);
  const f = (x: number) => x.toFixed(1);
  console.log(`bridge + host-local, ${N} ADD+DEL cycles each (median wall time; peak RSS over all calls)\n`);
  table(
    ['plugin', 'ADD ms', 'DEL ms', 'ADD+DEL ms', 'peak RSS MiB'],
    [
      ['Go reference (bridge execs host-local)', f(go.add), f(go.del), f(go.both), f(go.rss / 1024)],
      ['cni-kit (host-local in-process)', f(ck.add), f(ck.del), f(ck.both), f(ck.rss / 1024)],
      [
        'ratio cni-kit / Go',
        `${f(ck.add / go.add)}x`,
        `${f(ck.del / go.del)}x`,
        `${f(ck.both / go.both)}x`,
        `${f(ck.rss / go.rss)}x`,
      ],
    ],
  );
  console.log(`\nstart-up alone (VERSION, median): Go ${f(goStart)} ms, cni-kit ${f(ckStart)} ms`);
  console.log(
    `cni-kit ADD+DEL minus two start-ups: ${f(ck.both - 2 * ckStart)} ms (Go: ${f(go.both - 2 * goStart)} ms)`,
  );
} finally {
  spawnSync('ip', ['netns', 'del', netns]);
  rmSync(work, { recursive: true, force: true });
}
