// host-local benchmarks: allocations per second in process and as a binary next to the Go plugin
// (same run, same machine), time per ADD in an empty /16 versus one holding 60,000 allocations, and
// a /64 IPv6 range. Run: npx tsx bench/ipam.ts   (needs dist/bin/host-local: node scripts/build-bins.mjs)
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HostLocalAllocator, type IpamNetConf, lockFile } from 'cni-kit/ipam';

const GO = '/usr/lib/cni/host-local';
const OURS = fileURLToPath(new URL('../dist/bin/host-local', import.meta.url));
const root = mkdtempSync(join(tmpdir(), `cnikit-bench-ipam-${process.pid}-`));
let seq = 0;

function conf(subnet: string): IpamNetConf {
  return {
    cniVersion: '1.0.0',
    name: `b${seq++}`,
    type: 'bridge',
    ipam: { type: 'host-local', dataDir: root, subnet },
  };
}

function binAdd(bin: string, c: IpamNetConf, id: string): void {
  const r = spawnSync(bin, [], {
    input: JSON.stringify(c),
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      CNI_COMMAND: 'ADD',
      CNI_CONTAINERID: id,
      CNI_NETNS: '/var/run/netns/none',
      CNI_IFNAME: 'eth0',
      CNI_PATH: '/usr/lib/cni',
    },
  });
  if (r.status !== 0) throw new Error(`${bin} ADD failed: ${r.stdout}`);
}

async function timeIt(n: number, fn: (i: number) => unknown): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await fn(i);
  return (performance.now() - t0) / n; // ms per op
}

// Fills a network directory with `count` allocations in the reference's format, cursor at the end,
// as a long-running node would have it (written directly: 60,000 real ADDs would take minutes).
function fill(c: IpamNetConf, count: number): void {
  const dir = join(root, c.name);
  mkdirSync(dir, { recursive: true });
  const base = 10 << 24;
  let last = '';
  for (let i = 0; i < count; i++) {
    const v = base + 2 + i;
    last = [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join('.');
    writeFileSync(join(dir, last), `fill${i}\r\neth0`);
  }
  writeFileSync(join(dir, 'last_reserved_ip.0'), last);
}

interface Row {
  what: string;
  ours: number; // ms per ADD
  go?: number;
}

const rows: Row[] = [];
const fmt = (ms: number) => `${ms.toFixed(2)} ms  (${(1000 / ms).toFixed(0)}/s)`;

async function main(): Promise<void> {
  const hasGo = existsSync(GO);
  const hasOurs = existsSync(OURS);

  // The flock(1) hand-off alone: most of an in-process ADD.
  const lockPath = join(root, 'bench.lock');
  rows.push({
    what: 'flock take + release (flock(1) child)',
    ours: await timeIt(200, async () => (await lockFile(lockPath)).release()),
  });

  // In process: the SDK path (ipamAdd in a plugin), one flock per ADD.
  for (const fsync of [true, false]) {
    const a = new HostLocalAllocator(conf('10.0.0.0/16'), { fsync });
    await a.allocate({ containerId: 'warm', ifname: 'eth0' });
    rows.push({
      what: `in-process ADD, empty /16${fsync ? '' : ' (no fsync)'}`,
      ours: await timeIt(300, (i) => a.allocate({ containerId: `c${i}`, ifname: 'eth0' })),
    });
  }

  // 60,000 allocations already held: ours must stay within 2x of the empty case.
  const empty = new HostLocalAllocator(conf('10.0.0.0/16'));
  const full = conf('10.0.0.0/16');
  fill(full, 60_000);
  const fullA = new HostLocalAllocator(full);
  await empty.allocate({ containerId: 'warm', ifname: 'eth0' });
  await fullA.allocate({ containerId: 'warm', ifname: 'eth0' });
  const tEmpty = await timeIt(200, (i) => empty.allocate({ containerId: `e${i}`, ifname: 'eth0' }));
  const tFull = await timeIt(200, (i) => fullA.allocate({ containerId: `f${i}`, ifname: 'eth0' }));
  rows.push({ what: 'in-process ADD, /16 empty', ours: tEmpty });
  rows.push({ what: 'in-process ADD, /16 holding 60,000', ours: tFull });
  const tDel = await timeIt(50, (i) => fullA.release({ containerId: `f${i}`, ifname: 'eth0' }));
  rows.push({ what: 'in-process DEL, /16 holding 60,000', ours: tDel });

  // IPv6: a whole /64 is one range.
  const v6 = new HostLocalAllocator(conf('fd00:1:2:3::/64'));
  await v6.allocate({ containerId: 'warm', ifname: 'eth0' });
  rows.push({
    what: 'in-process ADD, /64 IPv6',
    ours: await timeIt(200, (i) => v6.allocate({ containerId: `v${i}`, ifname: 'eth0' })),
  });

  // Binaries, side by side: process start included, as a runtime sees it.
  if (hasOurs) {
    const n = 40;
    const cOurs = conf('10.1.0.0/16');
    const cGo = conf('10.2.0.0/16');
    const row: Row = {
      what: `binary ADD, empty /16 (${n} calls)`,
      ours: await timeIt(n, (i) => binAdd(OURS, cOurs, `o${i}`)),
    };
    if (hasGo) row.go = await timeIt(n, (i) => binAdd(GO, cGo, `g${i}`));
    rows.push(row);
    // The same 60,000-allocation directory for both binaries (Go reads every file on each ADD).
    const shared = conf('10.0.0.0/16');
    fill(shared, 60_000);
    const m = 5;
    const row60: Row = {
      what: `binary ADD, /16 holding 60,000 (${m} calls)`,
      ours: await timeIt(m, (i) => binAdd(OURS, shared, `so${i}`)),
    };
    if (hasGo) row60.go = await timeIt(m, (i) => binAdd(GO, shared, `sg${i}`));
    rows.push(row60);
  }

  const w = Math.max(...rows.map((r) => r.what.length));
  console.log(
    `${'benchmark'.padEnd(w)} | ${'cni-kit'.padEnd(22)} | ${'Go host-local'.padEnd(22)} | Go/cni-kit time`,
  );
  console.log(`${'-'.repeat(w)}-|-${'-'.repeat(22)}-|-${'-'.repeat(22)}-|-${'-'.repeat(15)}`);
  for (const r of rows) {
    const go = r.go === undefined ? 'n/a' : fmt(r.go);
    const ratio = r.go === undefined ? '' : `${(r.go / r.ours).toFixed(2)}x`;
    console.log(`${r.what.padEnd(w)} | ${fmt(r.ours).padEnd(22)} | ${go.padEnd(22)} | ${ratio}`);
  }
  console.log(
    `load average at the end: ${loadavg()
      .map((x) => x.toFixed(1))
      .join(' ')} (timings scale with it)`,
  );
  console.log(
    `\n60,000 held vs empty (in process): ${(tFull / tEmpty).toFixed(2)}x the time per ADD (goal: within 2x)`,
  );
  if (!hasOurs)
    console.log(
      'dist/bin/host-local missing: run node scripts/build-bins.mjs host-local for the binary rows',
    );
}

main()
  .catch((e) => {
    console.error(e);
    process.exitCode = 1;
  })
  .finally(() => rmSync(root, { recursive: true, force: true }));
