// Delegates of a plugin the daemon serves (multus here): when the binary multus finds is a shim
// that would forward to this same daemon, the delegate runs in the daemon's process, as the
// nested call it is (no exec, no socket round trip, no separate call in the daemon's log); a shim
// bound to another daemon still goes there. Either way the delegate sees the delegation chain.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, type TestContext } from 'vitest';
import { SHIMS, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { rebindShim } from '../helpers/mode.js';

const tag = `dd${process.pid % 100000}`;
const work = mkdtempSync(join(tmpdir(), `${tag}-`));
const daemons: TestDaemon[] = [];
const netns = `${tag}-pod`;
afterAll(async () => {
  for (const d of daemons) await d.kill();
  spawnSync('ip', ['netns', 'del', netns]);
  rmSync(work, { recursive: true, force: true });
});

function need(ctx: TestContext): void {
  if (process.getuid?.() !== 0) ctx.skip('needs root for network namespaces');
  if (!existsSync(join(SHIMS, 'multus'))) ctx.skip('dist/shim is not built (npm run build)');
}

async function daemonAt(name: string): Promise<TestDaemon> {
  const run = join(work, `${name}-run`);
  mkdirSync(run, { mode: 0o700 });
  const d = await startDaemon({ socket: join(run, 'daemon.sock') });
  daemons.push(d);
  return d;
}

/** Shims of `types` bound to `socket` (no exec fallback: a call must reach a daemon). */
function shims(name: string, socket: string, types: Record<string, string>): string {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  for (const [type, sock] of Object.entries(types)) {
    rebindShim(join(SHIMS, type), join(dir, type), sock || socket, '/nonexistent');
  }
  return dir;
}

function call(bin: string, command: string, conf: object) {
  return new Promise<{ status: number | null; stdout: string }>((resolve) => {
    const p = spawn(join(bin, 'multus'), [], {
      env: {
        PATH: process.env.PATH ?? '',
        CNI_COMMAND: command,
        CNI_CONTAINERID: `${tag}c`,
        CNI_NETNS: `/run/netns/${netns}`,
        CNI_IFNAME: 'eth0',
        CNI_PATH: bin,
        CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p',
      },
    });
    let stdout = '';
    p.stdout.on('data', (b: Buffer) => {
      stdout += b.toString();
    });
    p.on('close', (status) => resolve({ status, stdout }));
    p.stdin.on('error', () => {}); // a plugin killed before it read its config
    p.stdin.end(JSON.stringify(conf));
  });
}

const calls = (d: TestDaemon) =>
  d
    .log()
    .split('\n')
    .filter((l) => l.includes('"callId"') && /"call (done|failed)"/.test(l))
    .map((l) => JSON.parse(l) as { plugin: string; command: string; depth?: number });

const settle = () => new Promise((r) => setTimeout(r, 300));

describe('delegates of a plugin served by the daemon', () => {
  it('a shim bound to this daemon runs in-process; one bound to another daemon goes there', async (ctx) => {
    need(ctx);
    spawnSync('ip', ['netns', 'del', netns]);
    spawnSync('ip', ['netns', 'add', netns]);
    const main = await daemonAt('main');
    const other = await daemonAt('other');
    const record = join(work, 'record.jsonl');
    const debug = (name: string, ip: string) => ({
      cniVersion: '1.0.0',
      name,
      type: 'debug',
      recordFile: record,
      ips: [ip],
    });
    const conf = (bin: string) => ({
      cniVersion: '1.0.0',
      name: 'multus-cni-network',
      type: 'multus',
      cniDir: join(work, 'cache'),
      binDir: bin,
      delegates: [debug('a', '10.9.0.2/24'), debug('b', '10.9.1.2/24')],
    });

    // Both delegates' shims name the daemon multus runs in.
    const same = shims('same', main.socket, { multus: '', debug: '' });
    const add = await call(same, 'ADD', conf(same));
    expect(add.status, add.stdout).toBe(0);
    expect(JSON.parse(add.stdout).ips.map((i: { address: string }) => i.address)).toEqual(['10.9.0.2/24']);
    const del = await call(same, 'DEL', conf(same));
    expect(del.status, del.stdout).toBe(0);
    await settle();
    const seen = readFileSync(record, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(seen.map((r) => `${r.command} ${r.config.name}`)).toEqual(['ADD a', 'ADD b', 'DEL b', 'DEL a']);
    // The delegates ran as nested calls: each carries the delegation chain multus' exec records.
    for (const r of seen) expect(r.env.CNI_KIT_DELEGATION_CHAIN).toBe(`debug ${r.command}`);
    // ... inside the daemon's own call: the daemon served two calls, both multus'.
    expect(calls(main).map((c) => `${c.plugin} ${c.command}`)).toEqual(['multus ADD', 'multus DEL']);

    // The delegate's shim names another daemon: the call goes there, over its socket.
    rmSync(record);
    const split = shims('split', main.socket, { multus: '', debug: other.socket });
    expect((await call(split, 'ADD', conf(split))).status).toBe(0);
    expect((await call(split, 'DEL', conf(split))).status).toBe(0);
    await settle();
    expect(readFileSync(record, 'utf8').trim().split('\n')).toHaveLength(4);
    expect(calls(other).map((c) => `${c.plugin} ${c.command} ${c.depth}`)).toEqual([
      'debug ADD 1',
      'debug ADD 1',
      'debug DEL 1',
      'debug DEL 1',
    ]);
    expect(calls(main).map((c) => c.plugin)).toEqual(['multus', 'multus', 'multus', 'multus']);
  });
});
