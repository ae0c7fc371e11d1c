// Per-call overhead of the delegate layer over spawning the Go host-local plugin directly.
// Run: npx tsx bench/delegate.ts [calls=200]
// Rows: a bare child_process.spawn (the floor), delegateAdd/delegateDel (find on CNI_PATH, exec,
// parse, validate, convert), and CniRuntime.addNetwork/delNetwork (plus atomic cache write + fsync).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { delegateAdd, delegateDel } from 'cni-kit/delegate';
import { CniRuntime } from 'cni-kit/runtime';

const GO = '/usr/lib/cni/host-local';
if (!existsSync(GO)) {
  console.error(`skipped: ${GO} not installed`);
  process.exit(0);
}
const N = Number(process.argv[2] ?? 200);
const work = mkdtempSync(join(tmpdir(), `ckbench-${process.pid}-`));
const conf = (name: string) =>
  JSON.stringify({
    cniVersion: '1.0.0',
    name,
    type: 'host-local',
    ipam: { type: 'host-local', subnet: '10.254.0.0/16', dataDir: join(work, 'data') },
  });

function env(command: string, cid: string): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '',
    CNI_COMMAND: command,
    CNI_CONTAINERID: cid,
    CNI_NETNS: '/var/run/netns/bench',
    CNI_IFNAME: 'eth0',
    CNI_ARGS: '',
    CNI_PATH: '/usr/lib/cni',
  };
}

function rawSpawn(command: string, cid: string, stdin: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn(GO, [], { env: env(command, cid) });
    let out = '';
    c.stdout.on('data', (b: Buffer) => {
      out += b;
    });
    c.on('error', reject);
    c.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`exit ${code}: ${out}`))));
    c.stdin.end(stdin);
  });
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
};
const now = () => Number(process.hrtime.bigint()) / 1e6;

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t = now();
  await fn();
  return now() - t;
}

const rt = new CniRuntime({ pluginDirs: ['/usr/lib/cni'], cacheDir: join(work, 'cache'), stderr: null });
const t: Record<string, number[]> = {};
const rec = (k: string, v: number) => {
  t[k] = t[k] ?? [];
  t[k].push(v);
};

// warm-up (page cache, JIT)
for (let i = 0; i < 5; i++) {
  await rawSpawn('ADD', `w${i}`, conf('raw'));
  await rawSpawn('DEL', `w${i}`, conf('raw'));
}
// Interleave the three variants so drift in machine load hits them equally.
for (let i = 0; i < N; i++) {
  const cid = `c${i}`;
  rec('raw ADD', await time(() => rawSpawn('ADD', cid, conf('raw'))));
  rec('raw DEL', await time(() => rawSpawn('DEL', cid, conf('raw'))));
  rec(
    'delegate ADD',
    await time(() => delegateAdd('host-local', conf('dlg'), { env: env('ADD', cid), stderr: null })),
  );
  rec(
    'delegate DEL',
    await time(() => delegateDel('host-local', conf('dlg'), { env: env('DEL', cid), stderr: null })),
  );
  const r = { containerId: cid, ifname: 'eth0', netns: '/var/run/netns/bench' };
  rec('runtime ADD', await time(() => rt.addNetwork(conf('rtm'), r)));
  rec('runtime DEL', await time(() => rt.delNetwork(conf('rtm'), r)));
}
rmSync(work, { recursive: true, force: true });

const rows = [
  ['ADD', 'delegate ADD'],
  ['DEL', 'delegate DEL'],
  ['ADD', 'runtime ADD'],
  ['DEL', 'runtime DEL'],
] as const;
console.log(`Go host-local, ${N} calls per row, median wall time per call (ms)`);
console.log('| verb | ours | ours ms | raw spawn ms | overhead ms | ratio |');
console.log('|------|------|--------:|-------------:|------------:|------:|');
for (const [verb, key] of rows) {
  const ours = median(t[key] ?? []);
  const raw = median(t[`raw ${verb}`] ?? []);
  console.log(
    `| ${verb} | ${key.split(' ')[0]} | ${ours.toFixed(2)} | ${raw.toFixed(2)} | ${(ours - raw).toFixed(2)} | ${(ours / raw).toFixed(2)}x |`,
  );
}
