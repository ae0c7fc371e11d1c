// Many processes on one pool (file store, real etcd), and processes SIGKILLed mid-allocation:
// no address is ever handed out twice, and after GC nothing leaks.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { etcd3ProtoPlugin } from '../../src/cli/build.js';
import { createWhereaboutsAllocator } from '../../src/ipam/whereabouts/index.js';
import { openKubeApi } from '../../src/k8s/connect.js';
import { hasEtcd, startEtcd, type TestEtcd } from '../helpers/etcd.js';
import { type FakeK8s, startFakeK8s } from '../helpers/fake-k8s.js';

const tmp = mkdtempSync(join(tmpdir(), `wbconc-${process.pid}-`));
const workerJs = join(tmp, 'worker.cjs');
let etcd: TestEtcd | undefined;
let kube: FakeK8s | undefined;
const children = new Set<ChildProcess>();

beforeAll(async () => {
  await build({
    entryPoints: [fileURLToPath(new URL('../helpers/whereabouts-worker.ts', import.meta.url))],
    outfile: workerJs,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    logLevel: 'error',
    plugins: [etcd3ProtoPlugin()],
  });
  if (hasEtcd()) etcd = await startEtcd('wbconc');
  // Plain HTTP: the client opens a connection per request, and a TLS handshake for each would
  // dominate these many-request runs (TLS is covered in k8s-whereabouts-store.test.ts).
  kube = await startFakeK8s({ tls: false });
});

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await etcd?.stop();
  await kube?.close();
  rmSync(tmp, { recursive: true, force: true });
});

interface Worker {
  lines: string[];
  ready: Promise<void>;
  done: Promise<number | null>;
  child: ChildProcess;
}

function startWorker(config: object, id: string, count: number, churn = false): Worker {
  const child = spawn(process.execPath, [workerJs], {
    env: {
      ...process.env,
      WB_CONFIG: JSON.stringify(config),
      WB_ID: id,
      WB_COUNT: String(count),
      WB_CHURN: churn ? '1' : '0',
      WB_FSYNC: '0',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  const lines: string[] = [];
  let buf = '';
  let stderr = '';
  let onReady: () => void = () => {};
  const ready = new Promise<void>((r) => {
    onReady = r;
  });
  child.stdout!.on('data', (b: Buffer) => {
    buf += b.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    for (const l of parts) {
      if (l === 'ready') onReady();
      else lines.push(l);
    }
  });
  child.stderr!.on('data', (b: Buffer) => {
    stderr += b.toString();
  });
  const done = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      children.delete(child);
      onReady();
      if (code !== 0 && code !== null) process.stderr.write(stderr);
      resolve(code);
    }),
  );
  return { lines, ready, done, child };
}

function stores(): Array<{ name: string; cfg: (tag: string) => Record<string, unknown> | undefined }> {
  return [
    { name: 'file', cfg: (tag) => ({ datastore: 'file', data_dir: join(tmp, tag) }) },
    {
      name: 'etcd',
      cfg: (tag) =>
        etcd ? { datastore: 'etcd', etcd_host: etcd.url, etcd_prefix: `/wbconc/${tag}` } : undefined,
    },
    {
      name: 'kubernetes',
      cfg: (tag) => ({
        datastore: 'kubernetes',
        kubernetes: { kubeconfig: kube!.writeKubeconfig(join(tmp, `kc-${tag}.json`), 'json', tag) },
      }),
    },
  ];
}

const netconf = (range: string, store: Record<string, unknown>) => ({
  cniVersion: '1.1.0',
  name: 'wbconc',
  ipam: { type: 'whereabouts', range, ...store },
});

describe.each(stores())('whereabouts $name store under concurrency', ({ name, cfg }) => {
  it('16 processes allocating at once never share an address', async (ctx) => {
    const store = cfg(`many-${name}`);
    if (!store) ctx.skip('no /usr/bin/etcd on this machine');
    const conf = netconf('10.77.0.0/22', store!);
    const ws = Array.from({ length: 16 }, (_, i) => startWorker(conf, `p${i}`, 12));
    expect(await Promise.all(ws.map((w) => w.done))).toEqual(Array(16).fill(0));
    const oks = ws.flatMap((w) => w.lines.filter((l) => l.startsWith('ok ')));
    expect(oks).toHaveLength(16 * 12);
    const addrs = oks.map((l) => l.split(' ')[2]);
    expect(new Set(addrs).size).toBe(addrs.length);
    const alloc = createWhereaboutsAllocator(conf, { kube: openKubeApi });
    try {
      const st = await alloc.status();
      expect(st.pools[0]!.used).toBe(16 * 12);
    } finally {
      await alloc.close();
    }
    // 16 Node processes contending on one pool (one IPPool object for the kubernetes store): a hang
    // guard sized for a loaded 2-core machine, not a performance bound.
  }, 120_000);

  it('16 processes racing for a 30-address pool: exactly 30 win, the rest see exhaustion', async (ctx) => {
    const store = cfg(`exhaust-${name}`);
    if (!store) ctx.skip('no /usr/bin/etcd on this machine');
    const conf = netconf('10.78.0.0/27', store!);
    const ws = Array.from({ length: 16 }, (_, i) => startWorker(conf, `q${i}`, 4));
    await Promise.all(ws.map((w) => w.done));
    const lines = ws.flatMap((w) => w.lines);
    const addrs = lines.filter((l) => l.startsWith('ok ')).map((l) => l.split(' ')[2]);
    expect(addrs).toHaveLength(30);
    expect(new Set(addrs).size).toBe(30);
    const errs = lines.filter((l) => l.startsWith('err '));
    expect(errs.length).toBeGreaterThan(0);
    for (const e of errs) expect(e).toMatch(/no free address in 10\.78\.0\.0\/27/);
  }, 120_000);

  it('SIGKILL at random moments: no duplicates, and GC leaves exactly the completed allocations', async (ctx) => {
    const store = cfg(`crash-${name}`);
    if (!store) ctx.skip('no /usr/bin/etcd on this machine');
    const conf = netconf('10.79.0.0/23', store!);
    const live = new Map<string, string>(); // completed and not deleted: id -> address
    const rounds = 5;
    for (let round = 0; round < rounds; round++) {
      const ws = Array.from({ length: 4 }, (_, i) => startWorker(conf, `r${round}w${i}`, 1_000_000, true));
      await Promise.all(ws.map((w) => w.ready));
      await new Promise((r) => setTimeout(r, 30 + Math.random() * 300));
      for (const w of ws) w.child.kill('SIGKILL');
      await Promise.all(ws.map((w) => w.done));
      for (const w of ws) {
        for (const l of w.lines) {
          const [kind, id, addr] = l.split(' ');
          if (kind === 'ok') live.set(id!, addr!.split('/')[0]!);
          // A DEL cut short may or may not have freed the address: drop it from what must survive.
          else if (kind === 'del' || kind === 'deleting') live.delete(id!);
        }
      }
    }
    expect(live.size).toBeGreaterThan(0);
    const addrs = [...live.values()];
    expect(new Set(addrs).size).toBe(addrs.length);
    const alloc = createWhereaboutsAllocator(conf, { kube: openKubeApi });
    try {
      // Every completed ADD still holds what it was given.
      for (const [id, addr] of live) {
        const again = await alloc.allocate({ containerId: id, ifname: 'eth0' });
        expect(again.ips![0]!.address.split('/')[0]).toBe(addr);
      }
      await alloc.gc([...live.keys()].map((id) => ({ containerId: id, ifname: 'eth0' })));
      const st = await alloc.status();
      expect(st.pools[0]!.used).toBe(live.size);
    } finally {
      await alloc.close();
    }
  }, 60_000);
});
