// F8 on the real kernel: our macvlan, bridge and ptp binaries SIGKILLed (with their process group)
// at random times during ADD, then DEL twice: nothing may be left in the container netns, in the
// node netns (the bridge device excepted, by design), in iptables or in the IPAM store. Everything
// runs under a node netns of the test's own. ipvlan and vlan share macvlan's code path but this
// kernel cannot create them; the in-memory version (test/unit/plugins-sublinks-kill.test.ts) covers
// every kill point of all five.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it, type TestContext } from 'vitest';
import { runFence } from '../helpers/bounded-runs.js';
import { expectNothingLeft, links } from '../helpers/leftovers.js';
import { pluginDir } from '../helpers/mode.js';

const tag = `pk${process.pid % 100000}`;
const netnses = new Set<string>();
const work = mkdtempSync(join(tmpdir(), `${tag}-`));
afterAll(() => {
  for (const n of netnses) spawnSync('ip', ['netns', 'del', n]);
  rmSync(work, { recursive: true, force: true });
});

const RUNS = Number(process.env.CNI_KIT_KILL_RUNS ?? 8);

function need(ctx: TestContext): void {
  if (process.getuid?.() !== 0) ctx.skip('needs root for network namespaces');
}

function netns(name: string): string {
  spawnSync('ip', ['netns', 'del', name]);
  execFileSync('ip', ['netns', 'add', name]);
  netnses.add(name);
  return name;
}

interface Case {
  type: string;
  conf: Record<string, unknown>;
  byDesign: string[];
}
const CASES: Case[] = [
  { type: 'macvlan', conf: { master: 'mst0' }, byDesign: [] },
  { type: 'bridge', conf: { bridge: 'kbr0', isGateway: true, ipMasq: true }, byDesign: ['kbr0'] },
  { type: 'ptp', conf: { ipMasq: true }, byDesign: [] },
];

/** Runs the binary in the node netns; with `killAfterMs`, SIGKILLs its process group then. */
function run(node: string, type: string, env: Record<string, string>, stdin: string, killAfterMs?: number) {
  return new Promise<{ status: number | null; out: string }>((resolve) => {
    const p = spawn('nsenter', [`--net=/run/netns/${node}`, join(pluginDir(node), type)], {
      env: { PATH: process.env.PATH ?? '', ...env },
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    p.stdout.on('data', (b: Buffer) => {
      out += b.toString();
    });
    p.stderr.on('data', (b: Buffer) => {
      out += b.toString();
    });
    const kill = () => {
      try {
        process.kill(-(p.pid ?? 0), 'SIGKILL');
      } catch {}
    };
    const killer = setTimeout(kill, killAfterMs ?? 20_000);
    p.on('close', (status) => {
      clearTimeout(killer);
      resolve({ status, out });
    });
    p.stdin.on('error', () => {});
    p.stdin.on('error', () => {}); // a plugin killed before it read its config
    p.stdin.end(stdin);
  });
}

describe.each(CASES)('$type binary: SIGKILL at a random point of ADD, then DEL, leaves nothing (F8)', (c) => {
  it('random kill times', async (ctx) => {
    need(ctx);
    const node = netns(`${tag}-${c.type}-n`);
    execFileSync('ip', ['-n', node, 'link', 'add', 'mst0', 'type', 'veth', 'peer', 'name', 'mst1']);
    execFileSync('ip', ['-n', node, 'link', 'set', 'mst0', 'up']);
    const baseline = links(node);
    let i = 0;
    const attempt = async (killAfterMs: number | undefined) => {
      const ctr = netns(`${tag}-${c.type}-c${i}`);
      const dataDir = join(work, `${c.type}-${i++}`);
      const conf = JSON.stringify({
        cniVersion: '1.0.0',
        name: `${tag}${c.type}`,
        type: c.type,
        ...c.conf,
        ipam: { type: 'host-local', subnet: '10.94.0.0/24', dataDir },
      });
      const env = (cmd: string) => ({
        CNI_COMMAND: cmd,
        CNI_CONTAINERID: `${tag}-${i}`,
        CNI_NETNS: `/var/run/netns/${ctr}`,
        CNI_IFNAME: 'eth0',
        CNI_PATH: pluginDir(node),
      });
      const t0 = performance.now();
      const add = await run(node, c.type, env('ADD'), conf, killAfterMs);
      const took = performance.now() - t0;
      for (const round of [1, 2]) {
        const del = await run(node, c.type, env('DEL'), conf);
        expect(del.status, `DEL ${round} after a kill at ${killAfterMs} ms: ${del.out}`).toBe(0);
      }
      const at = `killed at ${killAfterMs ?? 'never'} ms (ADD exit ${add.status})`;
      expectNothingLeft(
        { node, ctr, nodeLinks: baseline, byDesign: c.byDesign, dataDir, network: `${tag}${c.type}` },
        at,
      );
      spawnSync('ip', ['netns', 'del', ctr]);
      netnses.delete(ctr);
      return { add, took };
    };
    // One uninterrupted ADD tells how long an ADD takes here; kills land anywhere within it.
    const full = await attempt(undefined);
    expect(full.add.status, full.add.out).toBe(0);
    const span = Math.max(50, Math.ceil(full.took));
    const fence = runFence(ctx);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: span }), (ms) =>
        fence.run(() => attempt(ms).then(() => {})),
      ),
      { numRuns: RUNS, plugins: [fc.interruptAfterTimeLimit(40_000)] },
    );
    expect(fence.passed).toBeGreaterThanOrEqual(Math.min(RUNS, 3));
  }, 90_000);
});
