// The Go host-local (/usr/lib/cni/host-local) and ours share one data directory: same lock, same files,
// same round-robin cursor. Alternating and parallel ADDs never collide, and each releases the other's
// allocations by container ID.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HostLocalAllocator, type IpamNetConf, lockFile } from 'cni-kit/ipam';
import { afterAll, describe, expect, it } from 'vitest';

const GO = '/usr/lib/cni/host-local';
const OURS = fileURLToPath(new URL('../../dist/bin/host-local', import.meta.url));
const root = mkdtempSync(join(tmpdir(), `cnikit-hl-interop-${process.pid}-`));
afterAll(() => rmSync(root, { recursive: true, force: true }));

interface Run {
  code: number | null;
  stdout: string;
}

function run(bin: string, command: string, conf: IpamNetConf, id: string, ifname = 'eth0'): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, [], {
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        CNI_COMMAND: command,
        CNI_CONTAINERID: id,
        CNI_NETNS: '/var/run/netns/none',
        CNI_IFNAME: ifname,
        CNI_PATH: '/usr/lib/cni',
      },
    });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout }));
    child.stdin.end(JSON.stringify(conf));
  });
}

async function add(bin: string, conf: IpamNetConf, id: string): Promise<string[]> {
  const r = await run(bin, 'ADD', conf, id);
  expect(r.code, `${bin} ADD ${id}: ${r.stdout}`).toBe(0);
  return (JSON.parse(r.stdout) as { ips: Array<{ address: string }> }).ips.map((i) => i.address);
}

function ipFiles(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of readdirSync(dir)) {
    if (f === 'lock' || f === '.cni-kit' || f.startsWith('last_reserved_ip.')) continue;
    out[f] = readFileSync(join(dir, f), 'utf8');
  }
  return out;
}

const hasGo = existsSync(GO);
let seq = 0;
function conf(): IpamNetConf {
  return {
    cniVersion: '1.0.0',
    name: `interop${seq++}`,
    type: 'bridge',
    ipam: {
      type: 'host-local',
      dataDir: root,
      ranges: [[{ subnet: '10.77.0.0/24' }], [{ subnet: 'fd77::/64' }]],
    },
  };
}

describe('host-local interop with the Go plugin', () => {
  it('alternating ADDs share the round-robin cursor and never collide', async (ctx) => {
    if (!hasGo) ctx.skip('Go host-local not installed at /usr/lib/cni/host-local');
    const c = conf();
    const got: string[][] = [];
    for (let i = 0; i < 10; i++) got.push(await add(i % 2 === 0 ? GO : OURS, c, `alt${i}`));
    // One shared cursor: consecutive addresses, whoever allocated the previous one.
    expect(got.map((g) => g[0])).toEqual(Array.from({ length: 10 }, (_, i) => `10.77.0.${i + 2}/24`));
    expect(got.map((g) => g[1])).toEqual(
      Array.from({ length: 10 }, (_, i) => `fd77::${(i + 2).toString(16)}/64`),
    );
    const files = ipFiles(join(root, c.name));
    expect(Object.keys(files).length).toBe(20);
    expect(files['10.77.0.3']).toBe('alt1\r\neth0');
    expect(files['fd77::a']).toBe('alt8\r\neth0');
  });

  it('parallel ADDs from both plugins on one directory: no duplicates', async (ctx) => {
    if (!hasGo) ctx.skip('Go host-local not installed at /usr/lib/cni/host-local');
    const c = conf();
    const ids = Array.from({ length: 16 }, (_, i) => `par${i}`);
    const results = await Promise.all(ids.map((id, i) => add(i % 2 === 0 ? GO : OURS, c, id)));
    const v4 = results.map((r) => r[0]);
    expect(new Set(v4).size).toBe(16);
    expect(new Set(results.map((r) => r[1])).size).toBe(16);
    const files = ipFiles(join(root, c.name));
    ids.forEach((id, i) => {
      expect(files[v4[i]!.split('/')[0]!]).toBe(`${id}\r\neth0`);
    });
  });

  it('each releases and checks the other one allocations by container ID', async (ctx) => {
    if (!hasGo) ctx.skip('Go host-local not installed at /usr/lib/cni/host-local');
    const c = conf();
    const dir = join(root, c.name);
    await add(GO, c, 'go1');
    await add(GO, c, 'go2');
    await add(OURS, c, 'ours1');
    await add(OURS, c, 'ours2');
    // CHECK across implementations.
    expect((await run(GO, 'CHECK', c, 'ours1')).code).toBe(0);
    expect((await run(OURS, 'CHECK', c, 'go1')).code).toBe(0);
    // Ours (binary and in process) releases Go's; Go releases ours.
    expect((await run(OURS, 'DEL', c, 'go1')).code).toBe(0);
    await new HostLocalAllocator(c).release({ containerId: 'go2', ifname: 'eth0' });
    expect((await run(GO, 'DEL', c, 'ours1')).code).toBe(0);
    expect((await run(GO, 'DEL', c, 'ours2')).code).toBe(0);
    expect(ipFiles(dir)).toEqual({});
    // Ours notices that Go removed its files: a fresh ADD of the same ID works and CHECK tells the truth.
    expect((await run(OURS, 'CHECK', c, 'ours1')).code).not.toBe(0);
    const again = await add(OURS, c, 'ours1');
    expect(again.length).toBe(2);
    expect(Object.keys(ipFiles(dir)).length).toBe(2);
  });

  it('takes the very same flock: Go waits while we hold the lock, and we wait while flock(1) holds it', async (ctx) => {
    if (!hasGo) ctx.skip('Go host-local not installed at /usr/lib/cni/host-local');
    const c = conf();
    const dir = join(root, c.name);
    await add(OURS, c, 'warmup');
    const held = await lockFile(join(dir, 'lock'));
    let goDone = false;
    const goRun = run(GO, 'ADD', c, 'blocked').then((r) => {
      goDone = true;
      return r;
    });
    await new Promise((r) => setTimeout(r, 400));
    expect(goDone, 'Go ADD finished while we held the lock').toBe(false);
    held.release();
    expect((await goRun).code).toBe(0);
    // The other way round: an external flock(2) holder (util-linux, like go-filemutex) blocks our ADD.
    const holder = spawn('flock', ['-x', join(dir, 'lock'), 'sleep', '0.6']);
    const holderDone = new Promise((r) => holder.on('close', r));
    await new Promise((r) => setTimeout(r, 150));
    const t0 = Date.now();
    await new HostLocalAllocator(c).allocate({ containerId: 'waited', ifname: 'eth0' });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(300);
    await holderDone;
  });

  it('Go refuses a duplicate ADD where ours is idempotent, on the same files', async (ctx) => {
    if (!hasGo) ctx.skip('Go host-local not installed at /usr/lib/cni/host-local');
    const c = conf();
    const first = await add(OURS, c, 'dup');
    expect(await add(OURS, c, 'dup')).toEqual(first);
    const goAgain = await run(GO, 'ADD', c, 'dup');
    expect(goAgain.code).not.toBe(0);
    expect(goAgain.stdout).toContain('duplicate allocation is not allowed');
  });
});
