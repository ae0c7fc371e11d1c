// host-local under real processes: 16 binaries racing on one data directory, and allocating
// processes SIGKILLed at random moments. Afterwards: no duplicates, no empty files, and after GC
// exactly the valid attachments remain.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HostLocalAllocator, type IpamNetConf } from 'cni-kit/ipam';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cniKitSourcePlugin } from '../../src/cli/build.js';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const OURS = join(repo, 'dist/bin/host-local');
const root = mkdtempSync(join(tmpdir(), `cnikit-hl-stress-${process.pid}-`));
const worker = join(root, 'worker.mjs');
afterAll(() => rmSync(root, { recursive: true, force: true }));

// A long-lived allocating process, so a random kill lands inside ADD or DEL (a plugin binary spends
// most of its short life starting up). It reports each step on stdout before and after it.
const WORKER_SOURCE = `
import { writeSync } from 'node:fs';
import { HostLocalAllocator } from 'cni-kit/ipam';
const conf = JSON.parse(process.argv[2]);
const prefix = process.argv[3];
// Besides the random timer, die right after a random durable step now and then.
const a = new HostLocalAllocator(conf, {
  onStep: () => {
    if (Math.random() < 0.05) process.kill(process.pid, 'SIGKILL');
  },
});
for (let i = 0; ; i++) {
  const id = prefix + '-' + i;
  writeSync(1, 'start ' + id + '\\n');
  const r = await a.allocate({ containerId: id, ifname: 'eth0' });
  writeSync(1, 'ok ' + id + ' ' + r.ips.map((x) => x.address.split('/')[0]).join(',') + '\\n');
  if (i % 3 === 2) {
    writeSync(1, 'delstart ' + id + '\\n');
    await a.release({ containerId: id, ifname: 'eth0' });
    writeSync(1, 'del ' + id + '\\n');
  }
}
`;

beforeAll(async () => {
  await build({
    stdin: { contents: WORKER_SOURCE, resolveDir: repo, loader: 'ts' },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: worker,
    plugins: [cniKitSourcePlugin(join(repo, 'src'))],
    logLevel: 'warning',
  });
});

function conf(name: string, ranges: unknown[]): IpamNetConf {
  return { cniVersion: '1.0.0', name, type: 'bridge', ipam: { type: 'host-local', dataDir: root, ranges } };
}

function ipFiles(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const f of readdirSync(dir)) {
    if (f === 'lock' || f === '.cni-kit' || f.startsWith('last_reserved_ip.')) continue;
    out.set(f, readFileSync(join(dir, f), 'utf8'));
  }
  return out;
}

function runBinary(c: IpamNetConf, id: string): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(OURS, [], {
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        CNI_COMMAND: 'ADD',
        CNI_CONTAINERID: id,
        CNI_NETNS: '/var/run/netns/none',
        CNI_IFNAME: 'eth0',
        CNI_PATH: '/usr/lib/cni',
      },
    });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout }));
    child.stdin.on('error', () => {}); // a plugin killed before it read its config
    child.stdin.end(JSON.stringify(c));
  });
}

describe('host-local stress', () => {
  it('16 processes on one dataDir: zero duplicates', async () => {
    const c = conf(`conc${process.pid}`, [[{ subnet: '10.88.0.0/24' }], [{ subnet: 'fd88::/64' }]]);
    const perProc = 3;
    const results = await Promise.all(
      Array.from({ length: 16 }, async (_, p) => {
        const out: Array<[string, string[]]> = [];
        for (let k = 0; k < perProc; k++) {
          const id = `p${p}-${k}`;
          const r = await runBinary(c, id);
          expect(r.code, r.stdout).toBe(0);
          out.push([
            id,
            (JSON.parse(r.stdout) as { ips: Array<{ address: string }> }).ips.map((i) => i.address),
          ]);
        }
        return out;
      }),
    );
    const all = results.flat();
    expect(all.length).toBe(16 * perProc);
    expect(new Set(all.map(([, ips]) => ips[0])).size).toBe(all.length);
    expect(new Set(all.map(([, ips]) => ips[1])).size).toBe(all.length);
    const files = ipFiles(join(root, c.name));
    expect(files.size).toBe(2 * all.length);
    for (const [id, ips] of all)
      for (const ip of ips) expect(files.get(ip.split('/')[0]!)).toBe(`${id}\r\neth0`);
  }, 120_000);

  it('SIGKILL at random moments, many times: no duplicates, no empty files, GC leaves exactly the valid', async () => {
    const c = conf(`crash${process.pid}`, [[{ subnet: '10.89.0.0/20' }], [{ subnet: 'fd89::/64' }]]);
    const dir = join(root, c.name);
    writeFileSync(join(root, 'conf.json'), JSON.stringify(c));
    const valid = new Map<string, string[]>(); // completed ADDs not deleted, as the runtime would know them
    const inFlightAdd: string[] = [];
    const inFlightDel: string[] = [];
    const rounds = 15;
    let kills = 0;
    for (let round = 0; round < rounds; round++) {
      await Promise.all(
        [0, 1].map(
          (w) =>
            new Promise<void>((resolve, reject) => {
              const child = spawn(process.execPath, [worker, JSON.stringify(c), `r${round}w${w}`]);
              let out = '';
              let armed = false;
              // The round ends when the child is gone AND its kill timer has fired, so `kills`
              // counts every timer even when a worker exits before its timer.
              let timerFired: Promise<void> = Promise.resolve();
              child.stdout.on('data', (d: Buffer) => {
                out += d.toString();
                // Start the clock at the first allocation, so every kill lands inside the loop.
                if (!armed) {
                  armed = true;
                  timerFired = new Promise<void>((fired) =>
                    setTimeout(
                      () => {
                        child.kill('SIGKILL');
                        kills++;
                        fired();
                      },
                      Math.floor(Math.random() * 120),
                    ),
                  );
                }
              });
              child.on('error', reject);
              child.on('close', async () => {
                await timerFired;
                let pending: { kind: 'add' | 'del'; id: string } | undefined;
                for (const line of out.split('\n')) {
                  const [kind, id, ips] = line.split(' ');
                  if (!id) continue;
                  if (kind === 'start') pending = { kind: 'add', id };
                  else if (kind === 'ok') {
                    valid.set(id, ips!.split(','));
                    pending = undefined;
                  } else if (kind === 'delstart') {
                    valid.delete(id);
                    pending = { kind: 'del', id };
                  } else if (kind === 'del') pending = undefined;
                }
                if (pending?.kind === 'add') inFlightAdd.push(pending.id);
                if (pending?.kind === 'del') inFlightDel.push(pending.id);
                resolve();
              });
            }),
        ),
      );
    }
    expect(kills).toBe(2 * rounds); // timers fire even when the worker already killed itself
    // Most kills must land inside ADD or DEL, or this test proves nothing.
    expect(inFlightAdd.length + inFlightDel.length).toBeGreaterThan(rounds);
    // Nothing written by a killed process is empty or foreign, and no container holds two addresses.
    const files = ipFiles(dir);
    const perId = new Map<string, number>();
    for (const [ip, content] of files) {
      expect(content, `${ip} is empty or malformed`).toMatch(/^r\d+w\d-\d+\r\neth0$/);
      const id = content.split('\r\n')[0]!;
      perId.set(id, (perId.get(id) ?? 0) + 1);
    }
    for (const [id, n] of perId) expect(n, `${id} holds ${n} files`).toBeLessThanOrEqual(2);
    for (const [id, ips] of valid)
      for (const ip of ips) expect(files.get(ip), `${id} lost ${ip}`).toBe(`${id}\r\neth0`);
    // What a runtime does after a killed call: retry the ADD (idempotent) or DEL.
    const a = new HostLocalAllocator(c);
    for (const [i, id] of inFlightAdd.entries()) {
      if (i % 2 === 0) {
        const r = await a.allocate({ containerId: id, ifname: 'eth0' });
        valid.set(
          id,
          r.ips!.map((x) => x.address.split('/')[0]!),
        );
        expect(a.store.scanFor({ containerId: id, ifname: 'eth0' }).length).toBe(2);
      } else await a.release({ containerId: id, ifname: 'eth0' });
    }
    for (const id of inFlightDel) await a.release({ containerId: id, ifname: 'eth0' });
    const holders = [...valid.values()].flat();
    expect(new Set(holders).size, 'an address is held by two containers').toBe(holders.length);
    await a.gc([...valid.keys()].map((id) => ({ containerId: id, ifname: 'eth0' })));
    const after = ipFiles(dir);
    const expected = new Map(
      [...valid].flatMap(([id, ips]) => ips.map((ip) => [ip, `${id}\r\neth0`] as const)),
    );
    expect(new Map([...after].sort())).toEqual(new Map([...expected].sort()));
    expect(readdirSync(join(dir, '.cni-kit')).filter((f) => f.startsWith('.tmp.'))).toEqual([]);
    const status = await a.status();
    expect(status.pools[0]!.used).toBe(valid.size);
  }, 180_000);
});
