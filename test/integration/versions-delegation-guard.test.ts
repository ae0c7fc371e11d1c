// Delegation that can never end (F1): a plugin named as its own IPAM, and configs that hand the call
// around in a circle through flannel and bridge. Each must be refused at once with code 7, with
// no pile-up of processes, nothing left behind, and a DEL that succeeds. Built binaries, run in a
// node namespace of this file's own.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { BIN_DIR } from '../helpers/plugin.js';

const tag = `vd${process.pid % 100000}`;
const o2 = 120 + (process.pid % 60);
const node = `${tag}-node`;
const netnses: string[] = [];
let work = '';
let seq = 0;

function need(ctx: TestContext): void {
  if (process.getuid?.() !== 0) ctx.skip('needs root for network namespaces');
}

const ip = (...args: string[]) => execFileSync('ip', args, { encoding: 'utf8' });
const links = (ns: string) =>
  (JSON.parse(ip('-j', '-n', ns, 'link', 'show')) as Array<{ ifname: string }>).map((l) => l.ifname);

function netns(): string {
  const name = `${tag}-c${seq++}`;
  spawnSync('ip', ['netns', 'del', name]);
  ip('netns', 'add', name);
  netnses.push(name);
  return name;
}

/** The variable that marks this file's plugin processes: delegates inherit the environment. */
const MARK = `CNI_KIT_TEST_MARK=${tag}`;

/** Processes running one of our plugin binaries for this file (not for a suite running beside it). */
function ourPluginProcesses(): number {
  let n = 0;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(BIN_DIR)) continue;
      if (readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(MARK)) n++;
    } catch {
      // gone meanwhile
    }
  }
  return n;
}

interface Outcome {
  status: number | null;
  json: { code?: number; msg?: string } | undefined;
  stdout: string;
  stderr: string;
  ms: number;
  /** The most processes of our binaries seen at once while it ran. */
  peak: number;
}

/** Runs a binary in the node namespace, sampling how many of our plugin processes exist meanwhile. */
async function run(type: string, command: string, ns: string, conf: unknown): Promise<Outcome> {
  const t0 = performance.now();
  const child = spawn('nsenter', [`--net=/run/netns/${node}`, join(BIN_DIR, type)], {
    env: {
      PATH: process.env.PATH ?? '',
      CNI_COMMAND: command,
      CNI_CONTAINERID: `${tag}-id`,
      CNI_NETNS: `/run/netns/${ns}`,
      CNI_IFNAME: 'eth0',
      CNI_PATH: BIN_DIR,
      CNI_KIT_TEST_MARK: tag,
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => {
    stdout += b.toString();
  });
  child.stderr.on('data', (b: Buffer) => {
    stderr += b.toString();
  });
  child.stdin.on('error', () => {}); // a plugin killed before it read its config
  child.stdin.end(JSON.stringify(conf));
  let peak = 0;
  const sampler = setInterval(() => {
    peak = Math.max(peak, ourPluginProcesses());
  }, 10);
  const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const status = await new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  clearInterval(sampler);
  clearTimeout(killer);
  let json: Outcome['json'];
  try {
    json = JSON.parse(stdout) as Outcome['json'];
  } catch {
    json = undefined;
  }
  return { status, json, stdout, stderr, ms: performance.now() - t0, peak };
}

const files = (dir: string): string[] =>
  existsSync(dir)
    ? readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? files(join(dir, e.name)).map((f) => `${e.name}/${f}`) : [e.name],
      )
    : [];

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), `${tag}-`));
  if (process.getuid?.() !== 0) return;
  spawnSync('ip', ['netns', 'del', node]);
  ip('netns', 'add', node);
});

afterAll(() => {
  for (const n of netnses) spawnSync('ip', ['netns', 'del', n]);
  spawnSync('ip', ['netns', 'del', node]);
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('delegation loops are refused (F1)', () => {
  it('bridge with "ipam": {"type": "bridge"}: code 7 at once, one process, nothing left, DEL succeeds', async (ctx) => {
    need(ctx);
    const ns = netns();
    const before = links(node);
    const conf = {
      cniVersion: '1.0.0',
      name: `${tag}-self`,
      type: 'bridge',
      bridge: `${tag}b0`,
      ipam: { type: 'bridge' },
    };
    const add = await run('bridge', 'ADD', ns, conf);
    expect(add.status, add.stdout + add.stderr).toBe(1);
    expect(add.json?.code).toBe(7);
    expect(add.json?.msg).toContain('ipam.type: "bridge" is this plugin itself');
    expect(add.ms).toBeLessThan(5000);
    expect(add.peak).toBeLessThanOrEqual(1);
    expect(ourPluginProcesses()).toBe(0);
    expect(links(ns)).toEqual(['lo']);
    // The bridge device is a by-design leftover; no veth is left on the node.
    expect(links(node).filter((l) => !before.includes(l) && l !== `${tag}b0`)).toEqual([]);
    const del = await run('bridge', 'DEL', ns, conf);
    expect(del.status, del.stdout + del.stderr).toBe(0);
    expect(del.peak).toBeLessThanOrEqual(1);
  });

  it('flannel whose bridge delegate takes flannel as IPAM: a loop through two plugins is cut', async (ctx) => {
    need(ctx);
    const ns = netns();
    const dir = join(work, 'flannel-loop');
    mkdirSync(dir, { recursive: true });
    const subnetFile = join(dir, 'subnet.env');
    writeFileSync(subnetFile, `FLANNEL_NETWORK=10.${o2}.0.0/16\nFLANNEL_SUBNET=10.${o2}.1.1/24\n`);
    const before = links(node);
    // The delegate carries subnetFile and dataDir, so flannel run as the bridge's IPAM finds its
    // subnet and builds the same bridge delegate again: flannel > bridge > flannel > bridge ...
    const conf = {
      cniVersion: '1.0.0',
      name: `${tag}-loop`,
      type: 'flannel',
      subnetFile,
      dataDir: join(dir, 'flannel'),
      ipam: { type: 'flannel' },
      delegate: { bridge: `${tag}f0`, subnetFile, dataDir: join(dir, 'flannel-inner') },
    };
    const add = await run('flannel', 'ADD', ns, conf);
    expect(add.status, add.stdout + add.stderr).toBe(1);
    expect(add.json?.code).toBe(7);
    expect(add.json?.msg).toContain('delegation loop: plugin "bridge" runs inside itself');
    expect(add.json?.msg).toContain('bridge ADD > flannel ADD > bridge ADD');
    expect(add.ms).toBeLessThan(10_000);
    expect(add.peak).toBeLessThanOrEqual(4);
    expect(ourPluginProcesses()).toBe(0);
    expect(links(ns)).toEqual(['lo']);
    expect(links(node).filter((l) => !before.includes(l) && l !== `${tag}f0`)).toEqual([]);
    expect(files(join(dir, 'flannel'))).toEqual([]);
    expect(files(join(dir, 'flannel-inner'))).toEqual([]);
    for (let i = 0; i < 2; i++) {
      const del = await run('flannel', 'DEL', ns, conf);
      expect(del.status, del.stdout + del.stderr).toBe(0);
      expect(del.peak).toBeLessThanOrEqual(4);
    }
    expect(ourPluginProcesses()).toBe(0);
  });

  it('multus whose cluster network is the multus config itself: refused at the second round', async (ctx) => {
    need(ctx);
    const ns = netns();
    const dir = join(work, 'multus-loop');
    mkdirSync(join(dir, 'confdir'), { recursive: true });
    const self = join(dir, 'confdir', '00-multus.conf');
    const conf = {
      cniVersion: '0.3.1',
      name: 'multus-cni-network',
      type: 'multus',
      clusterNetwork: self,
      confDir: join(dir, 'confdir'),
      cniDir: join(dir, 'cache'),
      binDir: BIN_DIR,
    };
    writeFileSync(self, JSON.stringify(conf));
    const add = await run('multus', 'ADD', ns, conf);
    expect(add.status, add.stdout + add.stderr).toBe(1);
    expect(add.json?.code).toBe(7);
    expect(add.json?.msg).toContain(
      'delegation loop: plugin "multus" runs inside itself (multus ADD > multus ADD)',
    );
    expect(add.ms).toBeLessThan(10_000);
    expect(add.peak).toBeLessThanOrEqual(3);
    expect(ourPluginProcesses()).toBe(0);
    expect(links(ns)).toEqual(['lo']);
    expect(files(join(dir, 'cache'))).toEqual([]);
    const del = await run('multus', 'DEL', ns, conf);
    expect(del.status, del.stdout + del.stderr).toBe(0);
  });
});
