// Whereabouts-style allocation throughput and per-ADD cost, on the file store and on a real etcd
// (started here on loopback ports). Run: npx tsx bench/ipam-whereabouts.ts [--quick]
//
// 1. allocations/s with 1, 4 and 16 concurrent client processes (each its own store connection);
// 2. ms per ADD in an empty /16 and in one already holding 60,000 allocations (must stay within 2x);
// 3. ADDs in an IPv6 /64 whose cursor sits past the first half (whereabouts can only use the first /65);
// 4. exec per call, side by side with the Go reference IPAM binary (host-local; whereabouts' Go
//    binary is not installed here), both on local files.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { buildPlugin, etcd3ProtoPlugin } from '../src/cli/build.js';
import { parseWhereaboutsConfig } from '../src/ipam/whereabouts/config.js';
import { createWhereaboutsAllocator, openWhereaboutsStore } from '../src/ipam/whereabouts/index.js';
import { hasEtcd, startEtcd, type TestEtcd } from '../test/helpers/etcd.js';
import { table } from './lib.js';

const quick = process.argv.includes('--quick');
const root = fileURLToPath(new URL('..', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), `wbbench-${process.pid}-`));
const workerJs = join(tmp, 'worker.cjs');
const rows: string[][] = [];
const row = (...cells: string[]) => rows.push(cells);

function netconf(range: string, store: Record<string, unknown>) {
  return { cniVersion: '1.1.0', name: 'wbbench', ipam: { type: 'whereabouts', range, ...store } };
}

/** Runs `clients` worker processes, `per` ADDs each, started together; returns allocations/s. */
async function throughput(conf: object, clients: number, per: number, tag: string): Promise<number> {
  const kids: ChildProcess[] = [];
  const ready: Promise<void>[] = [];
  const done: Promise<void>[] = [];
  for (let i = 0; i < clients; i++) {
    const c = spawn(process.execPath, [workerJs], {
      env: {
        ...process.env,
        WB_CONFIG: JSON.stringify(conf),
        WB_ID: `${tag}c${i}`,
        WB_COUNT: String(per),
        WB_WAIT: '1',
      },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    kids.push(c);
    let buf = '';
    let onReady = () => {};
    ready.push(new Promise((r) => (onReady = r)));
    done.push(
      new Promise((resolve) => {
        c.stdout!.on('data', (b: Buffer) => {
          buf += b.toString();
          if (buf.includes('ready\n')) onReady();
        });
        c.on('exit', () => {
          const errs = buf.split('\n').filter((l) => l.startsWith('err '));
          if (errs.length > 0) console.error(`${tag}: ${errs.length} failed ADDs, first: ${errs[0]}`);
          resolve();
        });
      }),
    );
  }
  await Promise.all(ready);
  const t0 = performance.now();
  for (const c of kids) c.stdin!.write('go\n');
  await Promise.all(done);
  return (clients * per) / ((performance.now() - t0) / 1000);
}

/** Fills a pool directly through the store (no per-ADD bookkeeping) so the bench starts quickly. */
async function fill(conf: ReturnType<typeof netconf>, n: number): Promise<void> {
  const cfg = parseWhereaboutsConfig(conf.ipam);
  const r = cfg.ranges[0]!;
  const store = await openWhereaboutsStore(cfg.datastore, { fsync: false });
  try {
    await store.session(r.ref, async (s) => {
      const batch = 256;
      for (let i = 0; i < n; i += batch) {
        const jobs = [];
        for (let j = i; j < Math.min(n, i + batch); j++) {
          const address = r.first + BigInt(j);
          jobs.push(s.claim({ address, pool: r.ref.pool, containerId: `fill${j}`, ifname: 'eth0' }));
        }
        await Promise.all(jobs);
      }
      await s.setCursor(r.first + BigInt(n - 1));
    });
  } finally {
    await store.close();
  }
}

/** Median ms per sequential ADD through one in-process allocator (the median shrugs off load spikes). */
async function perAdd(conf: ReturnType<typeof netconf>, n: number, tag: string): Promise<number> {
  const a = createWhereaboutsAllocator(conf, { fsync: false });
  try {
    await a.allocate({ containerId: `${tag}-warm`, ifname: 'eth0' });
    const times: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      await a.allocate({ containerId: `${tag}-${i}`, ifname: 'eth0' });
      times.push(performance.now() - t0);
    }
    times.sort((x, y) => x - y);
    return times[Math.floor(times.length / 2)]!;
  } finally {
    await a.close();
  }
}

function execPerCall(bin: string, conf: object, n: number, tag: string): number {
  const stdin = JSON.stringify(conf);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const r = spawnSync(bin, [], {
      input: stdin,
      env: {
        CNI_COMMAND: 'ADD',
        CNI_CONTAINERID: `${tag}${i}`,
        CNI_NETNS: '/proc/self/ns/net',
        CNI_IFNAME: 'eth0',
        CNI_PATH: '/usr/lib/cni',
        PATH: process.env.PATH ?? '/usr/bin:/bin',
      },
    });
    if (r.status !== 0) throw new Error(`${bin} failed: ${r.stdout}${r.stderr}`);
  }
  return (performance.now() - t0) / n;
}

async function main(): Promise<void> {
  await build({
    entryPoints: [join(root, 'test/helpers/whereabouts-worker.ts')],
    outfile: workerJs,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    logLevel: 'error',
    plugins: [etcd3ProtoPlugin()],
  });
  // Our binary, built as the repo builds its plugins (cni-kit build, sidecars under lib/).
  const ours = join(tmp, 'whereabouts');
  await buildPlugin({
    entry: join(root, 'examples/whereabouts/main.ts'),
    outfile: ours,
    cniKitSource: join(root, 'src'),
    resolveDir: root,
  });
  let etcd: TestEtcd | undefined;
  if (hasEtcd()) etcd = await startEtcd('wbbench');
  try {
    const stores: Array<[string, (tag: string) => Record<string, unknown>]> = [
      ['file', (tag) => ({ datastore: 'file', data_dir: join(tmp, tag) })],
    ];
    if (etcd)
      stores.push([
        'etcd',
        (tag) => ({ datastore: 'etcd', etcd_host: etcd!.url, etcd_prefix: `/bench/${tag}` }),
      ]);

    const per = quick ? 50 : 200;
    for (const [name, store] of stores) {
      for (const clients of [1, 4, 16]) {
        const rate = await throughput(
          netconf('10.100.0.0/16', store(`tp${clients}`)),
          clients,
          Math.ceil(per / Math.sqrt(clients)),
          `${name}${clients}`,
        );
        row(`${name}: ${clients} client process(es)`, `${rate.toFixed(0)} alloc/s`, '');
      }
    }

    const filled = quick ? 6_000 : 60_000;
    for (const [name, store] of stores) {
      const empty = netconf('10.101.0.0/16', store('empty'));
      const full = netconf('10.101.0.0/16', store('full'));
      const t1 = await perAdd(empty, per, 'e');
      const tf0 = performance.now();
      await fill(full, filled);
      const fillS = (performance.now() - tf0) / 1000;
      const t2 = await perAdd(full, per, 'f');
      row(`${name}: ms/ADD, empty /16`, t1.toFixed(3), '');
      row(
        `${name}: ms/ADD, /16 holding ${filled}`,
        t2.toFixed(3),
        `x${(t2 / t1).toFixed(2)} of empty (limit 2x; fill took ${fillS.toFixed(1)} s)`,
      );

      const v6 = netconf('fd00:beec::/64', store('v6'));
      const cfg = parseWhereaboutsConfig(v6.ipam);
      const r = cfg.ranges[0]!;
      const s = await openWhereaboutsStore(cfg.datastore, { fsync: false });
      await s.session(r.ref, (x) => x.setCursor(r.subnet.network + (1n << 63n) + 1000n));
      await s.close();
      const a = createWhereaboutsAllocator(v6, { fsync: false });
      const first = (await a.allocate({ containerId: 'v6first', ifname: 'eth0' })).ips![0]!.address;
      await a.close();
      const t3 = await perAdd(v6, per, 'v6');
      row(`${name}: ms/ADD, IPv6 /64 past its first half`, t3.toFixed(3), `first: ${first}`);
    }

    const goHostLocal = '/usr/lib/cni/host-local';
    if (existsSync(goHostLocal) && existsSync(ours))
      try {
        const n = quick ? 20 : 60;
        const go = execPerCall(
          goHostLocal,
          {
            cniVersion: '1.0.0',
            name: 'wbbenchgo',
            type: 'x',
            ipam: { type: 'host-local', subnet: '10.102.0.0/16', dataDir: join(tmp, 'go') },
          },
          n,
          'go',
        );
        const us = execPerCall(
          ours,
          {
            cniVersion: '1.0.0',
            name: 'wbbenchts',
            type: 'x',
            ipam: {
              type: 'whereabouts',
              range: '10.103.0.0/16',
              datastore: 'file',
              data_dir: join(tmp, 'ts'),
            },
          },
          n,
          'ts',
        );
        row('exec per ADD: Go host-local (reference)', go.toFixed(2), '');
        row(
          'exec per ADD: our whereabouts binary, file store',
          us.toFixed(2),
          `x${(us / go).toFixed(2)} of Go`,
        );
      } catch (err) {
        row(
          'exec per ADD vs Go',
          'failed',
          String((err as Error).message)
            .split('\n')
            .slice(0, 3)
            .join(' ')
            .slice(0, 200),
        );
      }
    else {
      row('exec per ADD vs Go', 'skipped', 'needs /usr/lib/cni/host-local');
    }
    if (!etcd) row('etcd rows', 'skipped', 'no /usr/bin/etcd');
  } finally {
    await etcd?.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
  table(['case', 'value', 'note'], rows);
}

main()
  .then(() => process.exit(0))
  .catch((err) => {
    console.error(err);
    process.exit(1);
  });
