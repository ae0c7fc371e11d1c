// `podman run --rm` with N networks defined (podman 4.3's CNI backend execs VERSION on every
// plugin of every network before each ADD and DEL), three sites side by side in one podman lab
// (test/helpers/podman.ts: own storage, own node netns, own mount namespace):
//   go      Debian's Go plugins
//   exec    cni-kit's bundles (a Node process per plugin call)
//   daemon  cni-kit's shims, forwarding to one cni-kit daemon in the site's node netns and the
//           lab's mount namespace (the shims' exec fallback points nowhere: a call that misses the
//           daemon fails instead of quietly running in exec mode)
// Interleaved pair by pair; wall time of the podman command, and CPU = user+sys of podman and the
// children it waited for, plus (daemon site) the daemon's CPU over the same interval. Medians and
// ratios to the Go site.
// Usage: npx tsx bench/podman.ts [iterations] [networks]   (root; build first: npm run build)
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { BUNDLES, CLI, getStatus, rebindShim, SHIMS } from '../test/helpers/daemon.js';
import {
  createPodmanLab,
  GO_CNI_DIR,
  type PodmanLab,
  type PodmanSite,
  podmanMissing,
} from '../test/helpers/podman.js';
import { childCpuMs, median, procCpuTicksMs, table } from './lib.js';

const N = Number(process.argv[2] ?? 8);
const NETWORKS = Number(process.argv[3] ?? 8);

if (process.getuid?.() !== 0) {
  console.log('bench/podman.ts needs root (network and mount namespaces)');
  process.exit(0);
}
const why = podmanMissing();
if (why) {
  console.log(`bench/podman.ts: ${why}`);
  process.exit(0);
}
if (!existsSync(join(SHIMS, 'bridge'))) throw new Error('dist/shim is not built: npm run build');

/** Shim copies bound to `socket`, with no usable exec fallback. */
function boundShims(dir: string, socket: string): void {
  mkdirSync(dir, { recursive: true });
  for (const type of ['bridge', 'host-local', 'tuning', 'loopback']) {
    rebindShim(join(SHIMS, type), join(dir, type), socket, `/nonexistent/${type}`);
  }
}

/** CPU ms (user+sys) a process has used so far (10 ms ticks). */
const procCpuMs = (pid: number): number => procCpuTicksMs(pid).own;

interface Column {
  name: string;
  site: PodmanSite;
  network: string;
  daemon?: ChildProcess;
  wall: number[];
  cpu: number[];
  daemonCpu: number;
}

const tag = `bpm${process.pid % 100000}`;
let lab: PodmanLab | undefined;
let daemon: ChildProcess | undefined;
const stop = async () => {
  daemon?.kill('SIGKILL');
  if (lab) await lab.cleanup();
  lab = undefined;
};
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.once(sig, () => void stop().then(() => process.exit(130)));

try {
  lab = await createPodmanLab(tag);
  const runDir = join(lab.dir, 'daemon-run');
  mkdirSync(runDir, { mode: 0o700 });
  const socket = join(runDir, 'daemon.sock');
  const shimDir = join(lab.dir, 'shims');
  boundShims(shimDir, socket);
  const sites = {
    go: await lab.site('g', [GO_CNI_DIR]),
    exec: await lab.site('e', [BUNDLES.replace(/\/$/, ''), GO_CNI_DIR]),
    daemon: await lab.site('d', [shimDir, GO_CNI_DIR]),
  };
  daemon = spawn(
    'nsenter',
    [
      `--mount=${lab.mountNs}`,
      `--net=${sites.daemon.netnsPath}`,
      process.execPath,
      CLI,
      'daemon',
      '--plugins',
      BUNDLES,
      '--socket',
      socket,
      '--log-level',
      'warn',
    ],
    { stdio: 'ignore' },
  );
  const deadline = Date.now() + 20_000;
  while ((await getStatus(socket, '/readyz')) !== 200) {
    if (Date.now() > deadline) throw new Error('the daemon did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  const daemonPid = Number(
    spawnSync('pgrep', ['-f', '--', `--socket ${socket}`], { encoding: 'utf8' })
      .stdout.trim()
      .split('\n')[0],
  );
  const cols: Column[] = [];
  let k = 0;
  for (const [name, site] of Object.entries(sites)) {
    const nets: string[] = [];
    for (let i = 0; i < NETWORKS; i++)
      nets.push((await site.createNetwork(`${tag}${name}${i}`, [`10.${120 + k}.${i}.0/24`])).name);
    k++;
    cols.push({ name, site, network: nets[0] as string, wall: [], cpu: [], daemonCpu: 0 });
  }
  const run = async (c: Column) => {
    const d0 = c.name === 'daemon' ? procCpuMs(daemonPid) : 0;
    const c0 = childCpuMs();
    const t0 = performance.now();
    const r = await c.site.podman(['run', '--rm', '--network', c.network, lab?.image ?? '', 'true'], 120_000);
    const ms = performance.now() - t0;
    const cpu = childCpuMs() - c0;
    if (r.status !== 0) throw new Error(`${c.name}: podman run exited ${r.status}: ${r.stderr.trim()}`);
    const dcpu = c.name === 'daemon' ? procCpuMs(daemonPid) - d0 : 0;
    return { ms, cpu: cpu + dcpu, dcpu };
  };
  // One warm-up each (image layers, page cache), not counted.
  for (const c of cols) await run(c);
  for (let i = 0; i < N; i++) {
    for (const c of cols) {
      const s = await run(c);
      c.wall.push(s.ms);
      c.cpu.push(s.cpu);
      c.daemonCpu += s.dcpu;
    }
  }
  const go = cols[0] as Column;
  const f = (x: number) => x.toFixed(0);
  console.log(
    `\npodman run --rm (podman 4.3, CNI backend) with ${NETWORKS} networks defined, ${N} runs each, interleaved\n`,
  );
  table(
    ['plugins', 'wall ms', 'vs Go', 'CPU ms', 'vs Go', 'daemon CPU ms/run'],
    cols.map((c) => [
      c.name,
      f(median(c.wall)),
      `${(median(c.wall) / median(go.wall)).toFixed(2)}x`,
      f(median(c.cpu)),
      `${(median(c.cpu) / median(go.cpu)).toFixed(2)}x`,
      c.name === 'daemon' ? (c.daemonCpu / N).toFixed(1) : '',
    ]),
  );
  console.log(
    '\nCPU: podman and the processes it waited for (plugins, shims), plus the daemon for the daemon column.',
  );
} finally {
  await stop();
}
