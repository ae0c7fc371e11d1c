// host-device binaries in real network namespaces. Each test has a node netns of its own (the
// plugin runs in it under nsenter, so "the host" is that netns, never the machine's) holding the
// device, a veth whose peer stays in the node. Ours and the Go reference 1.1.1 run the shared
// assertions; what 1.1.1 does differently (it leaks on F2, leaves the device down on DEL) is ours only.

import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { pluginDir } from '../helpers/mode.js';

const tag = `phd${process.pid % 100000}`;
const GO = '/usr/lib/cni/host-device';
/** Ours, as the runtime of `node` execs it: dist/bin, or (daemon mode) a shim bound to its daemon. */
const OURS = 'ours:host-device';
const binIn = (bin: string, node: string) => (bin === OURS ? `${pluginDir(node)}host-device` : bin);
const impls = [{ impl: 'ours', bin: OURS }, ...(existsSync(GO) ? [{ impl: 'go', bin: GO }] : [])];
let work: string;
const netnses: string[] = [];
let seq = 0;

const ip = (...args: string[]) =>
  execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
interface JLink {
  ifname: string;
  address: string;
  mtu: number;
  flags: string[];
  ifalias?: string;
  addr_info?: Array<{ local: string; prefixlen: number; scope: string }>;
}

function need(ctx: TestContext): void {
  if (process.getuid?.() !== 0) ctx.skip('needs root for network namespaces');
}

function netns(suffix: string): string {
  const name = `${tag}-${++seq}${suffix}`;
  spawnSync('ip', ['netns', 'del', name]);
  ip('netns', 'add', name);
  netnses.push(name);
  return name;
}

/** A node netns with device hd0 (MTU 1400, up, alias, an address and a static route) and a container netns. */
function setup(): { node: string; ctr: string; ctrPath: string; dataDir: string } {
  const node = netns('n');
  const ctr = netns('c');
  ip('-n', node, 'link', 'add', 'name', 'hd0', 'type', 'veth', 'peer', 'name', 'hd0peer');
  ip('-n', node, 'link', 'set', 'hd0', 'mtu', '1400', 'alias', 'uplink-b', 'up');
  ip('-n', node, 'link', 'set', 'hd0peer', 'up');
  ip('-n', node, 'addr', 'add', '192.0.2.5/24', 'dev', 'hd0');
  ip('-n', node, 'route', 'add', '198.51.100.0/24', 'via', '192.0.2.1', 'dev', 'hd0');
  return { node, ctr, ctrPath: `/var/run/netns/${ctr}`, dataDir: join(work, ctr) };
}

/** hd0 as the node sees it: everything host-device must give back. */
function device(node: string, name = 'hd0') {
  const r = spawnSync('ip', ['-j', '-n', node, 'addr', 'show', 'dev', name], { encoding: 'utf8' });
  if (r.status !== 0) return undefined;
  const l = (JSON.parse(r.stdout) as JLink[])[0];
  if (!l) return undefined;
  return {
    name: l.ifname,
    mac: l.address,
    mtu: l.mtu,
    up: l.flags.includes('UP'),
    alias: (JSON.parse(ip('-j', '-n', node, 'link', 'show', 'dev', name)) as JLink[])[0]?.ifalias ?? '',
    addrs: (l.addr_info ?? [])
      .filter((a) => a.scope !== 'link')
      .map((a) => `${a.local}/${a.prefixlen}`)
      .sort(),
    routes: ip('-n', node, 'route', 'show', 'dev', name, 'proto', 'boot').trim(),
  };
}
const links = (ns: string) =>
  (JSON.parse(ip('-j', '-n', ns, 'link', 'show')) as JLink[])
    .map((l) => `${l.ifname}:${l.ifalias ?? ''}`)
    .sort();

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
  json: Record<string, unknown> | undefined;
}
/** Runs a plugin binary inside the node netns, as the runtime of that node would. */
function run(bin: string, node: string, cmd: string, ctrPath: string, conf: object, ifname = 'net1'): Run {
  const r = spawnSync('nsenter', [`--net=/var/run/netns/${node}`, binIn(bin, node)], {
    env: {
      PATH: process.env.PATH ?? '',
      CNI_COMMAND: cmd,
      CNI_CONTAINERID: `${tag}-c`,
      CNI_NETNS: ctrPath,
      CNI_IFNAME: ifname,
      CNI_PATH: '/usr/lib/cni',
    },
    input: JSON.stringify(conf),
    encoding: 'utf8',
    timeout: 20000,
  });
  let json: Record<string, unknown> | undefined;
  try {
    json = r.stdout ? (JSON.parse(r.stdout) as Record<string, unknown>) : undefined;
  } catch {
    json = undefined;
  }
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, json };
}

const hdConf = (dataDir: string, extra: object = {}) => ({
  cniVersion: '1.0.0',
  name: `${tag}hd`,
  type: 'host-device',
  device: 'hd0',
  dataDir,
  ...extra,
});

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), `${tag}-`));
});
afterEach(() => {
  for (const n of netnses.splice(0)) spawnSync('ip', ['netns', 'del', n]);
});
afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
  // No temporary netns of a plugin may outlive the tests.
  expect(
    readdirSync('/var/run/netns').filter((n) => n.startsWith('cnikit-') && n.includes(`-${process.pid}-`)),
  ).toEqual([]);
});

describe.each(impls)('host-device ($impl)', ({ impl, bin }) => {
  it('ADD moves hd0 in as net1 (alias, MAC, IPAM address); CHECK; DEL brings it home; DEL again', (ctx) => {
    need(ctx);
    const s = setup();
    const before = device(s.node);
    const conf = hdConf(s.dataDir, {
      ipam: { type: 'host-local', subnet: '10.77.0.0/24', dataDir: join(s.dataDir, 'ipam') },
    });
    const add = run(bin, s.node, 'ADD', s.ctrPath, conf);
    expect(add.status, add.stdout + add.stderr).toBe(0);
    expect(device(s.node)).toBeUndefined();
    const inside = (JSON.parse(ip('-j', '-n', s.ctr, 'addr', 'show', 'net1')) as JLink[])[0];
    expect(inside?.address).toBe(before?.mac);
    expect(links(s.ctr)).toEqual(['lo:', 'net1:hd0']);
    expect(inside?.addr_info?.some((a) => a.local === '10.77.0.2')).toBe(true);
    const check = run(bin, s.node, 'CHECK', s.ctrPath, { ...conf, prevResult: add.json });
    expect(check.status, check.stdout).toBe(0);
    const del = run(bin, s.node, 'DEL', s.ctrPath, conf);
    expect(del.status, del.stdout + del.stderr).toBe(0);
    expect(device(s.node)).toMatchObject({ name: 'hd0', mac: before?.mac, mtu: 1400 });
    expect(links(s.ctr)).toEqual(['lo:']);
    if (impl === 'ours') {
      // Ours gives back what ADD found: up, alias, address and route; the reference leaves it down and bare.
      expect(device(s.node)).toEqual(before);
      expect(readdirSync(s.dataDir).filter((f) => f !== 'ipam')).toEqual([]);
    }
    // 1.1.1 fails a second DEL ("failed to find net1"); the spec wants it to succeed.
    if (impl === 'ours') expect(run(bin, s.node, 'DEL', s.ctrPath, conf).status).toBe(0);
  });
});

describe('host-device (ours): F2 and the rollback', () => {
  it('CNI_IFNAME already in the container: ADD refuses before moving; DEL exits 0 and touches nothing', (ctx) => {
    need(ctx);
    const s = setup();
    ip('-n', s.ctr, 'link', 'add', 'name', 'net1', 'type', 'veth', 'peer', 'name', 'x1');
    ip('-n', s.ctr, 'link', 'set', 'net1', 'alias', 'hd0');
    const before = device(s.node);
    const ctrBefore = links(s.ctr);
    const add = run(OURS, s.node, 'ADD', s.ctrPath, hdConf(s.dataDir));
    expect(add.status).toBe(1);
    expect(add.json).toMatchObject({
      code: 4,
      msg: expect.stringContaining('CNI_IFNAME: "net1" already exists'),
    });
    expect(device(s.node)).toEqual(before);
    expect(links(s.ctr)).toEqual(ctrBefore);
    const del = run(OURS, s.node, 'DEL', s.ctrPath, hdConf(s.dataDir));
    expect(del.status, del.stdout).toBe(0);
    // The container's own net1 stays, although its alias happens to name the device.
    expect(links(s.ctr)).toEqual(ctrBefore);
    expect(device(s.node)).toEqual(before);
  });

  it('a CNI_NETNS that is not a netns: code 4 naming it, the device untouched', (ctx) => {
    need(ctx);
    const s = setup();
    const fake = join(work, 'not-a-netns');
    writeFileSync(fake, '');
    const before = device(s.node);
    const add = run(OURS, s.node, 'ADD', fake, hdConf(s.dataDir));
    expect(add.json).toMatchObject({ code: 4, msg: expect.stringContaining(fake) });
    expect(device(s.node)).toEqual(before);
    expect(run(OURS, s.node, 'DEL', fake, hdConf(s.dataDir)).status).toBe(0);
    expect(device(s.node)).toEqual(before);
  });

  it('IPAM failing after the move: the device is back with its name, alias, MTU, up, address and route', (ctx) => {
    need(ctx);
    const s = setup();
    const before = device(s.node);
    const conf = hdConf(s.dataDir, { ipam: { type: 'host-local', ranges: [[{ subnet: 'nonsense' }]] } });
    const add = run(OURS, s.node, 'ADD', s.ctrPath, conf);
    expect(add.status).toBe(1);
    expect(device(s.node)).toEqual(before);
    expect(links(s.ctr)).toEqual(['lo:']);
    expect(existsSync(s.dataDir) ? readdirSync(s.dataDir) : []).toEqual([]);
  });

  it('SIGKILL at points spread over ADD, then DEL: the device is home as it was, nothing left', async (ctx) => {
    need(ctx);
    for (const delayMs of [0, 80, 150, 190, 220, 250, 280, 310, 350]) {
      const s = setup();
      const before = device(s.node);
      const conf = hdConf(s.dataDir, {
        ipam: { type: 'host-local', subnet: '10.78.0.0/24', dataDir: join(s.dataDir, 'ipam') },
      });
      const child = spawn('nsenter', [`--net=/var/run/netns/${s.node}`, binIn(OURS, s.node)], {
        env: {
          PATH: process.env.PATH ?? '',
          CNI_COMMAND: 'ADD',
          CNI_CONTAINERID: `${tag}-c`,
          CNI_NETNS: s.ctrPath,
          CNI_IFNAME: 'net1',
          CNI_PATH: '/usr/lib/cni',
        },
        stdio: ['pipe', 'ignore', 'ignore'],
      });
      child.stdin.on('error', () => {}); // a plugin killed before it read its config
      child.stdin.end(JSON.stringify(conf));
      const done = new Promise((r) => child.on('exit', r));
      await new Promise((r) => setTimeout(r, delayMs));
      child.kill('SIGKILL');
      await done;
      const del = run(OURS, s.node, 'DEL', s.ctrPath, conf);
      expect(del.status, `after a kill at ${delayMs} ms: ${del.stdout}${del.stderr}`).toBe(0);
      expect(device(s.node), `after a kill at ${delayMs} ms`).toEqual(before);
      expect(links(s.ctr)).toEqual(['lo:']);
      expect(readdirSync(s.dataDir).filter((f) => f !== 'ipam')).toEqual([]);
      // This attachment's temporary netns only: other files (the fuzzer) run host-device meanwhile.
      const tempNetns = `cnikit-hd-${createHash('sha256').update(`${tag}-c/net1`).digest('hex').slice(0, 16)}`;
      expect(readdirSync('/var/run/netns')).not.toContain(tempNetns);
      for (const n of netnses.splice(0)) spawnSync('ip', ['netns', 'del', n]);
    }
  }, 60_000);

  it("DEL after the reference's ADD (no state file) returns the device by its alias", (ctx) => {
    need(ctx);
    if (!existsSync(GO)) ctx.skip('Go host-device 1.1.1 not installed');
    const s = setup();
    const before = device(s.node);
    const add = run(GO, s.node, 'ADD', s.ctrPath, hdConf(s.dataDir));
    expect(add.status, add.stdout).toBe(0);
    expect(run(OURS, s.node, 'DEL', s.ctrPath, hdConf(s.dataDir)).status).toBe(0);
    expect(device(s.node)).toMatchObject({ name: 'hd0', mac: before?.mac, mtu: 1400, alias: '' });
    expect(links(s.ctr)).toEqual(['lo:']);
  });
});
