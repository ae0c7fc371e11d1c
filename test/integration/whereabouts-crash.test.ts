// F9/F10 (issue 11): a SIGKILL at any point of an IPAM ADD or DEL leaves either nothing or a state
// the attachment's next ADD or DEL repairs: after DEL no address record, no index entry and no temp
// file is left (only the by-design lock and round-robin cursor files). Two ways in:
//  - a child that kills itself right before its Nth filesystem call, for every N an ADD (or DEL)
//    makes: every step of the implementation, whatever the steps are, for the whereabouts file store
//    and for host-local;
//  - the built binaries, killed after a random delay (fast-check over the delay) as a runtime's
//    timeout would.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { Etcd3 } from 'etcd3';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWhereaboutsAllocator } from '../../src/ipam/whereabouts/index.js';
import { openKubeApi } from '../../src/k8s/connect.js';
import { hasEtcd, startEtcd, type TestEtcd } from '../helpers/etcd.js';
import { type FakeK8s, startFakeK8s } from '../helpers/fake-k8s.js';
import { BIN_DIR } from '../helpers/plugin.js';

const tmp = mkdtempSync(join(tmpdir(), `wbcrash-${process.pid}-`));
const childJs = join(tmp, 'child.cjs');

beforeAll(async () => {
  await build({
    entryPoints: [fileURLToPath(new URL('../helpers/ipam-crash-child.ts', import.meta.url))],
    outfile: childJs,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    logLevel: 'error',
    // Stores this test does not open; their clients stay out of the bundle.
    external: ['etcd3', '@kubernetes/client-node', 'js-yaml'],
  });
}, 60_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Files that are state: everything but the by-design lock, cursor and last_reserved_ip files. */
function stateFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name), `${rel}${e.name}/`);
      else if (!/^(lock|cursor|last_reserved_ip\..*)$/.test(e.name)) out.push(`${rel}${e.name}`);
    }
  };
  walk(dir, '');
  return out;
}

interface Run {
  killed: boolean;
  calls?: number;
  out: string;
}

function child(cmd: 'ADD' | 'DEL', at: number, config: object, id: string, args: string[][] = []): Run {
  const r = spawnSync(process.execPath, [childJs], {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      CRASH_CMD: cmd,
      CRASH_AT: String(at),
      CRASH_CONFIG: JSON.stringify(config),
      CRASH_ID: id,
      CRASH_ARGS: JSON.stringify(args),
    },
    encoding: 'utf8',
    timeout: 20_000,
    killSignal: 'SIGKILL',
  });
  const m = /^done (\d+)/.exec(r.stdout);
  if (!m && r.signal !== 'SIGKILL') throw new Error(`child ${cmd} failed: ${r.stdout}${r.stderr}`);
  return { killed: r.signal === 'SIGKILL', out: r.stdout, ...(m ? { calls: Number(m[1]) } : {}) };
}

const POD = [
  ['K8S_POD_NAMESPACE', 'ns'],
  ['K8S_POD_NAME', 'web-0'],
];

const kinds = [
  {
    name: 'whereabouts file store',
    config: (dir: string) => ({
      cniVersion: '1.0.0',
      name: 'wbcrash',
      ipam: { type: 'whereabouts', range: '10.77.0.0/24', datastore: 'file', data_dir: dir },
    }),
  },
  {
    name: 'host-local',
    config: (dir: string) => ({
      cniVersion: '1.0.0',
      name: 'hlcrash',
      ipam: { type: 'host-local', subnet: '10.78.0.0/24', dataDir: dir },
    }),
  },
];

describe.each(kinds)('SIGKILL at every filesystem step: $name', ({ config }) => {
  it('killed ADD, then DEL (or ADD again, then DEL): no record, index or temp file is left', () => {
    const dir = join(tmp, `add-${Math.random().toString(16).slice(2)}`);
    const conf = config(dir);
    const full = child('ADD', 0, conf, 'probe', POD);
    expect(full.calls).toBeGreaterThan(3);
    child('DEL', 0, conf, 'probe', POD);
    expect(stateFiles(dir)).toEqual([]);
    let kills = 0;
    for (let at = 1; at <= full.calls! + 1; at++) {
      const id = `ctr-${at}`;
      const add = child('ADD', at, conf, id, POD);
      if (add.killed) kills++;
      if (at % 2 === 0) {
        // The runtime retries ADD: it must succeed and hold one address, not two.
        const again = child('ADD', 0, conf, id, POD);
        expect(again.killed).toBe(false);
      }
      const del = child('DEL', 0, conf, id, POD);
      expect(del.killed).toBe(false);
      expect({ at, left: stateFiles(dir) }).toEqual({ at, left: [] });
    }
    expect(kills).toBeGreaterThan(3);
  }, 120_000);

  it('killed DEL, then DEL again: nothing is left', () => {
    const dir = join(tmp, `del-${Math.random().toString(16).slice(2)}`);
    const conf = config(dir);
    child('ADD', 0, conf, 'probe', POD);
    const full = child('DEL', 0, conf, 'probe', POD);
    for (let at = 1; at <= full.calls! + 1; at++) {
      const id = `ctr-${at}`;
      expect(child('ADD', 0, conf, id, POD).killed).toBe(false);
      child('DEL', at, conf, id, POD);
      expect(child('DEL', 0, conf, id, POD).killed).toBe(false);
      expect({ at, left: stateFiles(dir) }).toEqual({ at, left: [] });
    }
  }, 120_000);
});

/** Runs a binary's ADD and SIGKILLs its process group after `delayMs` (if still running). */
function addKilledAfter(
  bin: string,
  env: Record<string, string>,
  stdin: string,
  delayMs: number,
): Promise<void> {
  return new Promise((resolve) => {
    const p = spawn(bin, [], { env, detached: true, stdio: ['pipe', 'ignore', 'ignore'] });
    const timer = setTimeout(() => {
      try {
        process.kill(-p.pid!, 'SIGKILL');
      } catch {}
    }, delayMs);
    p.on('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    p.stdin.on('error', () => {}); // a plugin killed before it read its config
    p.stdin.end(stdin);
  });
}

describe.each([
  {
    type: 'whereabouts',
    ipam: (dir: string) => ({ type: 'whereabouts', range: '10.79.0.0/24', datastore: 'file', data_dir: dir }),
  },
  {
    type: 'host-local',
    ipam: (dir: string) => ({ type: 'host-local', subnet: '10.80.0.0/24', dataDir: dir }),
  },
])('dist/bin/$type SIGKILLed mid-ADD after a random delay', ({ type, ipam }) => {
  it('DEL then leaves no record and no temp file (fast-check over the delay)', async (ctx) => {
    const bin = join(BIN_DIR, type);
    if (!existsSync(bin)) ctx.skip(`dist/bin/${type} is not built`);
    const dir = join(tmp, `bin-${type}`);
    const stdin = JSON.stringify({ cniVersion: '1.0.0', name: `sk${type}`, type: 'x', ipam: ipam(dir) });
    const env = (cmd: string, id: string): Record<string, string> => ({
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      CNI_COMMAND: cmd,
      CNI_CONTAINERID: id,
      CNI_NETNS: '/proc/self/ns/net',
      CNI_IFNAME: 'net1',
      CNI_PATH: BIN_DIR,
      CNI_ARGS: 'K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p',
    });
    // How long a whole ADD takes here bounds the delays (a little past it: some runs complete).
    const t0 = performance.now();
    const probe = spawnSync(bin, [], {
      env: env('ADD', 'probe'),
      input: stdin,
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(probe.status, probe.stdout).toBe(0);
    const span = Math.ceil((performance.now() - t0) * 1.2);
    spawnSync(bin, [], { env: env('DEL', 'probe'), input: stdin, timeout: 20_000 });
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: span }), async (delay) => {
        const id = `k${run++}`;
        await addKilledAfter(bin, env('ADD', id), stdin, delay);
        const del = spawnSync(bin, [], {
          env: env('DEL', id),
          input: stdin,
          encoding: 'utf8',
          timeout: 20_000,
        });
        expect(del.status, del.stdout).toBe(0);
        expect({ delay, left: stateFiles(dir) }).toEqual({ delay, left: [] });
      }),
      { numRuns: 15 },
    );
  }, 120_000);
});

describe('etcd store: a DEL killed between its transactions', () => {
  let etcd: TestEtcd | undefined;
  beforeAll(async () => {
    if (hasEtcd()) etcd = await startEtcd('wbcrash');
  }, 60_000);
  afterAll(async () => {
    await etcd?.stop();
  });

  it('is finished by the next DEL: no address, owner or pod key is left', async (ctx) => {
    if (!etcd) ctx.skip('no /usr/bin/etcd on this machine');
    const prefix = '/wbcrash';
    const alloc = createWhereaboutsAllocator(
      {
        cniVersion: '1.0.0',
        name: 'wbcrash',
        ipam: {
          type: 'whereabouts',
          range: '10.81.0.0/24',
          datastore: 'etcd',
          etcd_host: etcd!.url,
          etcd_prefix: prefix,
        },
      },
      { closeAfterEachCall: true, flatFilePaths: [] },
    );
    const client = new Etcd3({ hosts: etcd!.url });
    try {
      const req = { containerId: 'c1', ifname: 'net1', podRef: 'ns/p' };
      await alloc.allocate(req);
      const keys = async () =>
        (await client.getAll().prefix(`${prefix}/`).keys()).filter((k) => !k.endsWith('/cursor'));
      const held = await keys();
      expect(held.filter((k) => k.includes('/ips/'))).toHaveLength(1);
      // The state release() leaves when killed after its first transaction: the address key gone,
      // its owner and pod keys still there.
      await client.delete().key(held.find((k) => k.includes('/ips/'))!);
      expect(await keys()).toHaveLength(2);
      await alloc.release(req);
      expect(await keys()).toEqual([]);
    } finally {
      client.close();
    }
  });
});

describe('Kubernetes store: killed between the reservation and the pool write', () => {
  let api: FakeK8s | undefined;
  beforeAll(async () => {
    api = await startFakeK8s({ tls: false });
  });
  afterAll(async () => {
    await api?.close();
  });

  it("DEL of that container deletes the reservation no pool entry backs, and nobody else's", async () => {
    const ns = 'wbcrash';
    const kubeconfig = api!.writeKubeconfig(join(tmp, 'kc.json'), 'json', ns);
    const alloc = createWhereaboutsAllocator(
      {
        cniVersion: '1.0.0',
        name: 'wbcrash',
        ipam: { type: 'whereabouts', range: '10.82.0.0/24', kubernetes: { kubeconfig } },
      },
      { closeAfterEachCall: true, flatFilePaths: [], kube: openKubeApi },
    );
    await alloc.allocate({ containerId: 'c1', ifname: 'net1', podRef: 'ns/p1' });
    const reservations = (await openKubeApi(kubeconfig)).customResources(
      'whereabouts.cni.cncf.io',
      'v1alpha1',
      'overlappingrangeipreservations',
    );
    // The state a kill right after the reservation leaves: c2 reserved 10.82.0.9, the pool has no
    // entry for it. Another network's reservation of c2 must stay.
    for (const name of ['10.82.0.9', 'other-10.82.0.9']) {
      await reservations.create(ns, {
        apiVersion: 'whereabouts.cni.cncf.io/v1alpha1',
        kind: 'OverlappingRangeIPReservation',
        metadata: { name },
        spec: { containerid: 'c2', podref: 'ns/p2', ifname: 'net1' },
      });
    }
    const names = () => [...api!.objects('overlappingrangeipreservations').keys()].sort();
    expect(names()).toEqual([`${ns}/10.82.0.1`, `${ns}/10.82.0.9`, `${ns}/other-10.82.0.9`]);
    await alloc.release({ containerId: 'c2', ifname: 'net1', podRef: 'ns/p2' });
    expect(names()).toEqual([`${ns}/10.82.0.1`, `${ns}/other-10.82.0.9`]);
    await alloc.release({ containerId: 'c1', ifname: 'net1', podRef: 'ns/p1' });
    expect(names()).toEqual([`${ns}/other-10.82.0.9`]);
  });
});
